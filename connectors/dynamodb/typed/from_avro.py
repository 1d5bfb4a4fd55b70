"""A registered typed value schema → the model it was written from (``avro.value_schema``'s inverse).

So that a restart grows the table's schema from the subject's latest version instead of from
nothing: a field that ``widen`` made a union stays one (a narrower re-inference would fail
BACKWARD), and a steady table registers nothing new after a restart.
"""

from __future__ import annotations

import json
from typing import Any

from connectors.dynamodb.typed.names import ATTRIBUTE_PROPERTY
from connectors.dynamodb.typed.types import Arr, AVMap, Dec, Field, Prim, Rec, TType, UnionT

__all__ = ["rec_from_value_schema"]

_PRIMS = ("string", "boolean", "bytes", "long", "double")


def _one(node: Any) -> TType:
    if isinstance(node, str):
        if node in _PRIMS:
            return Prim(node)  # type: ignore[arg-type]
        raise ValueError(f"unexpected named type {node!r} in a typed schema")
    t = node.get("type")
    if t == "bytes" and node.get("logicalType") == "decimal":
        return Dec(int(node["precision"]), int(node.get("scale", 0)))
    if t in _PRIMS:
        return Prim(t, node.get("logicalType"))
    if t == "array":
        items = node["items"]
        return Arr(_of(items[1:] if isinstance(items, list) and items[:1] == ["null"] else [items]))
    if t == "map":
        return AVMap()
    if t == "record":
        return _rec(node)
    raise ValueError(f"unexpected type {node!r:.80} in a typed schema")


def _of(branches: list[Any]) -> TType | None:
    ts = tuple(_one(b) for b in branches)
    if not ts:
        return None
    return ts[0] if len(ts) == 1 else UnionT(ts)


def _rec(node: dict[str, Any]) -> Rec:
    fields = []
    for f in node["fields"]:
        t = f["type"]
        nullable = isinstance(t, list) and t[:1] == ["null"]
        branches = t[1:] if nullable else (t if isinstance(t, list) else [t])
        has_default = not nullable and "default" in f
        fields.append(Field(f[ATTRIBUTE_PROPERTY], _of(branches), nullable, f.get("default") if has_default else None,
                            has_default))
    return Rec(tuple(fields))


def rec_from_value_schema(text: str, image: str) -> Rec:
    """The item record of a value schema the typed shape registered (``image`` as configured)."""
    schema = json.loads(text)
    if image == "after":
        return _rec(schema)
    before = next(f for f in schema["fields"] if f["name"] == "before")
    return _rec(before["type"][1])
