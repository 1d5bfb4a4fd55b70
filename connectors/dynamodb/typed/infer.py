"""Attribute values → types, and a type grown by the values it meets (inference and widening).

``absorb(t, av, widen)`` is the one place that decides whether a value changes its field's
type: a NULL never does; a first value sets it; an M gaining a key adds an optional field to
its record; a list's items absorb each element. A value that does not fit is a
``TypeConflict``, unless ``widen`` (the ``widen`` policy), where the field becomes (or
grows) a union with the value's own type. Nothing is narrowed and nothing is rounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.errors import ConversionError
from connectors.dynamodb.typed.names import check_distinct
from connectors.dynamodb.typed.numbers import encode_number, infer_number
from connectors.dynamodb.typed.types import Arr, AVMap, Dec, Field, Prim, Rec, TType, UnionT

__all__ = ["TypeConflict", "absorb", "absorb_item", "branches", "describe", "infer", "value_kind"]

_STRING, _BOOLEAN, _BYTES = Prim("string"), Prim("boolean"), Prim("bytes")


class TypeConflict(ConversionError):
    """A value that does not fit its field's type; ``path`` names the attribute (``a.b[]``)."""

    def __init__(self, path: str, expected: TType | None, value: Mapping[str, Any], why: str = "") -> None:
        self.path, self.expected = path, expected
        shown = f"{value!r:.80}"
        super().__init__(f"type conflict at attribute {path}: {shown} does not fit {describe(expected)}"
                         + (f" ({why})" if why else ""))


def describe(t: TType | None) -> str:
    """Short text of a type for messages and headers: ``decimal(38,0)``, ``array<long>``, ..."""
    if t is None:
        return "null"
    if type(t) is Prim:
        return t.kind if t.logical is None else f"{t.kind}({t.logical})"
    if type(t) is Dec:
        return f"decimal({t.precision},{t.scale})"
    if type(t) is Arr:
        return f"array<{describe(t.items)}>"
    if type(t) is AVMap:
        return "map<AttributeValue>"
    if type(t) is Rec:
        return "record{" + ",".join(f.attribute for f in t.fields) + "}"
    assert type(t) is UnionT
    return "union<" + ",".join(describe(b) for b in t.branches) + ">"


def branches(t: TType | None) -> tuple[TType, ...]:
    if t is None:
        return ()
    return t.branches if type(t) is UnionT else (t,)


def _avro_kind(t: TType) -> str:
    """What a union may hold once. Avro allows one branch per type; string and bytes (and a
    decimal, which is bytes) count as one here too, because readers promote one to the other
    and fastavro resolves a union to its first promotable branch, not the exact one."""
    if type(t) is Prim:
        return "bytes" if t.kind == "string" else t.kind
    if type(t) is Dec:
        return "bytes"
    return {Arr: "array", AVMap: "map", Rec: "record"}[type(t)]


def _with(bs: tuple[TType, ...], new: TType) -> tuple[TType, ...]:
    """``new`` added to union branches; long always before double, so that a reader resolving
    a long value (promotable to double) meets the exact branch first."""
    if new == Prim("long") and Prim("double") in bs:
        i = bs.index(Prim("double"))
        return bs[:i] + (new,) + bs[i:]
    return bs + (new,)


def value_kind(av: Any) -> tuple[str, Any]:
    """(DynamoDB type, value) of one attribute value; ConversionError when it is not one."""
    if type(av) is not dict or len(av) != 1:
        raise ConversionError(f"attribute value must be an object with exactly one type, got {av!r:.80}")
    ((k, v),) = av.items()
    return k, v


def infer(av: Any, maps: str, path: str, widen: bool = False) -> TType | None:
    """The type of one value seen alone (a list of mixed types is a union only with ``widen``)."""
    k, v = value_kind(av)
    if k == "S":
        return _STRING
    if k == "N":
        t = infer_number(v) if type(v) is str else None
        if t is None:
            raise ConversionError(f"attribute {path}: N {v!r:.60} is not a number that long, double or "
                                  f"decimal(38, s) holds exactly")
        return t
    if k == "B":
        return _BYTES
    if k == "BOOL":
        return _BOOLEAN
    if k == "NULL":
        return None
    if k == "M":
        return AVMap() if maps == "attribute_value" else absorb_item(Rec(), v, maps, widen, path)
    if k in ("L", "SS", "NS", "BS"):
        return absorb(Arr(None), av, maps, widen, path)  # type: ignore[arg-type]
    raise ConversionError(f"attribute {path}: unknown DynamoDB type {k!r:.20}")


def _fits_scalar(t: TType, k: str, v: Any) -> bool:
    if type(t) is Prim:
        kind = t.kind
        if k == "S":
            return kind == "string"
        if k == "B":
            return kind == "bytes"
        if k == "BOOL":
            return kind == "boolean"
        if k == "N":
            return kind in ("long", "double") and type(v) is str and encode_number(t, v) is not None
        return False
    if type(t) is Dec:
        return k == "N" and type(v) is str and encode_number(t, v) is not None
    return False


def absorb(t: TType | None, av: Any, maps: str, widen: bool, path: str) -> TType | None:
    """``t`` grown to take ``av`` (the same object when it already does); TypeConflict otherwise."""
    k, v = value_kind(av)
    if k == "NULL":
        return t
    if t is None:
        return infer(av, maps, path, widen)
    for i, b in enumerate(branches(t)):
        if _fits_scalar(b, k, v):
            return t
        grown = _absorb_structured(b, k, v, av, maps, widen, path)
        if grown is not None:
            if grown is b:
                return t
            if type(t) is UnionT:
                return UnionT(t.branches[:i] + (grown,) + t.branches[i + 1:])
            return grown
    if not widen:
        raise TypeConflict(path, t, av)
    new = infer(av, maps, path, widen)
    assert new is not None
    kinds = [_avro_kind(b) for b in branches(t)]
    if _avro_kind(new) in kinds:  # e.g. bytes beside decimal: Avro allows one bytes branch
        raise TypeConflict(path, t, av, f"a union cannot hold a second {_avro_kind(new)} branch")
    return UnionT(_with(branches(t), new))


def _absorb_structured(b: TType, k: str, v: Any, av: Any, maps: str, widen: bool, path: str) -> TType | None:
    """``b`` grown to take a structured value (M, L, a set), or None if ``b`` is not its kind."""
    if k == "M" and type(b) is AVMap:
        if type(v) is not dict:
            raise ConversionError(f"attribute {path}: M takes an object, got {v!r:.60}")
        return b
    if k == "M" and type(b) is Rec:
        return absorb_item(b, v, maps, widen, path)
    if k in ("L", "SS", "NS", "BS") and type(b) is Arr:
        if type(v) is not list:
            raise ConversionError(f"attribute {path}: {k} takes an array, got {v!r:.60}")
        items = b.items
        inner = path + "[]"
        for x in v:
            if k != "L":
                x = {k[0]: x}
            items = absorb(items, x, maps, widen, inner)
        return b if items is b.items else Arr(items)
    return None


def absorb_item(rec: Rec, item: Any, maps: str, widen: bool, path: str = "") -> Rec:
    """``rec`` grown by one item (or M): new keys become optional fields at the end, in the
    item's order; known ones absorb their values. The same object when nothing changed."""
    if type(item) is not dict:
        raise ConversionError(f"{'attribute ' + path if path else 'item'}: must be an object of name: attribute "
                              f"value, got {item!r:.60}")
    fields = list(rec.fields)
    index = {f.attribute: i for i, f in enumerate(fields)}
    changed = False
    for name, av in item.items():
        where = f"{path}.{name}" if path else name
        i = index.get(name)
        if i is None:
            value_kind(av)  # refuse a non-attribute before it becomes a field
            fields.append(Field(name, infer(av, maps, where, widen)))
            index[name] = len(fields) - 1
            changed = True
            continue
        f = fields[i]
        t = absorb(f.type, av, maps, widen, where)
        if t is not f.type and f.has_default and not f.nullable and type(t) is UnionT:
            # Avro takes a union's default as its first branch's: the declared type stays
            # first, even where _with would put a long before it (a declared double).
            first = branches(f.type)[0]
            if t.branches[0] != first:
                t = UnionT((first, *(b for b in t.branches if b != first)))
        if t is not f.type:
            fields[i] = Field(f.attribute, t, f.nullable, f.default, f.has_default)
            changed = True
    if not changed:
        return rec
    check_distinct([f.attribute for f in fields], path or "item")
    return Rec(tuple(fields))
