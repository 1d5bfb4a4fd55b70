"""The Avro schemas the bridge writes, and the loader that fills them in per table.

The schemas are kept as ``.avsc`` files so users can read them; the loader inlines the
named types (AttributeValue, Source) into each table's envelope, so the registered schema
has no references and works with any Confluent-compatible registry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

__all__ = ["KeyField", "TableSchemas", "avro_name", "load_avsc", "table_schemas"]

KEY_AVRO_TYPES = {"S": "string", "N": "string", "B": "bytes"}
_INVALID = re.compile(r"[^A-Za-z0-9_]")


@cache
def load_avsc(name: str) -> dict[str, Any]:
    """Parse ``schemas/<name>.avsc`` shipped with the package."""
    return json.loads(resources.files(__name__).joinpath(f"{name}.avsc").read_text())


def avro_name(text: str) -> str:
    """Turn a DynamoDB table or attribute name into a valid Avro name.

    DynamoDB allows ``-`` and ``.`` in table names and anything in attribute names; Avro
    names are ``[A-Za-z_][A-Za-z0-9_]*``. Invalid characters become ``_``.
    """
    name = _INVALID.sub("_", text)
    return name if name and not name[0].isdigit() else f"_{name}"


@dataclass(frozen=True, slots=True)
class KeyField:
    """One primary-key attribute: its DynamoDB name and scalar type (S, N or B)."""

    name: str
    type: Literal["S", "N", "B"]


@dataclass(frozen=True, slots=True)
class TableSchemas:
    """The key and value schemas for one table, as JSON text ready to register."""

    table: str
    key_fields: tuple[KeyField, ...]
    key_schema: str
    value_schema: str


@cache
def table_schemas(table: str, key_fields: tuple[KeyField, ...]) -> TableSchemas:
    """Build the key and envelope schemas of ``table``; raises ValueError on a key-name clash."""
    namespace = f"ddbkafka.{avro_name(table)}"
    fields = []
    seen: dict[str, str] = {}
    for kf in key_fields:
        fname = avro_name(kf.name)
        if fname in seen:
            raise ValueError(
                f"key attributes {seen[fname]!r} and {kf.name!r} map to the same Avro field {fname!r}"
            )
        seen[fname] = kf.name
        fields.append({"name": fname, "type": KEY_AVRO_TYPES[kf.type]})
    key = dict(load_avsc("key"), namespace=namespace, fields=fields)

    envelope = json.loads(json.dumps(load_avsc("envelope")))
    envelope["namespace"] = namespace
    by_name = {f["name"]: f for f in envelope["fields"]}
    by_name["before"]["type"][1]["values"] = load_avsc("attribute_value")
    by_name["source"]["type"] = load_avsc("source")
    return TableSchemas(
        table=table,
        key_fields=key_fields,
        key_schema=json.dumps(key, separators=(",", ":")),
        value_schema=json.dumps(envelope, separators=(",", ":")),
    )
