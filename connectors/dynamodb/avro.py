"""Avro binary encoding of the bridge's records, straight from DynamoDB JSON.

The AttributeValue schema has one nullable field per DynamoDB type, in a fixed order, so
an attribute ``{"N": "1.5"}`` encodes as "null" markers for the other nine fields and the
value in its own: a constant prefix, the value, a constant suffix. That lets us write Avro
without first building the dict-of-ten-fields a generic writer (fastavro) would need,
which is most of the cost of the obvious path. Output is byte-identical to fastavro's.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.errors import ConversionError
from connectors.dynamodb.schemas import KeyField

__all__ = [
    "MAX_ATTRIBUTE_DEPTH",
    "encode_attribute",
    "encode_envelope",
    "encode_item",
    "encode_key",
    "encode_long",
    "item_from_avro",
]

_TYPES = ("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS")
# For the field at index i: i "null" branches (0x00), then the "value" branch (0x02).
_PREFIX = {t: b"\x00" * i + b"\x02" for i, t in enumerate(_TYPES)}
_SUFFIX = {t: b"\x00" * (len(_TYPES) - 1 - i) for i, t in enumerate(_TYPES)}
_NULL = b"\x00"
_SMALL = [bytes([n << 1]) for n in range(64)]  # zig-zag of 0..63 fits one byte


def encode_long(n: int) -> bytes:
    """Avro zig-zag varint."""
    if 0 <= n < 64:
        return _SMALL[n]
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z & ~0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# Deeper attribute values are refused: the C transcoder's limit (MAX_AV_DEPTH), and well
# inside Python's recursion limit (an M level is two frames here).
MAX_ATTRIBUTE_DEPTH = 100


def _show(v: Any) -> str:
    """A bad value for an error message: its type and the start of its text."""
    return f"{type(v).__name__} {v!r:.60}"


def _inside(e: ConversionError, step: str) -> ConversionError:
    """``e``, noting that it happened inside ``step`` (a map name or a list index), so that the
    message can say where: ``NewImage['m']['S']: ...``."""
    e.path = step + getattr(e, "path", "")  # type: ignore[attr-defined]
    return e


def _where(e: ConversionError, image: str) -> ConversionError:
    path = getattr(e, "path", "")
    return ConversionError(f"{image}{path}: {e}") if path else ConversionError(f"{image}: {e}")


def _string(s: str) -> bytes:
    try:
        b = s.encode("utf-8")
    except AttributeError:
        raise ConversionError(f"expected a string, got {_show(s)}") from None
    except UnicodeEncodeError as e:
        raise ConversionError(f"string is not valid Unicode ({e.reason} at {e.start})") from None
    return encode_long(len(b)) + b


def _binary(v: bytes | bytearray | str) -> bytes:
    """DynamoDB's JSON wire format carries B as base64 text; boto3 hands us bytes."""
    if type(v) is str:
        try:
            b = base64.b64decode(v, validate=True)
        except ValueError as e:
            raise ConversionError(f"binary attribute is not valid base64: {e}") from None
    elif isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
    else:
        raise ConversionError(f"binary attribute must be base64 text or bytes, got {_show(v)}")
    return encode_long(len(b)) + b


def encode_attribute(av: Mapping[str, Any], out: list[bytes], depth: int = 1) -> None:
    """Append the encoding of one DynamoDB JSON attribute value to ``out``.

    Anything that is not an AttributeValue (the wrong JSON type anywhere, no type or two,
    an unknown type, bad base64, nesting past MAX_ATTRIBUTE_DEPTH) raises ConversionError:
    the record goes to the dead-letter topic, never a TypeError that stops the bridge. It
    refuses what the C transcoder refuses (tests/unit/test_malformed_records.py).
    """
    if type(av) is not dict and not isinstance(av, Mapping):
        raise ConversionError(f"attribute value must be an object with exactly one type, got {_show(av)}")
    if len(av) != 1:
        raise ConversionError(f"attribute value must have exactly one type, got {len(av)}: {list(av)!r:.80}")
    ((t, v),) = av.items()
    prefix = _PREFIX.get(t)
    if prefix is None:
        raise ConversionError(f"unknown DynamoDB attribute type {t!r:.40}")
    out.append(prefix)
    if t == "S" or t == "N":
        out.append(_string(v))  # refuses a non-string
    elif t == "M":
        if v and depth >= MAX_ATTRIBUTE_DEPTH:  # checked where nesting grows, not at every attribute
            raise ConversionError(f"attribute values nested deeper than {MAX_ATTRIBUTE_DEPTH} levels")
        _map(v, out, depth + 1)
    elif t == "L":
        if type(v) is not list:
            raise ConversionError(f"L takes an array, got {_show(v)}")
        if v and depth >= MAX_ATTRIBUTE_DEPTH:
            raise ConversionError(f"attribute values nested deeper than {MAX_ATTRIBUTE_DEPTH} levels")
        if v:
            out.append(encode_long(len(v)))
            for i, x in enumerate(v):
                try:
                    encode_attribute(x, out, depth + 1)
                except ConversionError as e:
                    raise _inside(e, f"[{i}]") from None
        out.append(_NULL)
    elif t == "B":
        out.append(_binary(v))
    elif t == "BOOL" or t == "NULL":
        if type(v) is not bool:
            raise ConversionError(f"{t} takes true or false, got {_show(v)}")
        out.append(b"\x01" if v else b"\x00")
    elif t == "BS":
        _array(t, v, _binary, out)
    else:  # SS, NS
        _array(t, v, _string, out)
    out.append(_SUFFIX[t])


def _array(t: str, values: Sequence[Any], enc: Any, out: list[bytes]) -> None:
    if type(values) is not list:
        raise ConversionError(f"{t} takes an array, got {_show(values)}")
    if values:
        out.append(encode_long(len(values)))
        out.extend(enc(x) for x in values)
    out.append(_NULL)


def _map(item: Mapping[str, Mapping[str, Any]], out: list[bytes], depth: int = 1) -> None:
    if type(item) is not dict and not isinstance(item, Mapping):
        raise ConversionError(f"an item (and M) must be an object of name: attribute value, got {_show(item)}")
    if item:
        out.append(encode_long(len(item)))
        for name, av in item.items():
            out.append(_string(name))  # refuses a name that is not a string
            try:
                encode_attribute(av, out, depth)
            except ConversionError as e:
                raise _inside(e, f"[{name!r:.40}]") from None
    out.append(_NULL)


def encode_item(item: Mapping[str, Mapping[str, Any]]) -> bytes:
    """Encode a whole item as Avro ``map<AttributeValue>``."""
    out: list[bytes] = []
    try:
        _map(item, out)
    except ConversionError as e:
        raise _where(e, "item") from None
    return b"".join(out)


def encode_key(key_fields: Sequence[KeyField], key: Mapping[str, Mapping[str, Any]]) -> bytes:
    """Encode the table's Key record: S and N as strings, B as bytes, in schema order."""
    if type(key) is not dict and not isinstance(key, Mapping):
        raise ConversionError(f"the key must be an object of name: attribute value, got {_show(key)}")
    out: list[bytes] = []
    for kf in key_fields:
        av = key.get(kf.name)
        if av is not None and type(av) is not dict and not isinstance(av, Mapping):
            raise ConversionError(f"key attribute {kf.name!r} is not an attribute value: {_show(av)}")
        if av is not None and len(av) != 1:
            raise ConversionError(f"key attribute {kf.name!r} must have exactly one type, got {list(av)!r:.80}")
        v = None if av is None else av.get(kf.type)
        if v is None:
            raise ConversionError(f"key attribute {kf.name!r} of type {kf.type} missing in {key!r:.200}")
        if kf.type == "B":
            out.append(_binary(v))
        elif type(v) is not str:
            raise ConversionError(f"key attribute {kf.name!r} ({kf.type}) must be a string, got {_show(v)}")
        else:
            out.append(_string(v))
    return b"".join(out)


def _opt_string(v: str | None) -> bytes:
    return _NULL if v is None else b"\x02" + _string(v)


def _opt_long(v: int | None) -> bytes:
    return _NULL if v is None else b"\x02" + encode_long(v)


def encode_source(src: Mapping[str, Any]) -> bytes:
    """Encode the Source record; field order follows connectors/dynamodb/schemas/source.avsc."""
    g = src.get
    return b"".join(
        (
            _string(src["connector"]),
            _string(src["table"]),
            _opt_string(g("region")),
            _opt_string(g("stream_arn")),
            _opt_string(g("shard_id")),
            _opt_string(g("sequence_number")),
            _opt_string(g("event_id")),
            _opt_string(g("snapshot")),
            _opt_long(g("segment")),
            _opt_long(g("total_segments")),
            _opt_long(g("approximate_creation_ms")),
            b"\x01" if g("ttl_delete") else b"\x00",
        )
    )


def encode_envelope(
    op: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    source: Mapping[str, Any],
    ts_ms: int,
) -> bytes:
    """Encode the Envelope record; field order follows connectors/dynamodb/schemas/envelope.avsc."""
    out: list[bytes] = [_string(op)]
    for image in (before, after):
        if image is None:
            out.append(_NULL)
        else:
            out.append(b"\x02")
            try:
                _map(image, out)
            except ConversionError as e:
                raise _where(e, "OldImage" if image is before else "NewImage") from None
    out.append(encode_source(source))
    out.append(encode_long(ts_ms))
    return b"".join(out)


def _attribute_from_avro(av: Mapping[str, Any]) -> dict[str, Any]:
    for t in _TYPES:
        v = av.get(t)
        if v is None:
            continue
        if t == "M":
            return {"M": item_from_avro(v)}
        if t == "L":
            return {"L": [_attribute_from_avro(x) for x in v]}
        return {t: v}
    raise ConversionError(f"AttributeValue with no field set: {av!r}")


def item_from_avro(item: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any] | None:
    """Turn a decoded ``map<AttributeValue>`` back into DynamoDB JSON (B as bytes).

    For consumers and tests: a generic Avro reader returns all ten fields per attribute.
    """
    if item is None:
        return None
    return {name: _attribute_from_avro(av) for name, av in item.items()}
