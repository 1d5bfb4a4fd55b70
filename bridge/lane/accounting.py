"""What is in flight: per batch (``Entry``), per source partition (``Progress``), per worker (``Bounds``).

An offset may be written only when every record it covers, and every record before it
from the same source partition, has been acknowledged; ``Progress.advance`` is where that
rule lives. ``Bounds`` holds the worker-wide backpressure: readers wait while the worker
holds too many records or bytes, so a slow broker stops reading instead of growing memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message

from bridge.settings import WorkerSettings
from bridge.task import SourceRecord

__all__ = ["PAYLOAD_COPIES", "RECORD_ERRORS", "RECORD_OVERHEAD", "Bounds", "DeliverySink", "Entry", "Progress"]

# Errors that concern one record, not the connection: these may go to the dead-letter topic.
RECORD_ERRORS = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.INVALID_MSG,
    KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE,
}

# What one in-flight record costs beyond its payload, at most: a SourceRecord with its key and
# source dicts (~1.6 KB for stream records built in Python; the C transcoder's records take
# ~0.2 KB) and librdkafka's message (~0.4 KB). Its payload is held twice: the record's Avro
# bodies (framed in place for the C transcoder's) and librdkafka's copy.
RECORD_OVERHEAD = 2048
PAYLOAD_COPIES = 2


class DeliverySink(Protocol):
    """Where a batch reports its end: all acknowledged (``released``) or a message refused.

    The producer lane is the sink; a batch knows it only through these two calls, so this
    module stays below the lane, the commits and the dead letters.
    """

    def released(self, entry: Entry) -> None: ...

    def refused(self, entry: Entry, err: KafkaError, msg: Message) -> None: ...


class Entry:
    """One batch from produce to acknowledgement, and the delivery callback of all its records.

    One object per batch instead of a closure per record: per record in flight that saves
    nine GC-tracked objects (closure and cells), and the callback does two attribute updates.
    ``remaining`` counts the messages not yet acknowledged, plus one while the batch is still
    being produced (so that early acks cannot complete a half-produced batch). When it
    reaches zero the batch's offset may be committed and its records and bytes are released.
    The records stay referenced until then because the dead-letter path needs the source
    position of a record the broker refuses.
    """

    __slots__ = ("born", "count", "dead_lettered", "offset", "progress", "records", "remaining", "sink", "size")

    def __init__(
        self, sink: DeliverySink, progress: Progress, offset: dict[str, Any] | None, records: list[SourceRecord],
        size: int,
    ) -> None:
        self.remaining = 1
        self.offset = offset
        self.progress = progress
        self.sink = sink
        self.records: list[SourceRecord] | None = records
        self.count = len(records)
        self.size = size
        self.dead_lettered: set[int] = set()
        self.born = time.monotonic()  # for the stall watch: how long the oldest record has waited

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.sink.refused(self, err, msg)
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
        self.sink.released(self)
        self.progress.advance()


@dataclass(slots=True)
class Progress:
    """Acknowledgement bookkeeping for one source partition."""

    partition: dict[str, Any]
    pending: deque[Entry] = field(default_factory=deque)
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

    def resolve_waiters(self, durable: dict[str, Any] | None) -> None:
        """Wake whoever waits for ``durable`` (or an equal offset) to be stored."""
        still = []
        for want, fut in self.durable_waiters:
            if durable is not None and (want is durable or want == durable):
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((want, fut))
        self.durable_waiters = still


class Bounds:
    """The worker-wide in-flight bounds and counters, shared by every producer lane."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.records_in_flight = 0  # per batch: released when a batch is fully acked
        self.buffered_bytes = 0
        self.records_produced = 0
        self.records_dead_lettered = 0
        self.space = asyncio.Event()

    def full(self, progress: Progress) -> bool:
        s = self.settings
        return (
            progress.in_flight >= s.max_in_flight_records
            or self.records_in_flight >= s.max_in_flight_records_total
            or self.buffered_bytes >= s.buffer_max_bytes
        )

    async def wait_for_space(self, progress: Progress) -> None:
        """Hold the task's next poll while its records, or the worker's, are at a bound.

        Checked before each poll, so a task may go over by one batch.
        """
        while self.full(progress):
            self.space.clear()
            await self.space.wait()

    def taken(self, entry: Entry) -> None:
        self.records_in_flight += entry.count
        self.buffered_bytes += entry.size
        entry.progress.in_flight += entry.count

    def released(self, entry: Entry) -> None:
        self.records_in_flight -= entry.count
        self.buffered_bytes -= entry.size
        entry.progress.in_flight -= entry.count
        self.space.set()
