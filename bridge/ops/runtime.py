"""What the operator sees of a running worker: task states, positions, lag; pause and resume.

The worker calls four hooks per task (``started``, ``gate``, ``polled``, ``ended``/``failed``)
and knows nothing else of this module; the REST API, ``/health``, the metrics and the
status topic read from here.

Lag, per source partition (a shard, a scan segment):

- ``millis_behind_latest``: now minus the approximate creation time of the newest record
  read; 0 for an open shard whose last read found its end (a page with no records and an
  iterator to go on with) less than ``idle_grace_ms`` ago. DynamoDB Streams does not say
  how far behind a reader is (Kinesis's MillisBehindLatest has no DynamoDB twin), so past
  that grace, and while paused, the time since the shard was last seen at its end stands
  in: everything written before then was read, so the true lag is at most that. That is
  why lag rises while paused and falls to 0 once a read finds the end again.
- ``iterator_age_ms``: now minus the creation time of the newest record read, caught up
  or not: how old the position is (Kinesis's IteratorAgeMilliseconds).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.metrics import METRICS
from bridge.task import Batch, SourceConnector, SourceTask, partition_id, partition_key

__all__ = ["ConnectorState", "OpsState", "TaskState", "task_id"]

TaskStateName = Literal["RUNNING", "PAUSED", "FAILED", "FINISHED"]
ConnectorState = Literal["RUNNING", "PAUSED", "STOPPED", "FAILED"]


def task_id(partition: Mapping[str, Any]) -> str:
    """A short, URL-safe task id from a source partition: ``orders:shardId-…``,
    ``orders:segment-3-of-32``, ``orders:export-<id>:<file>``."""
    table = partition.get("table", "?")
    one = partition_id(partition)
    if one is not None:
        return f"{table}:{one}"
    if "segment" in partition:
        return f"{table}:segment-{partition['segment']}-of-{partition.get('total_segments', '?')}"
    if "file" in partition:
        name = str(partition["file"]).rsplit("/", 1)[-1]
        return f"{table}:export-{partition.get('export', '?')}:{name}"
    rest = "-".join(f"{k}={v}" for k, v in sorted(partition.items()) if k != "table")
    return f"{table}:{rest}".replace("/", "_")


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class TaskState:
    id: str
    partition: dict[str, Any]
    connector: str  # the SourceConnector's name, e.g. streams:orders
    worker_id: str
    state: TaskStateName = "RUNNING"
    trace: str | None = None
    failed_at_ms: int | None = None
    started_at_ms: int = field(default_factory=_now_ms)
    records: int = 0
    polls: int = 0
    position: dict[str, Any] | None = None  # the newest offset handed on
    newest_ms: int | None = None  # approximate creation time of the newest record read
    caught_up_at_ms: int | None = None  # wall time the last read found the shard's end
    caught_up: bool = False  # the last read found the end
    polling_since: float | None = None  # monotonic, while a poll runs (a source retrying shows here)
    parked: bool = False  # waiting at the pause gate
    idle_grace_ms: int = 2000

    def millis_behind_latest(self, now_ms: int | None = None) -> int | None:
        now = _now_ms() if now_ms is None else now_ms
        if self.state == "FINISHED":
            return 0  # read to its end: nothing of it is behind
        if self.caught_up and self.caught_up_at_ms is not None:
            since = now - self.caught_up_at_ms
            return 0 if since <= self.idle_grace_ms and not self.parked else max(0, since)
        if self.newest_ms is not None:
            return max(0, now - self.newest_ms)
        return None

    def iterator_age_ms(self, now_ms: int | None = None) -> int | None:
        if self.newest_ms is None:
            return None
        return max(0, (_now_ms() if now_ms is None else now_ms) - self.newest_ms)

    def polling_s(self) -> float:
        return 0.0 if self.polling_since is None else time.monotonic() - self.polling_since

    def to_json(self) -> dict[str, Any]:
        now = _now_ms()
        return {
            "id": self.id,
            "connector": self.connector,
            "partition": self.partition,
            "state": self.state,
            "worker_id": self.worker_id,
            "trace": self.trace,
            "failed_at_ms": self.failed_at_ms,
            "records": self.records,
            "position": self.position,
            "caught_up": self.caught_up,
            "millis_behind_latest": self.millis_behind_latest(now),
            "iterator_age_ms": self.iterator_age_ms(now),
            "newest_record_ms": self.newest_ms,
        }


class OpsState:
    """Task states of one worker, the connector's pause gate, and restart bookkeeping."""

    def __init__(self, name: str, worker_id: str, *, fail_tasks_alone: bool = False) -> None:
        self.name = name
        self.worker_id = worker_id
        self.fail_tasks_alone = fail_tasks_alone  # errors.task_failure: fail-task
        self.tasks: dict[str, TaskState] = {}  # by partition key
        self.finished: dict[str, TaskState] = {}
        self.connectors: dict[str, SourceConnector] = {}
        self.state: ConnectorState = "RUNNING"
        self.trace: str | None = None
        self._gate: asyncio.Event | None = None
        self.changed: Callable[[], None] = lambda: None  # the status topic writer hooks in here

    # ---- gate ---------------------------------------------------------------------------

    def _event(self) -> asyncio.Event:
        if self._gate is None:
            self._gate = asyncio.Event()
            if self.state == "RUNNING":
                self._gate.set()
        return self._gate

    def close_gate(self) -> None:
        self._event().clear()

    def open_gate(self) -> None:
        self._event().set()

    async def gate(self, state: TaskState) -> None:
        """Before each poll: a paused or stopping connector holds its tasks here."""
        ev = self._event()
        if ev.is_set():
            return
        state.parked = True
        if state.state == "RUNNING":
            state.state = "PAUSED"
            self.changed()
        try:
            await ev.wait()
        finally:
            state.parked = False
        if state.state == "PAUSED":
            state.state = "RUNNING"
            self.changed()

    # ---- task hooks ---------------------------------------------------------------------

    def started(self, connector: SourceConnector, task: SourceTask) -> TaskState:
        pkey = partition_key(task.partition)
        grace = getattr(getattr(task, "_config", None), "poll_interval_ms", 1000)
        state = TaskState(task_id(task.partition), dict(task.partition), connector.name, self.worker_id,
                          idle_grace_ms=int(grace) + 2000)
        self.tasks[pkey] = state
        self.connectors[connector.name] = connector
        self.finished.pop(pkey, None)
        labels = _labels(task.partition)
        METRICS.gauge("bridge_task_millis_behind_latest", lambda: float(state.millis_behind_latest() or 0),
                      "now minus the creation time of the newest record read; 0 when caught up", **labels)
        METRICS.gauge("bridge_task_iterator_age_ms", lambda: float(state.iterator_age_ms() or 0),
                      "now minus the creation time of the newest record read", **labels)
        METRICS.counter_fn("bridge_task_records_read_total", lambda: float(state.records),
                           "records read from the source", **labels)
        self.changed()
        return state

    def polling(self, state: TaskState) -> None:
        state.polling_since = time.monotonic()

    def polled(self, state: TaskState, batch: Batch) -> None:
        state.polling_since = None
        state.polls += 1
        records = batch.records
        if records:
            state.records += len(records)
            ts = batch.extra.get("source_ms")
            if ts is not None:
                state.newest_ms = int(ts)
        if batch.offset is not None:
            state.position = batch.offset
        if batch.extra.get("caught_up"):
            state.caught_up = True
            state.caught_up_at_ms = _now_ms()
        elif records:
            state.caught_up = False

    def failed(self, state: TaskState, error: BaseException) -> bool:
        """A task raised; True when the worker should go on without it (``fail-task``)."""
        state.polling_since = None
        state.state = "FAILED"
        state.failed_at_ms = _now_ms()
        state.trace = "".join(traceback.format_exception_only(type(error), error)).strip()
        METRICS.inc("bridge_task_failures_total", help="tasks that failed", table=str(state.partition.get("table")))
        self.changed()
        return self.fail_tasks_alone

    def ended(self, state: TaskState, finished: bool) -> None:
        pkey = partition_key(state.partition)
        if state.state != "FAILED":
            if self.tasks.get(pkey) is state:
                del self.tasks[pkey]
            if finished:
                state.state = "FINISHED"
                state.caught_up = True
                self.finished[pkey] = state
            labels = _labels(state.partition)
            for name in ("bridge_task_millis_behind_latest", "bridge_task_iterator_age_ms"):
                METRICS.remove(name, **labels)
        self.changed()

    # ---- views ----------------------------------------------------------------------------

    def failed_tasks(self) -> list[TaskState]:
        return [t for t in self.tasks.values() if t.state == "FAILED"]

    def find(self, tid: str) -> TaskState | None:
        for t in list(self.tasks.values()) + list(self.finished.values()):
            if t.id == tid:
                return t
        return None

    def all_parked(self) -> bool:
        return all(t.parked or t.state == "FAILED" for t in self.tasks.values())

    def caught_up(self) -> bool:
        """Every running task's last read found its end (no task failed, none paused)."""
        return all(t.state == "RUNNING" and t.caught_up for t in self.tasks.values())


def _labels(partition: Mapping[str, Any]) -> dict[str, str]:
    return {"table": str(partition.get("table", "")), "task": task_id(partition)}
