"""Avro bodies read straight into their plain-JSON form, by closures compiled from the schema.

The JSON formats need no Avro datum in between: this reader writes what ``json_plain.to_json``
makes of fastavro's datum (null optional fields left out, bytes as base64, decimals as exact
text, unions as their branch's value), in one pass. A nullable field (``["null", T]``, null
first, the shape of every optional field the connectors write) costs one byte compare when
it is null, which is most fields of a record of optional fields; fastavro's generic reader
pays a union dispatch for each. ``tests/unit/test_formats.py`` holds this reader to
``to_json`` over fastavro on every Avro type and on the bench's wide pages.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from decimal import Decimal
from struct import Struct
from struct import error as StructError
from typing import Any

from bridge.errors import ConversionError
from bridge.serde.formats.model import ArrayT, DecimalT, EnumT, MapT, Node, PrimT, RecordT, UnionT, decimal_text

__all__ = ["compile_json_reader"]

Reader = Callable[[bytes, int], tuple[Any, int]]
_DOUBLE, _FLOAT = Struct("<d"), Struct("<f")
_b64 = base64.b64encode


def _long(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return (n >> 1) ^ -(n & 1), pos
        shift += 7


def _boolean(buf: bytes, pos: int) -> tuple[Any, int]:
    return buf[pos] == 1, pos + 1


def _double(buf: bytes, pos: int) -> tuple[Any, int]:
    return _DOUBLE.unpack_from(buf, pos)[0], pos + 8


def _float(buf: bytes, pos: int) -> tuple[Any, int]:
    return _FLOAT.unpack_from(buf, pos)[0], pos + 4


def _string(buf: bytes, pos: int) -> tuple[Any, int]:
    n, pos = _long(buf, pos)
    end = pos + n
    return buf[pos:end].decode("utf-8"), end


def _bytes_b64(buf: bytes, pos: int) -> tuple[Any, int]:
    n, pos = _long(buf, pos)
    end = pos + n
    return _b64(buf[pos:end]).decode("ascii"), end


def _null(buf: bytes, pos: int) -> tuple[Any, int]:
    return None, pos


_PRIMS: dict[str, Reader] = {"null": _null, "boolean": _boolean, "int": _long, "long": _long, "double": _double,
                             "float": _float, "bytes": _bytes_b64, "string": _string}


def _blocks(buf: bytes, pos: int) -> tuple[int, int]:
    n, pos = _long(buf, pos)
    if n < 0:  # a negative count is followed by the block's size in bytes
        _, pos = _long(buf, pos)
        n = -n
    return n, pos


def compile_json_reader(root: Node) -> Callable[[bytes], Any]:
    """An Avro body of ``root``'s schema → its plain-JSON value; ConversionError when it does not fit."""
    made: dict[int, Reader] = {}

    def make(node: Node) -> Reader:
        found = made.get(id(node))
        if found is not None:
            return found
        if isinstance(node, RecordT):
            # (name, reader of the value, nullable-null-first, leave out when null)
            fields: list[tuple[str, Reader, bool, bool]] = []

            def record(buf: bytes, pos: int) -> tuple[Any, int]:
                out: dict[str, Any] = {}
                for name, read, optional, omit in fields:
                    if optional:
                        b = buf[pos]
                        pos += 1
                        if b == 0:
                            if not omit:
                                out[name] = None
                            continue
                        if b != 2:
                            raise ValueError(f"union index {b} of field {name!r} out of range")
                    out[name], pos = read(buf, pos)
                return out, pos

            made[id(node)] = record  # before the fields: a record may contain itself
            for name, f in node.fields:
                simple = isinstance(f, UnionT) and len(f.branches) == 2 and isinstance(f.branches[0], PrimT) \
                    and f.branches[0].kind == "null"
                read = make(f.branches[1]) if simple else make(f)  # type: ignore[union-attr]
                fields.append((name, read, simple, name in node.optional))
            return record
        fn: Reader
        if isinstance(node, UnionT):
            branches = [make(b) for b in node.branches]

            def fn(buf: bytes, pos: int) -> tuple[Any, int]:
                i, pos = _long(buf, pos)
                if not 0 <= i < len(branches):
                    raise ValueError(f"union index {i} out of range")
                return branches[i](buf, pos)
        elif isinstance(node, ArrayT):
            item = make(node.items)

            def fn(buf: bytes, pos: int) -> tuple[Any, int]:
                out = []
                n, pos = _blocks(buf, pos)
                while n:
                    for _ in range(n):
                        x, pos = item(buf, pos)
                        out.append(x)
                    n, pos = _blocks(buf, pos)
                return out, pos
        elif isinstance(node, MapT):
            value = make(node.values)

            def fn(buf: bytes, pos: int) -> tuple[Any, int]:
                out: dict[str, Any] = {}
                n, pos = _blocks(buf, pos)
                while n:
                    for _ in range(n):
                        k, pos = _string(buf, pos)
                        out[k], pos = value(buf, pos)
                    n, pos = _blocks(buf, pos)
                return out, pos
        elif isinstance(node, DecimalT):
            scale, size = node.scale, node.size

            def fn(buf: bytes, pos: int) -> tuple[Any, int]:
                if size:
                    raw, pos = buf[pos:pos + size], pos + size
                else:
                    n, pos = _long(buf, pos)
                    raw, pos = buf[pos:pos + n], pos + n
                unscaled = int.from_bytes(raw, "big", signed=True)
                return decimal_text(Decimal(f"{unscaled}E-{scale}") if scale else Decimal(unscaled)), pos
        elif isinstance(node, EnumT):
            symbols = node.symbols

            def fn(buf: bytes, pos: int) -> tuple[Any, int]:
                i, pos = _long(buf, pos)
                return symbols[i], pos
        elif isinstance(node, PrimT) and node.kind == "fixed":
            size = node.size

            def fn(buf: bytes, pos: int) -> tuple[Any, int]:
                return _b64(buf[pos:pos + size]).decode("ascii"), pos + size
        else:
            assert isinstance(node, PrimT)
            fn = _PRIMS[node.kind]
        made[id(node)] = fn
        return fn

    read = make(root)

    def decode(body: bytes) -> Any:
        try:
            value, end = read(body, 0)
        except (IndexError, UnicodeDecodeError, ValueError, StructError) as e:  # StructError: a cut double
            raise ConversionError(f"the Avro body does not decode with its schema: {e}") from None
        if end != len(body):
            raise ConversionError(f"the Avro body does not decode with its schema: {len(body) - end} bytes left over")
        return value

    return decode
