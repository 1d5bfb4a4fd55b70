"""Snapshot connectors per table, and the snapshot-to-stream handoff modes.

``snapshot.mode`` decides how a table's existing items and its changes meet in the topic
(docs/snapshots.md has the full argument for each):

- ``never``: the stream only.
- ``only``: the snapshot only (Scan or export), no stream.
- ``initial``: before the snapshot reads anything, the bridge stores ``t0`` and starts
  every open shard's reader at LATEST with its output *held*; a reader that sees its first
  record stores that record's sequence number as an ``at`` offset (AT_SEQUENCE_NUMBER) and
  stops reading. When the snapshot is complete (every segment's final offset durable) the
  readers publish from those positions. A restart before a shard recorded a position reads
  that shard from TRIM_HORIZON and drops records older than ``t0 - clock_skew``: always
  safe, only slower. The positions age with the snapshot; past ``retention_warn_hours``
  the bridge warns, and with ``fail_on_retention_risk`` it stops before 24 h.
- ``concurrent``: the stream is published from the start while the snapshot reads the
  table page by page ("chunks", after Netflix's DBLog). Every chunk has a window
  ``[t_start, t_end]`` around its Scan call. A snapshot row may only be published once
  every shard reader has read past ``t_end`` (a record stamped later than
  ``t_end + clock_skew``, or a watermark item written after ``t_end``), and the rows whose
  keys any reader saw between the window's opening and that point are dropped. Readers
  stop at the first record past the window until the chunk's rows are produced, so every
  later change follows the row in the topic. Because a watermark item lands in one shard
  only (its key's), windows are tracked per shard and watermarks are written with fresh
  random keys until every open shard has seen one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bridge.errors import ConnectorError
from bridge.task import Batch, SourceConnector, SourceRecord, SourceTask, TaskRuntime
from connectors.dynamodb.client import AwsJsonClient
from connectors.dynamodb.config import DynamoDBConfig, SnapshotConfig, TableConfig
from connectors.dynamodb.export import ExportConnector
from connectors.dynamodb.items import canonical_number
from connectors.dynamodb.marks import OffsetTask
from connectors.dynamodb.scan import ScanConnector
from connectors.dynamodb.streams import StreamsConnector
from connectors.dynamodb.table import TableInfo
from connectors.dynamodb.transforms import table_stage
from connectors.dynamodb.watermarks import WATERMARK_PREFIX, is_watermark, watermark_item, watermark_marker

__all__ = [
    "ConcurrentWindows",
    "HandoffReader",
    "HandoffStreamsConnector",
    "InitialGate",
    "WATERMARK_PREFIX",
    "is_watermark",
    "key_id",
    "retention_verdict",
    "table_connectors",
    "watermark_item",
]

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
RETENTION_MS = 24 * HOUR_MS


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---- keys and watermark items ------------------------------------------------------------


def _scalar(t: str, v: Any) -> str:
    if t == "N":
        return canonical_number(str(v))  # exact: Decimal.normalize() rounds to 28 digits
    if t == "B" and isinstance(v, (bytes, bytearray)):
        return base64.b64encode(bytes(v)).decode()
    return str(v)


def key_id(key: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """A hashable, canonical form of a key: the same item from Scan and from the stream match."""
    out = []
    for name in sorted(key):
        ((t, v),) = key[name].items()
        out.append((name, t, _scalar(t, v)))
    return tuple(out)


# ---- concurrent: chunk windows -------------------------------------------------------------


@dataclass(eq=False)
class _Window:
    id: int
    t_start_ms: int
    t_end_ms: int | None = None
    closed_mono: float = 0.0
    changed: set[Any] = field(default_factory=set)
    passed: set[str] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


class ConcurrentWindows:
    """The per-table coordinator of ``mode: concurrent`` (a ``ChunkGate`` for the Scan tasks).

    Reader side: every shard reader registers, reports the records it is about to publish
    (``observe``), and stops at the first record past a closed window until that window's
    rows are produced. Scan side: ``open_window`` before the call, ``close_window`` after it
    (waits until every registered reader passed, then drops changed keys), ``release`` when
    the rows were handed to the producer.
    """

    def __init__(
        self,
        *,
        table: TableInfo,
        ddb: AwsJsonClient | None,
        skew_ms: int,
        watermarks: bool,
        watermark_after_s: float = 0.5,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self.table = table
        self._ddb = ddb
        self.skew_ms = skew_ms
        self.watermarks = watermarks
        self.watermark_after_s = watermark_after_s
        self._clock = clock
        self._windows: list[_Window] = []
        self._next_id = 0
        self.readers: set[str] = set()
        self._parents: dict[str, tuple[str, ...]] = {}
        self.ended: dict[str, set[int]] = {}  # ended shard → windows it had not passed, until its children register
        self.markers: dict[str, int] = {}  # marker id → ms before the PutItem was sent
        self._changed = asyncio.Event()  # replaced on every wake: each waiter sees each wake
        self.rows_dropped = 0
        self.watermarks_written = 0
        self.readers_ready = asyncio.Event()

    # ---- readers ----------------------------------------------------------------------

    def register(self, shard_id: str, parents: tuple[str, ...]) -> None:
        self.readers.add(shard_id)
        self._parents[shard_id] = parents
        for p in parents:
            self.ended.pop(p, None)
        self._wake()

    def reader_ended(self, shard_id: str) -> None:
        """A shard was read to its end (its last records produced): its children inherit
        the windows it had not passed, until their readers register."""
        if shard_id not in self.readers:
            return
        self.readers.discard(shard_id)
        pending = {w.id for w in self._windows if shard_id not in w.passed}
        has_child = any(shard_id in parents for sid, parents in self._parents.items() if sid in self.readers)
        if pending and not has_child:
            self.ended[shard_id] = pending
        self._wake()

    def observe(self, shard_id: str, records: list[SourceRecord]) -> tuple[int, list[_Window]]:
        """How many of ``records`` may be published now, and the windows the next one passes.

        Records before the cut are "in" every window this reader has not passed: their keys
        are noted so those windows drop the rows.
        """
        for i, rec in enumerate(records):
            marker = watermark_marker(rec.key, self.table)
            marker_ms = self.markers.get(marker) if marker is not None else None
            ts = rec.position.get("approximate_creation_ms")
            passing = [
                w
                for w in self._windows
                if w.t_end_ms is not None
                and shard_id not in w.passed
                and (
                    (marker_ms is not None and marker_ms > w.t_end_ms)
                    or (ts is not None and ts > w.t_end_ms + self.skew_ms)
                )
            ]
            if passing:
                return i, passing
            if marker is None:
                k = key_id(rec.key)
                for w in self._windows:
                    if shard_id not in w.passed:
                        w.changed.add(k)
        return len(records), []

    def mark_passed(self, shard_id: str, windows: list[_Window]) -> None:
        for w in windows:
            w.passed.add(shard_id)
        self._wake()

    async def wait_released(self, windows: list[_Window]) -> None:
        for w in windows:
            await w.released.wait()

    # ---- scan side (ChunkGate) -------------------------------------------------------------

    def open_window(self) -> _Window:
        w = _Window(self._next_id, self._clock())
        self._next_id += 1
        self._windows.append(w)
        return w

    def _is_ready(self, w: _Window) -> bool:
        if not self.readers_ready.is_set():
            return False
        if any(r not in w.passed for r in self.readers):
            return False
        return not any(w.id in pending for pending in self.ended.values())

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def close_window(self, window: _Window, records: list[SourceRecord]) -> list[SourceRecord]:
        window.t_end_ms = self._clock()
        window.closed_mono = time.monotonic()
        self._wake()
        while not self._is_ready(window):
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 1.0)
        keep = []
        for r in records:
            if is_watermark(r.key, self.table):
                continue
            if key_id(r.key) in window.changed:
                self.rows_dropped += 1
                continue
            keep.append(r)
        return keep

    def release(self, window: Any) -> None:
        window.released.set()
        if window in self._windows:
            self._windows.remove(window)
        for pending in self.ended.values():
            pending.discard(window.id)
        for sid in [s for s, p in self.ended.items() if not p]:
            del self.ended[sid]

    # ---- watermarks --------------------------------------------------------------------

    def lagging(self) -> list[_Window]:
        """Closed windows that some reader has not passed for a while."""
        now = time.monotonic()
        return [
            w
            for w in self._windows
            if w.t_end_ms is not None
            and now - w.closed_mono >= self.watermark_after_s
            and any(r not in w.passed for r in self.readers)
        ]

    async def write_watermarks(self, count: int) -> None:
        assert self._ddb is not None
        for _ in range(count):
            marker = uuid.uuid4().hex
            item = watermark_item(self.table, marker)
            self.markers[marker if self.table.key_fields[0].type != "N" else item[self.table.key_fields[0].name]["N"]] = self._clock()
            await self._ddb.call("PutItem", {"TableName": self.table.name, "Item": item})
            key = {kf.name: item[kf.name] for kf in self.table.key_fields}
            await self._ddb.call("DeleteItem", {"TableName": self.table.name, "Key": key})
            self.watermarks_written += 1

    async def run_watermarks(self) -> None:
        """While a closed window waits on an idle shard, write watermark items (random keys)."""
        rounds = 0
        while True:
            await asyncio.sleep(self.watermark_after_s / 2)
            lag = self.lagging()
            if not lag:
                rounds = 0
                continue
            waiting = {r for w in lag for r in self.readers if r not in w.passed}
            # Random keys land in random shards: more markers when more shards wait.
            await self.write_watermarks(min(25, max(1, len(waiting) * 2)))
            rounds += 1
            if len(self.markers) > 10_000:
                for k in list(self.markers)[:5000]:
                    del self.markers[k]
            await asyncio.sleep(min(5.0, self.watermark_after_s * rounds))


# ---- initial: the gate -------------------------------------------------------------------


def retention_verdict(age_ms: int, warn_hours: float, fail: bool) -> str:
    """``ok``, ``warn`` or ``fail`` for stream positions recorded ``age_ms`` ago.

    Positions older than 24 h are trimmed from the stream; ``warn_hours`` (< 24) leaves
    time to act, and with ``fail`` the bridge stops there instead of losing changes later.
    """
    if age_ms < warn_hours * HOUR_MS:
        return "ok"
    return "fail" if fail else "warn"


class InitialGate:
    """``mode: initial``: readers hold their output until the snapshot is durable."""

    def __init__(self, *, t0_ms: int, fresh: bool, skew_ms: int) -> None:
        self.t0_ms = t0_ms
        self.fresh = fresh  # no positions were recorded before: readers start at LATEST
        self.skew_ms = skew_ms
        self.open = asyncio.Event()


# ---- the reader wrapper -------------------------------------------------------------------


class HandoffReader(SourceTask):
    """Wraps a shard reader: filters watermarks, holds output (initial), cuts at windows (concurrent).

    The inner reader has moved past a page when it returns it; records this wrapper holds
    back are covered by no offset yet, so a crash re-reads them after a restart.
    """

    def __init__(
        self,
        inner: SourceTask,
        *,
        shard_id: str,
        table: TableInfo,
        windows: ConcurrentWindows | None = None,
        gate: InitialGate | None = None,
        time_filter_ms: int | None = None,
        position_recorded: bool = False,
    ) -> None:
        self.inner = inner
        self.partition = inner.partition
        self.shard_id = shard_id
        self._table = table
        self._windows = windows
        self._gate = gate
        self._filter_ms = time_filter_ms
        self._position_recorded = position_recorded
        self._held_batch: Batch | None = None
        self._cut: list[_Window] = []
        self.first_poll = asyncio.Event()
        self.dropped_old = 0

    def _publishable(self, records: list[SourceRecord]) -> list[SourceRecord]:
        return [r for r in records if not is_watermark(r.key, self._table)]

    @staticmethod
    def _offset(records: list[SourceRecord]) -> dict[str, Any] | None:
        seq = next((r.position.get("sequence_number") for r in reversed(records) if r.position.get("sequence_number")), None)
        return {"seq": seq, "ended": False} if seq else None

    async def _next(self) -> Batch:
        if self._held_batch is not None:
            batch, self._held_batch = self._held_batch, None
            return batch
        batch = await self.inner.poll()
        self.first_poll.set()
        return batch

    def _hold(self, records: list[SourceRecord], batch: Batch) -> None:
        self._held_batch = Batch(records, batch.offset, batch.final, batch.reason, batch.extra)

    async def poll(self) -> Batch:
        if self._cut and self._windows is not None:
            # The records before the cut were produced before this poll: now we are past.
            self._windows.mark_passed(self.shard_id, self._cut)
            await self._windows.wait_released(self._cut)
            self._cut = []
        gate = self._gate
        if gate is not None and not gate.open.is_set() and self._held_batch is not None:
            await gate.open.wait()  # a position is recorded and a page is held: wait for the snapshot
        batch = await self._next()
        records = batch.records
        if self._filter_ms is not None and records:
            # No recorded position: drop what is older than t0 (the snapshot has it).
            keep_from = next(
                (i for i, r in enumerate(records) if (r.position.get("approximate_creation_ms") or 0) >= self._filter_ms),
                len(records),
            )
            if keep_from:
                dropped = records[:keep_from]
                self.dropped_old += len(dropped)
                records = records[keep_from:]
                if records:
                    self._filter_ms = None
                    self._hold(records, batch)
                    return Batch([], self._offset(dropped))
                return Batch([], batch.offset, batch.final, batch.reason)  # all dropped: the page's own offset
            self._filter_ms = None
        if gate is not None and not gate.open.is_set():
            if not records:
                return batch  # idle (keeps the iterator alive) or a shard that ended empty
            self._hold(records, batch)
            if self._position_recorded:
                return Batch([], None)
            self._position_recorded = True
            first = next((r.position.get("sequence_number") for r in records if r.position.get("sequence_number")), None)
            log.info("%s %s: stream position recorded at %s; held until the snapshot is complete",
                     self._table.name, self.shard_id, first)
            return Batch([], {"seq": None, "at": first, "ended": False, "at_ms": records[0].position.get("approximate_creation_ms")})
        if self._windows is not None and records:
            n, passing = self._windows.observe(self.shard_id, records)
            if passing:
                before, rest = records[:n], records[n:]
                self._hold(rest, batch)
                self._cut = passing
                return Batch(self._publishable(before), self._offset(before))
        return Batch(self._publishable(records), batch.offset, batch.final, batch.reason, batch.extra)

    async def close(self) -> None:
        # The worker closes a task after its final batch was produced and its offset stored:
        # only now may windows stop waiting for this shard.
        if self._windows is not None:
            self._windows.reader_ended(self.shard_id)
        await self.inner.close()


# ---- the streams side of a handoff -----------------------------------------------------------


class HandoffStreamsConnector(StreamsConnector):
    """A StreamsConnector whose readers are wrapped for ``initial`` or ``concurrent``."""

    def __init__(self, *, snapshot: SnapshotConfig, ddb: AwsJsonClient, grouped: bool = False, **kw: Any) -> None:
        super().__init__(ddb=ddb, **kw)
        # Processes of one name share the table (bridge.group): t0 is one unit, written by its
        # owner; every reader starts from TRIM_HORIZON and drops what is older than t0.
        self.grouped = grouped
        self._mark_stopped = False
        self._meta_wake = asyncio.Event()
        self._ddb_client = ddb
        self.snapshot = snapshot
        self.mode = snapshot.mode
        self.windows: ConcurrentWindows | None = None
        self.gate: InitialGate | None = None
        self.snapshot_may_start = asyncio.Event()
        self._readers: dict[str, HandoffReader] = {}
        self._marked = asyncio.Event()
        self._runtime: TaskRuntime | None = None
        self.snapshot_done: asyncio.Event | None = None

    async def validate(self) -> None:
        await super().validate()
        if self.mode == "concurrent" and self.windows is None:
            assert self.table is not None
            self.windows = ConcurrentWindows(
                table=self.table,
                ddb=self._ddb_client,
                skew_ms=self.snapshot.clock_skew_ms,
                watermarks=self.snapshot.watermarks,
                watermark_after_s=max(0.2, self._config.poll_interval_ms / 1000 * 2),
            )

    @property
    def _meta_partition(self) -> dict[str, Any]:
        return {"table": self.table_name, "handoff": self.mode}

    async def run(self, runtime: TaskRuntime) -> None:
        if self.table is None:
            await self.validate()
        assert self.table is not None
        self._runtime = runtime
        helpers: list[Any] = []
        if self.mode == "initial" and self.grouped:
            t0 = await self._shared_t0(runtime)
            # No reader can know when the others' readers got their positions, so none starts
            # at LATEST: each reads its shard from TRIM_HORIZON and drops what is older than
            # t0 (the snapshot, which starts after t0 is stored, has it). Safe, only slower.
            self.gate = InitialGate(t0_ms=t0, fresh=False, skew_ms=self.snapshot.clock_skew_ms)
            self._start_position = "trim_horizon"
            helpers += [self._open_gate_when_done(), self._watch_retention()]
        elif self.mode == "initial":
            stored = runtime.offsets.offset(self._meta_partition)
            if stored is None:
                t0 = _now_ms()
                log.info("snapshot of %s (initial): recording stream positions at %d", self.table_name, t0)
                mark = OffsetTask(self._meta_partition, {"t0_ms": t0}, "handoff-start")
                runtime.start_task(mark)
                await self._marked.wait()
                self.gate = InitialGate(t0_ms=t0, fresh=True, skew_ms=self.snapshot.clock_skew_ms)
                self._start_position = "latest"
            else:
                t0 = int(stored["t0_ms"])
                log.info("snapshot of %s (initial): positions were recorded at %d", self.table_name, t0)
                self.gate = InitialGate(t0_ms=t0, fresh=False, skew_ms=self.snapshot.clock_skew_ms)
                self._start_position = "trim_horizon"
            helpers += [self._open_gate_when_done(), self._watch_retention()]
        else:
            assert self.windows is not None
            if self.snapshot.watermarks:
                helpers.append(self._watermarks())
            helpers.append(self._report())
        # One awaitable, so a helper's failure (retention risk) stops the bridge like any error.
        await asyncio.gather(super().run(runtime), *helpers)

    async def _shared_t0(self, runtime: TaskRuntime) -> int:
        """t0 of the handoff in a group: stored by the owner of its partition, seen by all.

        An owner that dies before storing it leaves it to the next owner, which records a
        new t0: nothing has read anything yet (the snapshot and the readers wait for it).
        """
        waiting_logged = False
        while True:
            self._meta_wake.clear()
            stored = runtime.offsets.offset(self._meta_partition)
            if stored is not None:
                t0 = int(stored["t0_ms"])
                log.info("snapshot of %s (initial, shared by the group): t0 is %d", self.table_name, t0)
                return t0
            if runtime.owns(self._meta_partition):
                t0 = _now_ms()
                log.info("snapshot of %s (initial, shared by the group): recording t0 = %d", self.table_name, t0)
                self._marked.clear()
                self._mark_stopped = False
                runtime.start_task(OffsetTask(self._meta_partition, {"t0_ms": t0}, "handoff-start"))
                while not self._marked.is_set() and not self._mark_stopped:
                    self._meta_wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._meta_wake.wait(), 1.0)
                continue  # stored (read it back), or its partition moved away first
            if not waiting_logged:
                log.info("snapshot of %s (initial): waiting for another worker of this name to record t0",
                         self.table_name)
                waiting_logged = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._meta_wake.wait(), 1.0)

    def wake(self) -> None:
        super().wake()
        self._meta_wake.set()

    def task_stopped(self, task: SourceTask) -> None:
        if isinstance(task, OffsetTask):
            self._mark_stopped = True
            self._meta_wake.set()
            return
        super().task_stopped(task)

    async def _watermarks(self) -> None:
        assert self.windows is not None
        try:
            await self.windows.run_watermarks()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - reported, the snapshot then waits on busy shards only
            log.error("snapshot of %s: writing watermark items failed (%s); idle shards now hold chunks back", self.table_name, e)

    async def _report(self) -> None:
        assert self.windows is not None and self.snapshot_done is not None
        await self.snapshot_done.wait()
        log.info(
            "concurrent snapshot of %s complete: %d rows dropped for keys changed in their window, "
            "%d watermark items written",
            self.table_name, self.windows.rows_dropped, self.windows.watermarks_written,
        )

    async def _open_gate_when_done(self) -> None:
        assert self.gate is not None and self.snapshot_done is not None
        await self.snapshot_done.wait()
        held = sum(1 for r in self._readers.values() if r._held_batch is not None)
        log.info("snapshot of %s complete: streaming from the recorded positions (%d shards held a page)", self.table_name, held)
        self.gate.open.set()

    async def _watch_retention(self) -> None:
        assert self.gate is not None and self.snapshot_done is not None
        warned_at = 0
        while not self.snapshot_done.is_set():
            age = _now_ms() - self.gate.t0_ms
            verdict = retention_verdict(age, self.snapshot.retention_warn_hours, self.snapshot.fail_on_retention_risk)
            if verdict != "ok" and age - warned_at >= HOUR_MS:
                warned_at = age
                log.warning(
                    "snapshot of %s has run %.1f h: the stream positions recorded at its start leave the 24 h "
                    "retention in %.1f h; changes after them are lost if it runs longer (mode: concurrent has no such limit)",
                    self.table_name, age / HOUR_MS, (RETENTION_MS - age) / HOUR_MS,
                )
                if verdict == "fail":
                    raise ConnectorError(
                        f"snapshot of {self.table_name} ran {age / HOUR_MS:.1f} h: its recorded stream positions would "
                        "leave the 24 h retention window; stopping (fail_on_retention_risk). Use mode: concurrent, "
                        "more segments or method: export"
                    )
            await asyncio.sleep(60)

    def _make_reader(self, ctx: Any, shard: Any, start: tuple[str, str | None]) -> SourceTask:
        inner = super()._make_reader(ctx, shard, start)
        assert self._runtime is not None and self.table is not None
        stored = self._runtime.offsets.offset(self._partition(shard.id))
        time_filter = None
        if self.gate is not None and not self.gate.fresh and stored is None:
            # No position was recorded for this shard before the restart: read it from its
            # start and drop what is older than t0 (the snapshot covers it).
            time_filter = self.gate.t0_ms - self.snapshot.clock_skew_ms
            log.info("%s %s: no recorded position; reading from TRIM_HORIZON, skipping records before %d",
                     self.table_name, shard.id, time_filter)
        reader = HandoffReader(
            inner,
            shard_id=shard.id,
            table=self.table,
            windows=self.windows,
            gate=self.gate,
            time_filter_ms=time_filter,
            position_recorded=stored is not None,
        )
        self._readers[shard.id] = reader
        if self.windows is not None:
            self.windows.register(shard.id, shard.parents)
        return reader

    def _start_ready(self, runtime: TaskRuntime, first_listing: bool) -> None:
        super()._start_ready(runtime, first_listing)
        if first_listing:
            started = list(self._readers.values())
            asyncio.get_running_loop().create_task(self._release_snapshot(started))
        if self.windows is not None:
            # An ended shard's open windows pass to its children; their readers register as
            # they start (register() clears the parent). Until the children are listed and
            # started, the windows the parent had not passed stay closed.
            for sid in list(self.windows.ended):
                kids = [s.id for s in self._lineage.shards.values() if sid in s.parents]
                if kids and all(k in self.windows.readers or k in self._lineage.finished for k in kids):
                    self.windows.ended.pop(sid, None)
            self.windows._wake()

    async def _release_snapshot(self, readers: list[HandoffReader]) -> None:
        """The snapshot may read once every first reader holds its iterator (its position)."""
        for r in readers:
            await r.first_poll.wait()
        if self.windows is not None:
            self.windows.readers_ready.set()
        log.info("snapshot of %s may start: %d shard readers positioned", self.table_name, len(readers))
        self.snapshot_may_start.set()

    def task_finished(self, task: SourceTask, batch: Batch) -> None:
        if isinstance(task, OffsetTask):
            self._marked.set()
            self._meta_wake.set()
            return
        super().task_finished(task, batch)


# ---- wiring --------------------------------------------------------------------------------


def _snapshot_connector(
    cfg: DynamoDBConfig, t: TableConfig, ddb: AwsJsonClient, **kw: Any
) -> ScanConnector | ExportConnector:
    snap = t.snapshot
    if snap.method == "export":
        return _formatted(t, ExportConnector(
            table=t.name,
            topic=cfg.topic_for(t),
            ddb=ddb,
            config=snap,
            bridge_name=cfg.name,
            region=ddb.region,
            profile=cfg.aws.profile,
            role=cfg.aws.assume_role(),
            s3_endpoint_url=cfg.aws.endpoint_url,
            start_after=kw.get("start_after"),
        ))
    return _formatted(t, ScanConnector(table=t.name, topic=cfg.topic_for(t), ddb=ddb, config=snap, **kw))


_C = TypeVar("_C", bound=SourceConnector)


def _formatted(t: TableConfig, connector: _C) -> _C:
    """The connector, writing the table's record format (subject names, headers) through its transforms."""
    connector.record_format = t.record_format()  # type: ignore[attr-defined]
    connector.transforms = table_stage(t)
    return connector


class _LateWindows:
    """The Scan side's view of a ConcurrentWindows that exists once the table is described."""

    def __init__(self, streams: HandoffStreamsConnector) -> None:
        self._s = streams

    def open_window(self) -> Any:
        assert self._s.windows is not None
        return self._s.windows.open_window()

    async def close_window(self, window: Any, records: list[SourceRecord]) -> list[SourceRecord]:
        assert self._s.windows is not None
        return await self._s.windows.close_window(window, records)

    def release(self, window: Any) -> None:
        assert self._s.windows is not None
        self._s.windows.release(window)


def _resnapshot_on_trim(
    stream: StreamsConnector, cfg: DynamoDBConfig, t: TableConfig, ddb: AwsJsonClient
) -> ScanConnector | None:
    """trimmed_policy=resnapshot: when a shard lost unread records, Scan the table again.

    One Scan pass (the next pass number, so an earlier snapshot's stored offsets do not
    make it a no-op) publishes an ``op=r`` row for every item that exists now, so items
    whose changes were trimmed are published again. Rows are not windowed
    against the stream (as ``snapshot.mode: concurrent`` would): a row may follow a newer
    change to its key that was published meanwhile. One resnapshot runs at a time.

    The trimming that started a resnapshot does not recur after a restart, so for a table
    without a snapshot of its own (whose connector would resume the pass anyway) this
    returns a connector that finishes an interrupted pass from its stored segment offsets.
    """
    config = t.snapshot.model_copy(update={"mode": "only", "repeat": "once"})
    resume = None
    if t.snapshot.mode == "never":
        resume = _formatted(t, ScanConnector(table=t.name, topic=cfg.topic_for(t), ddb=ddb, config=config,
                                             resume_only=True))
    running: list[ScanConnector] = [resume] if resume is not None else []

    def resnapshot(shard_id: str, seq: str | None) -> None:
        if running and not running[-1].done.is_set():
            log.error("resnapshot of %s already running; shard %s's loss is covered by it", t.name, shard_id)
            return
        if stream.runtime is None:
            log.error("cannot resnapshot %s: the stream connector is not running", t.name)
            return
        scan = _formatted(t, ScanConnector(table=t.name, topic=cfg.topic_for(t), ddb=ddb, config=config, new_pass=True))
        running.append(scan)
        log.error("resnapshot of table %s started: shard %s lost records after %s to trimming", t.name, shard_id, seq)
        stream.runtime.add_connector(scan)

    stream.on_trimmed = resnapshot
    return resume


def _latest_schema(cfg: DynamoDBConfig) -> Callable[[str], str | None]:
    """subject -> its latest schema text, or None when it has none yet (blocking: off the loop)."""
    from bridge.errors import SchemaError
    from bridge.registry.client import registry_client

    registry = registry_client(cfg)

    def latest(subject: str) -> str | None:
        try:
            return registry.get_version(subject).schema
        except SchemaError as e:
            if e.status == 404:
                return None
            raise

    return latest


def table_connectors(
    cfg: DynamoDBConfig, t: TableConfig, *, ddb: AwsJsonClient, streams: AwsJsonClient
) -> list[SourceConnector]:
    """The connectors that carry one table: stream, snapshot, or both coupled by a handoff."""
    mode = t.snapshot.mode
    topic = cfg.topic_for(t)
    if mode == "only":
        only = _snapshot_connector(cfg, t, ddb)
        if isinstance(only, ScanConnector) and only.record_format.typed is not None:
            only.typed_latest = _latest_schema(cfg)  # no stream to start the typed schema
        return [only]
    if mode == "never":
        stream = _formatted(t, StreamsConnector(
            table=t.name, topic=topic, ddb=ddb, streams=streams, config=t.stream, start_position=t.start_position,
            start_ms=t.start_ms,
        ))
        if stream.record_format.typed is not None:
            stream.typed_latest = _latest_schema(cfg)
        resume = _resnapshot_on_trim(stream, cfg, t, ddb) if t.stream.trimmed_policy == "resnapshot" else None
        return [stream] if resume is None else [stream, resume]
    stream = _formatted(t, HandoffStreamsConnector(
        snapshot=t.snapshot, table=t.name, topic=topic, ddb=ddb, streams=streams, config=t.stream,
        start_position=t.start_position, grouped=cfg.shares_work,
    ))
    if stream.record_format.typed is not None:
        stream.typed_latest = _latest_schema(cfg)
    if t.stream.trimmed_policy == "resnapshot":
        _resnapshot_on_trim(stream, cfg, t, ddb)
    gate = _LateWindows(stream) if mode == "concurrent" else None
    snap = _snapshot_connector(cfg, t, ddb, start_after=stream.snapshot_may_start, **({"gate": gate} if gate else {}))
    stream.snapshot_done = snap.done
    return [stream, snap]
