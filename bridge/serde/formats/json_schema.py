"""``format: json_schema``: JSON values with a JSON Schema (draft-07) generated from the Avro
schema, registered with ``schemaType: JSON``, in Confluent wire format (magic byte, schema
id, UTF-8 JSON), as confluent-kafka's ``JSONSerializer`` writes.

The JSON is the plain converter's (``json_plain.py``). Records are *closed* objects
(``additionalProperties: false``) with their non-null fields ``required``: under Confluent's
JSON Schema rules an optional property added to a closed object is BACKWARD compatible
(old data cannot have it), while adding one to an open object is not. Named records other
than the root live in ``definitions`` and are reached by ``$ref`` (a record may refer to
itself). Decimals are strings of their exact text; bytes are
base64 strings.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from bridge.serde.formats.avro_json import compile_json_reader
from bridge.serde.formats.model import ArrayT, DecimalT, EnumT, MapT, Node, RecordT, UnionT, avro_model

__all__ = ["JsonSchemaConverter", "json_schema"]

DRAFT = "http://json-schema.org/draft-07/schema#"
_PRIMS: dict[str, dict[str, Any]] = {
    "null": {"type": "null"}, "boolean": {"type": "boolean"}, "int": {"type": "integer"}, "long": {"type": "integer"},
    "float": {"type": "number"}, "double": {"type": "number"}, "string": {"type": "string"},
    "bytes": {"type": "string", "contentEncoding": "base64"}, "fixed": {"type": "string", "contentEncoding": "base64"},
}


def json_schema(root: Node) -> dict[str, Any]:
    """The JSON Schema of an Avro schema's graph."""
    definitions: dict[str, dict[str, Any]] = {}

    def record(node: RecordT) -> dict[str, Any]:
        return {
            "type": "object",
            "title": node.full_name,
            "additionalProperties": False,
            "properties": {name: walk(f) for name, f in node.fields},
            "required": [name for name, f in node.fields if not (isinstance(f, UnionT) and f.nullable)],
        }

    def walk(node: Node) -> dict[str, Any]:
        if isinstance(node, RecordT):
            if node is root:
                return {"$ref": "#"}
            if node.full_name not in definitions:
                definitions[node.full_name] = {}  # a place first: the record may refer to itself
                definitions[node.full_name] = record(node)
            return {"$ref": f"#/definitions/{node.full_name}"}
        if isinstance(node, UnionT):
            branches = [walk(b) for b in node.branches]
            if len(branches) == 1:
                return branches[0]
            return {"oneOf" if len(node.others) == 1 else "anyOf": branches}
        if isinstance(node, ArrayT):
            return {"type": "array", "items": walk(node.items)}
        if isinstance(node, MapT):
            return {"type": "object", "additionalProperties": walk(node.values)}
        if isinstance(node, DecimalT):
            return {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
                    "description": f"decimal({node.precision}, {node.scale}) as its exact text"}
        if isinstance(node, EnumT):
            return {"type": "string", "enum": list(node.symbols)}
        return dict(_PRIMS[node.kind])

    top: dict[str, Any] = {"$schema": DRAFT}
    top.update(record(root) if isinstance(root, RecordT) else walk(root))
    if definitions:
        top["definitions"] = definitions
    return top


class JsonSchemaConverter:
    schema_type = "JSON"

    def __init__(self, avro_schema: str) -> None:
        self._model = avro_model(avro_schema)
        self.schema = json.dumps(json_schema(self._model.root), separators=(",", ":"))
        self._read = compile_json_reader(self._model.root)

    def convert(self, body: bytes) -> bytes:
        return orjson.dumps(self._read(body))
