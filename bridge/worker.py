"""Runs source tasks: poll → serialize → produce → commit offsets after acknowledgement.

One worker owns one producer and one offset store and drives every task of every
connector on one asyncio event loop. The guarantees live here:

- an offset is written only when every record it covers, and every record before it from
  the same source partition, has been acknowledged by the broker (``_Progress``);
- a task's final offset (shard end) is durable before its connector is told, so a child
  shard never starts while its parent could still be re-read after a crash;
- a reader waits while its records wait for the broker (per-task record bound and
  per-worker byte bound), so a slow broker stops reading instead of growing memory;
- a registry outage pauses the task that needs a schema until the registry is back;
- a producer that gets no acknowledgement is never waited on blind: past
  ``stall_warn_s`` the worker says why (librdkafka's newest report) and /health turns
  DEGRADED, past ``stall_fail_s`` it stops (exit 1) so a supervisor restarts it with a new
  producer; the restart resumes from the committed offsets, so nothing is lost.

In exactly-once mode the producer is transactional: records and the offsets that cover
them are committed in one transaction every flush interval; nothing is written outside a
transaction, and a second process with the same name fences this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from bridge.errors import BridgeError, ConversionError, ProduceError, ProducerStalledError, SchemaError
from bridge.kafka import LIBRDKAFKA_TROUBLE, RDKAFKA_LOGGER
from bridge.metrics import METRICS
from bridge.offsets import OffsetStore
from bridge.ops.runtime import OpsState
from bridge.serde.serializer import Framed, RecordSerializer
from bridge.task import Batch, SourceConnector, SourceRecord, SourceTask, partition_key

__all__ = ["Worker", "WorkerSettings"]

log = logging.getLogger(__name__)

# Errors that concern one record, not the connection: these may go to the dead-letter topic.
_RECORD_ERRORS = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.INVALID_MSG,
    KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE,
}

_TXN_FAILED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT, KafkaError._STATE}
_FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
_DLQ_OVERHEAD = 8 * 1024  # headers and record framing, kept free below message.max.bytes


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    connector_name: str
    flush_interval_s: float = 1.0
    max_in_flight_records: int = 20000  # per task
    max_in_flight_records_total: int = 100000  # per worker: tasks × the per-task bound bounds nothing
    buffer_max_bytes: int = 256 * 1024 * 1024  # per worker: 2 × payload + 2 KiB per record (see _Entry)
    shutdown_timeout_s: float = 30.0
    dead_letter_topic: str | None = None  # None: errors.tolerance = none
    exactly_once: bool = False
    max_message_bytes: int = 2 * 1024 * 1024  # the producer's message.max.bytes
    transaction_timeout_s: float = 60.0
    worker_id: str = "local"  # who runs the tasks, in the REST API and the status topic
    task_failure: str = "stop"  # errors.task_failure: "fail-task" lets the other tasks go on
    stall_warn_s: float = 60.0  # oldest unacknowledged record this old: WARNING and /health DEGRADED
    stall_fail_s: float | None = 900.0  # this old: stop (exit 1); None: wait forever


# What one in-flight record costs beyond its payload, at most: a SourceRecord with its key and
# source dicts (~1.6 KB for stream records built in Python; the C transcoder's records take
# ~0.2 KB) and librdkafka's message (~0.4 KB). Its payload is held twice: the record's Avro
# bodies (framed in place for the C transcoder's) and librdkafka's copy.
_RECORD_OVERHEAD = 2048
_PAYLOAD_COPIES = 2
_QUEUE_FULL_WAIT_S = 0.05


class _Entry:
    """One batch from produce to acknowledgement, and the delivery callback of all its records.

    One object per batch instead of a closure per record: per record in flight that saves
    nine GC-tracked objects (closure and cells), and the callback does two attribute updates.
    ``remaining`` counts the messages not yet acknowledged, plus one while the batch is still
    being produced (so that early acks cannot complete a half-produced batch). When it
    reaches zero the batch's offset may be committed and its records and bytes are released.
    The records stay referenced until then because the dead-letter path needs the source
    position of a record the broker refuses.
    """

    __slots__ = ("remaining", "offset", "progress", "worker", "records", "count", "size", "dead_lettered", "born")

    def __init__(
        self, worker: Worker, progress: _Progress, offset: dict[str, Any] | None, records: list[SourceRecord], size: int
    ) -> None:
        self.remaining = 1
        self.offset = offset
        self.progress = progress
        self.worker = worker
        self.records: list[SourceRecord] | None = records
        self.count = len(records)
        self.size = size
        self.dead_lettered: set[int] = set()
        self.born = time.monotonic()  # for the stall watch: how long the oldest record has waited

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._refused(err, msg)
            return
        self.remaining -= 1
        if self.remaining == 0:
            self._complete()

    def ack(self) -> None:
        """One message of this batch (a record or a dead-letter chunk) is done."""
        self.remaining -= 1
        if self.remaining == 0:
            self._complete()

    def _complete(self) -> None:
        self.records = None
        self.worker._released(self)
        self.progress.advance()

    def _refused(self, err: KafkaError, msg: Message) -> None:
        worker = self.worker
        if err.code() not in _RECORD_ERRORS:
            worker._fail(ProduceError(worker._kafka_error(msg.topic() or "?", err)))
            return
        key, value = msg.key(), msg.value()
        record = self._find(key, value)
        if record is None:  # cannot happen: every message of the batch comes from its records
            worker._fail(ProduceError(f"writing to {msg.topic()!r} failed ({err.str()}) for a record not in its batch"))
            return
        worker._dead_letter(self.progress, self, record, key, value, ProduceError(err.str()), counted=True)

    def _find(self, key: bytes | None, value: bytes | None) -> SourceRecord | None:
        """The record a refused message was made from; the error path only, so a linear search.

        Matched on the framed key and value: identical messages (two tombstones of the same
        key) each get a different one of their records.
        """
        serialize = self.worker.serializer.serialize
        for i, record in enumerate(self.records or ()):
            if i in self.dead_lettered or record.tombstone != (value is None):
                continue
            try:
                if serialize(record) == (key, value):
                    self.dead_lettered.add(i)
                    return record
            except (ConversionError, KeyError):
                continue
        return None


@dataclass(slots=True)
class _Progress:
    """Acknowledgement bookkeeping for one source partition."""

    partition: dict[str, Any]
    pending: deque[_Entry] = field(default_factory=deque)
    in_flight: int = 0  # records of this partition's batches not yet completely acknowledged
    committable: dict[str, Any] | None = None
    committable_txn: dict[str, Any] | None = None  # exactly-once: offset in the last commit
    submitted: dict[str, Any] | None = None  # newest offset handed to the producer
    dirty: bool = False
    writing: bool = False
    durable_waiters: list[tuple[dict[str, Any], asyncio.Future[None]]] = field(default_factory=list)

    def advance(self) -> None:
        while self.pending and self.pending[0].remaining == 0:
            offset = self.pending.popleft().offset
            if offset is not None:
                self.committable = offset
                self.dirty = True


class _ConnectorRuntime:
    """The ``TaskRuntime`` a connector sees: its own tasks, the worker's offsets."""

    def __init__(self, worker: Worker, connector: SourceConnector) -> None:
        self._worker = worker
        self._connector = connector
        self.offsets = worker.offsets

    def start_task(self, task: SourceTask) -> None:
        self._worker._start_task(self._connector, task)

    def running(self, partition: Mapping[str, Any]) -> bool:
        return partition_key(partition) in self._worker._tasks

    def add_connector(self, connector: SourceConnector) -> None:
        """Start another connector while running (e.g. a resnapshot after trimmed data)."""
        self._worker._add_connector(connector)


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        connectors: list[SourceConnector],
        producer: Producer,
        offsets: OffsetStore,
        serializer: RecordSerializer,
    ) -> None:
        self.settings = settings
        self.connectors = connectors
        self.producer = producer
        self.offsets = offsets
        self.serializer = serializer
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._runners: list[asyncio.Task[None]] = []
        self._progress: dict[str, _Progress] = {}
        self._buffered_bytes = 0
        self._records_in_flight = 0  # worker-wide, per batch: released when a batch is fully acked
        self._partial_batch = False  # a task was cancelled with its batch half produced
        self._drained = asyncio.Event()  # set when no record is in flight
        self._committing = False  # exactly-once: new batches wait while a commit drains and runs
        self._commit_done = asyncio.Event()
        self._space = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._stop = asyncio.Event()
        # Dead-letter messages waiting for room in librdkafka's queue, in order (see _send_dead_letters).
        self._dead_letters: deque[tuple[str, bytes | None, bytes | None, list[tuple[str, str]],
                                        Callable[[KafkaError | None, Message], None]]] = deque()
        self._dead_letters_waiting = asyncio.Event()
        self._failure: BaseException | None = None
        self._fatal = False  # the producer reported a fatal error (e.g. fenced): it cannot even abort
        self._produced = asyncio.Event()  # something was produced: the poll loop has callbacks to serve
        self._last_produce = 0.0
        self._stalled: str | None = None  # why /health is DEGRADED, while the producer is stalled
        self.records_produced = 0
        self.records_dead_lettered = 0
        self._txn_dirty = False
        self._txn_began = time.monotonic()
        self.ops = OpsState(settings.connector_name, settings.worker_id,
                            fail_tasks_alone=settings.task_failure == "fail-task")
        METRICS.counter_fn("bridge_records_produced_total", lambda: self.records_produced, "records handed to the producer")
        METRICS.counter_fn("bridge_records_dead_lettered_total", lambda: self.records_dead_lettered,
                           "records sent to the dead-letter topic")
        for name, fn, text in (
            ("bridge_producer_queue_depth", lambda: len(self.producer), "messages in librdkafka's queue or in flight"),
            ("bridge_records_in_flight", self.in_flight, "records produced, not yet acknowledged"),
            ("bridge_buffered_bytes", lambda: self._buffered_bytes, "bytes produced, not yet acknowledged"),
            ("bridge_tasks_running", lambda: len(self._tasks), "running tasks (shard readers, segments)"),
        ):
            METRICS.gauge(name, fn, text)

    # ---- task lifecycle -------------------------------------------------------------

    def _start_task(self, connector: SourceConnector, task: SourceTask) -> None:
        pkey = partition_key(task.partition)
        if pkey in self._tasks:
            raise BridgeError(f"task for {pkey} is already running")
        self._tasks[pkey] = asyncio.create_task(self._run_task(connector, task), name=f"task {pkey}")

    async def _run_task(self, connector: SourceConnector, task: SourceTask) -> None:
        pkey = partition_key(task.partition)
        progress = self._progress.setdefault(pkey, _Progress(dict(task.partition)))
        ops = self.ops  # operator view: state, pause gate, lag (bridge/ops/runtime.py)
        state = ops.started(connector, task)
        finished = False
        try:
            while True:
                await self._wait_for_space(progress)
                await ops.gate(state)
                ops.polling(state)
                batch = await task.poll()
                ops.polled(state, batch)
                await self._submit(progress, batch)
                if batch.final:
                    if batch.offset is not None:
                        await self._durable(progress, batch.offset)
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
            with contextlib.suppress(Exception):
                await task.close()

    def on_kafka_error(self, err: KafkaError) -> None:
        """The producer's ``error_cb``: a fatal error (fenced, idempotence broken) stops the worker.

        Without it a fatal error is only logged, and a worker whose records never get an
        answer could wait for them indefinitely. Other errors are transient (librdkafka
        retries); they are logged, as librdkafka does when no error_cb is set.
        """
        if self._failure is not None or self._stop.is_set():
            return  # stopping already; flush() at shutdown may call this with its own exception pending
        if err.fatal():
            self._fatal = True
            text = self._txn_error(err) if self.settings.exactly_once else f"producer failed fatally: {err.str()}"
            self._fail(ProduceError(text))
        else:  # what librdkafka logs itself when no error_cb is set
            LIBRDKAFKA_TROUBLE.report(err.str())
            RDKAFKA_LOGGER.error("ERROR %s", err.str())

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
            log.error("stopping: %s", error)
        self._stop.set()

    # ---- produce ----------------------------------------------------------------------

    async def _wait_for_space(self, progress: _Progress) -> None:
        """Hold the task's next poll while its records, or the worker's, are at a bound.

        Checked before each poll, so a task may go over by one batch.
        """
        s = self.settings
        while (
            progress.in_flight >= s.max_in_flight_records
            or self._records_in_flight >= s.max_in_flight_records_total
            or self._buffered_bytes >= s.buffer_max_bytes
        ):
            self._space.clear()
            await self._space.wait()

    def _released(self, entry: _Entry) -> None:
        """A batch is acknowledged (or given up): its records and bytes leave the bounds."""
        self._records_in_flight -= entry.count
        self._buffered_bytes -= entry.size
        entry.progress.in_flight -= entry.count
        self._space.set()
        if not self._records_in_flight:
            self._drained.set()

    async def _prepare(self, record: SourceRecord) -> None:
        """Register the record's schemas; while the registry is unreachable, wait and retry.

        Waiting here holds the task's next poll, so an outage pauses reading instead of
        dropping records; a 4xx (incompatible schema, bad subject) is final.
        """
        attempt = 0
        while True:
            try:
                await asyncio.to_thread(self.serializer.prepare, record)
                if attempt:
                    log.info("schema registry is back; %s resumes", record.topic)
                return
            except SchemaError as e:
                if e.status is not None and e.status < 500 and e.status != 429:
                    raise
                attempt += 1
                METRICS.inc("bridge_registry_unavailable_total", help="failed schema registrations, retried")
                delay = random.uniform(0, min(10.0, 0.5 * 2**attempt))
                if attempt == 1 or attempt % 10 == 0:
                    log.warning("schema registry unavailable (%s); %s paused, retrying", e, record.topic)
                await asyncio.sleep(delay)

    async def _submit(self, progress: _Progress, batch: Batch) -> None:
        records = batch.records
        for record in self.serializer.unprepared(records):
            await self._prepare(record)
        framed = self.serializer.serialize_batch(records)
        while self._committing:  # exactly-once: a transaction holds whole batches only
            await self._commit_done.wait()
        size = _PAYLOAD_COPIES * framed.payload + _RECORD_OVERHEAD * len(records)
        entry = _Entry(self, progress, batch.offset, records, size)
        progress.pending.append(entry)
        progress.in_flight += entry.count
        self._records_in_flight += entry.count
        self._buffered_bytes += size
        if batch.offset is not None or records:
            self._txn_dirty = True
        try:
            await self._produce_all(entry, framed)
        except asyncio.CancelledError:
            # Half produced: what was produced is delivered, but the offset must not cover the rest.
            entry.offset = None
            self._partial_batch = True
            entry.ack()
            raise
        if batch.offset is not None:
            progress.submitted = batch.offset
        entry.ack()  # the hold taken at creation: the batch is complete once its messages are acked

    async def _produce_all(self, entry: _Entry, framed: Framed) -> None:
        """Produce the batch in order; when librdkafka's queue is full, wait without blocking the loop.

        The worker's own bounds keep the queue below librdkafka's limits (``producer_config``),
        so the wait is the exception. A half-produced batch is in flight, so an exactly-once
        commit waits for it (``_quiesce``).
        """
        start = self._enqueue(entry, framed, 0)
        while start < len(framed.keys):
            await asyncio.sleep(_QUEUE_FULL_WAIT_S)  # the poll loop serves acks meanwhile
            start = self._enqueue(entry, framed, start)

    def _enqueue(self, entry: _Entry, framed: Framed, start: int) -> int:
        """Produce records ``start``... until the queue is full; returns where it stopped.

        Synchronous: no delivery callback runs in between, so counting the batch's messages
        once at the end is the same as counting each one as it goes.
        """
        produce = self.producer.produce
        on_delivery = entry.on_delivery
        records = entry.records
        assert records is not None
        keys, values = framed.keys, framed.values
        i = start
        unconverted = refused = 0  # records that went to the dead-letter path instead
        try:
            for i in range(start, len(keys)):
                key = keys[i]
                if key is None:
                    unconverted += 1  # its dead-letter chunks count themselves
                    self._dead_letter(entry.progress, entry, records[i], None, None, framed.errors[i])
                    continue
                try:
                    produce(records[i].topic, values[i], key, on_delivery=on_delivery)
                except BufferError:
                    return i
                except KafkaException as e:
                    err = e.args[0]
                    if err.code() not in _RECORD_ERRORS:
                        raise ProduceError(self._kafka_error(records[i].topic, err)) from None
                    refused += 1  # counted as this record's message: its first chunk stands in
                    self._dead_letter(entry.progress, entry, records[i], key, values[i], ProduceError(err.str()),
                                      counted=True)
            i = len(keys)
            return i
        finally:
            entry.remaining += i - start - unconverted
            self.records_produced += i - start - unconverted - refused
            self._kick()

    def _dead_letter(
        self,
        progress: _Progress,
        entry: _Entry,
        record: SourceRecord,
        key: bytes | None,
        value: bytes | None,
        error: BridgeError,
        *,
        counted: bool = False,
    ) -> None:
        """Send a record that cannot be written to the dead-letter topic, never drop it.

        With ``errors.tolerance = none`` (no dead-letter topic) the worker stops instead,
        and the offset does not move past the record.
        """
        dlq = self.settings.dead_letter_topic
        if dlq is None:
            if not counted:
                entry.remaining += 1  # never acknowledged: the batch's offset must not move past it
            self._fail(type(error)(f"record {record.source} cannot be written: {error}"))
            return
        headers = [
            ("__connect.errors.topic", record.topic),
            ("__connect.errors.connector.name", self.settings.connector_name),
            ("__connect.errors.exception.class.name", type(error).__name__),
            ("__connect.errors.exception.message", str(error)[:2000]),
            ("__bridge.source.partition", json.dumps(progress.partition, sort_keys=True)),
            ("__bridge.source.position", json.dumps(record.source, sort_keys=True, default=str)),
        ]
        if value is None and not record.tombstone:
            # The value never serialized: keep the source record itself, as JSON.
            value = json.dumps(
                {"op": record.op, "key": record.key, "before": record.before, "after": record.after},
                default=str,
            ).encode()
        # A record refused for its size would be refused by the DLQ too: split it into
        # chunks (same key, so same partition, in order) rather than lose any of it.
        room = max(1024, self.settings.max_message_bytes - _DLQ_OVERHEAD - len(key or b""))
        chunks: list[bytes | None] = [value[i : i + room] for i in range(0, len(value), room)] if value else [value]
        entry.remaining += len(chunks) - (1 if counted else 0)

        def on_delivery(first: bool) -> Callable[[KafkaError | None, Message], None]:
            def done(err: KafkaError | None, msg: Message) -> None:
                if err is not None:
                    self._fail(ProduceError(f"dead-letter topic {dlq!r} refused a record too: {err.str()}"))
                    return
                if first:
                    self.records_dead_lettered += 1
                    log.warning("record sent to dead-letter topic %s: %s", dlq, error)
                entry.ack()

            return done

        for i, chunk in enumerate(chunks, 1):
            h = headers + ([("__bridge.chunk", str(i)), ("__bridge.chunks", str(len(chunks)))] if len(chunks) > 1 else [])
            self._dead_letters.append((dlq, chunk, key, h, on_delivery(i == 1)))
        self._send_dead_letters()

    def _send_dead_letters(self) -> None:
        """Produce the waiting dead-letter messages in order, as far as librdkafka's queue takes them.

        Called where waiting is not possible (inside a batch being enqueued, inside a delivery
        callback), so a full queue leaves the rest to ``_dead_letter_loop`` instead of raising;
        they count in their batch, which is not complete (and its offset not written) until
        they are acknowledged.
        """
        while self._dead_letters:
            topic, value, key, headers, on_delivery = self._dead_letters[0]
            try:
                self.producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
            except BufferError:
                self._dead_letters_waiting.set()
                return
            except KafkaException as e:
                self._dead_letters.clear()
                self._fail(ProduceError(f"dead-letter topic {topic!r} refused a record too: {e.args[0].str()}"))
                return
            self._dead_letters.popleft()
            self._kick()

    async def _dead_letter_loop(self) -> None:
        while True:
            await self._dead_letters_waiting.wait()
            self._dead_letters_waiting.clear()
            while self._dead_letters:
                await asyncio.sleep(_QUEUE_FULL_WAIT_S)  # the poll loop serves acks meanwhile
                self._send_dead_letters()

    def _kick(self) -> None:
        """Something was produced: wake the poll loop if it waits for work."""
        self._last_produce = time.monotonic()
        self._produced.set()

    async def _poll_loop(self) -> None:
        """Serve delivery callbacks; they run here, on the loop thread, so no locks.

        Event-driven when idle: with nothing queued or in flight (``len(producer) == 0``
        counts unsent messages, requests in flight and unserved delivery reports) it waits
        for the next produce (``_kick``), and polls once a second for librdkafka's error and
        log callbacks. While acknowledgements are due it polls every 2 ms; when none came for
        a while (a broker outage) every 50 ms.
        """
        producer = self.producer
        last_served = 0.0
        while True:
            try:
                served = producer.poll(0)
            except KafkaException as e:  # a fatal error: stop, rather than serve no callbacks from now on
                self._fail(ProduceError(self._kafka_error("?", e.args[0])))
                return
            if served:
                last_served = time.monotonic()
                await asyncio.sleep(0)
                continue
            if len(producer) == 0:
                self._produced.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._produced.wait(), 1.0)
                continue
            recent = time.monotonic() - max(last_served, self._last_produce) < 0.2
            await asyncio.sleep(0.002 if recent else 0.05)

    # ---- stall watch -------------------------------------------------------------------

    def oldest_unacknowledged_s(self) -> float:
        """How long the oldest record not yet acknowledged has waited (0 with none in flight)."""
        oldest: float | None = None
        for progress in self._progress.values():
            if progress.pending:
                born = progress.pending[0].born
                if oldest is None or born < oldest:
                    oldest = born
        return 0.0 if oldest is None else time.monotonic() - oldest

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
                continue
            since = time.monotonic() - age
            cause = LIBRDKAFKA_TROUBLE.latest(since) or "nothing (no error from librdkafka since the record was sent)"
            in_flight = self._records_in_flight
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

    # ---- offsets ----------------------------------------------------------------------

    def _write_offset(self, progress: _Progress) -> None:
        if not progress.dirty or progress.writing:
            return
        offset = progress.committable
        progress.dirty = False
        progress.writing = True
        key, value = self.offsets.encode(progress.partition, offset)

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            progress.writing = False
            if err is not None:
                self._fail(ProduceError(f"writing offsets to {self.offsets.topic!r} failed: {err.str()}"))
                return
            self.offsets.stored(progress.partition, offset)
            still = []
            for want, fut in progress.durable_waiters:
                if want is offset or want == offset:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((want, fut))
            progress.durable_waiters = still
            if progress.dirty:
                self._flush_now.set()

        try:
            self.producer.produce(self.offsets.topic, value, key, on_delivery=on_delivery)
        except (KafkaException, BufferError) as e:
            progress.writing = False
            progress.dirty = True
            log.warning("offset write deferred: %s", e)
            return
        self._kick()

    def _commit_transaction(self) -> None:
        """Exactly-once: offsets of everything produced so far, then commit, in one go.

        Runs on the loop thread on purpose: commit flushes and serves delivery callbacks
        here, and no record can be produced into the transaction while it commits.
        """
        if not self._txn_dirty:
            return
        for progress in self._progress.values():
            if progress.submitted is not None and progress.submitted is not progress.committable_txn:
                key, value = self.offsets.encode(progress.partition, progress.submitted)
                try:
                    self.producer.produce(self.offsets.topic, value, key)
                except BufferError:
                    return  # queue full: commit at the next flush (offsets in the txn so far stay valid)
                except KafkaException as e:
                    # e.g. fenced: must stop the worker, not end the flush loop unnoticed
                    raise ProduceError(self._kafka_error(self.offsets.topic, e.args[0])) from None
        try:
            self.producer.commit_transaction(self.settings.transaction_timeout_s)
        except KafkaException as e:
            err = e.args[0]
            if err.txn_requires_abort():
                with contextlib.suppress(KafkaException):
                    self.producer.abort_transaction(self.settings.transaction_timeout_s)
            raise ProduceError(self._txn_error(err)) from None
        self._txn_dirty = False
        for progress in self._progress.values():
            if progress.submitted is not None and progress.submitted is not progress.committable_txn:
                progress.committable_txn = progress.submitted
                self.offsets.stored(progress.partition, progress.submitted)
            still = []
            for want, fut in progress.durable_waiters:
                if want is progress.committable_txn or want == progress.committable_txn:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((want, fut))
            progress.durable_waiters = still
        self.producer.begin_transaction()
        self._txn_began = time.monotonic()

    def _kafka_error(self, topic: str, err: KafkaError) -> str:
        if err.code() in _FENCED or (self.settings.exactly_once and err.code() == KafkaError._FATAL):
            return self._txn_error(err)
        if self.settings.exactly_once and err.code() in _TXN_FAILED:
            # librdkafka purges a failed transaction's records; the record's error hides why.
            timed_out = self._txn_timed_out(err)
            if timed_out:
                return timed_out
            return (
                f"transaction failed ({err.str()}): another bridge process named {self.settings.connector_name!r} "
                f"took over (fenced), or the broker refused the transaction; a restart resumes from the last commit"
            )
        return f"writing to {topic!r} failed: {err.str()}"

    def _txn_timed_out(self, err: KafkaError) -> str | None:
        """The reason when the open transaction outlived ``transaction.timeout.ms``: the process
        was frozen (SIGSTOP, a VM pause) and the broker aborted the transaction, which also
        bumps the producer's epoch, so librdkafka reports it like a fence."""
        open_s = time.monotonic() - self._txn_began
        if open_s <= self.settings.transaction_timeout_s:
            return None
        return (
            f"transaction aborted by the broker: it stayed open {open_s:.0f} s, longer than "
            f"transaction.timeout.ms={self.settings.transaction_timeout_s * 1000:.0f} (was the process paused?); "
            f"this one stops and a restart resumes from the last commit ({err.str()})"
        )

    def _txn_error(self, err: KafkaError) -> str:
        timed_out = self._txn_timed_out(err)
        if timed_out:
            return timed_out
        if err.code() in _FENCED:
            return (
                f"fenced: another bridge process named {self.settings.connector_name!r} took over "
                f"(same transactional.id); this one stops"
            )
        if err.code() == KafkaError._FATAL:
            # librdkafka reports fencing on produce() only as a generic fatal error.
            return (
                f"transactional producer failed fatally ({err.str()}), most likely fenced: another bridge "
                f"process named {self.settings.connector_name!r} took over (same transactional.id); this one stops"
            )
        return f"transaction failed and was aborted ({err.str()}); a restart resumes from the last commit"

    def _commit(self) -> None:
        if self.settings.exactly_once:
            try:
                self._commit_transaction()
            except BridgeError as e:
                self._fail(e)
        else:
            self._write_offsets()

    async def _durable(self, progress: _Progress, offset: dict[str, Any]) -> None:
        """Wait until ``offset`` is acknowledged by the offsets topic."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        progress.durable_waiters.append((offset, fut))
        self._flush_now.set()
        await fut

    def _write_offsets(self) -> None:
        for progress in self._progress.values():
            self._write_offset(progress)

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), self.settings.flush_interval_s)
            self._flush_now.clear()
            try:
                if self.settings.exactly_once and self._txn_dirty:
                    await self._quiesce()
                self._commit()
            except Exception as e:  # noqa: BLE001 - a dead flush loop would stop commits unnoticed
                self._fail(e)
                return
            finally:
                self._committing = False
                self._commit_done.set()

    async def _quiesce(self) -> None:
        """Exactly-once, before a commit: hold new batches and wait until every record produced
        is acknowledged.

        ``commit_transaction`` blocks the loop while it flushes; with nothing left in flight
        it does not wait on the broker, and a broker that stops answering (or a fence) is
        met here, where the loop still serves callbacks and errors, instead of inside it.
        """
        self._committing = True
        self._commit_done.clear()
        while self._records_in_flight:
            self._drained.clear()
            await self._drained.wait()

    # ---- run --------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def in_flight(self) -> int:
        return sum(p.in_flight for p in self._progress.values())

    def offsets_settled(self) -> bool:
        """Every acknowledged record's offset is committed (for a stop on request)."""
        if self.settings.exactly_once:
            return not self._txn_dirty
        return not any(p.dirty or p.writing for p in self._progress.values())

    def healthy(self) -> bool:
        return self._failure is None and not self._stop.is_set()

    def health(self) -> tuple[bool, str]:
        """``/health``: (ok, text). DEGRADED while the producer is stalled (see ``_stall_watch``)."""
        if self._failure is not None:
            return False, f"FAILED: {self._failure}"
        if self._stop.is_set():
            return False, "STOPPING"
        if self._stalled is not None:
            return False, f"DEGRADED: {self._stalled}"
        return True, "ok"

    async def run(self) -> None:
        """Run until ``stop()`` or a failure; then drain, commit and return (or raise)."""
        if self.settings.exactly_once:
            try:
                self.producer.init_transactions(self.settings.transaction_timeout_s)
                self.producer.begin_transaction()
                self._txn_began = time.monotonic()
            except KafkaException as e:
                raise ProduceError(f"cannot start a transaction: {e.args[0].str()}") from None
        helpers = [
            asyncio.create_task(self._poll_loop(), name="producer poll"),
            asyncio.create_task(self._flush_loop(), name="offset flush"),
            asyncio.create_task(self._dead_letter_loop(), name="dead letters"),
            asyncio.create_task(self._stall_watch(), name="stall watch"),
        ]
        for c in list(self.connectors):
            self._runners.append(asyncio.create_task(self._run_connector(c), name=f"connector {c.name}"))
        try:
            await self._stop.wait()
        finally:
            await self._shutdown(self._runners, helpers)
        if self._failure is not None:
            raise self._failure

    def _add_connector(self, connector: SourceConnector) -> None:
        if self._stop.is_set():
            return
        self.connectors.append(connector)
        self._runners.append(asyncio.create_task(self._run_connector(connector), name=f"connector {connector.name}"))

    async def _run_connector(self, connector: SourceConnector) -> None:
        try:
            await connector.run(_ConnectorRuntime(self, connector))
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._fail(e)

    async def _shutdown(self, runners: list[asyncio.Task[Any]], helpers: list[asyncio.Task[Any]]) -> None:
        """Stop reading, wait for acknowledgements, commit what they cover."""
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        if isinstance(self._failure, ProducerStalledError):
            # The producer got no acknowledgement for stall_fail_s: waiting on for it only
            # delays the restart that fixes it. Unacknowledged records are not lost: their
            # offsets are not committed, so the restart reads them again.
            deadline = time.monotonic()
        to_cancel = runners + list(self._tasks.values())
        for t in to_cancel:
            t.cancel()
        await asyncio.gather(*to_cancel, return_exceptions=True)
        while self.in_flight() and time.monotonic() < deadline and self._failure is None:
            await asyncio.sleep(0.01)
        if self.in_flight():
            log.warning("shutdown: %d records still unacknowledged; their offsets are not committed", self.in_flight())
        if self.settings.exactly_once:
            if self._failure is None and not self._partial_batch:
                self._commit()
            else:
                # Records of an aborted (or fenced) transaction will never count: drop them, or
                # the abort (and the flush below) waits out the timeout for their acknowledgements.
                with contextlib.suppress(KafkaException):
                    self.producer.purge()
                if not self._fatal:  # a fenced producer cannot abort; it would wait out the timeout
                    with contextlib.suppress(KafkaException):
                        self.producer.abort_transaction(max(1.0, deadline - time.monotonic()))
        else:
            self._write_offsets()
        while any(p.writing for p in self._progress.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for t in helpers:
            t.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        if isinstance(self._failure, ProducerStalledError):
            with contextlib.suppress(KafkaException):
                self.producer.purge()
        remaining = self.producer.flush(max(0.0, deadline - time.monotonic()))
        if remaining:
            log.warning("shutdown: %d messages not delivered before the timeout", remaining)
        for c in self.connectors:
            with contextlib.suppress(Exception):
                await c.close()
