"""``format: json``: plain UTF-8 JSON, no registry (Kafka Connect's ``JsonConverter``).

Without the wrapper (``schemas.enable=false`` in Connect's terms) the message is the value
itself: records as objects, arrays, maps as objects, bytes as base64 text, decimals as their
exact text, unions as the value of their branch; a field whose default is null is left out
while null (so a record of optional fields with one set reads as that one: ``{"N": "1"}``). With ``schemas_enable: true`` it is
``{"schema": <Connect schema>, "payload": <value>}`` as Connect's ``JsonConverter`` writes
it (decimals then as Connect's ``Decimal``: base64 of the unscaled integer, exact).
"""

from __future__ import annotations

from typing import Any

import orjson

from bridge.errors import ConfigError
from bridge.serde.formats.avro_json import compile_json_reader
from bridge.serde.formats.model import (
    ArrayT,
    DecimalT,
    EnumT,
    MapT,
    Node,
    PrimT,
    RecordT,
    UnionT,
    avro_model,
    b64,
    decimal_text,
    unscaled_of,
)

__all__ = ["JsonConverter", "connect_schema", "to_json"]

_CONNECT_UNION = "io.confluent.connect.avro.Union"
_CONNECT_DECIMAL = "org.apache.kafka.connect.data.Decimal"
_CONNECT_TYPES = {"boolean": "boolean", "int": "int32", "long": "int64", "float": "float", "double": "double",
                  "string": "string", "bytes": "bytes", "fixed": "bytes"}


def to_json(node: Node, v: Any, *, connect: bool = False) -> Any:
    """The JSON-able value of Avro data ``v`` of ``node``."""
    if v is None:
        return None
    if isinstance(node, UnionT):
        branch = node.branch_of(v)
        if connect and len(node.others) > 1:  # Connect's Union struct: one field per branch
            return {_branch_name(b): (to_json(b, v, connect=True) if b is branch else None) for b in node.others}
        return to_json(branch, v, connect=connect)
    if isinstance(node, RecordT):
        if connect:
            return {name: to_json(f, v.get(name), connect=True) for name, f in node.fields}
        omit = node.optional
        return {name: to_json(f, x) for name, f in node.fields if (x := v.get(name)) is not None or name not in omit}
    if isinstance(node, ArrayT):
        return [to_json(node.items, x, connect=connect) for x in v]
    if isinstance(node, MapT):
        return {k: to_json(node.values, x, connect=connect) for k, x in v.items()}
    if isinstance(node, DecimalT):
        if connect:
            unscaled = unscaled_of(v, node.scale)
            return b64(unscaled.to_bytes(max(1, (unscaled.bit_length() + 8) // 8), "big", signed=True))
        return decimal_text(v)
    if isinstance(node, PrimT) and node.kind in ("bytes", "fixed"):
        return b64(v)
    return v


def _branch_name(node: Node) -> str:
    if isinstance(node, RecordT | EnumT):
        return node.name
    if isinstance(node, DecimalT):
        return "bytes"
    if isinstance(node, PrimT):
        return _CONNECT_TYPES.get(node.kind, node.kind)
    return "array" if isinstance(node, ArrayT) else "map"


def connect_schema(node: Node, optional: bool = False, field: str | None = None,
                   _path: tuple[int, ...] = ()) -> dict[str, Any]:
    """Kafka Connect's JSON form of a schema (``JsonConverter``'s ``schema`` part)."""
    out: dict[str, Any]
    if id(node) in _path:
        raise ConfigError(f"schemas_enable: true: the schema is recursive ({getattr(node, 'full_name', node)}), which "
                          "Kafka Connect's schemas cannot express; use schemas_enable: false or a schema without "
                          "recursion")
    path = _path + (id(node),) if isinstance(node, RecordT) else _path
    if isinstance(node, UnionT):
        others = node.others
        if len(others) == 1:
            return connect_schema(others[0], optional or node.nullable, field, path)
        out = {"type": "struct", "name": _CONNECT_UNION,
               "fields": [connect_schema(b, True, _branch_name(b), path) for b in others]}
        optional = optional or node.nullable
    elif isinstance(node, RecordT):
        out = {"type": "struct", "name": node.full_name,
               "fields": [connect_schema(f, False, name, path) for name, f in node.fields]}
    elif isinstance(node, ArrayT):
        out = {"type": "array", "items": connect_schema(node.items, False, None, path)}
    elif isinstance(node, MapT):
        out = {"type": "map", "keys": {"type": "string", "optional": False},
               "values": connect_schema(node.values, False, None, path)}
    elif isinstance(node, DecimalT):
        out = {"type": "bytes", "name": _CONNECT_DECIMAL, "version": 1,
               "parameters": {"scale": str(node.scale), "connect.decimal.precision": str(node.precision)}}
    elif isinstance(node, EnumT):
        out = {"type": "string"}
    else:
        out = {"type": _CONNECT_TYPES.get(node.kind, "string")}
    out["optional"] = optional
    if field is not None:
        out["field"] = field
    return out


class JsonConverter:
    schema_type = None
    schema = ""

    def __init__(self, avro_schema: str, wrap: bool) -> None:
        self._model = avro_model(avro_schema)
        self._wrap = connect_schema(self._model.root) if wrap else None
        self._read = compile_json_reader(self._model.root)

    def convert(self, body: bytes) -> bytes:
        if self._wrap is None:
            return orjson.dumps(self._read(body))
        payload = to_json(self._model.root, self._model.decode(body), connect=True)
        return orjson.dumps({"schema": self._wrap, "payload": payload})
