"""Source offsets in a compacted topic, in Kafka Connect's layout.

Key: JSON ``["<connector>", {<source partition>}]``; value: JSON offset, or null to delete.
A stored offset means "resume after this" and is written only after every record it
covers has been acknowledged (the worker guarantees that; this module only stores).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException

from bridge.errors import OffsetStoreError
from bridge.kafka import END_READER_CONFIG, client_config, read_to_end
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

        The end is where the broker says so (``read_to_end``): past the last batch on every
        broker, at the last stable offset for this ``read_committed`` reader, so a crashed
        exactly-once writer's open transaction neither holds up the load nor counts.
        """
        conf = client_config(self._kafka) | END_READER_CONFIG | {
            "group.id": f"{self.connector}-offset-reader",
            "isolation.level": "read_committed",
        }
        consumer = Consumer(conf)
        try:
            read_to_end(consumer, self.topic, lambda m: self._apply(m.key(), m.value()), timeout_s=timeout_s)
        except KafkaException as e:
            raise OffsetStoreError(f"reading offsets topic {self.topic!r}: {e}") from None
        except TimeoutError as e:
            raise OffsetStoreError(f"reading offsets topic: {e}; check that the brokers are up") from None
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
