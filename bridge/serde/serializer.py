"""SourceRecord → (key bytes, value bytes) in Confluent wire format.

Schemas are registered once per topic (TopicNameStrategy: ``<topic>-key``/``<topic>-value``)
and their ids cached; registration is a blocking HTTP call, so the worker calls ``prepare``
off the event loop and ``serialize`` (pure CPU) on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.errors import ConversionError, SchemaError
from bridge.serde.avro import encode_envelope, encode_key
from bridge.serde.wire import frame
from bridge.task import SourceRecord, UnreadableRecord
from schemas import KeyField, TableSchemas, table_schemas

__all__ = ["Framed", "RecordSerializer", "SchemaIds"]


class _Registered(Protocol):
    schema_id: int


class _Registry(Protocol):
    def register(self, subject: str, schema_str: str) -> int: ...

    def lookup(self, subject: str, schema_str: str) -> _Registered | None: ...


@dataclass(frozen=True, slots=True)
class SchemaIds:
    key: int
    value: int


@dataclass(slots=True)
class Framed:
    """A batch's records in wire format, index for index.

    ``keys[i]`` is None where record i did not serialize (its error is ``errors[i]``);
    ``values[i]`` is None for tombstones and those. ``payload`` is the sum of the key and
    value lengths, what the worker counts against its byte bound.
    """

    keys: list[bytes | None]
    values: list[bytes | None]
    errors: dict[int, ConversionError]
    payload: int


class RecordSerializer:
    def __init__(
        self,
        registry: _Registry,
        *,
        auto_register: bool = True,
        frame_encoded: Callable[[list[Any], bytes, bytes], tuple[list[bytes], list[bytes | None], int] | None]
        | None = None,
    ) -> None:
        """``frame_encoded(records, key_header, value_header)``: a source's own framing of the
        records it encoded (the DynamoDB C transcoder's, wired by ``bridge_app.app``), returning
        None when the batch is not all its records; the runtime knows no source's types."""
        self._frame_encoded = frame_encoded
        self._registry = registry
        self._auto_register = auto_register
        self._ids: dict[tuple[str, str, tuple[KeyField, ...]], SchemaIds] = {}
        # The same, as the 5-byte Confluent headers of key and value, for serialize().
        self._headers: dict[tuple[str, str, tuple[KeyField, ...]], tuple[bytes, bytes]] = {}
        self._last: tuple[tuple[KeyField, ...], str, str, tuple[bytes, bytes]] | None = None

    def ready(self, record: SourceRecord) -> bool:
        return self._headers_of(record) is not None

    def unprepared(self, records: list[SourceRecord]) -> list[SourceRecord]:
        """One record per distinct (topic, table, key fields) whose schemas are not registered yet.

        A reader's records share those objects, so this is an identity check per record
        and one lookup per distinct triple, not a hash of the key-field tuple per record.
        """
        out: list[SourceRecord] = []
        seen: list[tuple[str, str, tuple[KeyField, ...]]] = []
        last: tuple[str, str, tuple[KeyField, ...]] | None = None
        for record in records:
            topic, table, key_fields = record.topic, record.table, record.key_fields
            if last is not None and last[0] is topic and last[1] is table and last[2] is key_fields:
                continue
            last = (topic, table, key_fields)
            if self._headers_of(record) is None and last not in seen:
                seen.append(last)
                out.append(record)
        return out

    def prepare(self, record: SourceRecord) -> SchemaIds:
        """Register (or look up) the record's key and value schemas; blocking."""
        k = (record.topic, record.table, record.key_fields)
        ids = self._ids.get(k)
        if ids is None:
            s: TableSchemas = table_schemas(record.table, record.key_fields)
            ids = SchemaIds(key=self._id(f"{record.topic}-key", s.key_schema),
                            value=self._id(f"{record.topic}-value", s.value_schema))
            self._ids[k] = ids
            self._headers[k] = (frame(ids.key, b""), frame(ids.value, b""))
        return ids

    def _id(self, subject: str, schema: str) -> int:
        if self._auto_register:
            return self._registry.register(subject, schema)
        found = self._registry.lookup(subject, schema)
        if found is None:
            raise SchemaError(
                f"schema for subject {subject!r} is not registered and schema_registry.auto_register is false; "
                f"register it first or set auto_register: true",
                status=404,
            )
        return found.schema_id

    def serialize(self, record: SourceRecord) -> tuple[bytes, bytes | None]:
        """Confluent framing of the record's Avro key and value (encoded here unless the
        source already did: ``encoded_key``/``encoded_value``)."""
        headers = self._headers_of(record)
        if headers is None:
            raise KeyError(f"schemas of {record.topic!r} not prepared")
        key_header, value_header = headers
        if type(record) is UnreadableRecord:
            raise ConversionError(record.reason)
        body = record.encoded_key
        key = key_header + (encode_key(record.key_fields, record.key) if body is None else body)
        if record.tombstone:
            return key, None
        body = record.encoded_value
        if body is None:
            body = encode_envelope(record.op, record.before, record.after, record.source, record.ts_ms)
        return key, value_header + body

    def serialize_batch(self, records: list[SourceRecord]) -> Framed:
        """``serialize`` for a whole batch, in one loop; every record's schemas must be prepared.

        Records the source already encoded are only framed: the C transcoder's in one call that
        writes the headers into room it left (no copy), others inline (two concatenations per
        record, where ``serialize`` costs a method call and a header lookup). A record that does
        not convert gets its ConversionError in ``errors`` (for the dead-letter topic) instead of
        stopping the batch.
        """
        frame_encoded = self._frame_encoded
        if frame_encoded is not None and records:
            headers = self._headers_of(records[0])
            framed = None if headers is None else frame_encoded(records, *headers)
            if framed is not None:  # every record from the one transcoder, so the same headers
                keys_, values_, payload = framed
                return Framed(keys_, values_, {}, payload)
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        errors: dict[int, ConversionError] = {}
        add_key, add_value = keys.append, values.append
        last: tuple[str, str, tuple[KeyField, ...]] | None = None
        key_header = value_header = b""
        for i, record in enumerate(records):
            topic, table, key_fields = record.topic, record.table, record.key_fields
            if last is None or last[0] is not topic or last[1] is not table or last[2] is not key_fields:
                headers = self._headers_of(record)
                if headers is None:
                    raise KeyError(f"schemas of {topic!r} not prepared")
                key_header, value_header = headers
                last = (topic, table, key_fields)
            body = record.encoded_key
            if body is not None:
                if record.tombstone:
                    add_key(key_header + body)
                    add_value(None)
                    continue
                value = record.encoded_value
                if value is not None:
                    add_key(key_header + body)
                    add_value(value_header + value)
                    continue
            try:
                key, value = self.serialize(record)
            except ConversionError as e:
                errors[i] = e
                key = value = None
            add_key(key)
            add_value(value)
        payload = sum(map(len, filter(None, keys))) + sum(map(len, filter(None, values)))
        return Framed(keys, values, errors, payload)

    def _headers_of(self, record: SourceRecord) -> tuple[bytes, bytes] | None:
        """The record's key and value headers, or None before ``prepare``.

        Runs twice per record (``ready`` and ``serialize``); hashing the key-field tuple
        costs two Python-level dataclass hashes per field, so the last answer is kept and
        reused while the same objects come by (a reader's records all share them).
        """
        topic, table, key_fields = record.topic, record.table, record.key_fields
        last = self._last
        if last is not None and last[0] is key_fields and last[1] is topic and last[2] is table:
            return last[3]
        headers = self._headers.get((topic, table, key_fields))
        if headers is not None:
            self._last = (key_fields, topic, table, headers)
        return headers
