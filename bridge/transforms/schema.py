"""Avro schemas as the transform chain sees them: named types, paths, nullability.

A chain works on parsed schema JSON. Named types are kept once by full name (``names``);
references stay strings, so recursive types (a record holding a map of itself) need no
unrolling. ``finish`` writes a derived schema back out with each named type defined once,
at its first use, as Avro requires.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from bridge.errors import ConfigError

__all__ = ["AVRO_NAME", "Names", "Resolved", "finish", "new_field", "nullable", "optional", "resolve", "strip_null"]

AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = ("record", "enum", "fixed")
# A record whose fields grow while the bridge runs (an item's attributes): a field it lacks
# now is not a bad path, only one with no value yet.
OPEN = "__open"


def _full(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


@dataclass
class Names:
    """The named types of one schema, by full name; definitions are rewritten with full names."""

    types: dict[str, dict[str, Any]] = field(default_factory=dict)

    def normalize(self, schema: Any, namespace: str | None = None) -> Any:
        """A copy of ``schema`` whose named types are defined here and referenced by full name."""
        if isinstance(schema, str):
            return schema if schema in PRIMITIVES else _full(schema, namespace)
        if isinstance(schema, list):
            return [self.normalize(b, namespace) for b in schema]
        if not isinstance(schema, dict):
            return schema
        kind = schema.get("type")
        if kind in _NAMED:
            full = _full(str(schema["name"]), schema.get("namespace", namespace))
            ns = full.rpartition(".")[0] or None
            out = {k: v for k, v in schema.items() if k not in ("name", "namespace")}
            out["name"] = full
            if kind == "record":
                out["fields"] = [dict(f, type=self.normalize(f["type"], ns)) for f in schema["fields"]]
            self.types[full] = out
            return full
        if kind == "array":
            return dict(schema, items=self.normalize(schema["items"], namespace))
        if kind == "map":
            return dict(schema, values=self.normalize(schema["values"], namespace))
        if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in PRIMITIVES):
            return self.normalize(kind, namespace)
        return schema

    def deref(self, t: Any) -> Any:
        return self.types[t] if isinstance(t, str) and t in self.types else t

    def define(self, record: dict[str, Any]) -> str:
        """A new named type (a record a transform made); returns its full name."""
        self.types[record["name"]] = record
        return str(record["name"])


def nullable(t: Any) -> bool:
    return t == "null" or (isinstance(t, list) and "null" in t)


def strip_null(t: Any) -> Any:
    if isinstance(t, list):
        rest = [b for b in t if b != "null"]
        return rest[0] if len(rest) == 1 else rest
    return t


def optional(t: Any) -> Any:
    """``t`` that may be null (a field whose path passes through a null)."""
    if nullable(t):
        return t
    return ["null", *t] if isinstance(t, list) else ["null", t]


def new_field(name: str, t: Any) -> dict[str, Any]:
    """A field of type ``t``; one that may be null has null first and defaults to it (as
    BACKWARD-compatible evolution needs)."""
    if not nullable(t):
        return {"name": name, "type": t}
    if isinstance(t, list) and t[0] != "null":
        t = ["null", *[b for b in t if b != "null"]]
    return {"name": name, "type": t, "default": None}


@dataclass(frozen=True)
class Resolved:
    """A path resolved against a schema: the data keys to follow and the value's type."""

    keys: tuple[str, ...]
    type: Any
    may_be_null: bool
    # A path into the after image that reads the before image's field ``instead`` when the
    # after image (``image``: its keys) is null, as on a delete.
    image: tuple[str, ...] = ()
    instead: Resolved | None = None

    def get(self, data: Any) -> Any:
        if self.instead is not None and _follow(data, self.image) is None:
            return self.instead.get(data)
        return _follow(data, self.keys)

    @property
    def out_type(self) -> Any:
        return optional(self.type) if self.may_be_null else self.type


def _follow(data: Any, keys: tuple[str, ...]) -> Any:
    for k in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(k)
    return data


def resolve(names: Names, root: Any, parts: tuple[str, ...], text: str, alt: str | None = None) -> Resolved:
    """Follow ``parts`` from the record ``root``; ConfigError naming ``text`` where it goes nowhere.
    ``alt``: a field property holding the source's own name of a field, which a path may use too."""
    t: Any = root
    keys: list[str] = []
    maybe_null = False
    is_open = False
    for i, part in enumerate(parts):
        t = names.deref(t)
        if isinstance(t, list):
            maybe_null = maybe_null or "null" in t
            t = names.deref(strip_null(t))
            if isinstance(t, list):
                raise ConfigError(f"path {text!r}: {'.'.join(parts[:i]) or 'the value'} is a union of several types; "
                                  "a path cannot go into it")
        if isinstance(t, dict) and t.get("type") == "record":
            is_open = is_open or bool(t.get(OPEN))
            found = next((f for f in t["fields"] if f["name"] == part), None) or (next(
                (f for f in t["fields"] if f.get(alt) == part), None) if alt else None)
            if found is None:
                if is_open:  # an attribute not seen yet: null until it is
                    return Resolved((*keys, part), "null", True)
                have = ", ".join(f["name"] for f in t["fields"])
                raise ConfigError(f"path {text!r}: no field {part!r} in {'.'.join(parts[:i]) or 'the value'} "
                                  f"(it has {have})")
            keys.append(found["name"])
            t = found["type"]
            if isinstance(t, dict) and t.get("type") == "record" or (isinstance(t, str) and t in names.types):
                d = names.deref(t)
                if is_open and isinstance(d, dict) and d.get("type") == "record" and not d.get(OPEN):
                    d[OPEN] = True  # nested records of an open one grow too
        elif isinstance(t, dict) and t.get("type") == "map":
            keys.append(part)
            t = t["values"]
            maybe_null = True
        else:
            what = t if isinstance(t, str) else (t.get("type") if isinstance(t, dict) else t)
            raise ConfigError(f"path {text!r}: {'.'.join(parts[:i]) or 'the value'} is a {what}, it has no "
                              f"field {part!r}")
    return Resolved(tuple(keys), t, maybe_null)


def finish(schema: Any, names: Names) -> Any:
    """``schema`` with every named type defined at its first use and referenced after."""
    defined: set[str] = set()

    def walk(t: Any) -> Any:
        if isinstance(t, str):
            if t in names.types and t not in defined:
                return walk(names.types[t])
            return t
        if isinstance(t, list):
            return [walk(b) for b in t]
        if not isinstance(t, dict):
            return t
        kind = t.get("type")
        if kind in _NAMED:
            full = t["name"]
            if full in defined:
                return full
            defined.add(full)
            out = {k: v for k, v in t.items() if k != OPEN}
            if kind == "record":
                out["fields"] = [dict(f, type=walk(f["type"])) for f in t["fields"]]
            return out
        if kind == "array":
            return dict(t, items=walk(t["items"]))
        if kind == "map":
            return dict(t, values=walk(t["values"]))
        return t

    return walk(copy.deepcopy(schema))
