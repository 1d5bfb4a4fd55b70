"""A snapshot's units of work (Scan segments, export files), each read by whoever owns it.

Alone, a worker reads every unit. Workers of one name in a group (``bridge.group``) share
them like stream shards: a unit is read by the worker that owns the coordination partition
it hashes to, the others leave it alone. So that every worker reaches the same verdict,
a set of units is *complete* only when every unit's final offset is stored, whoever read
it: a worker learns the others' commits from the offsets topic (``bridge.offset_follower``),
never from what it ran itself. A unit handed over mid-way (its task stopped by a
revocation, its offset committed) resumes at the new owner from that offset; ``start`` is
always given the offset stored at the moment the task starts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from bridge.task import SourceTask, TaskRuntime, partition_key

__all__ = ["UnitRun"]

Offset = dict[str, Any] | None


class UnitRun:
    """Runs ``units`` until every one's stored offset says it is complete.

    ``complete(offset)``: whether a stored offset finishes its unit. ``start(unit, offset)``:
    the task that reads ``unit`` from ``offset``. At most ``concurrency`` tasks run here at once.
    ``shared=False``: this process reads every unit whatever it owns (a resnapshot that one
    process decided alone).
    """

    def __init__(
        self,
        runtime: TaskRuntime,
        units: list[dict[str, Any]],
        *,
        complete: Callable[[Offset], bool],
        start: Callable[[dict[str, Any], Offset], SourceTask],
        concurrency: int,
        shared: bool = True,
        recheck_s: float = 1.0,
    ) -> None:
        self._runtime = runtime
        self._units = units
        self._complete = complete
        self._start = start
        self.concurrency = max(1, concurrency)
        self._recheck_s = recheck_s  # a safety net; wakes come from task ends and the offset follower
        owns = getattr(runtime, "owns", None) if shared else None
        self._owns: Callable[[Mapping[str, Any]], bool] = owns or (lambda p: True)
        self._running: dict[str, SourceTask] = {}
        self._wake = asyncio.Event()
        self.finished_here = 0  # units whose final offset this process stored
        self.handed_over = 0  # tasks stopped because their unit moved to another worker

    def _stored(self, unit: Mapping[str, Any]) -> Offset:
        return self._runtime.offsets.offset(unit)

    def remaining(self) -> list[dict[str, Any]]:
        """Units whose stored offset does not finish them yet (running ones included)."""
        return [u for u in self._units if not self._complete(self._stored(u))]

    async def run(self) -> None:
        while True:
            self._wake.clear()
            remaining = self.remaining()
            if not remaining:
                return
            for unit in remaining:
                if len(self._running) >= self.concurrency:
                    break
                key = partition_key(unit)
                if key in self._running or not self._owns(unit):
                    continue  # reading here already, or another worker of this name reads it
                task = self._start(unit, self._stored(unit))
                self._running[key] = task
                self._runtime.start_task(task)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._recheck_s)

    def finished(self, task: SourceTask) -> None:
        """The task's final offset is stored (the worker says so only then)."""
        if self._running.pop(partition_key(task.partition), None) is task:
            self.finished_here += 1
        self.wake()

    def stopped(self, task: SourceTask) -> None:
        """The task was stopped before its end (its unit moved to another worker); its offset is committed."""
        if self._running.pop(partition_key(task.partition), None) is task:
            self.handed_over += 1
        self.wake()

    def wake(self) -> None:
        """Ownership changed, a task ended or another worker committed: look again."""
        self._wake.set()
