"""DynamoDB Streams records → SourceRecords (envelope fields, tombstones, TTL marks)."""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, fields
from typing import Any, cast

import orjson

from bridge.errors import ConnectorError, ConversionError
from bridge.metrics import METRICS
from bridge.task import SourceRecord, UnreadableRecord
from connectors.dynamodb.envelope import Change, ChangeRecord, EnvelopeSchema, UnreadableChange, envelope_schema
from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.transcode import RECORD_FIELDS, Transcoder
from connectors.dynamodb.watermarks import watermark_marker

__all__ = ["PageReader", "StreamContext", "from_stream_records", "is_ttl_delete"]

log = logging.getLogger(__name__)

OPS = {"INSERT": "c", "MODIFY": "u", "REMOVE": "d"}


@dataclass(frozen=True, slots=True)
class StreamContext:
    topic: str
    table: str
    region: str
    key_fields: tuple[KeyField, ...]
    stream_arn: str
    shard_id: str
    # The table's record format; None: the default envelope handle of (table, key_fields).
    record_schema: EnvelopeSchema | None = None
    # value: {shape: typed}: the table's TypedTable, which gives each record its handle.
    typed: Any = None

    @property
    def schema(self) -> EnvelopeSchema:
        return self.record_schema or envelope_schema(self.table, self.key_fields)


def is_ttl_delete(record: dict[str, Any]) -> bool:
    """The TTL docs spell the keys ``type``/``principalId``, the SDK model ``Type``/``PrincipalId``."""
    ident = record.get("userIdentity") or {}
    kind = ident.get("type", ident.get("Type"))
    principal = ident.get("principalId", ident.get("PrincipalId"))
    return kind == "Service" and principal == "dynamodb.amazonaws.com"


_LONG_MS = 9223372036854775808.0  # |ms| must fit Avro's long, as the transcoder checks


def _ms(value: Any) -> int | None:
    """ApproximateCreationDateTime: epoch seconds on the wire (boto3 turns it into datetime)."""
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    if type(value) is not int and type(value) is not float:
        raise ConversionError(f"ApproximateCreationDateTime must be a number or null, got {value!r:.40}")
    ms = float(value) * 1000.0
    if not -_LONG_MS < ms < _LONG_MS:
        raise ConversionError(f"ApproximateCreationDateTime {value!r} is out of range")
    return int(ms)


def _optional(r: dict[str, Any], name: str, kind: type) -> Any:
    v = r.get(name)
    if v is not None and type(v) is not kind:
        raise ConversionError(f"{name} must be a {'string' if kind is str else 'JSON object'} or null, got {v!r:.40}")
    return v


def _source(r: dict[str, Any], d: dict[str, Any], op: str, ctx: StreamContext) -> dict[str, Any]:
    """The record's source block; ConversionError where a field has the wrong type."""
    seq = d.get("SequenceNumber")
    if type(seq) is not str:
        raise ConversionError(f"dynamodb.SequenceNumber must be a string, got {seq!r:.40}")
    event_id = _optional(r, "eventID", str)
    region = _optional(r, "awsRegion", str) or ctx.region
    ident = _optional(r, "userIdentity", dict) or {}
    kind = ident.get("type", ident.get("Type"))
    principal = ident.get("principalId", ident.get("PrincipalId"))
    return {
        "connector": "dynamodb",
        "table": ctx.table,
        "region": region,
        "stream_arn": ctx.stream_arn,
        "shard_id": ctx.shard_id,
        "sequence_number": seq,
        "event_id": event_id,
        "approximate_creation_ms": _ms(d.get("ApproximateCreationDateTime")),
        "ttl_delete": op == "d" and kind == "Service" and principal == "dynamodb.amazonaws.com",
    }


def _unreadable(r: Any, ctx: StreamContext, ts_ms: int, why: str) -> UnreadableRecord:
    """A record that is not a stream record: it goes on as one that does not convert (the
    dead-letter topic, or one line naming its shard and sequence number)."""
    d = r.get("dynamodb") if type(r) is dict else None
    seq = d.get("SequenceNumber") if type(d) is dict else None
    source = {"connector": "dynamodb", "table": ctx.table, "region": ctx.region, "stream_arn": ctx.stream_arn,
              "shard_id": ctx.shard_id, "sequence_number": seq if type(seq) is str else None}
    key = d.get("Keys") if type(d) is dict else None
    return UnreadableChange(ctx.topic, ctx.schema, key if type(key) is dict else {}, None, source, ts_ms,
                            reason=f"unreadable stream record: {why}", raw=r)


def _b64(v: Any) -> bytes | None:
    if type(v) is not str:
        return None
    try:
        return base64.b64decode(v, validate=True)
    except ValueError:
        return None


_WARNED_KEYS_FROM_IMAGE: set[str] = set()


def _key_from_image(key: dict[str, Any], d: dict[str, Any], names: list[str], ctx: StreamContext) -> dict[str, Any]:
    """``key``, with each binary key attribute that differs from the image's taken from the image.

    DynamoDB's Keys and images always agree; moto base64-encodes binary Keys twice (Keys
    ``QVA4PQ==`` for an image's ``AP8=``), so on the local stack such a table's records would
    carry keys that match none of its items. Where the view has an image, its key attribute is
    the item's own: it wins, is counted (bridge_stream_keys_from_image_total) and said once per
    table. A KEYS_ONLY view has no image to take it from (README, "Local stack").
    """
    for name in names:
        kav = key.get(name)
        in_keys = _b64(kav.get("B")) if type(kav) is dict and len(kav) == 1 else None
        if in_keys is None:
            continue  # the encoder says what is wrong with it
        for image in (d.get("NewImage"), d.get("OldImage")):
            av = image.get(name) if type(image) is dict else None
            in_image = _b64(av.get("B")) if type(av) is dict and len(av) == 1 else None
            if in_image is not None and in_image != in_keys:
                key = {**key, name: {"B": av["B"]}}  # type: ignore[index]
                METRICS.inc("bridge_stream_keys_from_image_total", help="stream records whose binary key in "
                            "dynamodb.Keys differed from the image's (moto); the image's was used", table=ctx.table)
                if ctx.table not in _WARNED_KEYS_FROM_IMAGE:
                    _WARNED_KEYS_FROM_IMAGE.add(ctx.table)
                    log.warning("%s: a stream record's binary key %r in dynamodb.Keys differs from its image's "
                                "(moto base64-encodes binary Keys twice); the image's key is used (said once, "
                                "counted in bridge_stream_keys_from_image_total)", ctx.table, name)
                break
    return key


def from_stream_records(raw: list[Any], ctx: StreamContext, ts_ms: int | None = None) -> list[SourceRecord]:
    """Convert one GetRecords page; a REMOVE yields the delete and then its tombstone.

    A record that is not a stream record (wrong JSON types, no Keys, an unknown eventName)
    becomes an UnreadableRecord; its attribute values are checked when it is encoded. Either
    way a bad record fails alone, as a ConversionError, and its neighbours go on.
    """
    if ts_ms is None:
        ts_ms = int(time.time() * 1000)
    out: list[SourceRecord] = []
    binary = [f.name for f in ctx.key_fields if f.type == "B"]
    for r in raw:
        d = r.get("dynamodb") if type(r) is dict else None
        if type(d) is not dict:
            out.append(_unreadable(r, ctx, ts_ms, "not an object with a dynamodb object"))
            continue
        name = r.get("eventName")
        op = OPS.get(name) if type(name) is str else None
        if op is None:
            out.append(_unreadable(r, ctx, ts_ms, f"unknown eventName {name!r:.40}"))
            continue
        key = d.get("Keys")
        if type(key) is not dict:
            out.append(_unreadable(r, ctx, ts_ms, f"dynamodb.Keys must be an object, got {key!r:.40}"))
            continue
        try:
            source = _source(r, d, op, ctx)
        except ConversionError as e:
            out.append(_unreadable(r, ctx, ts_ms, str(e)))
            continue
        if binary:
            key = _key_from_image(key, d, binary, ctx)
        if ctx.typed is not None:
            _typed(out, ctx, key, op, d.get("OldImage"), d.get("NewImage"), source, ts_ms)
            continue
        out.append(ChangeRecord(ctx.topic, ctx.schema, key, Change(op, d.get("OldImage"), d.get("NewImage")),
                                source, ts_ms))
        if op == "d":
            out.append(ChangeRecord(ctx.topic, ctx.schema, key, None, source, ts_ms, tombstone=True))
    return out


def _typed(out: list[SourceRecord], ctx: StreamContext, key: dict[str, Any], op: str, before: Any, after: Any,
           source: dict[str, Any], ts_ms: int) -> None:
    """A change of a typed table: its records carry the handle of the schema version they need
    (the table's TypedTable grows it) and the value already written where it fits; with
    ``image: after`` a delete is its tombstone only."""
    typed = ctx.typed
    if watermark_marker(key, ctx) is not None:
        # A concurrent snapshot's watermark (filtered out of the topic by the snapshot): its
        # key lies outside every real item's range and must not shape the schema.
        out.append(ChangeRecord(ctx.topic, typed.handle, key, Change(op, before, after), source, ts_ms))
        return
    if op == "d" and typed.cfg.image == "after":
        # No value is written: the old image must not grow the schema (a version registered,
        # or a conflict that stops the bridge, for a tombstone).
        out.append(ChangeRecord(ctx.topic, typed.handle, key, None, source, ts_ms, True))
        return
    handle, body = typed.write(op, before, after, source, ts_ms)
    out.append(ChangeRecord(ctx.topic, handle, key, Change(op, before, after), source, ts_ms, False, None, body))
    if op == "d":
        out.append(ChangeRecord(ctx.topic, handle, key, None, source, ts_ms, True))


def last_sequence_number(raw: list[Any]) -> str | None:
    """The last record's SequenceNumber that is one (an unreadable record may have none)."""
    for r in reversed(raw):
        d = r.get("dynamodb") if type(r) is dict else None
        seq = d.get("SequenceNumber") if type(d) is dict else None
        if type(seq) is str:
            return seq
    return None


# The C transcoder's records stand in for SourceRecords: only while they have the same fields
# (tests/unit/test_transcode.py fails if this turns false, so the fast way is not lost silently).
RECORDS_IN_ONE_PASS = tuple(f.name for f in fields(SourceRecord)) == RECORD_FIELDS


class PageReader:
    """One shard's GetRecords response bodies → (records, last sequence, next iterator).

    The fast way is one pass from the body's bytes to each record's Avro key and value
    (the C transcoder, ``connectors.dynamodb.transcode``), which also builds the records: its
    StreamRecords, with SourceRecord's fields (``encoded_key``/``encoded_value`` set, no
    decoded images, ``key`` and ``source`` built when read). A typed table's images are
    written in the same pass by the plan of its current schema version (``stream_plan``); a
    record whose images are not plainly in it (an attribute with no field yet, a conflict)
    comes back as its JSON and goes the general way alone, which grows the schema or applies
    the conflict policy. A page the transcoder does
    not take (it raises ValueError on anything unusual), and every page where it was not
    built, goes the general way: orjson, then ``from_stream_records``, where a bad record
    becomes a ConversionError for the dead-letter topic as always.
    """

    def __init__(self, ctx: StreamContext) -> None:
        self._ctx = ctx
        typed = ctx.typed
        usable = typed is None or RECORDS_IN_ONE_PASS  # typed images in the transcoder's pass need its records
        self._transcoder = None if Transcoder is None or not usable else Transcoder(
            tuple((k.name, k.type) for k in ctx.key_fields), ctx.table, ctx.region, ctx.stream_arn, ctx.shard_id,
            records=(ctx.topic, ctx.schema if typed is None else typed.handle) if RECORDS_IN_ONE_PASS else None,
        )

    def read(self, body: bytes) -> tuple[list[SourceRecord], str | None, str | None]:
        if self._transcoder is None:
            return self._general(body)
        ts_ms = int(time.time() * 1000)
        typed = self._ctx.typed
        try:
            if typed is not None:
                handle = typed.handle
                if handle.stream_plan is None:  # an M kept as AttributeValues
                    return self._general(body)
                page, last_seq, next_iterator, misses = self._transcoder.page(body, ts_ms, handle.stream_plan, handle)
                return (self._typed_misses(page, misses, ts_ms, handle) if misses else page), last_seq, next_iterator
            page, last_seq, next_iterator = self._transcoder.page(body, ts_ms)
        except ValueError as e:
            log.info("%s %s: page takes the general path: %s", self._ctx.table, self._ctx.shard_id, e)
            return self._general(body)
        if RECORDS_IN_ONE_PASS:
            return cast(list[SourceRecord], page), last_seq, next_iterator
        ctx = self._ctx
        out: list[SourceRecord] = []
        for op, key, source, key_avro, value_avro in page:
            out.append(ChangeRecord(ctx.topic, ctx.schema, key, None, source, ts_ms,
                                    encoded_key=key_avro, encoded_value=value_avro))
            if op == "d":
                out.append(ChangeRecord(ctx.topic, ctx.schema, key, None, source, ts_ms,
                                        tombstone=True, encoded_key=key_avro))
        return out, last_seq, next_iterator

    def _typed_misses(self, page: list[Any], misses: list[int], ts_ms: int, tried: Any) -> list[SourceRecord]:
        """The page with each record the plan did not take (its JSON, at the listed places)
        in its place, in order: written by the current version's plan where the schema has
        grown since (a page's first new attribute would otherwise send the whole page the slow
        way), else converted the general way, which grows the schema or applies the policy.
        ``tried``: the version whose plan wrote the page."""
        typed, ctx, transcoder = self._ctx.typed, self._ctx, self._transcoder
        assert transcoder is not None
        out: list[SourceRecord] = []
        done, first = 0, tried

        def written(records: list[Any]) -> list[Any]:
            """``image: after``: a delete is its tombstone alone, and once the schema has grown
            it carries the current version, as on the general path (no older one registered for it)."""
            if typed.handle is first or typed.cfg.image != "after":
                return records
            return [ChangeRecord(r.topic, typed.handle, r.key, None, r.position, r.ts_ms, True, r.encoded_key)
                    if r.tombstone else r for r in records]

        for i in misses:
            out += written(page[done:i])
            done = i + 1
            handle = typed.handle
            if handle is not tried and handle.stream_plan is not None:
                again, _, _, missed = transcoder.page(b'{"Records":[' + page[i] + b"]}", ts_ms,
                                                      handle.stream_plan, handle)
                if not missed:
                    out += again
                    continue
                tried = handle  # this version did not take it: the general way grows the next
            out += from_stream_records([orjson.loads(page[i])], ctx, ts_ms)
        out += written(page[done:])
        return out

    def _general(self, body: bytes) -> tuple[list[SourceRecord], str | None, str | None]:
        ctx = self._ctx
        try:
            resp = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError as e:
            raise ConnectorError(f"{ctx.table} {ctx.shard_id}: GetRecords answered with a body that is not JSON ({e})") from None
        ok = type(resp) is dict
        raw = resp.get("Records") if ok else None
        nxt = resp.get("NextShardIterator") if ok else None
        if not ok or (raw is not None and type(raw) is not list) or (nxt is not None and type(nxt) is not str):
            raise ConnectorError(f"{ctx.table} {ctx.shard_id}: GetRecords answered with a body that is not a "
                                 f"GetRecords response: {body[:200]!r}")
        raw = raw or []
        return from_stream_records(raw, ctx), last_sequence_number(raw), nxt
