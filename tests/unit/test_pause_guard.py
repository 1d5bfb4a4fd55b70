"""The pause guard: a group thread that stood still past half the session timeout holds
reading and offset writes until the group answers, and nothing else does."""

from __future__ import annotations

from bridge.pause_guard import PauseGuard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(session_s: float = 10.0, heartbeat_s: float = 2.5) -> tuple[PauseGuard, Clock]:
    clock = Clock()
    return PauseGuard(session_s, heartbeat_s, clock=clock), clock


def test_nothing_is_held_before_the_group_thread_runs_or_while_it_ticks() -> None:
    guard, clock = make()
    assert not guard.held()
    for _ in range(100):
        assert guard.tick() is None
        clock.now += 0.1
        assert not guard.held()


def test_a_stale_tick_holds_before_the_group_thread_notices() -> None:
    """The event loop may run first after a thaw: the stale tick alone holds it."""
    guard, clock = make()
    guard.tick()
    clock.now += 4.9
    assert not guard.held()  # under half the session: cannot have been expired
    clock.now += 0.2
    assert guard.held()


def test_a_noticed_pause_holds_for_the_confirmation_time_then_ends() -> None:
    guard, clock = make()
    guard.tick()
    clock.now += 12.0
    assert guard.tick() == 12.0
    assert guard.held()  # the tick is fresh again, the hold is not over
    for _ in range(int(guard.confirm_s / 0.1) - 1):
        clock.now += 0.1
        assert guard.tick() is None
        assert guard.held()
    clock.now += 0.2
    guard.tick()
    assert not guard.held()
    assert guard.confirm_s == 4.5  # one heartbeat interval and 2 s


def test_the_group_reporting_the_loss_ends_the_hold() -> None:
    guard, clock = make()
    guard.tick()
    clock.now += 12.0
    guard.tick()
    guard.release()
    assert not guard.held()


def test_a_stopped_guard_never_holds() -> None:
    """After the worker shut down the group thread stops ticking; that is no pause."""
    guard, clock = make()
    guard.tick()
    guard.stop()
    clock.now += 60.0
    assert not guard.held()
