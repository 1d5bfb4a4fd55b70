"""The seam between the runtime and the connectors, after Kafka Connect's SourceTask.

A connector turns a table's configuration into tasks (a shard reader, a scan segment, an
export file). Each task owns one *source partition* and hands the runtime batches of
records together with the *source offset* that covers them. The runtime serializes and
produces the records and writes the offset only once every record up to it has been
acknowledged by the broker: a stored offset means "resume after this".

Records are schema-neutral: key and value are data in the terms of the record's schema
handle, which the connector owns; the runtime hands them to the converter
(``bridge.serde``) and never interprets them. The contract is in ``bridge/serde/converter.py``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

__all__ = [
    "Batch",
    "KafkaHeaders",
    "OffsetReader",
    "RecordSchema",
    "RecordTransforms",
    "STRATEGIES",
    "SourceConnector",
    "SourceRecord",
    "SourceTask",
    "Strategy",
    "TaskRuntime",
    "UnreadableRecord",
    "partition_id",
    "partition_key",
]


Strategy = Literal["TopicNameStrategy", "RecordNameStrategy", "TopicRecordNameStrategy"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
# Kafka headers as the producer takes them (a value may also be text or None; ours are bytes).
KafkaHeaders = list[tuple[str, str | bytes | None]]


class RecordSchema(Protocol):
    """A record's key and value schemas and the writers of its data; the contract is the
    docstring of ``bridge/serde/converter.py``."""

    @property
    def key_schema(self) -> str: ...

    @property
    def value_schema(self) -> str: ...

    @property
    def strategy(self) -> Strategy: ...

    @property
    def headers(self) -> Callable[[SourceRecord], KafkaHeaders] | None: ...

    def encode_key(self, record: SourceRecord) -> bytes: ...

    def encode_value(self, record: SourceRecord) -> bytes: ...

    def dead_letter_value(self, record: SourceRecord) -> Any: ...


def partition_key(partition: Mapping[str, Any]) -> str:
    """Canonical text of a source partition, used for dict keys and log lines."""
    return json.dumps(partition, sort_keys=True, separators=(",", ":"))


def partition_id(partition: Mapping[str, Any]) -> str | None:
    """A partition's own id: its one text value besides the table (a stream partition's), or None."""
    rest = [v for k, v in partition.items() if k != "table"]
    return rest[0] if len(rest) == 1 and isinstance(rest[0], str) else None


@dataclass(slots=True)
class SourceRecord:
    """One record before conversion; the fields are described in ``bridge/serde/converter.py``.

    A connector may hand the runtime its own record type with these same fields, read-only
    (the DynamoDB C transcoder's records do): runtime code reads fields and never assigns them.
    """

    topic: str
    schema: RecordSchema
    key: Any
    value: Any
    position: dict[str, Any]
    ts_ms: int
    tombstone: bool = False  # a null value after the key's delete
    encoded_key: bytes | None = None
    encoded_value: bytes | None = None


@dataclass(slots=True)
class UnreadableRecord(SourceRecord):
    """A source record the connector could not read (not an object, no key, an unknown event).

    It still travels as a record, so that it takes the way every record that does not convert
    takes: the serializer raises ``reason`` as a ConversionError, and the record goes to the
    dead-letter topic (``errors.tolerance: all``) with ``raw``, what the source gave, as its
    value; or the worker stops with one line naming its ``position``. Never dropped.
    """

    reason: str = ""
    raw: Any = None


@dataclass(slots=True)
class Batch:
    """Records from one task plus the offset that covers all of them.

    ``final`` marks the task's end (shard end, segment done); the runtime writes its offset,
    waits until it is durable, and then tells the connector, so that lineage can move on.
    """

    records: list[SourceRecord]
    offset: dict[str, Any] | None
    final: bool = False
    # Why the task ended, when it ended on its own (e.g. "shard-end", "trimmed").
    reason: str | None = None
    # ``caught_up``: the task read its source to the end for now; ``source_ms``: when its newest
    # record happened at the source (epoch ms), for the lag the status reports.
    extra: dict[str, Any] = field(default_factory=dict)


class SourceTask(ABC):
    """One unit of reading; the runtime calls ``poll`` until it returns a final batch."""

    partition: dict[str, Any]

    @abstractmethod
    async def poll(self) -> Batch:
        """Return the next batch; may be empty; should wait (not spin) when idle."""

    async def close(self) -> None:
        """Release clients; called once when the task stops for any reason."""


class OffsetReader(Protocol):
    def offset(self, partition: Mapping[str, Any]) -> dict[str, Any] | None: ...


class TaskRuntime(Protocol):
    """What a connector may ask of the runtime."""

    offsets: OffsetReader

    def start_task(self, task: SourceTask) -> None:
        """Run ``task`` until it ends; the connector hears of the end via ``task_finished``."""

    def running(self, partition: Mapping[str, Any]) -> bool: ...

    def owns(self, partition: Mapping[str, Any]) -> bool:
        """Whether this worker reads ``partition`` now: workers of one name share the source
        partitions through Kafka's group protocol (``bridge.group``); alone, a worker owns all."""

    def add_connector(self, connector: SourceConnector) -> None:
        """Run another connector beside this one, until it is done or the worker stops."""


class RecordTransforms(Protocol):
    async def apply(self, records: list[SourceRecord]) -> list[SourceRecord]: ...


class SourceConnector(ABC):
    """Turns one table's configuration into tasks and follows change (new shards, segments)."""

    name: str
    # The source's single-message transforms (``bridge.transforms.TransformStage``), applied to
    # each batch before conversion; None: records go as the connector made them.
    transforms: RecordTransforms | None = None

    @abstractmethod
    async def validate(self) -> None:
        """Check the source exists and is usable; raise ConfigError with the fix otherwise."""

    @abstractmethod
    async def run(self, runtime: TaskRuntime) -> None:
        """Start tasks and keep following the source until cancelled or done."""

    def task_finished(self, task: SourceTask, batch: Batch) -> None:
        """Called once a task's final offset is durable."""

    def task_stopped(self, task: SourceTask) -> None:
        """Called when the runtime stopped a task before its end (its partition moved to another
        worker); its offsets are committed. The connector may start it again if it comes back."""

    async def close(self) -> None:
        """Release clients."""
