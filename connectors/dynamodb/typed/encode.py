"""DynamoDB JSON items → Avro binary of a typed record, in the model's field order.

The reference writer: the C writer is held to its bytes (tests/unit/test_typed_writer.py).
Every field is written; an attribute the item lacks (or holds as NULL) is written as null,
so a removed attribute reads as null. A value no branch of its field takes raises
TypeConflict; an attribute the model does not know raises ``UnknownAttribute``: the caller
lets the schema grow (off the event loop) and writes again.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from bridge.errors import ConversionError
from connectors.dynamodb.typed.binary import bytes_bytes, long_bytes, string_bytes
from connectors.dynamodb.typed.infer import TypeConflict, branches, infer, value_kind
from connectors.dynamodb.typed.numbers import encode_number
from connectors.dynamodb.typed.types import Arr, AVMap, Dec, Field, Prim, Rec, TType

__all__ = ["UnknownAttribute", "encode_record", "encode_default"]


class UnknownAttribute(ConversionError):
    """An item holds an attribute its record has no field for yet (the schema must grow first)."""


def _binary(v: Any, path: str) -> bytes:
    if type(v) is not str:
        raise ConversionError(f"attribute {path}: B takes base64 text, got {v!r:.60}")
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise ConversionError(f"attribute {path}: binary value is not valid base64") from None


def _write(t: TType, k: str, v: Any, av: Any, out: list[bytes], path: str) -> bool:
    """Append ``v`` as branch type ``t``; False (nothing written) when it is not of that type."""
    if type(t) is Prim:
        kind = t.kind
        if kind == "string":
            if k != "S":
                return False
            if type(v) is not str:
                raise ConversionError(f"attribute {path}: S takes a string, got {v!r:.60}")
            try:
                out.append(string_bytes(v))
            except UnicodeEncodeError:
                raise ConversionError(f"attribute {path}: string is not valid Unicode") from None
            return True
        if kind == "boolean":
            if k != "BOOL":
                return False
            if type(v) is not bool:
                raise ConversionError(f"attribute {path}: BOOL takes true or false, got {v!r:.60}")
            out.append(b"\x01" if v else b"\x00")
            return True
        if kind == "bytes":
            if k != "B":
                return False
            out.append(bytes_bytes(_binary(v, path)))
            return True
    if type(t) is Prim or type(t) is Dec:
        if k != "N" or type(v) is not str:
            return False
        body = encode_number(t, v)
        if body is None:
            return False
        out.append(body)
        return True
    if type(t) is Arr:
        if k not in ("L", "SS", "NS", "BS"):
            return False
        if type(v) is not list:
            raise ConversionError(f"attribute {path}: {k} takes an array, got {v!r:.60}")
        if v:
            out.append(long_bytes(len(v)))
            inner = path + "[]"
            for x in v:
                _optional(t.items, x if k == "L" else {k[0]: x}, out, inner)
        out.append(b"\x00")
        return True
    if type(t) is Rec:
        if k != "M":
            return False
        encode_record(t, v, out, path)
        return True
    if type(t) is AVMap:
        if k != "M":
            return False
        from connectors.dynamodb.typed.avmap import encode_av_map

        out.append(encode_av_map(v, path))
        return True
    return False


def _optional(t: TType | None, av: Any, out: list[bytes], path: str) -> None:
    """A nullable position: ["null", *branches(t)]."""
    k, v = value_kind(av)
    if k == "NULL":
        if v is not True:
            raise ConversionError(f"attribute {path}: NULL takes true, got {v!r:.60}")
        out.append(b"\x00")
        return
    if t is None:
        raise UnknownAttribute(f"attribute {path} has no type yet")
    for i, b in enumerate(branches(t)):
        mark = len(out)
        out.append(long_bytes(i + 1))
        if _write(b, k, v, av, out, path):
            return
        del out[mark:]
    raise TypeConflict(path, t, av)


def _required(f: Field, av: Any, out: list[bytes], path: str) -> None:
    """A declared ``nullable: false`` field: its branches only (no null)."""
    if av is None or value_kind(av)[0] == "NULL":
        if not f.has_default:
            raise TypeConflict(path, f.type, av or {"NULL": True}, "declared nullable: false and has no default")
        out.append(encode_default(f))
        return
    k, v = value_kind(av)
    bs = branches(f.type)
    for i, b in enumerate(bs):
        mark = len(out)
        if len(bs) > 1:
            out.append(long_bytes(i))
        if _write(b, k, v, av, out, path):
            return
        del out[mark:]
    raise TypeConflict(path, f.type, av)


def encode_default(f: Field) -> bytes:
    """A declared default's body (the config allows defaults for string, boolean, long, double):
    the first branch's, which is the declared type (Avro's rule for a union's default), with
    its union index once ``widen`` has made the field a union."""
    bs = branches(f.type)
    t = bs[0]
    assert type(t) is Prim
    out: list[bytes] = [long_bytes(0)] if len(bs) > 1 else []
    av = {"string": "S", "boolean": "BOOL"}.get(t.kind, "N")
    v = f.default if av != "N" else str(f.default)
    if not _write(t, av, v, {av: v}, out, f.attribute):
        raise ConversionError(f"attribute {f.attribute}: default {f.default!r} does not fit {t.kind}")
    return b"".join(out)


def encode_record(rec: Rec, item: Any, out: list[bytes], path: str = "") -> None:
    """Append ``item`` (an item or an M) as record ``rec``."""
    if type(item) is not dict:
        raise ConversionError(f"{'attribute ' + path if path else 'item'}: must be an object, got {item!r:.60}")
    known = 0
    for f in rec.fields:
        av = item.get(f.attribute)
        where = f"{path}.{f.attribute}" if path else f.attribute
        if av is not None:
            known += 1
        if not f.nullable:
            _required(f, av, out, where)
        elif av is None:
            out.append(b"\x00")
        else:
            _optional(f.type, av, out, where)
    if known != len(item):
        names = {f.attribute for f in rec.fields}
        nulls = [n for n in names if n in item and item[n] is None]
        if nulls:  # JSON null where an AttributeValue object belongs (a malformed record)
            where = f"{path}.{nulls[0]}" if path else nulls[0]
            raise ConversionError(f"attribute {where}: must be an attribute value object, got null")
        new = next(n for n in item if n not in names)
        infer(item[new], "record", f"{path}.{new}" if path else new)  # its own error first (a list of mixed types)
        raise UnknownAttribute(f"attribute {(path + '.' if path else '') + new} has no field yet")
