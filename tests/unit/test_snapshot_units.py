"""Snapshot units shared by a group: started only where owned, complete only when every
unit's final offset is stored, whoever stored it (connectors/dynamodb/units.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.task import Batch, SourceTask, partition_key
from connectors.dynamodb.units import UnitRun


class _Task(SourceTask):
    def __init__(self, unit: dict[str, Any], resume: dict[str, Any] | None) -> None:
        self.partition = unit
        self.resume = resume

    async def poll(self) -> Batch:
        raise AssertionError("not polled here")


class _Offsets:
    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}

    def offset(self, partition: dict[str, Any]) -> dict[str, Any] | None:
        return self.stored.get(partition_key(partition))

    def put(self, unit: dict[str, Any], offset: dict[str, Any]) -> None:
        self.stored[partition_key(unit)] = offset


class _Runtime:
    """One worker of a group: owns the units ``mine`` says, starts tasks into a list."""

    def __init__(self, mine: set[int]) -> None:
        self.offsets = _Offsets()
        self.mine = mine
        self.started: list[_Task] = []

    def owns(self, partition: dict[str, Any]) -> bool:
        return partition["segment"] in self.mine

    def start_task(self, task: _Task) -> None:
        self.started.append(task)


UNITS = [{"table": "t", "segment": i, "total_segments": 6} for i in range(6)]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _run(rt: _Runtime, **kw: Any) -> UnitRun:
    return UnitRun(rt, list(UNITS), complete=lambda o: bool(o and o.get("done")), start=_Task, concurrency=2, **kw)


def test_owned_units_start_and_the_run_ends_only_when_every_unit_is_stored_done() -> None:
    asyncio.run(_owned_units_start_and_the_run_ends_only_when_every_unit_is_stored_done())


async def _owned_units_start_and_the_run_ends_only_when_every_unit_is_stored_done() -> None:
    rt = _Runtime(mine={0, 2, 4})
    run = _run(rt)
    runner = asyncio.create_task(run.run())
    await _settle()
    assert [t.partition["segment"] for t in rt.started] == [0, 2], "owned units only, two at a time"
    rt.offsets.put(UNITS[0], {"done": True})
    run.finished(rt.started[0])
    await _settle()
    assert [t.partition["segment"] for t in rt.started] == [0, 2, 4]
    for t in rt.started[1:]:
        rt.offsets.put(t.partition, {"done": True})
        run.finished(t)
    await _settle()
    assert not runner.done(), "units 1, 3, 5 belong to other workers and are not stored done yet"
    for i in (1, 3, 5):
        rt.offsets.put(UNITS[i], {"done": True})  # the offset follower applies another worker's commits
    run.wake()
    await asyncio.wait_for(runner, 1)
    assert run.finished_here == 3 and len(rt.started) == 3


def test_a_unit_handed_away_is_not_restarted_and_resumes_from_its_stored_offset_when_it_comes_back() -> None:
    asyncio.run(_a_unit_handed_away_is_not_restarted_and_resumes_from_its_stored_offset_when_it_comes_back())


async def _a_unit_handed_away_is_not_restarted_and_resumes_from_its_stored_offset_when_it_comes_back() -> None:
    rt = _Runtime(mine={0})
    run = _run(rt)
    runner = asyncio.create_task(run.run())
    await _settle()
    (first,) = rt.started
    rt.mine = set()  # revoked: the worker stops the task, commits, then tells the connector
    rt.offsets.put(UNITS[0], {"last_key": "k1", "done": False})
    run.stopped(first)
    await _settle()
    assert len(rt.started) == 1 and run.handed_over == 1
    rt.offsets.put(UNITS[0], {"last_key": "k2", "done": False})  # the next owner read on
    rt.mine = {0}  # assigned back: the worker wakes its connectors
    run.wake()
    await _settle()
    assert len(rt.started) == 2 and rt.started[1].resume == {"last_key": "k2", "done": False}
    runner.cancel()


def test_unshared_runs_read_every_unit_whatever_is_owned() -> None:
    asyncio.run(_unshared_runs_read_every_unit_whatever_is_owned())


async def _unshared_runs_read_every_unit_whatever_is_owned() -> None:
    rt = _Runtime(mine=set())
    run = _run(rt, shared=False)
    runner = asyncio.create_task(run.run())
    await _settle()
    assert [t.partition["segment"] for t in rt.started] == [0, 1]
    runner.cancel()
