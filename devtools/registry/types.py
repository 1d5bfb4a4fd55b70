"""The schema types the dev registry serves (AVRO, JSON, PROTOBUF): each parses a schema to
the text it stores and the identity it compares, and says whether one schema reads another's
data; ``check`` applies a compatibility level with any of them."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from devtools.registry import compat, json_compat, proto_compat
from devtools.registry.compat import CompatibilityLevel, InvalidSchemaError

__all__ = ["SCHEMA_TYPES", "Parsed", "Refs", "check", "parse"]


@dataclass(frozen=True)
class Parsed:
    schema_type: str
    text: str  # as stored and served
    canonical: str  # same schema, same canonical: same id
    obj: Any = field(repr=False, compare=False)


# A schema's references, resolved: (reference name, schema type, text), dependencies first.
Refs = tuple[tuple[str, str, str], ...]


def _refs_key(refs: Refs) -> str:
    return "" if not refs else "|refs:" + json.dumps([r[0] for r in refs])


def _avro(text: str, refs: Refs, normalize: bool) -> Parsed:
    known: dict[str, Any] = {}
    for _, kind, ref in refs:
        if kind == "AVRO":
            known.update(compat.parse_schema(ref, known).named)
    p = compat.parse_schema(text, known)
    return Parsed("AVRO", compat.compact_form(p), compat.canonical_form(p) + _refs_key(refs), p)


def _json(text: str, refs: Refs, normalize: bool) -> Parsed:
    schema = json_compat.parse(text)
    compact = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    normal = json_compat.canonical(schema)
    # Without normalize, key order is part of the schema (as Confluent's canonical string keeps it).
    return Parsed("JSON", normal if normalize else text, "JSON:" + (normal if normalize else compact) + _refs_key(refs),
                  schema)


def _protobuf(text: str, refs: Refs, normalize: bool) -> Parsed:
    fd = proto_compat.parse(text, tuple((name, ref) for name, _, ref in refs))
    return Parsed("PROTOBUF", text, proto_compat.canonical(fd) + _refs_key(refs), fd)


_PARSERS: dict[str, Callable[[str, Refs, bool], Parsed]] = {"AVRO": _avro, "JSON": _json, "PROTOBUF": _protobuf}
_READS: dict[str, Callable[[Any, Any], list[str]]] = {
    "AVRO": compat.can_read, "JSON": json_compat.can_read, "PROTOBUF": proto_compat.can_read}
SCHEMA_TYPES = ("JSON", "PROTOBUF", "AVRO")


def parse(text: str, schema_type: str = "AVRO", refs: Refs = (), *, normalize: bool = False) -> Parsed:
    """InvalidSchemaError for a schema that does not parse, or a type this registry does not serve.

    ``normalize`` (``?normalize=true``): the stored text is the normalized one where the type
    has one (JSON: keys sorted), and identity ignores what normalizing removes."""
    parser = _PARSERS.get(schema_type.upper())
    if parser is None:
        raise InvalidSchemaError(f"Invalid schema type {schema_type!r}; one of {', '.join(SCHEMA_TYPES)}")
    return parser(text, refs, normalize)


def check(level: CompatibilityLevel, new: Parsed, existing: Sequence[tuple[str, Parsed]]) -> list[str]:
    """Why ``new`` breaks ``level`` against ``existing`` ((label, schema), oldest first)."""
    if level is CompatibilityLevel.NONE or not existing:
        return []
    chosen = existing if level.transitive else existing[-1:]
    messages: list[str] = []
    for name, old in reversed(chosen):
        if old.schema_type != new.schema_type:
            messages.append(f"Incompatible schema type: {name} is {old.schema_type}, the new schema {new.schema_type}")
            continue
        reads = _READS[new.schema_type]
        if level.backward:
            messages += [f"the new schema cannot read data written with {name}: {p}" for p in reads(new.obj, old.obj)]
        if level.forward:
            messages += [f"{name} cannot read data written with the new schema: {p}" for p in reads(old.obj, new.obj)]
    return messages
