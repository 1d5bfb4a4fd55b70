"""The pure-Python twin of ``_transcode.c``: the same function, the same bytes, slower.

The reference the C code is held to (tests/unit/test_transcode.py), and a transcoder for
anyone without the extension. It parses with orjson, refuses what the C code refuses (so
both raise ValueError on the same pages), and encodes with ``connectors.dynamodb.avro``, the
reference encoder. One difference is inherent: a parsed dict cannot show a name given twice
in one item map, which the C code refuses; the general path, which the Streams reader falls
back to, keeps the last value as a dict does, and so does this twin.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from bridge.errors import ConversionError
from connectors.dynamodb.avro import encode_envelope, encode_item, encode_key, encode_long, encode_source
from connectors.dynamodb.envelope import ChangeRecord
from connectors.dynamodb.schemas import KeyField

__all__ = ["ABI", "MAX_ATTRIBUTE_DEPTH", "RECORD_FIELDS", "ItemWriter", "Transcoder"]

ABI = 6  # must equal ABI in _transcode.c: what page() returns and refuses
MAX_ATTRIBUTE_DEPTH = 100  # must equal MAX_AV_DEPTH in _transcode.c
# The fields of the records page() returns with records=(topic, schema): SourceRecord's.
RECORD_FIELDS = ("topic", "schema", "key", "value", "position", "ts_ms", "tombstone", "encoded_key", "encoded_value")
_OPS = {"INSERT": "c", "MODIFY": "u", "REMOVE": "d"}
# Canonical base64 only: what base64.b64decode(validate=True) accepts, stated exactly.
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_SCALAR_TYPES = {"S": str, "N": str, "BOOL": bool, "NULL": bool}
_LONG_MIN, _LONG_MAX = -9223372036854775808.0, 9223372036854775808.0

Record = tuple[str, dict[str, Any], dict[str, Any], bytes, bytes | None]  # value None: typed, not in the plan


def _bad(message: str) -> ValueError:
    return ValueError(f"GetRecords page: {message}")


def _key_fields(key_fields: Sequence[tuple[str, str]]) -> tuple[KeyField, ...]:
    """(name, type) pairs as KeyFields, refused as the C constructors refuse them."""
    if not key_fields:
        raise ValueError("key_fields must name at least one attribute")
    fields = []
    for name, t in key_fields:
        if t not in ("S", "N", "B"):
            raise ValueError(f"key attribute {name!r} has type {t!r}; expected S, N or B")
        fields.append(KeyField(name, t))  # type: ignore[arg-type]
    return tuple(fields)


def _document(body: bytes, member: str) -> tuple[dict[str, Any], list[Any]]:
    """A page body's JSON object and its ``member`` array (null or absent: empty), refused as the
    C module refuses them (page() and ItemWriter.scan_page() read their bodies alike)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise _bad(f"not valid JSON: {e}") from None
    if type(doc) is not dict:
        raise _bad("expected a JSON object")
    raw = doc.get(member)
    if raw is None:
        raw = []
    elif type(raw) is not list:
        raise _bad(f"{member} must be an array or null")
    return doc, raw


def _check_base64(v: Any) -> None:
    if type(v) is not str or not _BASE64.fullmatch(v):
        raise _bad("binary value is not canonical base64")


def binary_key_differs(in_keys: str, in_image: str) -> bool:
    """A binary key attribute in ``Keys`` and in an image (both base64 text) are different bytes.

    They never are in DynamoDB; moto base64-encodes binary ``Keys`` twice. The transcoders then
    refuse the page, and the general path takes the key from the image.
    """
    return in_keys != in_image and base64.b64decode(in_keys) != base64.b64decode(in_image)


def _check_attribute(av: Any, depth: int) -> None:
    if depth > MAX_ATTRIBUTE_DEPTH:
        raise _bad("attributes nested too deeply")
    if type(av) is not dict or len(av) != 1:
        raise _bad(f"attribute value must be an object with exactly one type, got {av!r:.80}")
    ((t, v),) = av.items()
    scalar = _SCALAR_TYPES.get(t)
    if scalar is not None:
        if type(v) is not scalar:
            raise _bad(f"{t} takes a {scalar.__name__}, got {v!r:.80}")
    elif t == "B":
        _check_base64(v)
    elif t == "M":
        _check_item(v, depth + 1)
    elif t in ("L", "SS", "NS", "BS"):
        if type(v) is not list:
            raise _bad(f"{t} takes an array, got {v!r:.80}")
        for x in v:
            if t == "L":
                _check_attribute(x, depth + 1)
            elif t == "BS":
                _check_base64(x)
            elif type(x) is not str:
                raise _bad(f"{t} takes strings, got {x!r:.80}")
    else:
        raise _bad(f"unknown DynamoDB attribute type {t!r}")


def _check_item(item: Any, depth: int) -> None:
    if type(item) is not dict:
        raise _bad("item must be an object")
    for av in item.values():
        _check_attribute(av, depth)


def _check_keys(keys: Any, key_fields: tuple[KeyField, ...]) -> None:
    """Exactly the table's key attributes, each its declared type (the general path takes others)."""
    if type(keys) is not dict:
        raise _bad("dynamodb.Keys must be an object")
    types = {f.name: f.type for f in key_fields}
    for name, av in keys.items():
        if name not in types:
            raise _bad("dynamodb.Keys has an attribute that is not part of the table's key")
        if type(av) is not dict or len(av) != 1:
            raise _bad("key attribute value must have exactly one type")
        ((t, v),) = av.items()
        if t != types[name] or type(v) is not str:
            raise _bad("key attribute's type is not the table's")


def _optional(r: dict[str, Any], name: str, kind: type) -> Any:
    v = r.get(name)
    if v is not None and type(v) is not kind:
        raise _bad(f"{name} must be a {kind.__name__} or null")
    return v


def _creation_ms(v: Any) -> int | None:
    """ApproximateCreationDateTime: epoch seconds, as int(float(v) * 1000) does."""
    if v is None:
        return None
    if type(v) is not int and type(v) is not float:
        raise _bad("ApproximateCreationDateTime must be a number or null")
    ms = float(v) * 1000.0
    if not _LONG_MIN < ms < _LONG_MAX:
        raise _bad("ApproximateCreationDateTime out of range")
    return int(ms)


class Transcoder:
    """``Transcoder(key_fields, table, region, stream_arn, shard_id, *, records=None)``; see ``page``."""

    def __init__(
        self, key_fields: Sequence[tuple[str, str]], table: str, region: str, stream_arn: str, shard_id: str,
        *, records: tuple[str, Any] | None = None,
    ) -> None:
        self._key_fields = _key_fields(key_fields)
        self._binary_keys = [(f.name, f.type) for f in self._key_fields if f.type == "B"]
        self._table = table
        self._region = region
        self._stream_arn = stream_arn
        self._shard_id = shard_id
        self._records = records

    def page(self, body: bytes, ts_ms: int, plan: Any = None, schema: Any = None) -> tuple[Any, ...]:
        """GetRecords body → ([(op, key, source, key_avro, value_avro)], last seq, next iterator).

        With ``records=(topic, schema)`` the list holds SourceRecords instead, each REMOVE
        followed by its tombstone (the C transcoder's StreamRecords have the same fields).

        With ``plan`` and ``schema`` (a typed schema handle; the twin writes with its model,
        ``schema.rec``, by the Python writer, and only checks that a plan was given), the
        images are typed records (``schema.image == "after"``: the new image alone, a REMOVE
        its tombstone only) and a 4th member lists the records left for the general path:
        their JSON (bytes) stands in the list at those indices.
        """
        if plan is not None and (schema is None or self._records is None):
            raise ValueError("page: a TypedPlan needs its schema handle and records=(topic, schema)")
        doc, raw = _document(body, "Records")
        nxt = _optional(doc, "NextShardIterator", str)
        out = [self._record(r, ts_ms, None if plan is None else schema) for r in raw]
        last = out[-1][2]["sequence_number"] if out else None
        if self._records is None:
            return out, last, nxt
        topic, handle = self._records
        if plan is not None:
            handle = schema
        objs: list[Any] = []
        misses: list[int] = []
        for r, (op, key, source, key_avro, value_avro) in zip(raw, out):
            if value_avro is None:
                misses.append(len(objs))
                objs.append(orjson.dumps(r))
                continue
            if plan is not None and op == "d" and handle.image == "after":
                objs.append(ChangeRecord(topic, handle, key, None, source, ts_ms, True, key_avro, None))
                continue
            objs.append(ChangeRecord(topic, handle, key, None, source, ts_ms, False, key_avro, value_avro))
            if op == "d":
                objs.append(ChangeRecord(topic, handle, key, None, source, ts_ms, True, key_avro, None))
        return (objs, last, nxt) if plan is None else (objs, last, nxt, misses)

    def _record(self, r: Any, ts_ms: int, typed: Any = None) -> Record:
        if type(r) is not dict:
            raise _bad("a record must be an object")
        name = r.get("eventName")
        op = _OPS.get(name) if type(name) is str else None
        if op is None:
            raise _bad(f"unknown eventName {name!r}")
        event_id = _optional(r, "eventID", str)
        region = _optional(r, "awsRegion", str) or self._region
        ident = _optional(r, "userIdentity", dict) or {}
        d = r.get("dynamodb")
        if type(d) is not dict:
            raise _bad("record has no dynamodb object")
        keys: Any = d.get("Keys")
        _check_keys(keys, self._key_fields)
        seq = d.get("SequenceNumber")
        if type(seq) is not str:
            raise _bad("dynamodb.SequenceNumber must be a string")
        ms = _creation_ms(d.get("ApproximateCreationDateTime"))
        before, after = d.get("OldImage"), d.get("NewImage")
        for image in (before, after):
            if image is not None:
                _check_item(image, 1)
        for name, t in self._binary_keys:
            _check_base64(keys.get(name, {}).get(t))
            for image in (before, after):
                av = image.get(name) if image is not None else None
                if type(av) is dict and "B" in av and binary_key_differs(keys[name][t], av["B"]):
                    raise _bad("binary key attribute in dynamodb.Keys differs from the image's")
        ttl = (
            op == "d"
            and ident.get("type", ident.get("Type")) == "Service"
            and ident.get("principalId", ident.get("PrincipalId")) == "dynamodb.amazonaws.com"
        )
        source = {
            "connector": "dynamodb",
            "table": self._table,
            "region": region,
            "stream_arn": self._stream_arn,
            "shard_id": self._shard_id,
            "sequence_number": seq,
            "event_id": event_id,
            "approximate_creation_ms": ms,
            "ttl_delete": ttl,
        }
        try:
            key_avro = encode_key(self._key_fields, keys)
        except ConversionError as e:
            raise _bad(str(e)) from None
        if typed is None:
            return op, keys, source, key_avro, encode_envelope(op, before, after, source, ts_ms)
        if typed.image == "after":
            return op, keys, source, key_avro, b"" if op == "d" else _typed_after(typed.rec, after)
        return op, keys, source, key_avro, _typed_envelope(typed.rec, op, before, after, source, ts_ms)


def _typed_envelope(rec: Any, op: str, before: Any, after: Any, source: dict[str, Any], ts_ms: int) -> bytes | None:
    """The typed envelope's body by the Python writer, or None when an image does not fit ``rec``."""
    from connectors.dynamodb.typed.encode import encode_record

    out = [encode_long(len(op)), op.encode()]
    try:
        for image in (before, after):
            if image is None:
                out.append(b"\x00")
            else:
                out.append(b"\x02")
                encode_record(rec, image, out)
    except ConversionError:
        return None
    out.append(encode_source(source))
    out.append(encode_long(ts_ms))
    return b"".join(out)


def _typed_after(rec: Any, after: Any) -> bytes | None:
    """``image: after``: the new image alone by the Python writer, or None (none, or it does not fit)."""
    from connectors.dynamodb.typed.encode import encode_record

    out: list[bytes] = []
    try:
        encode_record(rec, after, out)
    except ConversionError:
        return None
    return b"".join(out)


# ---- snapshot items (Scan pages, export lines): the twin of _transcode.c's ItemWriter ----

_BLANK = b" \t\n\r\x0b\x0c"  # what bytes.strip() strips: a line of only these is blank


def read_lines(
    data: bytes, pos: int, want: int, final: bool, parse: Callable[[bytes, int], Any]
) -> tuple[list[Any], int, int]:
    """Export lines from byte ``pos`` → (up to ``want`` values of ``parse(line, lines read)``,
    byte position after the last line read, lines read, blank ones included). A last line
    without a newline is read only when ``final``. The twin's and the general path's reader."""
    items: list[Any] = []
    n = 0
    while len(items) < want and pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0 and not final:
            break
        end = len(data) if nl < 0 else nl
        line = data[pos:end]
        n += 1
        pos = len(data) if nl < 0 else nl + 1
        if not line.strip(_BLANK):
            continue
        items.append(parse(line, n))
    return items, pos, n


class ItemWriter:
    """``ItemWriter(key_fields, topic, table, schema, source, op="r")``.

    Items that are not stream records (a Scan page's ``Items``, an export's ``{"Item": ...}``
    lines) → SourceRecords whose ``encoded_value`` is ``head + map<AttributeValue> + tail``
    and whose ``encoded_key`` is the key record; the caller gives head and tail (for the
    envelope: op, before, the after branch; then source and ts_ms). Refuses (ValueError) what
    the C one refuses: then the caller takes the general path for that page or batch.
    """

    def __init__(
        self, key_fields: Sequence[tuple[str, str]], topic: str, table: str, schema: Any,
        source: dict[str, Any], op: str = "r",
    ) -> None:
        self._key_fields = _key_fields(key_fields)
        self._topic, self._table, self._schema, self._source, self._op = topic, table, schema, source, op

    def _records(self, items: list[Any], head: bytes, tail: bytes, ts_ms: int) -> list[ChangeRecord]:
        out = []
        for item in items:
            _check_item(item, 1)
            key = {}
            for f in self._key_fields:
                av = item.get(f.name)
                if av is None:
                    raise _bad("item without a key attribute")
                if f.type not in av:
                    raise _bad("key attribute's type is not the table's")
                key[f.name] = av
            value = head + encode_item(item) + tail
            out.append(ChangeRecord(self._topic, self._schema, key, None, self._source, ts_ms, False,
                                    encode_key(self._key_fields, key), value))
        return out

    def scan_page(self, body: bytes, head: bytes, tail: bytes, ts_ms: int) -> tuple[list[Any], dict[str, bytes]]:
        """Scan response body → (records of its Items, {other member: its JSON})."""
        doc, items = _document(body, "Items")
        rest = {k: orjson.dumps(v) for k, v in doc.items() if k != "Items"}
        return self._records(items, head, tail, ts_ms), rest

    def lines(
        self, data: bytes, pos: int, max_records: int, final: bool, head: bytes, tail: bytes, ts_ms: int
    ) -> tuple[list[Any], int, int]:
        """Export lines from byte ``pos`` → (records, position after the last line read, lines read)."""
        if not 0 <= pos <= len(data) or max_records < 0:
            raise ValueError("lines: pos must be within data, max_records >= 0")
        items, pos, n = read_lines(data, pos, max_records, final, self._line_item)
        return self._records(items, head, tail, ts_ms), pos, n

    @staticmethod
    def _line_item(line: bytes, n: int) -> Any:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise _bad(f"export line: not valid JSON: {e}") from None
        if type(doc) is not dict or "Item" not in doc:
            raise _bad("export line has no Item")
        return doc["Item"]
