"""The latest value per key of a compacted topic, read from the beginning and kept current.

``verify`` needs what a compacted topic *means* (one value per key, a tombstone removes
the key) rather than its history, and on a live table it must read on as the bridge keeps
writing; this reader does both with one consumer that stays assigned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from bridge.errors import OffsetStoreError
from bridge.kafka import END_READER_CONFIG, client_config, position
from bridge.task import partition_key

__all__ = ["CompactedView"]


class CompactedView:
    """``apply(key_bytes, value_bytes)`` for every record of ``topic``, in partition order.

    ``read_to_end()`` reads up to where the broker says the end is now (its end-of-partition
    event, or the high watermark on a second call with nothing new); call it again later to
    read what arrived meanwhile.
    """

    def __init__(self, kafka: dict[str, Any], topic: str, apply: Callable[[bytes | None, bytes | None], None],
                 *, read_committed: bool = True) -> None:
        self.topic = topic
        self._apply = apply
        conf = client_config(kafka) | END_READER_CONFIG | {"group.id": f"ddb-kafka-bridge-ops-{partition_key({'t': topic})}"}
        if read_committed:
            conf["isolation.level"] = "read_committed"
        self._consumer = Consumer(conf)
        self._parts: list[int] | None = None
        self.records = 0
        self.position: tuple[int, int] = (-1, -1)

    def _assign(self, timeout_s: float) -> list[int]:
        if self._parts is None:
            try:
                meta = self._consumer.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
            except KafkaException as e:
                raise OffsetStoreError(f"cannot reach Kafka to read {self.topic!r}: {e.args[0].str()}") from None
            if meta is None or meta.error is not None:
                raise OffsetStoreError(f"topic {self.topic!r} does not exist; check the config's name, tables and topic")
            self._parts = sorted(meta.partitions)
            self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._parts])
        return self._parts

    def read_to_end(self, timeout_s: float = 60.0) -> int:
        """Read until every partition is at its end as of now; returns records applied."""
        parts = self._assign(timeout_s)
        deadline = time.monotonic() + timeout_s
        ends: dict[int, int] = {}
        for p in parts:
            try:
                ends[p] = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout_s,
                                                               cached=False)[1]
            except KafkaException as e:
                raise OffsetStoreError(f"cannot read the end of {self.topic!r}: {e.args[0].str()}") from None
        done: set[int] = set()
        applied = 0
        while len(done) < len(parts):
            if time.monotonic() > deadline:
                raise OffsetStoreError(f"topic {self.topic!r} not read to its end within {timeout_s:.0f} s")
            batch = self._consumer.consume(num_messages=1000, timeout=0.2)
            for msg in batch:
                err = msg.error()
                if err is None:
                    self.position = position(msg)  # for apply to name a record it refuses
                    self._apply(msg.key(), msg.value())
                    applied += 1
                elif err.code() == KafkaError._PARTITION_EOF:
                    done.add(position(msg)[0])
                elif not err.retriable():
                    raise OffsetStoreError(f"reading {self.topic!r}: {err.str()}")
            if batch:
                continue
            # Nothing came: a partition whose end event was served by an earlier call is done
            # once it is at its watermark (kept reading past it until a poll came back empty,
            # since tansu reports the watermark short of a multi-record batch).
            for tp in self._consumer.position([TopicPartition(self.topic, p) for p in parts]):
                end = ends[tp.partition]
                if (tp.offset >= 0 and tp.offset >= end) or (tp.offset < 0 and end == 0):
                    done.add(tp.partition)
        self.records += applied
        return applied

    def close(self) -> None:
        self._consumer.close()
