"""Pause, resume, stop, start and restart a running worker's connector and tasks.

Runs on the worker's event loop (the REST server hands each request over with
``run_coroutine_threadsafe``). The states follow Kafka Connect's:

- **PAUSED**: every task waits before its next poll (a poll in progress finishes, so
  reading stops within one poll interval); its position stays in memory, and resume goes
  on from it.
- **STOPPED**: tasks paused, their records acknowledged and offsets committed, then the
  tasks and connectors shut down. Only a STOPPED connector's offsets may be reset (a
  running one would write its in-memory positions again). Resume starts it afresh from the
  stored offsets.
- **restart**: a connector restart is stop + start; a task restart (of a FAILED task)
  asks its connector for a new task from the committed offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bridge.errors import BridgeError
from bridge.task import SourceConnector, partition_key

if TYPE_CHECKING:
    from bridge.worker import Worker

__all__ = ["Conflict", "Control", "NotFound"]

log = logging.getLogger(__name__)


class Conflict(BridgeError):
    """The request does not fit the current state (HTTP 409)."""


class NotFound(BridgeError):
    """No such connector or task (HTTP 404)."""


class Control:
    def __init__(self, worker: Worker, make_connectors: Callable[[], Awaitable[list[SourceConnector]]],
                 reset_offsets: Callable[[list[dict[str, Any]]], Awaitable[int]]) -> None:
        self.worker = worker
        self.ops = worker.ops
        self._make_connectors = make_connectors
        self._reset_offsets = reset_offsets
        self._lock = asyncio.Lock()

    # ---- connector ------------------------------------------------------------------------

    async def pause(self) -> None:
        async with self._lock:
            if self.ops.state == "STOPPED":
                raise Conflict(f"connector {self.ops.name!r} is STOPPED; resume it first")
            self.ops.state = "PAUSED"
            self.ops.close_gate()
            self.ops.changed()
            log.info("connector %s paused by request", self.ops.name)

    async def resume(self) -> None:
        async with self._lock:
            if self.ops.state == "STOPPED":
                await self._start()
            self.ops.state = "RUNNING"
            self.ops.open_gate()
            self.ops.changed()
            log.info("connector %s resumed by request", self.ops.name)

    async def stop(self, timeout_s: float = 60.0) -> None:
        async with self._lock:
            await self._stop(timeout_s)

    async def restart(self, timeout_s: float = 60.0) -> None:
        async with self._lock:
            await self._stop(timeout_s)
            await self._start()
            self.ops.state = "RUNNING"
            self.ops.open_gate()
            self.ops.changed()

    async def _stop(self, timeout_s: float) -> None:
        if self.ops.state == "STOPPED":
            return
        w = self.worker
        self.ops.close_gate()
        self.ops.state = "PAUSED"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s

        async def until(cond: Callable[[], bool], what: str) -> None:
            while not cond():
                if loop.time() > deadline:
                    raise Conflict(f"connector {self.ops.name!r} did not stop within {timeout_s:.0f} s ({what})")
                await asyncio.sleep(0.02)

        await until(self.ops.all_parked, "tasks still reading")
        await until(lambda: w.in_flight() == 0, "records still unacknowledged")
        w._flush_now.set()
        await until(w.offsets_settled, "offsets not yet committed")
        for t in list(w._runners) + list(w._tasks.values()):
            t.cancel()
        await asyncio.gather(*w._runners, *w._tasks.values(), return_exceptions=True)
        for c in w.connectors:
            with contextlib.suppress(Exception):
                await c.close()
        w._runners.clear()
        w.connectors.clear()
        for lane in w.lanes.values():
            lane.progress.clear()
        self.ops.tasks.clear()
        self.ops.finished.clear()
        self.ops.connectors.clear()
        self.ops.state = "STOPPED"
        self.ops.changed()
        log.info("connector %s stopped by request: tasks shut down, offsets committed", self.ops.name)

    async def _start(self) -> None:
        connectors = await self._make_connectors()
        for c in connectors:
            await c.validate()
        for c in connectors:
            self.worker._add_connector(c)
        log.info("connector %s started: %d source connector(s)", self.ops.name, len(connectors))

    # ---- tasks ------------------------------------------------------------------------------

    async def restart_task(self, tid: str) -> None:
        async with self._lock:
            state = self.ops.find(tid)
            if state is None:
                raise NotFound(f"connector {self.ops.name!r} has no task {tid!r}")
            if state.state != "FAILED":
                raise Conflict(f"task {tid!r} is {state.state}; only a FAILED task restarts on its own "
                               f"(restart the connector to restart every task)")
            # Its acknowledged records' offset committed first, so the new task starts where this
            # one's records end (no duplicates).
            w = self.worker
            pkey = partition_key(state.partition)
            lane = next((ln for ln in w.lanes.values() if pkey in ln.progress), None)
            progress = lane.progress[pkey] if lane is not None else None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while lane is not None and progress is not None and (
                progress.in_flight or progress.dirty or progress.writing
                or (w.settings.exactly_once and lane.commits.dirty)
            ):
                if loop.time() > deadline:
                    raise Conflict(f"task {tid!r}: its records were not acknowledged within 60 s; try again")
                w._flush_now.set()
                await asyncio.sleep(0.02)
            connector = self.ops.connectors.get(state.connector)
            restart = getattr(connector, "restart_task", None)
            if restart is None or not restart(state.partition):
                raise Conflict(f"task {tid!r} of {state.connector} cannot restart alone; restart the connector")
            if self.ops.tasks.get(pkey) is state:
                del self.ops.tasks[pkey]
            self.ops.changed()
            log.info("task %s restarting by request", tid)

    # ---- offsets ----------------------------------------------------------------------------

    async def reset_offsets(self) -> int:
        async with self._lock:
            if self.ops.state != "STOPPED":
                raise Conflict(f"connector {self.ops.name!r} is {self.ops.state}; offsets can only be reset while it "
                               f"is STOPPED (PUT /connectors/{self.ops.name}/stop first)")
            partitions = self.worker.offsets.partitions()
            n = await self._reset_offsets(partitions)
            for p in partitions:
                self.worker.offsets.stored(p, None)
            log.info("connector %s: %d offsets reset by request", self.ops.name, n)
            return n
