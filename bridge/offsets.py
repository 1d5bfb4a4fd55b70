"""Source offsets in a compacted topic, in Kafka Connect's layout.

Key: JSON ``["<connector>", {<source partition>}]``; value: JSON offset, or null to delete.
A stored offset means "resume after this" and is written only after every record it
covers has been acknowledged (the worker guarantees that; this module only stores).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from bridge.errors import OffsetStoreError
from bridge.kafka import client_config
from bridge.task import partition_key

__all__ = ["OffsetStore", "encode_offset_key"]

log = logging.getLogger(__name__)


def encode_offset_key(connector: str, partition: Mapping[str, Any]) -> bytes:
    return json.dumps([connector, dict(partition)], sort_keys=True, separators=(",", ":")).encode()


class OffsetStore:
    """The connector's committed offsets, loaded once at start and kept current on write."""

    def __init__(self, kafka: dict[str, Any], topic: str, connector: str) -> None:
        self.topic = topic
        self.connector = connector
        self._kafka = kafka
        self._offsets: dict[str, dict[str, Any]] = {}

    def load(self, timeout_s: float = 30.0) -> int:
        """Read the topic up to its end at start; returns how many offsets this connector has.

        Stops once every partition is read past the end offset it had when loading began,
        as Kafka Connect does, so another process writing offsets meanwhile cannot keep the
        load going forever. It also reads on until a poll comes back empty or a second has
        passed: the local broker (tansu) reports the end short of a multi-record batch's
        end, and stopping at it would lose the newest offsets.
        """
        conf = client_config(self._kafka) | {
            "group.id": f"{self.connector}-offset-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
        consumer = Consumer(conf)
        try:
            meta = consumer.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
            if meta is None or meta.error is not None:
                return 0
            parts = [TopicPartition(self.topic, p, 0) for p in meta.partitions]
            ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=timeout_s)[1] for tp in parts}
            consumer.assign(parts)
            deadline = time.monotonic() + timeout_s
            reached: float | None = None
            while True:
                msg = consumer.poll(0.5)
                if msg is None:
                    break
                if msg.error():
                    raise OffsetStoreError(f"reading offsets topic {self.topic!r}: {msg.error().str()}")
                self._apply(msg.key(), msg.value())
                now = time.monotonic()
                if reached is None and all(tp.offset >= ends[tp.partition] for tp in consumer.position(parts)):
                    reached = now
                if (reached is not None and now - reached > 1.0) or now > deadline:
                    if reached is None:
                        log.warning("offsets topic %s still growing after %.0f s; using what was read", self.topic, timeout_s)
                    break
        except KafkaException as e:
            raise OffsetStoreError(f"reading offsets topic {self.topic!r}: {e}") from None
        finally:
            consumer.close()
        log.info("loaded %d stored offsets from %s", len(self._offsets), self.topic)
        return len(self._offsets)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            name, partition = json.loads(key or b"null")
        except (ValueError, TypeError):
            log.warning("ignoring offset record with unreadable key %r", key)
            return
        if name != self.connector:
            return
        pkey = partition_key(partition)
        if value is None:
            self._offsets.pop(pkey, None)
        else:
            self._offsets[pkey] = json.loads(value)

    def offset(self, partition: Mapping[str, Any]) -> dict[str, Any] | None:
        return self._offsets.get(partition_key(partition))

    def partitions(self) -> list[dict[str, Any]]:
        return [json.loads(k) for k in self._offsets]

    def encode(self, partition: Mapping[str, Any], offset: Mapping[str, Any] | None) -> tuple[bytes, bytes | None]:
        """Key and value bytes of an offset record, for the worker to produce."""
        value = None if offset is None else json.dumps(offset, sort_keys=True, separators=(",", ":")).encode()
        return encode_offset_key(self.connector, partition), value

    def stored(self, partition: Mapping[str, Any], offset: Mapping[str, Any] | None) -> None:
        """Record that an offset write was acknowledged."""
        pkey = partition_key(partition)
        if offset is None:
            self._offsets.pop(pkey, None)
        else:
            self._offsets[pkey] = dict(offset)
