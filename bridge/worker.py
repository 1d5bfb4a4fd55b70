"""Runs source tasks: the task lifecycle, over producer lanes that carry the guarantees.

One worker drives every task of every connector on one asyncio event loop. What happens to
a batch after a task hands it on lives beside this module, one concern each:

- ``bridge.lane``: serialize → produce → serve acknowledgements, per producer, with its helpers
  ``bridge.lane.accounting`` (an offset is written only when every record it covers, and every
  record before it from the same source partition, has been acknowledged; readers wait
  while the worker holds too many records or bytes), ``bridge.lane.dead_letters`` (a record
  that cannot be written goes to the dead-letter topic) and ``bridge.lane.commits`` (offset
  writes at-least-once, or transactions exactly-once).

This module keeps what is left: starting and stopping tasks, a task's final offset made
durable before its connector hears of the end (so a child shard never starts while its
parent could still be re-read), stopping on the first failure, and the drain at shutdown.
It also lets group membership (``bridge.group``) add and remove lanes and hand tasks over
while the worker runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, Producer

from bridge.errors import BridgeError, ProducerStalledError
from bridge.heartbeat import Heartbeats
from bridge.kafka import LIBRDKAFKA_TROUBLE
from bridge.lane import Bounds, ProducerLane
from bridge.metrics import METRICS
from bridge.offsets import OffsetStore
from bridge.ops.runtime import OpsState
from bridge.ownership import DEFAULT_LANE, Ownership, OwnEverything
from bridge.serde.serializer import RecordSerializer
from bridge.settings import WorkerSettings
from bridge.task import OffsetReader, SourceConnector, SourceTask, partition_key

__all__ = ["Worker", "WorkerSettings"]

log = logging.getLogger(__name__)


class _ConnectorRuntime:
    """The ``TaskRuntime`` a connector sees: its own tasks, the worker's offsets."""

    def __init__(self, worker: Worker, connector: SourceConnector) -> None:
        self._worker = worker
        self._connector = connector
        self.offsets: OffsetReader = worker.offsets

    def start_task(self, task: SourceTask) -> None:
        self._worker._start_task(self._connector, task)

    def running(self, partition: Mapping[str, Any]) -> bool:
        return partition_key(partition) in self._worker._tasks

    def owns(self, partition: Mapping[str, Any]) -> bool:
        """Whether this worker may read ``partition`` now (always, unless it shares work in a group)."""
        return self._worker.ownership.owns(partition)

    def add_connector(self, connector: SourceConnector) -> None:
        """Start another connector while running (e.g. a resnapshot after trimmed data)."""
        self._worker._add_connector(connector)

    async def remove_connector(self, connector: SourceConnector) -> None:
        """Stop another connector and its tasks, committing what they read (a deleted table)."""
        await self._worker.remove_connector(connector)

    async def stop_tasks(self) -> None:
        """Stop this connector's tasks, committing what they read (its table is gone)."""
        worker, me = self._worker, self._connector
        await worker.hand_over(lambda p: any(r.connector is me and r.task.partition == p
                                             for r in worker._running.values()))


class _Running:
    """A running task with what its hand-over needs."""

    __slots__ = ("connector", "handle", "lane", "started", "task")

    def __init__(self, connector: SourceConnector, task: SourceTask, lane: ProducerLane) -> None:
        self.connector = connector
        self.task = task
        self.lane = lane
        self.handle: asyncio.Task[None] | None = None
        self.started = False  # _run_task began (its finally closes the task)


class _FlushAll:
    """``worker._flush_now.set()``: ask every lane to commit now (the ops layer's stop-when-caught-up)."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def set(self) -> None:
        for lane in list(self._worker.lanes.values()):
            lane.commits.flush_now.set()


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        connectors: list[SourceConnector],
        producer: Producer | None,
        offsets: OffsetStore,
        serializer: RecordSerializer,
        ownership: Ownership | None = None,
    ) -> None:
        """``producer`` becomes the one lane every partition uses; None when group membership
        adds lanes itself (``add_lane``, ``ownership.route``). Without ``ownership`` the worker
        owns everything."""
        self.settings = settings
        self.connectors = connectors
        self.offsets = offsets
        self.serializer = serializer
        self.bounds = Bounds(settings)
        self.lanes: dict[str, ProducerLane] = {}
        # Which partitions this worker reads and on which lane, whether it must hold, whether
        # it knows its share yet (bridge.ownership).
        self.ownership: Ownership = ownership if ownership is not None else OwnEverything()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running: dict[str, _Running] = {}
        self._runners: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._started = False
        self._failure: BaseException | None = None
        self._shut_down = asyncio.Event()
        self._stalled: str | None = None  # why /health is DEGRADED, while a producer is stalled
        self._flush_now = _FlushAll(self)
        self.heartbeats = None if settings.heartbeat_topic is None else Heartbeats(
            settings.heartbeat_topic, settings.heartbeat_interval_s, settings.connector_name)
        self.on_stopping: list[Callable[[], None]] = []
        if producer is not None:
            self.lanes[DEFAULT_LANE] = self._make_lane(DEFAULT_LANE, producer)
        self.ops = OpsState(settings.connector_name, settings.worker_id,
                            fail_tasks_alone=settings.task_failure == "fail-task")
        METRICS.counter_fn("bridge_records_produced_total", lambda: self.records_produced, "records handed to the producer")
        METRICS.counter_fn("bridge_records_dead_lettered_total", lambda: self.records_dead_lettered,
                           "records sent to the dead-letter topic")
        for name, fn, text in (
            ("bridge_producer_queue_depth", lambda: sum(len(lane.producer) for lane in list(self.lanes.values())),
             "messages in librdkafka's queue or in flight"),
            ("bridge_records_in_flight", self.in_flight, "records produced, not yet acknowledged"),
            ("bridge_buffered_bytes", lambda: self.bounds.buffered_bytes, "bytes produced, not yet acknowledged"),
            ("bridge_tasks_running", lambda: len(self._tasks), "running tasks (one per source partition read)"),
        ):
            METRICS.gauge(name, fn, text)

    # ---- accounting views (metrics, tests) ----------------------------------------------

    @property
    def records_produced(self) -> int:
        return self.bounds.records_produced

    @property
    def records_dead_lettered(self) -> int:
        return self.bounds.records_dead_lettered

    @property
    def _buffered_bytes(self) -> int:
        return self.bounds.buffered_bytes

    @property
    def _records_in_flight(self) -> int:
        return self.bounds.records_in_flight

    @property
    def producer(self) -> Producer:
        """The default lane's producer (single-process modes)."""
        return self.lanes[DEFAULT_LANE].producer

    # ---- lanes ----------------------------------------------------------------------

    def _make_lane(self, name: str, producer: Producer) -> ProducerLane:
        return ProducerLane(
            name=name, producer=producer, settings=self.settings, offsets=self.offsets,
            serializer=self.serializer, bounds=self.bounds, fail=self._fail, worker_stopping=self._stop.is_set,
            held=self.ownership.held,
        )

    async def add_lane(self, name: str, producer: Producer, errors: Any = None) -> ProducerLane:
        """A new producer lane, started (exactly-once: ``init_transactions`` fences its previous owner).

        ``errors``: the producer's error_cb holder; its ``target`` becomes the lane's handler.
        """
        lane = self._make_lane(name, producer)
        if errors is not None:
            errors.target = lane.on_kafka_error
        self.lanes[name] = lane
        if self._started:
            await lane.start()
        return lane

    async def hand_over(self, which: Callable[[Mapping[str, Any]], bool], *, lanes: list[str] = (),  # type: ignore[assignment]
                        lost: bool = False) -> int:
        """Stop the tasks whose partitions ``which`` selects, wait for their records, commit
        their offsets, then close ``lanes``; returns how many tasks stopped.

        This is the revocation half of a rebalance: it returns only when the next owner can
        resume exactly where these tasks stopped. ``lost`` (the group already gave the work
        to someone else): nothing is committed, the lanes' open transactions are dropped, and
        on a shared lane the partitions' offsets are forgotten unwritten: the next owner may
        be past them, and writing them would move its offset back.
        """
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        stopping = [r for k, r in self._running.items() if which(r.task.partition)]
        for r in stopping:
            if r.handle is not None:
                r.handle.cancel()
        await asyncio.gather(*(r.handle for r in stopping if r.handle is not None), return_exceptions=True)
        by_lane: dict[str, set[str]] = {}
        for lane_name, lane in self.lanes.items():
            keys = {k for k, p in lane.progress.items() if which(p.partition)}
            if keys:
                by_lane[lane_name] = keys
        if lost:
            for lane_name, keys in by_lane.items():
                if lane_name not in lanes:
                    self.lanes[lane_name].drop_partitions(keys)
        else:
            for lane_name, keys in by_lane.items():
                lane = self.lanes[lane_name]
                if not await lane.quiet(keys, deadline):
                    log.warning("hand-over: records of %d partitions still unacknowledged; their offsets are not "
                                "committed (the next owner replays them)", len(keys))
                if lane_name not in lanes:  # a shared lane: commit just these partitions
                    if lane.settings.exactly_once:
                        lane.commits.flush_now.set()
                        for k in keys:
                            p = lane.progress.get(k)
                            if p is not None and p.submitted is not None:
                                await asyncio.wait_for(lane.commits.durable(p, p.submitted),
                                                       max(0.1, deadline - time.monotonic()))
                        lane.drop_partitions(keys)
                    else:
                        await lane.commit_partitions(keys, deadline)
        for lane_name in lanes:
            gone = self.lanes.pop(lane_name, None)
            if gone is None:
                continue
            if lost:
                await gone.discard()
            else:
                await gone.finish(deadline, failed=gone.partial_batch)
        for r in stopping:
            with contextlib.suppress(Exception):
                r.connector.task_stopped(r.task)
        return len(stopping)

    # ---- task lifecycle -------------------------------------------------------------

    def _start_task(self, connector: SourceConnector, task: SourceTask) -> None:
        pkey = partition_key(task.partition)
        if pkey in self._tasks:
            raise BridgeError(f"task for {pkey} is already running")
        lane_name = self.ownership.route(task.partition)
        lane = self.lanes.get(lane_name)
        if lane is None:
            raise BridgeError(f"task for {pkey}: no producer lane {lane_name!r} (its partition is not owned here)")
        running = _Running(connector, task, lane)
        self._running[pkey] = running
        running.handle = self._tasks[pkey] = asyncio.create_task(self._run_task(running), name=f"task {pkey}")
        running.handle.add_done_callback(lambda handle: self._task_done(pkey, handle))

    def _task_done(self, pkey: str, handle: asyncio.Task[None]) -> None:
        """Forget an ended task, however it ended: one cancelled before it first ran never enters
        ``_run_task``'s ``finally`` (a REST restart right after another left such entries, and the
        next start stopped the worker with 'task ... is already running')."""
        if self._tasks.get(pkey) is handle:
            del self._tasks[pkey]
        running = self._running.get(pkey)
        if running is not None and running.handle is handle:
            del self._running[pkey]
            if not running.started:  # closed as _run_task's finally would have (e.g. a window it holds)
                closing = asyncio.ensure_future(running.task.close())
                closing.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: nothing to report

    async def _run_task(self, running: _Running) -> None:
        running.started = True
        connector, task, lane = running.connector, running.task, running.lane
        pkey = partition_key(task.partition)
        progress = lane.progress_for(task.partition)
        ops = self.ops  # operator view: state, pause gate, lag (bridge/ops/runtime.py)
        state = ops.started(connector, task)
        transforms = connector.transforms  # the source's transform chain (bridge.transforms), if any
        beat = self.heartbeats.task(task.partition) if self.heartbeats is not None else None
        finished = False
        try:
            while True:
                await self.bounds.wait_for_space(progress)
                await ops.gate(state)
                await self._unheld()
                ops.polling(state)
                batch = await task.poll()
                ops.polled(state, batch)
                read = bool(batch.records)  # before the transforms: a reader whose records are all filtered is not idle
                if transforms is not None and read:
                    batch.records = await transforms.apply(batch.records)
                if beat is not None:
                    beat.on_batch(batch, read)
                await self._unheld()  # a batch read just before a pause waits too (or is dropped with the unit)
                await lane.submit(progress, batch)
                if batch.final:
                    if batch.offset is not None:
                        await lane.durable(progress, batch.offset)
                    finished = True
                    connector.task_finished(task, batch)
                    return
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            if not ops.failed(state, e):
                self._fail(e)
            else:
                log.error("task %s failed (errors.task_failure=fail-task; the others go on): %s", state.id, e)
        finally:
            ops.ended(state, finished)
            self._tasks.pop(pkey, None)
            self._running.pop(pkey, None)
            with contextlib.suppress(Exception):
                await task.close()

    async def _unheld(self) -> None:
        """Wait while ``held()``: nothing read then is handed on until the group has answered."""
        while self.ownership.held():
            await asyncio.sleep(0.05)

    def on_kafka_error(self, err: KafkaError) -> None:
        """The default lane's producer ``error_cb`` (see ``ProducerLane.on_kafka_error``)."""
        lane = self.lanes.get(DEFAULT_LANE)
        if lane is not None:
            lane.on_kafka_error(err)

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
            log.error("stopping: %s", error)
        self._stop.set()

    # ---- run --------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def stopping(self) -> bool:
        return self._stop.is_set()

    async def wait_shut_down(self) -> None:
        """Until the shutdown has committed what it could (a group hand-over during shutdown waits here)."""
        await self._shut_down.wait()

    def wake_connectors(self) -> None:
        """Ownership or others' offsets changed: connectors look again at what they may start."""
        for c in list(self.connectors):
            wake = getattr(c, "wake", None)
            if wake is not None:
                wake()

    def in_flight(self) -> int:
        return sum(lane.in_flight() for lane in self.lanes.values())

    def offsets_settled(self) -> bool:
        """Every acknowledged record's offset is committed (for a stop on request)."""
        for lane in self.lanes.values():
            if self.settings.exactly_once:
                if getattr(lane.commits, "dirty", False):
                    return False
            elif any(p.dirty or p.writing for p in lane.progress.values()):
                return False
        return True

    def healthy(self) -> bool:
        return self._failure is None and not self._stop.is_set()

    def health(self) -> tuple[bool, str]:
        """``/health``: (ok, text). DEGRADED while a producer is stalled (see ``_stall_watch``)."""
        if self._failure is not None:
            return False, f"FAILED: {self._failure}"
        if self._stop.is_set():
            return False, "STOPPING"
        if self._stalled is not None:
            return False, f"DEGRADED: {self._stalled}"
        return True, "ok"

    # ---- stall watch -------------------------------------------------------------------

    def oldest_unacknowledged_s(self) -> float:
        """How long the oldest record not yet acknowledged has waited (0 with none in flight)."""
        borns = [b for lane in list(self.lanes.values()) if (b := lane.oldest_born()) is not None]
        return 0.0 if not borns else time.monotonic() - min(borns)

    async def _stall_watch(self) -> None:
        """Turn a producer that gets no acknowledgement into a WARNING, DEGRADED, then a stop.

        librdkafka retries without limit (``message.timeout.ms=0``), which is right for an
        outage and wrong for a state it cannot leave (a broker that lost the producer's id
        answers every retry with ``UnknownProducerId``). Both look the same from here, so
        the age of the oldest unacknowledged record decides: warn, then fail so a new
        process (a new producer) takes over from the committed offsets.
        """
        s = self.settings
        interval = min(1.0, s.stall_warn_s / 4)
        warned_at = 0.0
        while True:
            await asyncio.sleep(interval)
            age = self.oldest_unacknowledged_s()
            if age < s.stall_warn_s:
                if self._stalled is not None:
                    log.info("Kafka acknowledges records again; /health is ok")
                    self._stalled = None
                # The next stall is a new one and warns when it begins: a slow acknowledgement
                # that cleared must not silence the stall after it (repeats stay a minute apart).
                warned_at = 0.0
                continue
            since = time.monotonic() - age
            cause = LIBRDKAFKA_TROUBLE.latest(since) or "nothing (no error from librdkafka since the record was sent)"
            in_flight = self.bounds.records_in_flight
            self._stalled = f"no acknowledgement from Kafka for {age:.0f} s ({in_flight} records in flight)"
            if s.stall_fail_s is not None and age >= s.stall_fail_s:
                self._fail(ProducerStalledError(
                    f"Kafka acknowledged none of the oldest records for {age:.0f} s (stall.fail_after_s="
                    f"{s.stall_fail_s:g}); librdkafka reports: {cause}. Stopping so that a restart gets a new "
                    f"producer; it resumes from the committed offsets"
                ))
                return
            if warned_at == 0.0 or time.monotonic() - warned_at >= max(60.0, s.stall_warn_s):
                warned_at = time.monotonic()
                until = (f"; the bridge stops at {s.stall_fail_s:g} s (stall.fail_after_s)"
                         if s.stall_fail_s is not None else "")
                log.warning("%s; librdkafka reports: %s; /health is DEGRADED%s", self._stalled, cause, until)

    def tasks(self) -> list[dict[str, Any]]:
        """The source partitions read right now."""
        return [dict(r.task.partition) for r in self._running.values()]

    async def run(self, *, beside: list[Callable[[], Any]] = ()) -> None:  # type: ignore[assignment]
        """Run until ``stop()`` or a failure; then drain, commit and return (or raise).

        ``beside``: coroutine functions run alongside the connectors (group membership);
        one that fails stops the worker.
        """
        for lane in list(self.lanes.values()):
            await lane.start()
        self._started = True
        for c in list(self.connectors):
            self._runners.append(asyncio.create_task(self._run_connector(c), name=f"connector {c.name}"))
        extra = [asyncio.create_task(self._guard(fn), name=getattr(fn, "__name__", "beside")) for fn in beside]
        extra.append(asyncio.create_task(self._stall_watch(), name="stall watch"))
        try:
            await self._stop.wait()
        finally:
            for fn in self.on_stopping:
                with contextlib.suppress(Exception):
                    fn()
            await self._shutdown(self._runners, extra)
        if self._failure is not None:
            raise self._failure

    async def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._fail(e)

    def _add_connector(self, connector: SourceConnector) -> None:
        if self._stop.is_set():
            return
        self.connectors.append(connector)
        self._runners.append(asyncio.create_task(self._run_connector(connector), name=f"connector {connector.name}"))

    async def remove_connector(self, connector: SourceConnector) -> None:
        """Stop one connector and its tasks (a table that was deleted), committing what they read."""
        await self.hand_over(lambda p: any(r.connector is connector and r.task.partition == p
                                           for r in self._running.values()))
        for t in list(self._runners):
            if t.get_name() == f"connector {connector.name}":
                t.cancel()
                self._runners.remove(t)
        if connector in self.connectors:
            self.connectors.remove(connector)
        with contextlib.suppress(Exception):
            await connector.close()

    async def _run_connector(self, connector: SourceConnector) -> None:
        try:
            await connector.run(_ConnectorRuntime(self, connector))
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._fail(e)

    async def _shutdown(self, runners: list[asyncio.Task[Any]], extra: list[asyncio.Task[Any]]) -> None:
        """Stop reading, wait for acknowledgements, commit what they cover."""
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        stalled = isinstance(self._failure, ProducerStalledError)
        if stalled:
            # The producer got no acknowledgement for stall_fail_s: waiting on for it only
            # delays the restart that fixes it. Unacknowledged records are not lost: their
            # offsets are not committed, so the restart reads them again.
            deadline = time.monotonic()
        to_cancel = runners + extra + list(self._tasks.values())
        for t in to_cancel:
            t.cancel()
        await asyncio.gather(*to_cancel, return_exceptions=True)
        while self.in_flight() and time.monotonic() < deadline and self._failure is None:
            await asyncio.sleep(0.01)
        if self.in_flight():
            log.warning("shutdown: %d records still unacknowledged; their offsets are not committed", self.in_flight())
        await asyncio.gather(*(lane.finish(deadline, self._failure is not None, purge=stalled)
                               for lane in self.lanes.values()))
        self._shut_down.set()
        for c in self.connectors:
            with contextlib.suppress(Exception):
                await c.close()
