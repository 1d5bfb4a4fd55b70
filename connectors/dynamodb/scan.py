"""Parallel Scan snapshots: segments from a shared queue, resumable mid-segment.

Processes of one name in a group (``bridge.group``) share the segments: each is a unit read
by whoever owns it (``connectors/dynamodb/units.py``); a pass is complete, and with
``repeat: continuous`` the next one may begin, only when every segment's ``done`` offset is
committed, whoever read it.

Each Scan segment is one task with source partition ``{"table", "segment",
"total_segments"}``; after every page it hands on the page's items (``op = r``, ``after``
only) with the offset ``{"pass", "last_key", "done", "items", "scanned"}``, where
``last_key`` is the page's ``LastEvaluatedKey``. The worker stores that offset once the
page's records are acknowledged, so a restart continues the segment after the last
acknowledged page instead of at its start, and a finished segment (``done``) is not read
again.

Stragglers. The DynamoDB API documents only that the segments of one ``TotalSegments``
are disjoint and cover the table; it does not document which segments of a larger
``TotalSegments`` make up one segment of a smaller one (AWS splits the partition-key hash
space into ranges, moto takes the first hash byte modulo ``TotalSegments``: the two
disagree). Splitting a late segment's *remaining* key range therefore cannot be done
soundly on the API's guarantees. What can: scan ``segments * split_factor`` fine
segments, handed out from one queue to ``segments`` concurrent scanners. Every item is
read exactly once (the fine segments are a partition of the table), and a heavy region of
the hash space is spread over ``split_factor`` fine segments that idle scanners pick up,
so the run time is about ``max(table / segments, largest fine segment)`` rather than the
time of the heaviest of ``segments`` coarse segments. The cost is at most one extra,
partly filled page per fine segment. A single partition key with a huge item collection
still lands in one fine segment (no Scan segmentation can split it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.errors import ConfigError, CorruptOffsetError
from bridge.progress import SnapshotProgress
from bridge.task import Batch, SourceConnector, SourceRecord, SourceTask, TaskRuntime
from connectors.dynamodb.client import AwsApiError, AwsJsonClient
from connectors.dynamodb.config import SnapshotConfig
from connectors.dynamodb.envelope import EnvelopeSchema, RecordFormat
from connectors.dynamodb.snapshot_rows import SnapshotRows, decode_pool, snapshot_records
from connectors.dynamodb.table import TableInfo, describe_table
from connectors.dynamodb.typed.start import start_typed
from connectors.dynamodb.units import UnitRun

__all__ = ["ChunkGate", "RateLimiter", "ScanConnector", "ScanSegmentTask", "scan_request", "snapshot_records"]

log = logging.getLogger(__name__)


# ---- read-rate limit -------------------------------------------------------------------


class RateLimiter:
    """A token bucket that may go into debt: costs known only after a call (RCU) are taken then.

    ``acquire`` waits until the balance is positive; ``take`` subtracts what a call cost.
    The burst is one second of rate, so a paused job does not start with a flood.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = rate
        self._stamp = clock()
        self.waited_s = 0.0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def delay(self, need: float = 0.0) -> float:
        """Seconds until ``need`` tokens (capped at one second's worth) are available."""
        self._refill()
        need = min(need, self.rate)
        short = need - self._tokens if need > 0 else -self._tokens + 1e-9
        return max(0.0, short / self.rate) if short > 0 else 0.0

    async def acquire(self, need: float = 0.0) -> None:
        while (d := self.delay(need)) > 0:
            self.waited_s += d
            await asyncio.sleep(d)

    def take(self, amount: float) -> None:
        self._refill()
        self._tokens -= amount


# ---- chunk windows (mode: concurrent) ----------------------------------------------------


class ChunkGate(Protocol):
    """What a concurrent snapshot needs around every Scan page (see connectors/dynamodb/snapshot.py)."""

    def open_window(self) -> Any:
        """Called just before the Scan request is sent; returns a window token."""

    async def close_window(self, window: Any, records: list[SourceRecord]) -> list[SourceRecord]:
        """After the response: wait until the stream is read past the window, drop changed keys."""

    def release(self, window: Any) -> None:
        """The window's surviving rows were handed to the producer: stream readers may go on."""


# ---- the task --------------------------------------------------------------------------


@dataclass
class _Shared:
    """What all segment tasks of one connector share."""

    ddb: AwsJsonClient
    table: TableInfo
    topic: str
    schema: EnvelopeSchema
    config: SnapshotConfig
    request: dict[str, Any]
    items_limiter: RateLimiter | None
    rcu_limiter: RateLimiter | None
    concurrency: int
    progress: SnapshotProgress | None
    gate: ChunkGate | None
    rcu_per_item: float = 0.5  # updated from ReturnConsumedCapacity
    pool: Executor | None = None  # where pages are parsed and encoded (None: asyncio's default)
    typed: Any = None  # value: {shape: typed}: the table's TypedTable


def scan_request(cfg: SnapshotConfig, table: TableInfo) -> dict[str, Any]:
    """The fixed part of every Scan call; the key attributes are always projected."""
    req: dict[str, Any] = {"TableName": table.name, "ConsistentRead": cfg.reads_consistent}
    names = dict(cfg.expression_attribute_names)
    if cfg.filter_expression:
        req["FilterExpression"] = cfg.filter_expression
    if cfg.projection_expression:
        projection = cfg.projection_expression
        listed = {p.strip() for p in projection.split(",")}
        for i, kf in enumerate(table.key_fields):
            if kf.name in listed or any(names.get(p) == kf.name for p in listed):
                continue
            alias = f"#bridgekey{i}"
            names[alias] = kf.name
            projection += f", {alias}"
        req["ProjectionExpression"] = projection
    if names:
        req["ExpressionAttributeNames"] = names
    if cfg.expression_attribute_values:
        req["ExpressionAttributeValues"] = dict(cfg.expression_attribute_values)
    if cfg.max_rcu_per_second:
        req["ReturnConsumedCapacity"] = "TOTAL"
    return req


class ScanSegmentTask(SourceTask):
    """Scans one segment from its stored position to its end, one page per poll."""

    def __init__(self, shared: _Shared, segment: int, total: int, *, pass_no: int, resume: dict[str, Any] | None) -> None:
        self.partition = {"table": shared.table.name, "segment": segment, "total_segments": total}
        self.segment = segment
        self.total = total
        self.pass_no = pass_no
        self._s = shared
        resume = resume or {}
        self._last_key: dict[str, Any] | None = resume.get("last_key")
        self.items = int(resume.get("items", 0))
        self.scanned = int(resume.get("scanned", 0))
        self.items_this_run = 0
        self.pages = 0
        self._window: Any = None
        self._source = {
            "connector": "dynamodb",
            "table": shared.table.name,
            "region": shared.table.region,
            "snapshot": "scan",
            "segment": segment,
            "total_segments": total,
            "ttl_delete": False,
        }
        self._rows = SnapshotRows(topic=shared.topic, table=shared.table, schema=shared.schema, source=self._source,
                                  typed=shared.typed)

    def _limit(self) -> int | None:
        s, cfg = self._s, self._s.config
        limits = [cfg.page_size] if cfg.page_size else []
        if cfg.max_items_per_second:
            limits.append(max(1, int(cfg.max_items_per_second / s.concurrency)))
        if cfg.max_rcu_per_second:
            limits.append(max(1, int(cfg.max_rcu_per_second / s.concurrency / max(s.rcu_per_item, 1e-3))))
        return min(limits) if limits else None

    async def poll(self) -> Batch:
        s = self._s
        if self._window is not None and s.gate is not None:
            s.gate.release(self._window)  # the previous page was produced before this poll
            self._window = None
        limit = self._limit()
        if s.items_limiter is not None:
            await s.items_limiter.acquire(limit or 1)
            s.items_limiter.take(limit or 1)
        if s.rcu_limiter is not None:
            await s.rcu_limiter.acquire()
        req = dict(s.request, Segment=self.segment, TotalSegments=self.total)
        if limit:
            req["Limit"] = limit
        if self._last_key is not None:
            req["ExclusiveStartKey"] = self._last_key
        window = s.gate.open_window() if s.gate is not None else None
        body = await s.ddb.call_raw("Scan", req)
        # parsed and encoded off the event loop, in one pass, with the GIL released (snapshot_rows)
        records, resp = await asyncio.get_running_loop().run_in_executor(s.pool, self._rows.scan_page, body)
        scanned = int(resp.get("ScannedCount", len(records)))
        if s.items_limiter is not None and limit:
            s.items_limiter.take(scanned - limit)  # give back what the page did not use
        consumed = (resp.get("ConsumedCapacity") or {}).get("CapacityUnits")
        if s.rcu_limiter is not None and consumed is not None:
            s.rcu_limiter.take(float(consumed))
            if scanned:
                s.rcu_per_item = 0.8 * s.rcu_per_item + 0.2 * (float(consumed) / scanned)
        if s.gate is not None:
            records = await s.gate.close_window(window, records)
            self._window = window
        self.pages += 1
        self.items += len(records)
        self.items_this_run += len(records)
        self.scanned += scanned
        if s.progress is not None:
            s.progress.add(len(records), scanned)
        self._last_key = resp.get("LastEvaluatedKey")
        offset: dict[str, Any] = {
            "pass": self.pass_no,
            "last_key": self._last_key,
            "done": self._last_key is None,
            "items": self.items,
            "scanned": self.scanned,
        }
        if self._last_key is None:
            offset["finished_ms"] = int(time.time() * 1000)
            return Batch(records, offset, final=True, reason="segment-done")
        return Batch(records, offset)

    async def close(self) -> None:
        if self._window is not None and self._s.gate is not None:
            self._s.gate.release(self._window)
            self._window = None


# ---- the connector ---------------------------------------------------------------------


class ScanConnector(SourceConnector):
    """Snapshots one table with a parallel Scan; ``done`` is set when a pass completes."""

    record_format = RecordFormat()  # the table's; set by table_connectors
    # subject -> its latest schema text (typed values, snapshot-only tables); set by table_connectors
    typed_latest: Callable[[str], str | None] | None = None

    def __init__(
        self,
        *,
        table: str,
        topic: str,
        ddb: AwsJsonClient,
        config: SnapshotConfig,
        gate: ChunkGate | None = None,
        start_after: asyncio.Event | None = None,
        progress_stream: Any = None,
        new_pass: bool = False,
        resume_only: bool = False,
    ) -> None:
        self.name = f"scan:{table}"
        self._new_pass = new_pass  # a resnapshot: start the pass after the newest stored one
        # A restart after a resnapshot was cut off: finish its pass, or do nothing if none is open.
        self._resume_only = resume_only
        self.table_name = table
        self.topic = topic
        self._ddb = ddb
        self._config = config
        self._gate = gate
        self._start_after = start_after  # a handoff lets the snapshot start once stream positions are held
        self._progress_stream = progress_stream
        self.table: TableInfo | None = None
        self.total_segments = config.total_segments
        self.concurrency = min(config.segments, self.total_segments)
        self.done = asyncio.Event()  # set when a pass is complete (durably)
        self.progress: SnapshotProgress | None = None
        self.items_this_run = 0
        self._units: UnitRun | None = None
        self._runtime: TaskRuntime | None = None
        self._shared: _Shared | None = None
        self._pool: Executor | None = None
        self._pass = 0

    async def validate(self) -> None:
        self.table = await describe_table(self._ddb, self.table_name)
        req = scan_request(self._config, self.table) | {"Limit": 1, "Segment": 0, "TotalSegments": self.total_segments}
        try:
            await self._ddb.call("Scan", req)
        except AwsApiError as e:
            if e.code == "ValidationException":
                raise ConfigError(f"tables: {self.table_name}.snapshot: DynamoDB refused the Scan: {e}") from None
            raise
        # A table read by its stream too starts its typed schema there (typed_latest unset here).
        typed = self.record_format.typed_table(self.table.name, self.table.key_fields)
        if typed is not None and not typed.sampled and self.typed_latest is not None:
            await start_typed(typed, ddb=self._ddb, table=self.table, topic=self.topic, latest=self.typed_latest)

    def _partition(self, segment: int) -> dict[str, Any]:
        return {"table": self.table_name, "segment": segment, "total_segments": self.total_segments}

    async def run(self, runtime: TaskRuntime) -> None:
        self._pool = decode_pool(self._config.decode_threads, f"scan-{self.table_name}")
        try:
            await self._run(runtime)
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, runtime: TaskRuntime) -> None:
        if self.table is None:
            await self.validate()
        assert self.table is not None
        if self._start_after is not None:
            await self._start_after.wait()
        cfg = self._config
        self._runtime = runtime
        self._shared = _Shared(
            ddb=self._ddb,
            table=self.table,
            topic=self.topic,
            schema=self.record_format.schema(self.table.name, self.table.key_fields),
            typed=self.record_format.typed_table(self.table.name, self.table.key_fields),
            config=cfg,
            request=scan_request(cfg, self.table),
            items_limiter=RateLimiter(cfg.max_items_per_second) if cfg.max_items_per_second else None,
            rcu_limiter=RateLimiter(cfg.max_rcu_per_second) if cfg.max_rcu_per_second else None,
            concurrency=self.concurrency,
            progress=None,
            gate=self._gate,
            pool=self._pool,
        )
        stored = self._stored(runtime)
        self._pass = max((int(o.get("pass", 0)) for o in stored.values() if o), default=0)
        if self._new_pass and any(stored.values()):
            self._pass += 1
        if self._resume_only and not any(
            o and int(o.get("pass", 0)) == self._pass and not o.get("done") for o in stored.values()
        ):
            self.done.set()
            return
        while True:
            stored = self._stored(runtime)
            todo = [i for i, o in stored.items() if not self._segment_done(o)]
            if todo:
                await self._run_pass(runtime, stored, todo)
            else:
                log.info("snapshot of %s: pass %d already complete (stored offsets)", self.table_name, self._pass)
            self.done.set()
            if cfg.repeat == "once":
                return
            # When the pass ended, from the stored offsets: every worker of a group waits the same.
            stored = self._stored(runtime)
            last = max((int(o.get("finished_ms", 0)) for o in stored.values()
                        if o and int(o.get("pass", 0)) == self._pass), default=0)
            wait = max(0.0, last / 1000 + cfg.pass_interval_s - time.time())
            log.info("snapshot of %s: next pass in %.0fs", self.table_name, wait)
            await asyncio.sleep(wait)
            # A worker that saw the pass end late may find the next one begun by the others.
            newest = max((int(o.get("pass", 0)) for o in self._stored(runtime).values() if o), default=0)
            self._pass = max(self._pass + 1, newest)

    def _stored(self, runtime: TaskRuntime) -> dict[int, dict[str, Any] | None]:
        return {i: runtime.offsets.offset(self._partition(i)) for i in range(self.total_segments)}

    def _segment_done(self, o: dict[str, Any] | None) -> bool:
        """The segment's stored offset finishes this pass: its done offset, or a later pass
        begun (a pass begins only once every segment of the one before is done)."""
        if not o:
            return False
        p = int(o.get("pass", 0))
        return p > self._pass or (p == self._pass and bool(o.get("done")))

    def _task(self, segment: int, o: dict[str, Any] | None) -> ScanSegmentTask:
        assert self._shared is not None
        resume = o if o and int(o.get("pass", 0)) == self._pass and not o.get("done") else None
        if resume and resume.get("last_key") is not None:
            self._check_last_key(segment, resume["last_key"])
        task = ScanSegmentTask(self._shared, segment, self.total_segments, pass_no=self._pass, resume=resume)
        if resume:
            log.info("segment %d/%d of %s resumes after %d items", segment, self.total_segments, self.table_name, task.items)
        return task

    def _check_last_key(self, segment: int, last_key: dict[str, Any]) -> None:
        """A stored ``last_key`` must be this table's key, attribute for attribute and type for
        type: DynamoDB refuses any other ExclusiveStartKey on every retry (moto answers HTTP
        500, retried for ever), so the start stops with the offset's line instead."""
        assert self.table is not None
        want = {f.name: f.type for f in self.table.key_fields}
        got = {name: next(iter(av)) for name, av in last_key.items()}
        if got == want:
            return
        why = (f"the stored last_key {json.dumps(last_key)[:120]} is not a key of table {self.table_name!r} "
               f"({', '.join(f'{n} {t}' for n, t in want.items())})")
        describe = getattr(self._runtime.offsets, "bad_offset_line", None) if self._runtime else None
        partition = self._partition(segment)
        raise CorruptOffsetError(describe(partition, why) if describe else f"{why}; reset the stored offset of {partition}")

    async def _run_pass(self, runtime: TaskRuntime, stored: dict[int, dict[str, Any] | None], todo: list[int]) -> None:
        assert self._shared is not None and self.table is not None
        cfg = self._config
        progress = SnapshotProgress(
            self.table_name,
            kind="scan",
            units="segments",
            total_units=self.total_segments,
            expected_items=self.table.item_count or None,
            interval_s=cfg.progress_interval_s,
            stream=self._progress_stream,
        )
        for o in stored.values():
            if o and int(o.get("pass", 0)) == self._pass:
                progress.resumed(int(o.get("scanned", 0)), units_done=1 if o.get("done") else 0)
        self.progress = self._shared.progress = progress
        resumed_items = sum(int(o.get("items", 0)) for o in stored.values() if o and int(o.get("pass", 0)) == self._pass)
        log.info(
            "snapshot of %s: pass %d, %d of %d segments to scan (%d at a time, %d items already published), ~%d items in table",
            self.table_name, self._pass, len(todo), self.total_segments, self.concurrency, resumed_items,
            self.table.item_count,
        )
        self.items_this_run = 0
        run = self._units = UnitRun(
            runtime,
            [self._partition(i) for i in todo],
            complete=self._segment_done,
            start=lambda unit, o: self._task(int(unit["segment"]), o),
            concurrency=self.concurrency,
            shared=not self._new_pass,  # a resnapshot is one process's decision: it reads every segment
        )
        try:
            await run.run()
        finally:
            self._units = None
        progress.finish()
        log.info(
            "snapshot of %s complete: pass %d, %d items read in this run, %d resumed from stored offsets; "
            "%d of %d segments finished by this process",
            self.table_name, self._pass, self.items_this_run, resumed_items, run.finished_here, len(todo),
        )

    def task_finished(self, task: SourceTask, batch: Batch) -> None:
        assert isinstance(task, ScanSegmentTask)
        self.items_this_run += task.items_this_run
        if self.progress is not None:
            self.progress.unit_done()
        if self._units is not None:
            self._units.finished(task)

    def task_stopped(self, task: SourceTask) -> None:
        """The segment moved to another worker of this name (its offset is committed)."""
        assert isinstance(task, ScanSegmentTask)
        self.items_this_run += task.items_this_run
        if self._units is not None:
            self._units.stopped(task)

    def wake(self) -> None:
        """Ownership changed or another worker committed a segment's offset."""
        if self._units is not None:
            self._units.wake()
