"""The Avro schemas the bridge writes, and the loader that fills them in per table.

The schemas are kept as ``.avsc`` files so users can read them; the loader inlines the
named types (AttributeValue, Source) into each table's envelope, so the registered schema
has no references and works with any Confluent-compatible registry.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

__all__ = ["KeyField", "TableSchemas", "avro_field_names", "avro_name", "load_avsc", "table_schemas"]

KEY_AVRO_TYPES = {"S": "string", "N": "string", "B": "bytes"}
_INVALID = re.compile(r"[^A-Za-z0-9_]")


@cache
def load_avsc(name: str) -> dict[str, Any]:
    """Parse ``schemas/<name>.avsc`` shipped with the package."""
    return json.loads(resources.files(__name__).joinpath(f"{name}.avsc").read_text())


def avro_name(text: str) -> str:
    """Turn a DynamoDB table or attribute name into a valid Avro name.

    DynamoDB allows ``-`` and ``.`` in table names and anything in attribute names; Avro
    names are ``[A-Za-z_][A-Za-z0-9_]*``. Invalid characters become ``_``. Not one-to-one
    (``order-id`` and ``order_id`` both give ``order_id``): field names of one record come
    from :func:`avro_field_names`, which is.
    """
    name = _INVALID.sub("_", text)
    return name if name and not name[0].isdigit() else f"_{name}"


_VALID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _tag(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def avro_field_names(names: Sequence[str]) -> tuple[str, ...]:
    """Avro field names for attribute names of one record, distinct for any distinct inputs.

    The rule, decided once per table from its key schema (hash key first, then range key):

    1. A name that already is a valid Avro name is kept as it is.
    2. Any other name is sanitised by :func:`avro_name` (invalid characters become ``_``,
       a leading digit gets a ``_`` in front) -- unless the result equals another field's
       name, in which case ``_`` and the first 8 hex digits of the SHA-256 of the original
       UTF-8 name are appended (``order-id`` beside ``order_id`` becomes
       ``order_id_e3f2b5e8``; ``ü`` beside ``ö`` become ``__607474ca`` and ``__6dbd11fd``).
    3. Should that still clash (a field literally named so), the whole 64-digit hash is used.

    Names that are valid Avro names are therefore never changed, existing schemas keep
    their field names, and the mapping depends only on the names in the record, never on
    data. Field values are written by position, so the name never changes the bytes.
    """
    out: list[str] = []
    kept = {n for n in names if _VALID.match(n)}
    taken: set[str] = set(kept)
    for n in names:
        if n in kept:
            out.append(n)
            continue
        candidate = avro_name(n)
        if candidate in taken or sum(1 for m in names if m not in kept and avro_name(m) == candidate) > 1:
            candidate = f"{avro_name(n)}_{_tag(n, 8)}"
            if candidate in taken:
                candidate = f"{avro_name(n)}_{_tag(n, 64)}"
        taken.add(candidate)
        out.append(candidate)
    if len(set(out)) != len(out):  # not reachable short of a SHA-256 collision
        raise ValueError(f"attribute names {list(names)!r} cannot be told apart in Avro")
    return tuple(out)


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
    """Build the key and envelope schemas of ``table``; key field names per :func:`avro_field_names`."""
    namespace = f"ddbkafka.{avro_name(table)}"
    names = avro_field_names([kf.name for kf in key_fields])
    fields = []
    for kf, fname in zip(key_fields, names):
        # No "doc" with the original name: a key schema's text must not change for tables
        # whose names never clashed (auto_register: false looks schemas up by their text).
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
