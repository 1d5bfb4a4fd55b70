"""SourceRecord → (key bytes, value bytes) in Confluent wire format (or plain JSON).

A record's schema handle (``bridge/serde/converter.py``) gives the Avro schema texts, the
subject name strategy and the writers; this registers each handle's schemas once under the
subjects its strategy names and caches the ids. A topic whose key or value format is not
Avro (``bridge/serde/formats``) has its Avro converted: the schema once per handle, each body
per record. Registration is a blocking HTTP call, so the worker
calls ``prepare`` off the event loop and ``serialize`` (pure CPU) on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.errors import ConfigError, ConversionError, SchemaError
from bridge.registry.client import SchemaRegistryClient
from bridge.serde.converter import KafkaHeaders, RecordSchema, subject_name
from bridge.serde.formats import Converter, TopicFormats, converter
from bridge.serde.wire import frame
from bridge.task import SourceRecord, UnreadableRecord

__all__ = ["Framed", "NotPrepared", "RecordSerializer", "SchemaIds", "check_formats", "check_subjects", "subjects"]


class NotPrepared(KeyError):
    """A record's schemas are not registered yet: ``prepare`` them, then serialize again.

    Serializing first and preparing only on this costs the hot path nothing (``unprepared``
    is a look at every record: as much CPU per record as framing a batch)."""


class _Registered(Protocol):
    @property
    def schema_id(self) -> int: ...


class _Registry(Protocol):
    def register(self, subject: str, schema_str: str, schema_type: str = ...) -> int: ...

    def lookup(self, subject: str, schema_str: str, schema_type: str = ...) -> _Registered | None: ...


def subjects(topic: str, schema: RecordSchema) -> tuple[str, str]:
    """The key and value subjects of a handle's records in ``topic``."""
    return (subject_name(schema.strategy, topic, schema.key_schema, is_key=True),
            subject_name(schema.strategy, topic, schema.value_schema, is_key=False))


@dataclass(frozen=True, slots=True)
class SchemaIds:
    key: int
    value: int


@dataclass(slots=True)
class Framed:
    """A batch's records in wire format, index for index.

    ``keys[i]`` is None where record i did not serialize (its error is ``errors[i]``);
    ``values[i]`` is None for tombstones and those. ``payload`` is the sum of the key and
    value lengths, what the worker counts against its byte bound. ``headers[i]``: record i's
    Kafka headers, where its schema handle has any (``headers`` is None when none has).
    """

    keys: list[bytes | None]
    values: list[bytes | None]
    errors: dict[int, ConversionError]
    payload: int
    headers: list[KafkaHeaders | None] | None = None


class RecordSerializer:
    def __init__(
        self,
        registry: _Registry,
        *,
        auto_register: bool = True,
        frame_encoded: Callable[[list[Any], bytes, bytes], tuple[list[bytes | None], list[bytes | None], int] | None]
        | None = None,
        formats: Callable[[str], TopicFormats] | None = None,
    ) -> None:
        """``frame_encoded(records, key_header, value_header)``: a source's own framing of the
        records it encoded (the DynamoDB C transcoder's, wired by ``bridge_app.app``), returning
        None when the batch is not all its records; the runtime knows no source's types.
        ``formats(topic)``: the topic's key and value formats (None: Avro everywhere)."""
        self._frame_encoded = frame_encoded
        self._formats = formats
        # (topic, handle object) → (key, value) converters, for handles with a format not Avro.
        self._converters: dict[tuple[str, int], tuple[Converter | None, Converter | None]] = {}
        self._registry = registry
        self._auto_register = auto_register
        # By content: a new handle object with the same schemas and strategy registers nothing.
        self._ids: dict[tuple[str, str, str, str], SchemaIds] = {}
        # By (topic, handle object), as the 5-byte Confluent headers of key and value, for serialize().
        self._headers: dict[tuple[str, int], tuple[RecordSchema, tuple[bytes, bytes]]] = {}
        self._last: tuple[RecordSchema, str, tuple[bytes, bytes]] | None = None

    def unprepared(self, records: list[SourceRecord]) -> list[SourceRecord]:
        """One record per distinct (topic, schema handle) whose schemas are not registered yet.

        A reader's records share those objects, so this is an identity check per record
        and one lookup per distinct pair.
        """
        out: list[SourceRecord] = []
        seen: list[tuple[str, RecordSchema]] = []
        last_topic: str | None = None
        last_schema: RecordSchema | None = None
        for record in records:
            topic, schema = record.topic, record.schema
            if topic is last_topic and schema is last_schema:
                continue
            last_topic, last_schema = topic, schema
            if self._headers_of(record) is None and not any(t is topic and s is schema for t, s in seen):
                seen.append((topic, schema))
                out.append(record)
        return out

    def prepare(self, record: SourceRecord) -> SchemaIds:
        """Register (or look up) the record's key and value schemas; blocking."""
        schema = record.schema
        key_conv, value_conv = self.converters(record.topic, schema)
        k = (record.topic, schema.strategy, schema.key_schema, schema.value_schema)
        ids = self._ids.get(k)
        if ids is None:
            key_subject, value_subject = subjects(record.topic, schema)
            ids = SchemaIds(key=self._id(key_subject, schema.key_schema, key_conv),
                            value=self._id(value_subject, schema.value_schema, value_conv))
            self._ids[k] = ids
        if key_conv is not None or value_conv is not None:
            self._converters[(record.topic, id(schema))] = (key_conv, value_conv)
        # The handle is kept with its headers, so its id() cannot be reused by another object.
        self._headers[(record.topic, id(schema))] = (schema, (_header(ids.key, key_conv), _header(ids.value, value_conv)))
        return ids

    def converters(self, topic: str, schema: RecordSchema) -> tuple[Converter | None, Converter | None]:
        """The converters of a handle's key and value in ``topic`` (None: Avro as it is).

        ConfigError when a schema cannot be written in its format."""
        formats = None if self._formats is None else self._formats(topic)
        if formats is None or formats.all_avro:
            return None, None
        return (None if formats.key.format == "avro" else converter(formats.key, schema.key_schema),
                None if formats.value.format == "avro" else converter(formats.value, schema.value_schema))

    def _id(self, subject: str, schema: str, conv: Converter | None = None) -> int:
        """The registered id of a schema (-1 for a format without registry)."""
        schema_type = "AVRO"
        if conv is not None:
            if conv.schema_type is None:
                return -1
            schema, schema_type = conv.schema, conv.schema_type
        # The schema type is only passed when not Avro: registries written for Avro alone still fit.
        typed = () if schema_type == "AVRO" else (schema_type,)
        if self._auto_register:
            return self._registry.register(subject, schema, *typed)
        found = self._registry.lookup(subject, schema, *typed)
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
            raise NotPrepared(f"schemas of {record.topic!r} not prepared")
        key_header, value_header = headers
        if isinstance(record, UnreadableRecord):
            raise ConversionError(record.reason)
        convs = self._converters.get((record.topic, id(record.schema))) if self._converters else None
        body = record.encoded_key
        if body is None:
            body = record.schema.encode_key(record)
        if convs is not None and convs[0] is not None:
            body = convs[0].convert(body)
        key = key_header + body
        if record.tombstone:
            return key, None
        body = record.encoded_value
        if body is None:
            body = record.schema.encode_value(record)
        if convs is not None and convs[1] is not None:
            body = convs[1].convert(body)
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
        converted = self._converters
        if frame_encoded is not None and records and not (
                converted and (records[0].topic, id(records[0].schema)) in converted):
            headers = self._headers_of(records[0])
            framed = None if headers is None else frame_encoded(records, *headers)
            if framed is not None:  # every record from the one transcoder: one handle, the same headers
                keys_, values_, payload = framed
                kafka_headers = None if records[0].schema.headers is None else _kafka_headers(records)
                return Framed(keys_, values_, {}, payload, kafka_headers)
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        errors: dict[int, ConversionError] = {}
        add_key, add_value = keys.append, values.append
        last_topic: str | None = None
        last_schema: RecordSchema | None = None
        key_header = value_header = b""
        as_is = True  # the handle's Avro is written as it is (no converter)
        for i, record in enumerate(records):
            topic, schema = record.topic, record.schema
            if topic is not last_topic or schema is not last_schema:
                headers = self._headers_of(record)
                if headers is None:
                    raise NotPrepared(f"schemas of {topic!r} not prepared")
                key_header, value_header = headers
                last_topic, last_schema = topic, schema
                as_is = not converted or (topic, id(schema)) not in converted
            body = record.encoded_key
            if body is not None and as_is:
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
                framed_key, framed_value = self.serialize(record)
            except ConversionError as e:
                errors[i] = e
                add_key(None)
                add_value(None)
                continue
            add_key(framed_key)
            add_value(framed_value)
        payload = sum(map(len, filter(None, keys))) + sum(map(len, filter(None, values)))
        return Framed(keys, values, errors, payload, _kafka_headers(records))

    def _headers_of(self, record: SourceRecord) -> tuple[bytes, bytes] | None:
        """The record's key and value framing headers, or None before ``prepare``.

        The last answer is kept and reused while the same objects come by (a reader's records
        all share them).
        """
        topic, schema = record.topic, record.schema
        last = self._last
        if last is not None and last[0] is schema and last[1] is topic:
            return last[2]
        found = self._headers.get((topic, id(schema)))
        if found is None:
            return None
        self._last = (schema, topic, found[1])
        return found[1]


def _header(schema_id: int, conv: Converter | None) -> bytes:
    """What precedes a body: the Confluent header, with protobuf's message indexes after it
    coming from the converter; nothing for a format without registry."""
    if conv is not None and conv.schema_type is None:
        return b""
    return frame(schema_id, b"")


def _kafka_headers(records: list[SourceRecord]) -> list[KafkaHeaders | None] | None:
    """Each record's Kafka headers, or None when no record's handle writes any (one check per
    distinct handle, so tables without headers pay a pointer compare per record)."""
    out: list[KafkaHeaders | None] | None = None
    last: RecordSchema | None = None
    make = None
    for i, record in enumerate(records):
        schema = record.schema
        if schema is not last:
            last, make = schema, schema.headers
        if make is not None:
            if out is None:
                out = [None] * len(records)
            out[i] = make(record)
    return out


def check_formats(schemas: Iterable[tuple[str, RecordSchema]], formats: Callable[[str], TopicFormats] | None) -> None:
    """At start: every schema known now can be written in its topic's formats (ConfigError
    naming the topic otherwise), before any topic is created."""
    if formats is None:
        return
    for topic, schema in schemas:
        f = formats(topic)
        for options, text, what in ((f.key, schema.key_schema, "key"), (f.value, schema.value_schema, "value")):
            try:
                converter(options, text)
            except ConfigError as e:
                raise ConfigError(f"topic {topic!r}: {what}.format {options.format}: {e}") from None


def check_subjects(registry: SchemaRegistryClient, schemas: Iterable[tuple[str, RecordSchema]],
                   formats: Callable[[str], TopicFormats] | None = None) -> None:
    """``auto_register: false``: each subject the bridge will write ((topic, handle) pairs) must exist and
    hold the exact schema the bridge writes; ConfigError with one line naming the first that does not.

    A schema that is only *compatible* with the subject's latest version is refused too: Avro
    bytes are read with the schema whose id they carry, so the bridge can only write with a
    registered schema; the line then says that registering it would be accepted.
    """
    fix = "register it first or set schema_registry.auto_register: true"
    for topic, schema in schemas:
        f = formats(topic) if formats is not None else None
        for subject, text, options in zip(subjects(topic, schema), (schema.key_schema, schema.value_schema),
                                          (None, None) if f is None else (f.key, f.value)):
            schema_type = "AVRO"
            if options is not None and options.format != "avro":
                conv = converter(options, text)
                if conv.schema_type is None:
                    continue  # no registry for this one
                text, schema_type = conv.schema, conv.schema_type
            try:
                if registry.lookup(subject, text, schema_type) is not None:
                    continue
                try:
                    latest = registry.get_version(subject, "latest")
                except SchemaError as e:
                    if e.code == 40401:
                        raise ConfigError(f"schema_registry.auto_register is false and subject {subject!r} (topic "
                                          f"{topic!r}, {schema.strategy}) does not exist; {fix}") from None
                    raise
                compatible = registry.check_compatibility(subject, text, "latest", schema_type)
            except SchemaError as e:
                raise ConfigError(f"schema_registry: cannot check subject {subject!r}: {e}") from None
            how = ("is compatible with its latest version but not registered" if compatible
                   else f"is not registered and not compatible with version {latest.version} "
                        f"({' '.join('; '.join(compatible.messages).split())[:300] or 'the registry gives no reason'})")
            raise ConfigError(f"schema_registry.auto_register is false and subject {subject!r} (topic {topic!r}) has "
                              f"no schema like the one the bridge writes: it {how}; {fix}")
