"""The envelope shape (``value: {shape: envelope}``) as a schema handle of the converter seam.

The value is ``{op, before, after, source, ts_ms}`` with images as ``map<AttributeValue>``
(``connectors/dynamodb/schemas/``); the key is the table's key record. The handle is what the
runtime sees (``bridge.serde.converter.RecordSchema``): schema texts, the subject name
strategy, the writers of a record's key and value, and the table's optional headers.

Records of this shape carry ``key`` as DynamoDB JSON, ``value`` as a :class:`Change` (or
None where the one-pass writers already wrote ``encoded_value``) and ``position`` as the
envelope's source block, which is also where in the stream or snapshot the record was read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

from bridge.serde.converter import KafkaHeaders, Strategy
from bridge.task import SourceRecord, UnreadableRecord
from connectors.dynamodb.avro import encode_envelope, encode_key
from connectors.dynamodb.dead_letter import change_dead_letter_value
from connectors.dynamodb.headers import header_maker, op_of
from connectors.dynamodb.schemas import KeyField, table_schemas

__all__ = [
    "Change", "ChangeRecord", "EnvelopeSchema", "RecordFormat", "UnreadableChange", "change_record", "envelope_schema",
    "op_of",
]


class Change(NamedTuple):
    """An envelope record's value data: the operation and the item's images in DynamoDB JSON."""

    op: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class ChangeViews:
    """The connector's names for an envelope record's parts (``op``, ``before``, ``after``,
    ``source``, ``table``, ``key_fields``), read from the neutral fields; the C writers' records
    have the same names. Connector code and tests read them; the runtime never does."""

    __slots__ = ()
    schema: Any
    value: Any
    position: dict[str, Any]

    @property
    def op(self) -> str:
        return op_of(self)  # type: ignore[arg-type]

    @property
    def before(self) -> dict[str, Any] | None:
        return None if self.value is None else self.value.before

    @property
    def after(self) -> dict[str, Any] | None:
        return None if self.value is None else self.value.after

    @property
    def source(self) -> dict[str, Any]:
        return self.position

    @property
    def table(self) -> str:
        return str(self.schema.table)

    @property
    def key_fields(self) -> tuple[KeyField, ...]:
        return self.schema.key_fields  # type: ignore[no-any-return]


class ChangeRecord(ChangeViews, SourceRecord):
    """A SourceRecord of the envelope shape (same fields, so the runtime takes it as one)."""

    __slots__ = ()


class UnreadableChange(ChangeViews, UnreadableRecord):
    """An UnreadableRecord of a DynamoDB source, with the same views."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, eq=False)
class EnvelopeSchema:
    """One table's envelope handle; made by :func:`envelope_schema`, shared by the table's records."""

    table: str
    key_fields: tuple[KeyField, ...]
    key_schema: str
    value_schema: str
    strategy: Strategy
    headers: Callable[[SourceRecord], KafkaHeaders] | None

    def encode_key(self, record: SourceRecord) -> bytes:
        return encode_key(self.key_fields, record.key)

    def encode_value(self, record: SourceRecord) -> bytes:
        v: Change = record.value
        return encode_envelope(v.op, v.before, v.after, record.position, record.ts_ms)

    def dead_letter_value(self, record: SourceRecord) -> Any:
        return change_dead_letter_value(record)


@cache
def envelope_schema(
    table: str, key_fields: tuple[KeyField, ...], strategy: Strategy = "TopicNameStrategy",
    headers: tuple[str, ...] | None = None,
) -> EnvelopeSchema:
    """The one handle of a table with these options (cached: records share it, the runtime
    compares handles by identity)."""
    s = table_schemas(table, key_fields)
    return EnvelopeSchema(table, key_fields, s.key_schema, s.value_schema, strategy,
                          None if not headers else header_maker(headers))


def change_record(
    topic: str, schema: EnvelopeSchema, key: dict[str, Any], op: str, before: dict[str, Any] | None,
    after: dict[str, Any] | None, source: dict[str, Any], ts_ms: int, tombstone: bool = False,
    encoded_key: bytes | None = None, encoded_value: bytes | None = None,
) -> SourceRecord:
    """A change as a record (a tombstone carries no value)."""
    value = None if tombstone else Change(op, before, after)
    return ChangeRecord(topic, schema, key, value, source, ts_ms, tombstone, encoded_key, encoded_value)


@dataclass(frozen=True, slots=True)
class RecordFormat:
    """A table's record options (``tables[].subject_name_strategy``, ``tables[].headers``)."""

    strategy: Strategy = "TopicNameStrategy"
    headers: tuple[str, ...] | None = None
    typed: Any = field(default=None, compare=False, hash=False)  # the ValueConfig of value: {shape: typed}

    def schema(self, table: str, key_fields: tuple[KeyField, ...]) -> Any:
        """The table's handle now: the envelope's, or the typed schema's current version."""
        t = self.typed_table(table, key_fields)
        return envelope_schema(table, key_fields, self.strategy, self.headers) if t is None else t.handle

    def typed_table(self, table: str, key_fields: tuple[KeyField, ...]) -> Any:
        """The table's TypedTable (one per process), or None for the envelope shape."""
        if self.typed is None:
            return None
        from connectors.dynamodb.typed.tables import typed_table

        return typed_table(table, key_fields, self.typed, self.strategy,
                           None if not self.headers else header_maker(self.headers))
