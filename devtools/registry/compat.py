"""Avro schema compatibility, decided by Avro's schema-resolution rules.

The registry refuses a new schema version when a consumer or producer in the field could
no longer decode data, so the rules here mirror what a decoder actually does when it
resolves a writer's schema against a reader's (Avro specification, "Schema Resolution"),
the same rules Confluent's registry applies through Avro Java's ``SchemaCompatibility``:

* record and enum names match when their unqualified names are equal or when one of the
  reader's aliases is the writer's full name (a decoder resolves by name, and Java compares
  unqualified names, so moving a type to another namespace stays compatible);
* primitives may be promoted (int → long/float/double, long → float/double,
  float → double, string ↔ bytes); logical types are ignored, as Java does;
* a recursive schema is checked coinductively: a pair of named types already being
  compared is assumed compatible, which is sound because any real mismatch inside it is
  reported where it occurs.

``check`` turns a compatibility level into reader/writer pairs and returns readable
messages; an empty list means compatible.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException, UnknownType

__all__ = [
    "CompatibilityLevel",
    "InvalidSchemaError",
    "ParsedSchema",
    "can_read",
    "canonical_form",
    "check",
    "compact_form",
    "parse_schema",
]

SchemaInput = Mapping[str, Any] | Sequence[Any] | str

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED_KINDS = frozenset({"record", "error", "enum", "fixed"})

# writer type -> reader types that can decode it (besides itself)
_PROMOTIONS: Mapping[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


class CompatibilityLevel(StrEnum):
    """Confluent's compatibility levels; the value is what the REST API carries."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @classmethod
    def parse(cls, value: str | CompatibilityLevel) -> CompatibilityLevel:
        """Accept any case, because clients send ``backward`` as often as ``BACKWARD``."""
        if isinstance(value, CompatibilityLevel):
            return value
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            allowed = ", ".join(level.value for level in cls)
            raise ValueError(f"unknown compatibility level {value!r}; expected one of {allowed}") from None

    @property
    def transitive(self) -> bool:
        return self.value.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        """The new schema must read old data."""
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """Old schemas must read data written with the new one."""
        return self.value.startswith(("FORWARD", "FULL"))


class InvalidSchemaError(ValueError):
    """The text is not JSON or not a valid Avro schema; the registry answers 42201 for it."""


@dataclass(frozen=True)
class ParsedSchema:
    """A validated schema with every named type reachable by full name.

    ``root`` is fastavro's parsed form, in which names are fully qualified and a reference to
    a named type is its full name; ``named`` resolves those references.
    """

    root: Any
    named: Mapping[str, Mapping[str, Any]] = field(repr=False)
    raw: Any = field(repr=False)


def _load(schema: SchemaInput) -> Any:
    if isinstance(schema, str):
        if schema.strip() in PRIMITIVES:
            return schema.strip()  # a bare primitive name (`null` would otherwise load as None)
        try:
            return json.loads(schema)
        except ValueError:
            raise InvalidSchemaError(f"schema is not valid JSON: {schema[:80]!r}") from None
    return copy.deepcopy(schema)


def parse_schema(schema: SchemaInput | ParsedSchema, known: Mapping[str, Any] | None = None) -> ParsedSchema:
    """Validate with fastavro so the registry rejects exactly what a decoder would reject.

    ``known``: named types the schema may use by name (those of its references)."""
    if isinstance(schema, ParsedSchema):
        return schema
    raw = _load(schema)
    if isinstance(raw, Mapping) and not raw:
        raise InvalidSchemaError("schema is empty")
    _require_fields(raw)
    named: dict[str, Any] = dict(known or {})
    try:
        root = fastavro.parse_schema(copy.deepcopy(raw), named_schemas=named, _write_hint=False)
    except (SchemaParseException, UnknownType, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidSchemaError(f"invalid Avro schema: {exc}") from exc
    if isinstance(root, Mapping):
        root = {k: v for k, v in root.items() if not k.startswith("__")}
    _validate(root, named, set())
    return ParsedSchema(root=root, named=named, raw=raw)


def _require_fields(raw: Any) -> None:
    """fastavro quietly gives a record without ``fields`` an empty list; Avro Java refuses it."""
    if isinstance(raw, list):
        for branch in raw:
            _require_fields(branch)
    elif isinstance(raw, Mapping):
        if raw.get("type") in ("record", "error") and not isinstance(raw.get("fields"), list):
            raise InvalidSchemaError(f"invalid Avro schema: record {raw.get('name')!r} has no 'fields' list")
        for key in ("type", "items", "values"):
            if key in raw:
                _require_fields(raw[key])
        fields = raw.get("fields")
        for f in fields if isinstance(fields, list) else ():
            if isinstance(f, Mapping) and "type" in f:
                _require_fields(f["type"])


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not all(_NAME.fullmatch(part) for part in name.split(".")):
        raise InvalidSchemaError(f"invalid Avro schema: {what} name {name!r} is not a valid Avro name")


def _union_key(branch: Any, named: Mapping[str, Any]) -> str:
    if isinstance(branch, Mapping):
        kind = branch.get("type")
        if kind in NAMED_KINDS:
            return str(branch["name"])
        return str(kind) if isinstance(kind, str) else "?"
    if isinstance(branch, list):
        return "union"
    return str(branch)


def _validate(node: Any, named: Mapping[str, Any], seen: set[str]) -> None:
    """Reject what Avro Java (and so Confluent) rejects but fastavro lets through.

    fastavro is lenient by design; a registry that accepted these would hand out ids for
    schemas other clients cannot parse.
    """
    if isinstance(node, str):
        return
    if isinstance(node, list):
        keys: set[str] = set()
        for branch in node:
            if isinstance(branch, list):
                raise InvalidSchemaError("invalid Avro schema: a union may not directly contain another union")
            key = _union_key(branch, named)
            if key in keys:
                raise InvalidSchemaError(f"invalid Avro schema: union contains '{key}' twice")
            keys.add(key)
            _validate(branch, named, seen)
        return
    if not isinstance(node, Mapping):
        raise InvalidSchemaError(f"invalid Avro schema: unexpected {node!r}")
    kind = node.get("type")
    if kind in NAMED_KINDS:
        name = node.get("name")
        _check_name(name, str(kind))
        if name in seen:
            return
        seen.add(str(name))
        if kind == "enum":
            for symbol in node.get("symbols") or ():
                _check_name(symbol, "enum symbol")
        if kind in ("record", "error"):
            fields = node.get("fields")
            if not isinstance(fields, list):
                raise InvalidSchemaError(f"invalid Avro schema: record {name} has no 'fields' list")
            names: set[str] = set()
            for f in fields:
                _check_name(f.get("name"), "field")
                if f["name"] in names:
                    raise InvalidSchemaError(f"invalid Avro schema: record {name} has two fields named '{f['name']}'")
                names.add(f["name"])
                _validate(f["type"], named, seen)
    elif kind == "array":
        _validate(node["items"], named, seen)
    elif kind == "map":
        _validate(node["values"], named, seen)
    elif isinstance(kind, (Mapping, list)):
        _validate(kind, named, seen)


def _collapse(node: Any) -> Any:
    """Drop the ``{"type": "int"}`` wrapper that means plain ``"int"``, as Avro Java does.

    Only schema positions are rewritten; default values are data and stay as written.
    """
    if isinstance(node, list):
        return [_collapse(n) for n in node]
    if not isinstance(node, Mapping):
        return node
    if set(node) == {"type"} and node["type"] in PRIMITIVES:
        return node["type"]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("type", "items", "values"):
            out[key] = _collapse(value)
        elif key == "fields" and isinstance(value, list):
            out[key] = [_collapse(f) for f in value]
        else:
            out[key] = value
    return out


def compact_form(schema: SchemaInput | ParsedSchema) -> str:
    """The schema text to store and serve: compact, author's key order kept."""
    raw = parse_schema(schema).raw
    return json.dumps(_collapse(raw), separators=(",", ":"), ensure_ascii=False)


def canonical_form(schema: SchemaInput | ParsedSchema) -> str:
    """Identity of a schema for id assignment: whitespace and key order do not matter.

    Docs and defaults stay part of the identity, as in Confluent's registry without
    ``normalize=true``: a changed default is a new schema.
    """
    raw = parse_schema(schema).raw
    return json.dumps(_collapse(raw), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Resolution


def _full_aliases(node: Mapping[str, Any]) -> set[str]:
    """Aliases are relative to the type's namespace unless they contain a dot."""
    name: str = node["name"]
    namespace = name.rpartition(".")[0]
    out: set[str] = set()
    for alias in node.get("aliases") or ():
        out.add(alias if "." in alias or not namespace else f"{namespace}.{alias}")
    return out


def _short(name: str) -> str:
    return name.rpartition(".")[2]


def _describe(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "union[" + ", ".join(_describe(n) for n in node) + "]"
    kind = node.get("type")
    if kind in NAMED_KINDS:
        return f"{'record' if kind == 'error' else kind} {node['name']}"
    if kind == "array":
        return f"array<{_describe(node['items'])}>"
    if kind == "map":
        return f"map<{_describe(node['values'])}>"
    return str(kind)


class _Resolver:
    """Walks a reader and a writer schema together, collecting every mismatch."""

    def __init__(self, reader: ParsedSchema, writer: ParsedSchema) -> None:
        self._reader = reader
        self._writer = writer
        self._in_progress: set[tuple[str, str]] = set()

    def _deref(self, node: Any, named: Mapping[str, Any]) -> Any:
        while True:
            if isinstance(node, str):
                if node in PRIMITIVES:
                    return node
                return named[node]
            if isinstance(node, Mapping) and isinstance(node.get("type"), str):
                kind = node["type"]
                if kind in PRIMITIVES:
                    return kind  # logical types resolve as their underlying type
                if kind not in NAMED_KINDS and kind not in ("array", "map"):
                    node = kind  # {"type": "SomeNamedType"}
                    continue
            if isinstance(node, Mapping) and isinstance(node.get("type"), (Mapping, list)):
                node = node["type"]
                continue
            return node

    def check(self, reader: Any, writer: Any, path: str) -> list[str]:
        r = self._deref(reader, self._reader.named)
        w = self._deref(writer, self._writer.named)

        if isinstance(w, list):
            problems: list[str] = []
            for branch in w:
                wb = self._deref(branch, self._writer.named)
                if isinstance(r, list):
                    if not self._any_branch(r, wb, path):
                        problems.append(
                            f"at {path}: writer union branch '{_describe(wb)}' matches no branch of "
                            f"reader {_describe(r)}"
                        )
                else:
                    sub = self.check(r, wb, path)
                    if sub:
                        problems.append(
                            f"at {path}: writer union branch '{_describe(wb)}' cannot be read as '{_describe(r)}'"
                        )
                        problems.extend(sub)
            return problems

        if isinstance(r, list):
            if self._any_branch(r, w, path):
                return []
            return [f"at {path}: writer type '{_describe(w)}' matches no branch of reader {_describe(r)}"]

        if isinstance(w, str) or isinstance(r, str):
            if isinstance(w, str) and isinstance(r, str) and (r == w or r in _PROMOTIONS.get(w, ())):
                return []
            return [f"at {path}: reader type '{_describe(r)}' cannot read writer type '{_describe(w)}'"]

        rk = "record" if r["type"] == "error" else r["type"]
        wk = "record" if w["type"] == "error" else w["type"]
        if rk != wk:
            return [f"at {path}: reader type '{_describe(r)}' cannot read writer type '{_describe(w)}'"]
        if rk == "array":
            return self.check(r["items"], w["items"], f"{path}[]")
        if rk == "map":
            return self.check(r["values"], w["values"], f"{path}{{}}")

        if not self._names_match(r, w):
            return [
                f"at {path}: reader {rk} '{r['name']}' does not match writer {wk} '{w['name']}' "
                f"(names differ and no reader alias names the writer)"
            ]
        if rk == "fixed":
            if r["size"] != w["size"]:
                return [f"at {path}: fixed '{r['name']}' has size {r['size']} but the writer's has size {w['size']}"]
            return []
        if rk == "enum":
            missing = [s for s in w["symbols"] if s not in set(r["symbols"])]
            if missing and r.get("default") is None:
                return [
                    f"at {path}: reader enum '{r['name']}' lacks writer symbols {missing} and has no default symbol"
                ]
            return []
        return self._check_record(r, w, path)

    def _names_match(self, r: Mapping[str, Any], w: Mapping[str, Any]) -> bool:
        return _short(r["name"]) == _short(w["name"]) or w["name"] in _full_aliases(r)

    def _any_branch(self, reader_union: list[Any], writer: Any, path: str) -> bool:
        return any(not self.check(branch, writer, path) for branch in reader_union)

    def _check_record(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> list[str]:
        pair = (r["name"], w["name"])
        if pair in self._in_progress:
            return []
        self._in_progress.add(pair)
        try:
            writer_fields = {f["name"]: f for f in w["fields"]}
            problems: list[str] = []
            for rf in r["fields"]:
                wf = writer_fields.get(rf["name"])
                if wf is None:
                    wf = next((writer_fields[a] for a in rf.get("aliases") or () if a in writer_fields), None)
                field_path = f"{path}.{rf['name']}" if path != "/" else rf["name"]
                if wf is None:
                    if "default" not in rf:
                        problems.append(
                            f"at {field_path}: reader field '{rf['name']}' is missing from the writer "
                            f"and has no default"
                        )
                    continue
                problems.extend(self.check(rf["type"], wf["type"], field_path))
            return problems
        finally:
            self._in_progress.discard(pair)


def can_read(reader: SchemaInput | ParsedSchema, writer: SchemaInput | ParsedSchema) -> list[str]:
    """Why data written with ``writer`` cannot be decoded with ``reader`` (empty: it can)."""
    r = parse_schema(reader)
    w = parse_schema(writer)
    return _Resolver(r, w).check(r.root, w.root, _root_path(r.root))


def _root_path(root: Any) -> str:
    if isinstance(root, Mapping) and root.get("type") in NAMED_KINDS:
        return _short(root["name"])
    return "/"


def check(
    level: CompatibilityLevel | str,
    new_schema: SchemaInput | ParsedSchema,
    existing: Sequence[SchemaInput | ParsedSchema],
    *,
    labels: Sequence[str] | None = None,
) -> list[str]:
    """Messages explaining why ``new_schema`` breaks ``level`` against ``existing``.

    ``existing`` is ordered oldest first; non-transitive levels look only at the last one.
    ``labels`` name the existing schemas in messages (the registry passes ``version 3``).
    Raises ``InvalidSchemaError`` if any schema is invalid.
    """
    lvl = CompatibilityLevel.parse(level)
    new = parse_schema(new_schema)
    olds = [parse_schema(s) for s in existing]
    names = list(labels) if labels is not None else [f"existing schema #{i + 1}" for i in range(len(olds))]
    if len(names) != len(olds):
        raise ValueError("labels must name every existing schema")
    if lvl is CompatibilityLevel.NONE or not olds:
        return []
    indexes = range(len(olds)) if lvl.transitive else [len(olds) - 1]
    messages: list[str] = []
    for i in reversed(indexes):
        old, name = olds[i], names[i]
        if lvl.backward:
            for problem in can_read(new, old):
                messages.append(f"the new schema cannot read data written with {name}: {problem}")
        if lvl.forward:
            for problem in can_read(old, new):
                messages.append(f"{name} cannot read data written with the new schema: {problem}")
    return messages
