"""JSON Schema for the dev registry: validation, canonical form and compatibility.

Compatibility follows the rules Confluent documents for JSON Schema (its difference types,
named in the messages): a change is compatible when every value the *writer* schema admits
is admitted by the *reader* schema (BACKWARD: reader = new, writer = old; FORWARD the other
way round), judged structurally the way Confluent judges it:

- the content model decides property changes: adding a property to an *open* object
  (``additionalProperties`` absent or true) is incompatible (old data may hold it with any
  type) unless its schema is empty (``{}``/``true``), to a *closed* one it is compatible
  unless required without a ``default``; removing a property from a closed object is
  incompatible unless its schema was ``false``, from an open one compatible;
- types may widen (``integer`` → ``number``, a type added), never narrow;
- a ``required`` name added (but for a property with a ``default``), ``additionalProperties``
  removed (open → closed), an ``enum`` narrowed, a bound tightened (maxLength/minLength,
  maximum/minimum, maxItems/minItems, maxProperties/minProperties, pattern added or changed,
  uniqueItems added) is incompatible;
- ``oneOf``/``anyOf``: every writer branch must fit some reader branch (a branch added is
  compatible, one removed is not); ``allOf``: every reader branch must admit the writer;
  the criterion may change from ``allOf``/``oneOf`` to ``anyOf``, and from a single branch
  to ``oneOf``; any other change (``anyOf`` of several to ``oneOf``) is COMBINED_TYPE_CHANGED.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jsonschema import SchemaError  # type: ignore[import-untyped]
from jsonschema.validators import validator_for  # type: ignore[import-untyped]

from devtools.registry.compat import InvalidSchemaError

__all__ = ["can_read", "canonical", "parse"]

_NUMERIC_BOUNDS = (("maximum", "MAXIMUM"), ("exclusiveMaximum", "EXCLUSIVE_MAXIMUM"))
_NUMERIC_LOWER = (("minimum", "MINIMUM"), ("exclusiveMinimum", "EXCLUSIVE_MINIMUM"))
_UPPER = (("maxLength", "MAX_LENGTH"), ("maxItems", "MAX_ITEMS"), ("maxProperties", "MAX_PROPERTIES"))
_LOWER = (("minLength", "MIN_LENGTH"), ("minItems", "MIN_ITEMS"), ("minProperties", "MIN_PROPERTIES"))


def parse(text: str) -> Any:
    """The schema as JSON; InvalidSchemaError when it is not JSON or not a JSON Schema."""
    try:
        schema = json.loads(text)
    except ValueError:
        raise InvalidSchemaError(f"Invalid schema: not JSON: {text[:80]!r}") from None
    if not isinstance(schema, dict | bool):
        raise InvalidSchemaError("Invalid schema: a JSON Schema is an object or a boolean")
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as e:
        raise InvalidSchemaError(f"Invalid JSON Schema: {e.message}") from None
    return schema


def canonical(schema: Any) -> str:
    """Key order and white space do not make another schema."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def _types(s: Mapping[str, Any]) -> set[str] | None:
    t = s.get("type")
    if t is None:
        return None
    return {t} if isinstance(t, str) else set(t)


def _admits(reader: set[str] | None, t: str) -> bool:
    return reader is None or t in reader or (t == "integer" and "number" in reader)


class _Checker:
    def __init__(self, reader_root: Any, writer_root: Any) -> None:
        self.roots = (reader_root, writer_root)
        self.seen: set[tuple[int, int]] = set()
        self.problems: list[str] = []

    def _resolve(self, s: Any, side: int) -> Any:
        hops = 0
        while isinstance(s, Mapping) and isinstance(s.get("$ref"), str) and hops < 64:
            ref = s["$ref"]
            if not ref.startswith("#"):
                return s  # a reference to another schema: judged by its own subject
            node = self.roots[side]
            for part in [p for p in ref[1:].split("/") if p]:
                part = part.replace("~1", "/").replace("~0", "~")
                node = node[int(part)] if isinstance(node, list) else node.get(part, {})
            s, hops = node, hops + 1
        return s

    def fail(self, kind: str, path: str) -> None:
        self.problems.append(f"{kind} at {path or '#/'}")

    def check(self, r: Any, w: Any, path: str) -> None:
        r, w = self._resolve(r, 0), self._resolve(w, 1)
        key = (id(r), id(w))
        if key in self.seen:
            return
        self.seen.add(key)
        if r is True or r == {}:
            return
        if w is False:
            return
        if r is False:
            self.fail("SCHEMA_REMOVED", path)
            return
        if w is True:
            w = {}
        if self._criterion_changed(r, w, path):
            return
        for combined in ("oneOf", "anyOf"):
            if combined in r or combined in w:
                self._sum(r, w, path)
                return
        if "allOf" in r:
            for i, branch in enumerate(r["allOf"]):
                self.check(branch, {k: v for k, v in w.items() if k != "allOf"} if "allOf" not in w else w,
                           f"{path}/allOf/{i}")
            return
        if "allOf" in w:
            if not any(self._fits(r, b, path) for b in w["allOf"]):
                self.fail("PRODUCT_TYPE_NARROWED", path)
            return
        rt, wt = _types(r), _types(w)
        if rt is not None:
            if wt is None:
                self.fail("TYPE_NARROWED", path)
                return
            if not all(_admits(rt, t) for t in wt):
                narrowed = "integer" in rt and "number" in wt and not {"number"} & rt
                self.fail("TYPE_NARROWED" if narrowed else "TYPE_CHANGED", path)
                return
        self._enum(r, w, path)
        self._bounds(r, w, path)
        types = (wt or set()) | (rt or set())
        if "object" in types or "properties" in r or "properties" in w:
            self._object(r, w, path)
        if "array" in types or "items" in r:
            self._array(r, w, path)

    def _fits(self, r: Any, w: Any, path: str) -> bool:
        sub = _Checker(*self.roots)
        sub.seen = set(self.seen)
        sub.check(r, w, path)
        return not sub.problems

    def _criterion_changed(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> bool:
        """Confluent's criterion rule: allOf/oneOf may become anyOf; a single branch may become
        oneOf (and a single branch allOf); anything else is COMBINED_TYPE_CHANGED."""
        rc, wc = _criterion(r), _criterion(w)
        if rc is None or wc is None or rc == wc or rc == "anyOf":
            return False
        single = len(w[wc]) == 1 and (rc == "oneOf" or len(r[rc]) == 1)
        if not single:
            self.fail("COMBINED_TYPE_CHANGED", path)
        return not single

    def _sum(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> None:
        r_branches = r.get("oneOf") or r.get("anyOf") or [ {k: v for k, v in r.items()} ]
        w_branches = w.get("oneOf") or w.get("anyOf") or [ {k: v for k, v in w.items()} ]
        for i, wb in enumerate(w_branches):
            if not any(self._fits(rb, wb, f"{path}/oneOf/{i}") for rb in r_branches):
                self.fail("SUM_TYPE_NARROWED" if len(w_branches) > 1 else "TYPE_CHANGED", path)
                return

    def _enum(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> None:
        for key in ("enum", "const"):
            if key not in r:
                continue
            allowed = r[key] if key == "enum" else [r[key]]
            given = w["enum"] if "enum" in w else [w["const"]] if "const" in w else None
            if given is None:
                self.fail(f"{key.upper()}_ADDED" if key == "const" else "ENUM_ARRAY_CHANGED", path)
            elif not all(v in allowed for v in given):
                self.fail("ENUM_ARRAY_NARROWED" if key == "enum" else "CONST_CHANGED", path)

    def _bounds(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> None:
        for key, kind in _UPPER + _NUMERIC_BOUNDS:
            if key in r and (key not in w or r[key] < w[key]):
                self.fail(f"{kind}_{'ADDED' if key not in w else 'DECREASED'}", path)
        for key, kind in _LOWER + _NUMERIC_LOWER:
            if key in r and (key not in w or r[key] > w[key]):
                self.fail(f"{kind}_{'ADDED' if key not in w else 'INCREASED'}", path)
        if "pattern" in r and r.get("pattern") != w.get("pattern"):
            self.fail("PATTERN_ADDED" if "pattern" not in w else "PATTERN_CHANGED", path)
        if "multipleOf" in r and ("multipleOf" not in w or w["multipleOf"] % r["multipleOf"] != 0):
            self.fail("MULTIPLE_OF_ADDED" if "multipleOf" not in w else "MULTIPLE_OF_CHANGED", path)
        if r.get("uniqueItems") and not w.get("uniqueItems"):
            self.fail("UNIQUE_ITEMS_ADDED", path)

    def _object(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> None:
        r_props: Mapping[str, Any] = r.get("properties", {})
        w_props: Mapping[str, Any] = w.get("properties", {})
        r_extra, w_extra = r.get("additionalProperties", True), w.get("additionalProperties", True)
        r_required, w_required = set(r.get("required", ())), set(w.get("required", ()))
        for name, schema in r_props.items():
            where = f"{path}/properties/{name}"
            if name in w_props:
                self.check(schema, w_props[name], where)
            elif w_extra is False:
                if name in r_required and not self._has_default(schema):
                    self.fail("REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", where)
            elif w_extra is True or w_extra == {}:
                if not (schema is True or schema == {}):  # an empty schema admits what old data held
                    self.fail("PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", where)
            elif not self._fits(schema, w_extra, where):
                self.fail("PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", where)
        for name, schema in w_props.items():
            if name in r_props:
                continue
            where = f"{path}/properties/{name}"
            if r_extra is False:
                if schema is not False:  # a property that could not be there leaves no data
                    self.fail("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", where)
            elif not (r_extra is True or r_extra == {}) and not self._fits(r_extra, schema, where):
                self.fail("PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", where)
        made_required = r_required - w_required - (set(r_props) - set(w_props))
        if any(not (name in r_props and self._has_default(r_props[name])) for name in made_required):
            self.fail("REQUIRED_ATTRIBUTE_ADDED", path)
        if r_extra is False and w_extra is not False:
            self.fail("ADDITIONAL_PROPERTIES_REMOVED", path)
        elif isinstance(r_extra, Mapping) and r_extra != {}:
            if w_extra is True or w_extra == {}:
                self.fail("ADDITIONAL_PROPERTIES_NARROWED", path)
            elif isinstance(w_extra, Mapping):
                self.check(r_extra, w_extra, f"{path}/additionalProperties")

    def _has_default(self, schema: Any) -> bool:
        resolved = self._resolve(schema, 0)
        return isinstance(resolved, Mapping) and "default" in resolved

    def _array(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> None:
        r_items, w_items = r.get("items"), w.get("items")
        if r_items is None:
            return
        if w_items is None:
            self.fail("ITEMS_ADDED", path)
        elif isinstance(r_items, list) or isinstance(w_items, list):
            if not (isinstance(r_items, list) and isinstance(w_items, list)) or len(r_items) > len(w_items):
                self.fail("ITEMS_CHANGED", path)
            else:
                for i, (ri, wi) in enumerate(zip(r_items, w_items)):
                    self.check(ri, wi, f"{path}/items/{i}")
        else:
            self.check(r_items, w_items, f"{path}/items")


def _criterion(s: Mapping[str, Any]) -> str | None:
    return next((k for k in ("allOf", "anyOf", "oneOf") if k in s), None)


def can_read(reader: Any, writer: Any) -> list[str]:
    """Why values of ``writer`` may fail ``reader`` (empty: compatible), as Confluent's difference types."""
    c = _Checker(reader, writer)
    c.check(reader, writer, "#")
    return c.problems
