"""The typed model → Avro schema text (key, value, or the envelope of typed images).

Deterministic: equal models give equal text, so the registry sees one schema per content
and a steady table registers nothing new. Every field of an attribute is optional
(``["null", ...]``, default null) unless declared ``nullable: false``, and carries the
attribute's original name in the ``attribute`` property. Named types: the item record is
``<namespace>.Item``; the record of an M attribute ``a`` is named after its field inside
its parent's full name (``<namespace>.Item.a``); list items of records add ``.item``.
"""

from __future__ import annotations

import json
from typing import Any

from bridge.errors import SchemaError
from connectors.dynamodb.schemas import KEY_AVRO_TYPES, KeyField, load_avsc
from connectors.dynamodb.typed.avmap import attribute_value_schema
from connectors.dynamodb.typed.infer import branches
from connectors.dynamodb.typed.names import ATTRIBUTE_PROPERTY, field_name
from connectors.dynamodb.typed.types import Arr, AVMap, Dec, Field, Prim, Rec, TType

__all__ = ["item_schema", "key_schema", "value_schema", "dumps"]

def dumps(schema: Any) -> str:
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


class _Names:
    """Full names defined so far in one schema: a named type is written once, then referenced."""

    def __init__(self) -> None:
        self.defined: set[str] = set()

    def define(self, fullname: str) -> None:
        if fullname in self.defined:
            raise SchemaError(f"typed schema: two records would be named {fullname!r}; rename an attribute "
                              f"or use maps: attribute_value")
        self.defined.add(fullname)


def _type(t: TType, parent: str, name: str, names: _Names) -> Any:
    if type(t) is Prim:
        return t.kind if t.logical is None else {"type": t.kind, "logicalType": t.logical}
    if type(t) is Dec:
        return {"type": "bytes", "logicalType": "decimal", "precision": t.precision, "scale": t.scale}
    if type(t) is Arr:
        return {"type": "array", "items": ["null", *(_type(b, f"{parent}.{name}", "item", names)
                                                    for b in branches(t.items))]}
    if type(t) is AVMap:
        av = attribute_value_schema()
        full = f"{av['namespace']}.{av['name']}"
        if full in names.defined:
            return {"type": "map", "values": full}
        names.defined.add(full)
        return {"type": "map", "values": av}
    assert type(t) is Rec
    full = f"{parent}.{name}"
    names.define(full)
    return {"type": "record", "name": name, "namespace": parent,
            "fields": [_field(f, full, names) for f in t.fields]}


def _field(f: Field, parent: str, names: _Names) -> dict[str, Any]:
    fname = field_name(f.attribute)
    bs = [_type(b, parent, fname, names) for b in branches(f.type)]
    out: dict[str, Any] = {"name": fname}
    if f.nullable:
        out["type"] = ["null", *bs]
        out["default"] = None
    else:
        out["type"] = bs[0] if len(bs) == 1 else bs
        if f.has_default:
            out["default"] = f.default
    out[ATTRIBUTE_PROPERTY] = f.attribute
    return out


def item_schema(rec: Rec, namespace: str) -> dict[str, Any]:
    names = _Names()
    return _type(rec, namespace, "Item", names)


def value_schema(rec: Rec, namespace: str, image: str) -> dict[str, Any]:
    """``image: after``: the item record alone; ``envelope``: op, before, after, source, ts_ms
    in the envelope's places, with the item record for both images."""
    item = item_schema(rec, namespace)
    if image == "after":
        return item
    envelope = json.loads(json.dumps(load_avsc("envelope")))
    envelope["namespace"] = namespace
    envelope["doc"] = ("One change to one item, images as typed records. op: c=insert, u=modify, d=remove, "
                       "r=snapshot read. A delete is followed by a tombstone (null value) with the same key.")
    by_name = {f["name"]: f for f in envelope["fields"]}
    by_name["before"]["type"] = ["null", item]
    by_name["after"]["type"] = ["null", f"{namespace}.Item"]
    by_name["source"]["type"] = load_avsc("source")
    return envelope


def key_schema(key_fields: tuple[KeyField, ...], namespace: str) -> dict[str, Any]:
    """The key record: S and N as strings (N keeps its exact text), B as bytes; the same
    bytes as the envelope shape's key, field names by the typed rule with ``attribute``."""
    fields = [{"name": field_name(k.name), "type": KEY_AVRO_TYPES[k.type], ATTRIBUTE_PROPERTY: k.name} for k in key_fields]
    key = dict(load_avsc("key"), namespace=namespace, fields=fields)
    return key
