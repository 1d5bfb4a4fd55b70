"""Records that cannot be written go to the dead-letter topic, never dropped (errors.tolerance: all).

A record refused for its size would be refused by the dead-letter topic too, so its value
is split into chunks (same key, so same partition, in order). Dead-letter messages count
in their batch: the batch's offset is not committed until they are acknowledged too. With
``errors.tolerance: none`` (no dead-letter topic) the worker stops instead, and the offset
does not move past the record.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Message

from bridge.errors import BridgeError, ConversionError, ProduceError
from bridge.lane.accounting import Entry, Progress
from bridge.lane.port import LanePort
from bridge.task import SourceRecord, UnreadableRecord

__all__ = ["DeadLetters"]

log = logging.getLogger(__name__)

_DLQ_OVERHEAD = 8 * 1024  # headers and record framing, kept free below message.max.bytes
QUEUE_FULL_WAIT_S = 0.05

_Headers = list[tuple[str, str | bytes | None]]
_Waiting = tuple[str, bytes | None, bytes | None, _Headers, Callable[[KafkaError | None, Message], None]]


class DeadLetters:
    """The dead-letter path of one producer lane (so its messages share the lane's transaction)."""

    def __init__(self, lane: LanePort) -> None:
        self.lane = lane
        # Dead-letter messages waiting for room in librdkafka's queue, in order (see _send).
        self._waiting: deque[_Waiting] = deque()
        self._wake = asyncio.Event()

    def send(
        self,
        progress: Progress,
        entry: Entry,
        record: SourceRecord,
        key: bytes | None,
        value: bytes | None,
        error: BridgeError,
        *,
        counted: bool = False,
    ) -> None:
        """Send a record that cannot be written to the dead-letter topic, or stop the worker."""
        lane = self.lane
        settings = lane.settings
        dlq = settings.dead_letter_topic
        if dlq is None:
            if not counted:
                entry.remaining += 1  # never acknowledged: the batch's offset must not move past it
            fix = "; errors.tolerance: all sends such records to the dead-letter topic instead"
            lane.fail(type(error)(f"record {record.position} cannot be written: {error}"
                                  f"{fix if isinstance(error, ConversionError) else ''}"))
            return
        headers: _Headers = [
            ("__connect.errors.topic", record.topic),
            ("__connect.errors.connector.name", settings.connector_name),
            ("__connect.errors.exception.class.name", type(error).__name__),
            ("__connect.errors.exception.message", str(error)[:2000]),
            ("__bridge.source.partition", json.dumps(progress.partition, sort_keys=True)),
            ("__bridge.source.position", json.dumps(record.position, sort_keys=True, default=str)),
            *getattr(record, "error_headers", ()),  # e.g. a user transform's exception (bridge.transforms)
        ]
        if value is None and not record.tombstone:
            # The value never serialized: keep the source record itself, as JSON.
            kept = (
                {"record": record.raw} if isinstance(record, UnreadableRecord)
                else record.schema.dead_letter_value(record)
            )
            value = json.dumps(kept, default=str).encode()
        room = max(1024, settings.max_message_bytes - _DLQ_OVERHEAD - len(key or b""))
        chunks: list[bytes | None] = [value[i : i + room] for i in range(0, len(value), room)] if value else [value]
        entry.remaining += len(chunks) - (1 if counted else 0)
        bounds = lane.bounds

        def on_delivery(first: bool) -> Callable[[KafkaError | None, Message], None]:
            def done(err: KafkaError | None, msg: Message) -> None:
                if err is not None:
                    lane.fail(ProduceError(f"dead-letter topic {dlq!r} refused a record too: {err.str()}"))
                    return
                if first:
                    bounds.records_dead_lettered += 1
                    log.warning("record sent to dead-letter topic %s: %s", dlq, error)
                entry.ack()

            return done

        for i, chunk in enumerate(chunks, 1):
            h = headers + ([("__bridge.chunk", str(i)), ("__bridge.chunks", str(len(chunks)))] if len(chunks) > 1 else [])
            self._waiting.append((dlq, chunk, key, h, on_delivery(i == 1)))
        self._send()

    def _send(self) -> None:
        """Produce the waiting dead-letter messages in order, as far as librdkafka's queue takes them.

        Called where waiting is not possible (inside a batch being enqueued, inside a delivery
        callback), so a full queue leaves the rest to ``run`` instead of raising; they count
        in their batch, which is not complete (and its offset not written) until they are
        acknowledged.
        """
        producer = self.lane.producer
        while self._waiting:
            topic, value, key, headers, on_delivery = self._waiting[0]
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
            except BufferError:
                self._wake.set()
                return
            except KafkaException as e:
                self._waiting.clear()
                self.lane.fail(ProduceError(f"dead-letter topic {topic!r} refused a record too: {e.args[0].str()}"))
                return
            self._waiting.popleft()
            self.lane.kick()

    async def run(self) -> None:
        """Retry the messages a full queue left waiting; the lane's poll loop serves acks meanwhile."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                await asyncio.sleep(QUEUE_FULL_WAIT_S)
                self._send()
