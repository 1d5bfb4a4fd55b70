"""Notice that this process was paused long enough for its group to presume it dead.

At-least-once has no fence: a group worker frozen past ``group.session_timeout_ms``
(SIGSTOP, a VM pause) loses its partitions to another worker, and when it thaws it runs on
as if it still owned them until librdkafka reports the loss (``on_lost``, at the group
thread's next poll). In that moment its event loop runs first: overdue offset flushes
write positions older than the new owner's (an offset moved back: a restart replays), and
readers hand on batches the new owner also reads (duplicates).

The guard closes most of that moment. The group thread ticks it between polls (every
0.1 s); a gap longer than half the session timeout means the process may have stood still
long enough to be expired (heartbeats go every quarter of it). A Python-only stall (a GC
pause) does not stop librdkafka's heartbeats and cannot expire us; it only holds for a
moment needlessly. While
the tick is that stale, or for ``confirm_s`` after a stale tick was noticed, ``held()`` is
true and the worker neither hands batches to the producer nor writes offsets. The hold
ends at once when the group reports the loss (the units are gone, nothing to hold), or
after ``confirm_s``: one heartbeat interval and some slack, time for librdkafka to learn
from the coordinator that the member is unknown. Holding only delays: nothing read is
committed while held, so whoever reads a unit next starts at or before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["PauseGuard"]


class PauseGuard:
    """Whether reading and offset commits must wait: the process may have been expired from its group."""

    def __init__(self, session_timeout_s: float, heartbeat_interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.suspect_after_s = session_timeout_s / 2
        self.confirm_s = heartbeat_interval_s + 2.0
        self._clock = clock
        self._alive_at: float | None = None  # the group thread's latest tick; None: not running
        self._held_until = 0.0

    def tick(self) -> float | None:
        """The group thread is running; returns how long it stood still if that was long enough to hold."""
        now = self._clock()
        gap = None
        if self._alive_at is not None and now - self._alive_at > self.suspect_after_s:
            gap = now - self._alive_at
            # Before the fresh tick: a reader of held() sees the old tick or this hold, never neither.
            self._held_until = now + self.confirm_s
        self._alive_at = now
        return gap

    def held(self) -> bool:
        alive_at = self._alive_at
        if alive_at is None:
            return False
        now = self._clock()
        return now - alive_at > self.suspect_after_s or now < self._held_until

    def release(self) -> None:
        """The group answered (it took our partitions): nothing is left to hold."""
        self._held_until = 0.0

    def stop(self) -> None:
        """The group thread stops ticking (the worker has shut down): never hold from now on."""
        self._alive_at = None
