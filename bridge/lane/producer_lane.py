"""A producer lane: one Kafka producer and the records, dead letters and commits that ride on it.

A worker has one lane per producer. At-least-once and a single exactly-once process use
one; a distributed exactly-once worker has one per coordination partition it owns, each
with its own transactional id, so that whoever owns the partition next fences this one
(``bridge.group``). A source partition's records, its dead letters and its offsets always
go through the same lane, so one transaction covers all three.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from bridge.errors import ConversionError, ProduceError, SchemaError
from bridge.kafka import LIBRDKAFKA_TROUBLE, RDKAFKA_LOGGER
from bridge.lane.accounting import (
    PAYLOAD_COPIES,
    RECORD_ERRORS,
    RECORD_OVERHEAD,
    Bounds,
    Entry,
    Progress,
)
from bridge.lane.commits import Commits, OffsetCommits, TransactionCommits, idempotent_refusal
from bridge.lane.dead_letters import QUEUE_FULL_WAIT_S, DeadLetters
from bridge.metrics import METRICS
from bridge.offsets import OffsetStore
from bridge.serde.serializer import Framed, NotPrepared, RecordSerializer
from bridge.settings import WorkerSettings
from bridge.task import Batch, SourceRecord, partition_key

__all__ = ["ProducerLane"]

log = logging.getLogger(__name__)


class ProducerLane:
    """Serialize → produce → serve acknowledgements → commit, for the partitions on one producer."""

    def __init__(
        self,
        *,
        name: str,
        producer: Producer,
        settings: WorkerSettings,
        offsets: OffsetStore,
        serializer: RecordSerializer,
        bounds: Bounds,
        fail: Callable[[BaseException], None],
        worker_stopping: Callable[[], bool] = lambda: False,
        held: Callable[[], bool] = lambda: False,
    ) -> None:
        """``held``: offset writes wait while it is true (a group worker that may have lost its units)."""
        self.name = name
        self.producer = producer
        self.settings = settings
        self.offsets = offsets
        self.serializer = serializer
        self.bounds = bounds
        self._fail = fail
        self._worker_stopping = worker_stopping
        self.held = held
        self.progress: dict[str, Progress] = {}
        self.records_in_flight = 0  # this lane's, for an exactly-once commit to drain
        self.drained = asyncio.Event()
        self.committing = False  # exactly-once: new batches wait while a commit drains and runs
        self.commit_done = asyncio.Event()
        self.partial_batch = False  # a task was cancelled with its batch half produced
        self.fatal = False  # the producer reported a fatal error (e.g. fenced): it cannot even abort
        self.stopping = False
        #: Dropped with its partitions (the group gave them away, e.g. after a broker outage
        #: longer than the session): what its producer still reports (records purged,
        #: a transaction it can no longer end) concerns nobody now.
        self.discarded = False
        self.dead_letters = DeadLetters(self)
        self.commits: Commits = TransactionCommits(self) if settings.exactly_once else OffsetCommits(self)
        self._helpers: list[asyncio.Task[Any]] = []
        self._produced = asyncio.Event()  # something was produced: the poll loop has callbacks to serve
        self._last_produce = 0.0

    # ---- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        await self.commits.start()
        self._helpers = [
            asyncio.create_task(self._poll_loop(), name=f"producer poll {self.name}"),
            asyncio.create_task(self.commits.run(), name=f"offset flush {self.name}"),
            asyncio.create_task(self.dead_letters.run(), name=f"dead letters {self.name}"),
        ]
        for t in self._helpers:
            t.add_done_callback(self._helper_ended)

    def _helper_ended(self, task: asyncio.Task[Any]) -> None:
        """A helper that dies of a bug must stop the worker: a dead poll loop serves no
        acknowledgement again, and the bridge would only stall (the stall watch's exit)."""
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.fail(ProduceError(f"{task.get_name()} failed: {type(error).__name__}: {error}"))

    async def finish(self, deadline: float, failed: bool, *, purge: bool = False) -> None:
        """Commit what is acknowledged (or abort), stop the helpers, flush the producer.

        ``purge``: drop what is unacknowledged first (a stalled producer: waiting on only
        delays the restart that fixes it; those records' offsets are not committed).
        """
        self.stopping = True
        await self.commits.finish(deadline, failed)
        for t in self._helpers:
            t.cancel()
        await asyncio.gather(*self._helpers, return_exceptions=True)
        if purge:
            with contextlib.suppress(KafkaException):
                self.producer.purge()
        remaining = self._drain(deadline)
        if remaining:
            log.warning("shutdown: %d messages not delivered before the timeout", remaining)

    def _drain(self, deadline: float) -> int:
        """``flush()`` made of ``poll()``s; returns how many messages are left at ``deadline``.

        On the loop thread, so delivery callbacks run here. Not ``flush()`` itself: on a
        transactional producer in a fatal state (fenced, its transaction aborted by the
        broker) confluent-kafka's flush sets that error and goes on serving delivery
        callbacks, whose first call into a KafkaError then fails with a SystemError
        (measured with confluent-kafka 2.16, librdkafka 2.16); ``poll()`` raises the fatal
        error once, by itself, and serves the callbacks at the next call.
        """
        producer = self.producer
        try:
            while len(producer) and (left := deadline - time.monotonic()) > 0:
                try:
                    producer.poll(min(0.05, left))
                except KafkaException as e:
                    self.fail(e)  # said already by the lane's failure, or said now
            return len(producer)
        except Exception as e:  # noqa: BLE001 - at shutdown: the reason, not a traceback in its place
            self.fail(e)
            return 0

    def fail(self, error: BaseException) -> None:
        if self.discarded and not self.commits.outlived_timeout():
            # A transaction the broker aborted because this process stood still past its
            # timeout still stops it (below), as it would had the group not noticed first.
            log.debug("discarded lane: %s", error)
            return
        if isinstance(error, KafkaException) and isinstance(error.args[0], KafkaError):
            # A producer call that raised where no caller expected it (e.g. begin_transaction
            # after the broker aborted a timed-out transaction): still one line saying why.
            error = ProduceError(self.commits.kafka_error("?", error.args[0]))
        self._fail(error)

    def progress_for(self, partition: dict[str, Any]) -> Progress:
        pkey = partition_key(partition)
        progress = self.progress.get(pkey)
        if progress is None:
            progress = self.progress[pkey] = Progress(dict(partition))
        return progress

    def in_flight(self) -> int:
        return sum(p.in_flight for p in self.progress.values())

    def on_kafka_error(self, err: KafkaError) -> None:
        """The producer's ``error_cb``: a fatal error (fenced, idempotence broken) stops the worker.

        Without it a fatal error is only logged, and a worker whose records never get an
        answer could wait for them indefinitely. Other errors are transient (librdkafka
        retries); they are logged, as librdkafka does when no error_cb is set.
        """
        if self.stopping or self._worker_stopping():
            return  # stopping already: the lane's failure, if any, is said
        if err.fatal():
            self.fatal = True
            text = self.commits.txn_error(err) if self.settings.exactly_once else idempotent_refusal(err)
            self.fail(ProduceError(text))
        else:  # what librdkafka logs itself when no error_cb is set
            LIBRDKAFKA_TROUBLE.report(err.str())
            RDKAFKA_LOGGER.error("ERROR %s", err.str())

    # ---- produce ----------------------------------------------------------------------

    def released(self, entry: Entry) -> None:
        """A batch is acknowledged (or given up): its records and bytes leave the bounds."""
        self.bounds.released(entry)
        self.records_in_flight -= entry.count
        if not self.records_in_flight:
            self.drained.set()

    def refused(self, entry: Entry, err: KafkaError, msg: Message) -> None:
        """The broker refused a message of ``entry``: a record error goes to the dead-letter
        path, anything else (the connection, the transaction) stops the worker."""
        if err.code() not in RECORD_ERRORS:
            self.fail(ProduceError(self.commits.kafka_error(msg.topic() or "?", err)))
            return
        key, value = msg.key(), msg.value()
        record = self._find(entry, key, value)
        if record is None:  # cannot happen: every message of the batch comes from its records
            self.fail(ProduceError(f"writing to {msg.topic()!r} failed ({err.str()}) for a record not in its batch"))
            return
        self.dead_letters.send(entry.progress, entry, record, key, value, ProduceError(err.str()), counted=True)

    def _find(self, entry: Entry, key: bytes | None, value: bytes | None) -> SourceRecord | None:
        """The record a refused message was made from; the error path only, so a linear search.

        Matched on the framed key and value: identical messages (two tombstones of the same
        key) each get a different one of their records.
        """
        serialize = self.serializer.serialize
        for i, record in enumerate(entry.records or ()):
            if i in entry.dead_lettered or record.tombstone != (value is None):
                continue
            try:
                if serialize(record) == (key, value):
                    entry.dead_lettered.add(i)
                    return record
            except (ConversionError, KeyError):
                continue
        return None

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

    async def submit(self, progress: Progress, batch: Batch) -> None:
        records = batch.records
        try:
            framed = self.serializer.serialize_batch(records)
        except NotPrepared:  # a new schema handle (a table's first batch, a schema change)
            for record in self.serializer.unprepared(records):
                await self._prepare(record)
            framed = self.serializer.serialize_batch(records)
        while self.committing:  # exactly-once: a transaction holds whole batches only
            await self.commit_done.wait()
        size = PAYLOAD_COPIES * framed.payload + RECORD_OVERHEAD * len(records)
        entry = Entry(self, progress, batch.offset, records, size)
        progress.pending.append(entry)
        self.bounds.taken(entry)
        self.records_in_flight += entry.count
        if isinstance(self.commits, TransactionCommits) and (batch.offset is not None or records):
            self.commits.written()
        try:
            await self._produce_all(entry, framed)
        except asyncio.CancelledError:
            # Half produced: what was produced is delivered, but the offset must not cover the rest.
            entry.offset = None
            self.partial_batch = True
            entry.ack()
            raise
        if batch.offset is not None:
            progress.submitted = batch.offset
        entry.ack()  # the hold taken at creation: the batch is complete once its messages are acked

    async def _produce_all(self, entry: Entry, framed: Framed) -> None:
        """Produce the batch in order; when librdkafka's queue is full, wait without blocking the loop.

        The worker's own bounds keep the queue below librdkafka's limits (``producer_config``),
        so the wait is the exception. A half-produced batch is in flight, so an exactly-once
        commit waits for it.
        """
        start = self._enqueue(entry, framed, 0)
        while start < len(framed.keys):
            await asyncio.sleep(QUEUE_FULL_WAIT_S)  # the poll loop serves acks meanwhile
            start = self._enqueue(entry, framed, start)

    def _enqueue(self, entry: Entry, framed: Framed, start: int) -> int:
        """Produce records ``start``... until the queue is full; returns where it stopped.

        Synchronous: no delivery callback runs in between, so counting the batch's messages
        once at the end is the same as counting each one as it goes.
        """
        produce = self.producer.produce
        on_delivery = entry.on_delivery
        records = entry.records
        assert records is not None
        keys, values, headers = framed.keys, framed.values, framed.headers
        dead_letters = self.dead_letters
        i = start
        unconverted = refused = 0  # records that went to the dead-letter path instead
        try:
            for i in range(start, len(keys)):
                key = keys[i]
                if key is None:
                    unconverted += 1  # its dead-letter chunks count themselves
                    dead_letters.send(entry.progress, entry, records[i], None, None, framed.errors[i])
                    continue
                try:
                    if headers is None or headers[i] is None:
                        produce(records[i].topic, values[i], key, on_delivery=on_delivery)
                    else:
                        produce(records[i].topic, values[i], key, on_delivery=on_delivery, headers=headers[i])
                except BufferError:
                    return i
                except KafkaException as e:
                    err = e.args[0]
                    if err.code() not in RECORD_ERRORS:
                        raise ProduceError(self.commits.kafka_error(records[i].topic, err)) from None
                    refused += 1  # counted as this record's message: its first chunk stands in
                    dead_letters.send(entry.progress, entry, records[i], key, values[i], ProduceError(err.str()),
                                      counted=True)
            i = len(keys)
            return i
        finally:
            entry.remaining += i - start - unconverted
            self.bounds.records_produced += i - start - unconverted - refused
            self.kick()

    def kick(self) -> None:
        """Something was produced: wake the poll loop if it waits for work."""
        self._last_produce = time.monotonic()
        self._produced.set()

    def oldest_born(self) -> float | None:
        """When the oldest batch not yet acknowledged was produced (None with none in flight)."""
        oldest: float | None = None
        for progress in self.progress.values():
            if progress.pending:
                born = progress.pending[0].born
                if oldest is None or born < oldest:
                    oldest = born
        return oldest

    async def _poll_loop(self) -> None:
        """Serve delivery callbacks; they run here, on the loop thread, so no locks.

        Event-driven when idle: with nothing queued or in flight (``len(producer) == 0``
        counts unsent messages, requests in flight and unserved delivery reports) it waits
        for the next produce (``kick``), and polls once a second for librdkafka's error and
        log callbacks. While acknowledgements are due it polls every 2 ms; when none came for
        a while (a broker outage) every 50 ms. So an idle lane (a group worker's exactly-once
        lanes) costs one wake-up a second, not five hundred.
        """
        producer = self.producer
        last_served = 0.0
        while True:
            try:
                served = producer.poll(0)
            except KafkaException as e:  # a fatal error: stop, rather than serve no callbacks from now on
                self.fail(ProduceError(self.commits.kafka_error("?", e.args[0])))
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

    async def durable(self, progress: Progress, offset: dict[str, Any]) -> None:
        await self.commits.durable(progress, offset)

    async def quiet(self, pkeys: set[str], deadline: float) -> bool:
        """Wait until the partitions ``pkeys`` have nothing in flight; False at the deadline."""
        while time.monotonic() < deadline:
            if not any(self.progress[k].in_flight for k in pkeys if k in self.progress):
                return True
            await asyncio.sleep(0.005)
        return False

    async def commit_partitions(self, pkeys: set[str], deadline: float) -> None:
        """At-least-once hand-over: write these partitions' offsets and wait until they are stored."""
        commits = self.commits
        assert isinstance(commits, OffsetCommits)
        for k in pkeys:
            progress = self.progress.get(k)
            if progress is not None:
                commits.write(progress)
        while time.monotonic() < deadline:
            waiting = [self.progress[k] for k in pkeys if k in self.progress and
                       (self.progress[k].writing or self.progress[k].dirty)]
            if not waiting:
                break
            for p in waiting:
                commits.write(p)
            await asyncio.sleep(0.005)
        for k in pkeys:
            self.progress.pop(k, None)

    def drop_partitions(self, pkeys: set[str]) -> None:
        for k in pkeys:
            self.progress.pop(k, None)

    async def discard(self) -> None:
        """A lane whose partition was lost (another worker owns it now): drop everything, quickly."""
        self.stopping = True
        self.discarded = True
        for t in self._helpers:
            t.cancel()
        await asyncio.gather(*self._helpers, return_exceptions=True)
        with contextlib.suppress(KafkaException):
            self.producer.purge()
        self._drain(time.monotonic() + 1.0)
        # Its batches never complete now (their reports are ignored above): give their records
        # and bytes back to the worker-wide bounds, or the other lanes' tasks wait for space
        # that never comes.
        for progress in self.progress.values():
            for entry in progress.pending:
                if entry.remaining > 0:
                    entry.remaining = 0
                    entry.records = None
                    self.released(entry)
            progress.pending.clear()
