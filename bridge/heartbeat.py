"""Heartbeats (``heartbeat.interval_ms``, after Debezium's ``heartbeat.interval.ms``).

A task that read nothing for the interval hands the runtime a heartbeat record with its
(empty) batch: it goes to the heartbeat topic keyed by the source partition, is
acknowledged, and the batch's offset is committed with it. Consumers of the heartbeat topic
tell an idle source (heartbeats keep coming) from a stuck one (they stop), and the offsets
of idle partitions are written again, so their commit time says the reader is alive.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from typing import Any

import fastavro

from bridge.task import Batch, SourceRecord, partition_key

__all__ = ["HEARTBEAT_HANDLE", "HEARTBEAT_KEY_SCHEMA", "HEARTBEAT_VALUE_SCHEMA", "Heartbeats", "TaskBeat"]

_NS = "io.ddbkafka.bridge"
HEARTBEAT_KEY_SCHEMA = json.dumps({"type": "record", "name": "HeartbeatKey", "namespace": _NS, "fields": [
    {"name": "partition", "type": "string", "doc": "the source partition, as canonical JSON"}]},
    separators=(",", ":"))
HEARTBEAT_VALUE_SCHEMA = json.dumps({"type": "record", "name": "Heartbeat", "namespace": _NS, "fields": [
    {"name": "connector", "type": "string", "doc": "the bridge's name"},
    {"name": "partition", "type": "string", "doc": "the source partition, as canonical JSON"},
    {"name": "ts_ms", "type": "long", "doc": "when the heartbeat was made (epoch ms)"},
    {"name": "idle_ms", "type": "long", "doc": "how long the partition's reader has read nothing"},
]}, separators=(",", ":"))
_KEY = fastavro.parse_schema(json.loads(HEARTBEAT_KEY_SCHEMA))
_VALUE = fastavro.parse_schema(json.loads(HEARTBEAT_VALUE_SCHEMA))


def _write(schema: Any, data: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, data)
    return buf.getvalue()


@dataclass(frozen=True, eq=False)
class _HeartbeatSchema:
    key_schema: str = HEARTBEAT_KEY_SCHEMA
    value_schema: str = HEARTBEAT_VALUE_SCHEMA
    strategy: Any = "TopicNameStrategy"
    headers: Any = None

    def encode_key(self, record: SourceRecord) -> bytes:
        return _write(_KEY, record.key)

    def encode_value(self, record: SourceRecord) -> bytes:
        return _write(_VALUE, record.value)

    def dead_letter_value(self, record: SourceRecord) -> Any:
        return record.value


HEARTBEAT_HANDLE = _HeartbeatSchema()  # the start-up subject check names it too


class Heartbeats:
    """Heartbeats of one worker: ``task(partition)`` gives a task's own clock."""

    def __init__(self, topic: str, interval_s: float, connector_name: str) -> None:
        self.topic, self.interval_s, self.connector_name = topic, interval_s, connector_name

    def task(self, partition: dict[str, Any]) -> TaskBeat:
        return TaskBeat(self, partition)


class TaskBeat:
    """Adds a heartbeat to a task's batch when it has read nothing for the interval."""

    def __init__(self, beats: Heartbeats, partition: dict[str, Any]) -> None:
        self.beats, self.pkey = beats, partition_key(partition)
        # When it last read a record, and last beat: idle_ms counts from the read (a reader idle
        # for three intervals says so), the next beat an interval after the later of the two.
        self.last_read = self.last_beat = time.monotonic()

    def on_batch(self, batch: Batch, read: bool | None = None) -> None:
        """``read``: the task read records into this batch (decided before the transforms: a
        reader whose records were all filtered out is not idle); default: the batch has records."""
        now = time.monotonic()
        if (bool(batch.records) if read is None else read) or batch.final:
            self.last_read = now
            return
        if now - max(self.last_read, self.last_beat) < self.beats.interval_s:
            return
        self.last_beat = now
        ts_ms = int(time.time() * 1000)
        value = {"connector": self.beats.connector_name, "partition": self.pkey, "ts_ms": ts_ms,
                 "idle_ms": int((now - self.last_read) * 1000)}
        batch.records = [SourceRecord(self.beats.topic, HEARTBEAT_HANDLE, {"partition": self.pkey}, value,
                                      {"heartbeat": self.pkey}, ts_ms)]
