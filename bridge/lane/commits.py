"""Offset commits for one producer lane: plain offset writes, or transactions (exactly-once).

At-least-once (``OffsetCommits``): a partition's offset is produced to the offsets topic
once every record it covers is acknowledged (``Progress.advance``); the store learns it
only when that write is acknowledged too.

Exactly-once (``TransactionCommits``): every flush interval the lane holds new batches,
waits until what it produced is acknowledged, adds the offsets of everything submitted to
the open transaction and commits it. Nothing is written outside a transaction, and a
producer with the same transactional id (a newer owner of the lane) fences this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from bridge.errors import BridgeError, ProduceError
from bridge.lane.accounting import Progress
from bridge.lane.port import LanePort

__all__ = ["Commits", "OffsetCommits", "TransactionCommits"]

log = logging.getLogger(__name__)

#: How long a lane keeps asking for its producer id while the broker says "not yet".
INIT_TRANSACTIONS_WAIT_S = 120.0
#: "Not yet" from a broker whose transaction coordinator is loading, moving or away.
_NOT_READY = {KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.NOT_COORDINATOR,
              KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
              KafkaError._ALL_BROKERS_DOWN, KafkaError.CONCURRENT_TRANSACTIONS}

_TXN_FAILED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT, KafkaError._STATE}
_FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


class Commits:
    """What both commit styles share: the flush loop, waiting for durability, error texts."""

    exactly_once = False
    dirty = False  # exactly-once: the open transaction holds records or offsets

    def __init__(self, lane: LanePort) -> None:
        self.lane = lane
        self.flush_now = asyncio.Event()
        self.txn_began = time.monotonic()

    async def start(self) -> None:
        """Before the first record: nothing for plain offset writes."""

    def commit(self) -> None:
        raise NotImplementedError

    async def finish(self, deadline: float, failed: bool) -> None:
        """At shutdown (or when the lane is handed over): commit what is acknowledged."""
        raise NotImplementedError

    async def durable(self, progress: Progress, offset: dict[str, Any]) -> None:
        """Wait until ``offset`` is stored in the offsets topic (acknowledged, or committed)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        progress.durable_waiters.append((offset, fut))
        self.flush_now.set()
        await fut

    async def before_commit(self) -> None:
        """Exactly-once holds new batches and drains here; plain writes need nothing."""

    async def run(self) -> None:
        lane = self.lane
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush_now.wait(), lane.settings.flush_interval_s)
            self.flush_now.clear()
            try:
                await self.before_commit()
                self.commit()
            except Exception as e:  # noqa: BLE001 - a dead flush loop would stop commits unnoticed
                lane.fail(e)
                return
            finally:
                lane.committing = False
                lane.commit_done.set()

    # ---- error texts ----------------------------------------------------------------

    def kafka_error(self, topic: str, err: KafkaError) -> str:
        if self.exactly_once and (err.code() in _FENCED or err.code() == KafkaError._FATAL):
            return self.txn_error(err)
        if err.code() in _FENCED or err.fatal():
            return idempotent_refusal(err)
        if self.exactly_once and err.code() in _TXN_FAILED:
            # librdkafka purges a failed transaction's records; the record's error hides why.
            timed_out = self._txn_timed_out(err)
            if timed_out:
                return timed_out
            return (
                f"transaction failed ({err.str()}): another bridge process named "
                f"{self.lane.settings.connector_name!r} took over (fenced), or the broker refused the transaction; "
                f"a restart resumes from the last commit"
            )
        return f"writing to {topic!r} failed: {err.str()}"

    def outlived_timeout(self) -> bool:
        """Exactly-once: the open transaction is older than ``transaction.timeout.ms``, so the
        broker has aborted it (or will) while this process counted on it."""
        return self.exactly_once and self.dirty and \
            time.monotonic() - self.txn_began > self.lane.settings.transaction_timeout_s

    def _txn_timed_out(self, err: KafkaError) -> str | None:
        """The reason when the open transaction outlived ``transaction.timeout.ms``: the process
        was frozen (SIGSTOP, a VM pause) and the broker aborted the transaction, which also
        bumps the producer's epoch, so librdkafka reports it like a fence."""
        if not self.outlived_timeout():
            return None
        open_s = time.monotonic() - self.txn_began
        timeout_s = self.lane.settings.transaction_timeout_s
        return (
            f"transaction aborted by the broker: it stayed open {open_s:.0f} s, longer than "
            f"transaction.timeout.ms={timeout_s * 1000:.0f} (was the process paused?); "
            f"this one stops and a restart resumes from the last commit ({err.str()})"
        )

    def txn_error(self, err: KafkaError) -> str:
        timed_out = self._txn_timed_out(err)
        if timed_out:
            return timed_out
        name = self.lane.settings.connector_name
        if err.code() in _FENCED:
            return f"fenced: another bridge process named {name!r} took over (same transactional.id); this one stops"
        if err.code() == KafkaError._FATAL:
            # librdkafka reports fencing on produce() only as a generic fatal error.
            return (
                f"transactional producer failed fatally ({err.str()}), most likely fenced: another bridge "
                f"process named {name!r} took over (same transactional.id); this one stops"
            )
        return f"transaction failed and was aborted ({err.str()}); a restart resumes from the last commit"


def idempotent_refusal(err: KafkaError) -> str:
    """At-least-once has no transactional id, so a fence is never another bridge: the broker
    no longer knows this producer's id or epoch (it lost its state: a restart without its
    data, an unclean leader election, a re-created topic) and refuses its writes for good."""
    # The broker's own text for a fence speaks of "a newer producer with the same
    # transactionalId", which is never the case here: name the code instead of quoting it.
    said = f"{err.name()}, not a second process: at-least-once producers have no transactional id" \
        if err.code() in _FENCED else err.str()
    return (
        f"Kafka refused this producer for good ({said}): the broker lost or reset its producer "
        f"state (a broker restarted without its data, an unclean leader election or a re-created topic); "
        f"this one stops and a restart resumes from the last commit (changes since may arrive twice, none is lost)"
    )


class OffsetCommits(Commits):
    """At-least-once: each partition's offset is written once its records are acknowledged."""

    def write(self, progress: Progress) -> None:
        if not progress.dirty or progress.writing:
            return
        lane = self.lane
        if lane.held():
            # Paused past the group session (bridge.pause_guard): the unit may be someone
            # else's now, further on. It stays dirty: written once the group has answered, or
            # forgotten with the unit if it was lost.
            return
        offsets = lane.offsets
        offset = progress.committable
        progress.dirty = False
        progress.writing = True
        key, value = offsets.encode(progress.partition, offset)

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            progress.writing = False
            if err is not None:
                lane.fail(ProduceError(f"writing offsets to {offsets.topic!r} failed: {err.str()}"))
                return
            offsets.stored(progress.partition, offset)
            progress.resolve_waiters(offset)
            if progress.dirty:
                self.flush_now.set()

        try:
            lane.producer.produce(offsets.topic, value, key, on_delivery=on_delivery)
        except (KafkaException, BufferError) as e:
            progress.writing = False
            progress.dirty = True
            log.warning("offset write deferred: %s", e)
            return
        lane.kick()

    def commit(self) -> None:
        for progress in list(self.lane.progress.values()):
            self.write(progress)

    async def finish(self, deadline: float, failed: bool) -> None:
        self.commit()
        if self.lane.held():
            unwritten = sum(1 for p in self.lane.progress.values() if p.dirty)
            if unwritten:
                log.warning("shutdown: offsets of %d partitions not written: this process was paused past the group "
                            "session and the group has not answered yet; a restart reads them again", unwritten)
        while any(p.writing for p in self.lane.progress.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


class TransactionCommits(Commits):
    """Exactly-once: records and the offsets that cover them, committed in one transaction."""

    exactly_once = True

    def __init__(self, lane: LanePort) -> None:
        super().__init__(lane)
        self.dirty = False

    async def start(self) -> None:
        """``init_transactions`` fences any older producer with this lane's transactional id and
        aborts its open transaction; a blocking call, so it runs off the loop."""
        producer = self.lane.producer
        # Each call waits at most the transaction timeout; a retriable refusal (the broker's
        # transaction coordinator still loading its state after a start or a restart, or not
        # reachable yet) is asked again, as librdkafka means it, for a while longer.
        per_call = self.lane.settings.transaction_timeout_s
        deadline = time.monotonic() + max(INIT_TRANSACTIONS_WAIT_S, per_call)
        while True:
            try:
                await asyncio.to_thread(producer.init_transactions, max(1.0, min(per_call, deadline - time.monotonic())))
                producer.begin_transaction()
                self.txn_began = time.monotonic()
                return
            except KafkaException as e:
                err = e.args[0]
                retry = err.retriable() or (not err.fatal() and err.code() in _NOT_READY)
                if not retry or time.monotonic() >= deadline:
                    raise ProduceError(f"cannot start a transaction: {err.str()}") from None
                log.info("transactional producer not ready yet (%s); asking again", err.str())
                await asyncio.sleep(0.5)

    def written(self) -> None:
        """Something goes into the open transaction: the broker's timeout for it runs from its
        first write (``begin_transaction`` is local), so an idle lane's is counted from here."""
        if not self.dirty:
            self.dirty = True
            self.txn_began = time.monotonic()

    async def before_commit(self) -> None:
        if self.dirty:
            await self._quiesce()

    async def _quiesce(self) -> None:
        """Hold new batches and wait until every record this lane produced is acknowledged.

        ``commit_transaction`` blocks the loop while it flushes; with nothing left in flight
        it does not wait on the broker, and a broker that stops answering (or a fence) is
        met here, where the loop still serves callbacks and errors, instead of inside it.
        """
        lane = self.lane
        lane.committing = True
        lane.commit_done.clear()
        while lane.records_in_flight:
            lane.drained.clear()
            await lane.drained.wait()

    def commit(self) -> None:
        try:
            self._commit_transaction()
        except BridgeError as e:
            self.lane.fail(e)

    def _commit_transaction(self) -> None:
        """Offsets of everything produced so far, then commit, in one go.

        Runs on the loop thread on purpose: commit flushes and serves delivery callbacks
        here, and no record can be produced into the transaction while it commits.
        """
        if not self.dirty:
            return
        lane = self.lane
        producer, offsets = lane.producer, lane.offsets
        for progress in lane.progress.values():
            if progress.submitted is not None and progress.submitted is not progress.committable_txn:
                key, value = offsets.encode(progress.partition, progress.submitted)
                try:
                    producer.produce(offsets.topic, value, key)
                except BufferError:
                    return  # queue full: commit at the next flush (offsets in the txn so far stay valid)
                except KafkaException as e:
                    # e.g. fenced: must stop the worker, not end the flush loop unnoticed
                    raise ProduceError(self.kafka_error(offsets.topic, e.args[0])) from None
        timeout = lane.settings.transaction_timeout_s
        try:
            producer.commit_transaction(timeout)
        except KafkaException as e:
            err = e.args[0]
            if err.txn_requires_abort():
                with contextlib.suppress(KafkaException):
                    producer.abort_transaction(timeout)
            raise ProduceError(self.txn_error(err)) from None
        self.dirty = False
        for progress in lane.progress.values():
            if progress.submitted is not None and progress.submitted is not progress.committable_txn:
                progress.committable_txn = progress.submitted
                offsets.stored(progress.partition, progress.submitted)
            progress.resolve_waiters(progress.committable_txn)
        try:
            producer.begin_transaction()
        except KafkaException as e:  # fenced or aborted meanwhile: stop with the reason
            raise ProduceError(self.txn_error(e.args[0])) from None
        self.txn_began = time.monotonic()

    async def finish(self, deadline: float, failed: bool) -> None:
        lane = self.lane
        if not failed and not lane.partial_batch:
            self.commit()
            return
        # Records of an aborted (or fenced) transaction will never count: drop them, or
        # the abort (and the flush after it) waits out the timeout for their acknowledgements.
        with contextlib.suppress(KafkaException):
            lane.producer.purge()
        if not lane.fatal:  # a fenced producer cannot abort; it would wait out the timeout
            with contextlib.suppress(KafkaException):
                lane.producer.abort_transaction(max(1.0, deadline - time.monotonic()))
