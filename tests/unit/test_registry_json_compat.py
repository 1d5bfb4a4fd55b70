"""The dev registry's JSON Schema compatibility verdicts, pair by pair, against the rules
Confluent documents for JSON Schema (content models, type widening and narrowing, required,
bounds, enums, combined schemas). BACKWARD: the new schema reads data of the old one;
FORWARD: the old reads the new; FULL: both."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools.registry import types as schema_types
from devtools.registry.compat import CompatibilityLevel, InvalidSchemaError


def obj(props: dict[str, Any], *, closed: bool | None = None, required: list[str] | None = None,
        **extra: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "object", "properties": props, **extra}
    if closed is not None:
        s["additionalProperties"] = not closed
    if required:
        s["required"] = required
    return s


STR, INT, NUM = {"type": "string"}, {"type": "integer"}, {"type": "number"}

# (name, old, new, level, compatible)
PAIRS: list[tuple[str, Any, Any, str, bool]] = [
    ("optional property added to a closed model", obj({"a": STR}, closed=True), obj({"a": STR, "b": INT}, closed=True),
     "BACKWARD", True),
    ("property added to an open model", obj({"a": STR}), obj({"a": STR, "b": INT}), "BACKWARD", False),
    ("required property added to a closed model", obj({"a": STR}, closed=True),
     obj({"a": STR, "b": INT}, closed=True, required=["b"]), "BACKWARD", False),
    ("property removed from an open model", obj({"a": STR, "b": INT}), obj({"a": STR}), "BACKWARD", True),
    ("property removed from a closed model", obj({"a": STR, "b": INT}, closed=True), obj({"a": STR}, closed=True),
     "BACKWARD", False),
    ("integer widened to number", obj({"a": INT}), obj({"a": NUM}), "BACKWARD", True),
    ("number narrowed to integer", obj({"a": NUM}), obj({"a": INT}), "BACKWARD", False),
    ("string changed to integer", obj({"a": STR}), obj({"a": INT}), "BACKWARD", False),
    ("a type added to a type list", {"type": ["string"]}, {"type": ["string", "null"]}, "BACKWARD", True),
    ("a type removed from a type list", {"type": ["string", "null"]}, {"type": "string"}, "BACKWARD", False),
    ("an existing property made required", obj({"a": STR}), obj({"a": STR}, required=["a"]), "BACKWARD", False),
    ("required dropped", obj({"a": STR}, required=["a"]), obj({"a": STR}), "BACKWARD", True),
    ("open model closed", obj({"a": STR}), obj({"a": STR}, closed=True), "BACKWARD", False),
    ("closed model opened", obj({"a": STR}, closed=True), obj({"a": STR}), "BACKWARD", True),
    ("maxLength added", STR, {"type": "string", "maxLength": 10}, "BACKWARD", False),
    ("maxLength increased", {"type": "string", "maxLength": 5}, {"type": "string", "maxLength": 10},
     "BACKWARD", True),
    ("minLength increased", {"type": "string", "minLength": 1}, {"type": "string", "minLength": 3},
     "BACKWARD", False),
    ("minimum added", INT, {"type": "integer", "minimum": 0}, "BACKWARD", False),
    ("maximum raised", {"type": "integer", "maximum": 5}, {"type": "integer", "maximum": 9}, "BACKWARD", True),
    ("enum extended", {"enum": ["a", "b"]}, {"enum": ["a", "b", "c"]}, "BACKWARD", True),
    ("enum narrowed", {"enum": ["a", "b"]}, {"enum": ["a"]}, "BACKWARD", False),
    ("oneOf branch added", {"oneOf": [STR, INT]}, {"oneOf": [STR, INT, {"type": "boolean"}]}, "BACKWARD", True),
    ("oneOf branch removed", {"oneOf": [STR, INT]}, {"oneOf": [STR]}, "BACKWARD", False),
    ("single type moved into a oneOf", STR, {"oneOf": [{"type": "null"}, STR]}, "BACKWARD", True),
    ("array items changed", {"type": "array", "items": STR}, {"type": "array", "items": INT}, "BACKWARD", False),
    ("pattern added", STR, {"type": "string", "pattern": "^a"}, "BACKWARD", False),
    ("pattern removed", {"type": "string", "pattern": "^a"}, STR, "BACKWARD", True),
    ("uniqueItems added", {"type": "array", "items": STR}, {"type": "array", "items": STR, "uniqueItems": True},
     "BACKWARD", False),
    ("optional property added to a closed model, FORWARD", obj({"a": STR}, closed=True),
     obj({"a": STR, "b": INT}, closed=True), "FORWARD", False),
    ("property removed from an open model, FORWARD", obj({"a": STR, "b": INT}), obj({"a": STR}), "FORWARD", False),
    ("property added to an open model, FORWARD", obj({"a": STR}), obj({"a": STR, "b": INT}), "FORWARD", True),
    ("integer widened to number, FORWARD", obj({"a": INT}), obj({"a": NUM}), "FORWARD", False),
    ("optional property added to a closed model, FULL", obj({"a": STR}, closed=True),
     obj({"a": STR, "b": INT}, closed=True), "FULL", False),
    ("description changed, FULL", {"type": "string", "description": "x"}, {"type": "string", "description": "y"},
     "FULL", True),
    ("partially open model covers the added property", obj({"a": STR}, additionalProperties=INT),
     obj({"a": STR, "b": INT}, additionalProperties=INT), "BACKWARD", True),
    ("partially open model does not cover it", obj({"a": STR}, additionalProperties=INT),
     obj({"a": STR, "b": STR}, additionalProperties=INT), "BACKWARD", False),
    ("nested closed object gains an optional property", obj({"m": obj({"k": INT}, closed=True)}, closed=True),
     obj({"m": obj({"k": INT, "x": STR}, closed=True)}, closed=True), "BACKWARD", True),
    ("anything changed under NONE", STR, INT, "NONE", True),
    ("required property with a default added to a closed model", obj({"a": STR}, closed=True),
     obj({"a": STR, "b": {**INT, "default": 0}}, closed=True, required=["b"]), "BACKWARD", True),
    ("existing property made required with a default", obj({"a": STR}),
     obj({"a": {**STR, "default": ""}}, required=["a"]), "BACKWARD", True),
    ("property with an empty schema added to an open model", obj({"a": STR}), obj({"a": STR, "b": {}}),
     "BACKWARD", True),
    ("property with schema true added to an open model", obj({"a": STR}), obj({"a": STR, "b": True}),
     "BACKWARD", True),
    ("property with schema false removed from a closed model", obj({"a": STR, "b": False}, closed=True),
     obj({"a": STR}, closed=True), "BACKWARD", True),
    ("anyOf of several to oneOf", {"anyOf": [STR, INT]}, {"oneOf": [STR, INT]}, "BACKWARD", False),
    ("anyOf of one to oneOf", {"anyOf": [STR]}, {"oneOf": [STR]}, "BACKWARD", True),
    ("oneOf to anyOf", {"oneOf": [STR, INT]}, {"anyOf": [STR, INT]}, "BACKWARD", True),
    ("allOf to anyOf", {"allOf": [STR, {"maxLength": 5}]}, {"anyOf": [STR, {"maxLength": 5}]}, "BACKWARD", True),
    ("allOf of several to oneOf", {"allOf": [STR, {"maxLength": 5}]}, {"oneOf": [STR, {"maxLength": 5}]},
     "BACKWARD", False),
]


@pytest.mark.parametrize("name, old, new, level, compatible", PAIRS, ids=[p[0] for p in PAIRS])
def test_json_schema_pair(name: str, old: Any, new: Any, level: str, compatible: bool) -> None:
    old_p = schema_types.parse(json.dumps(old), "JSON")
    new_p = schema_types.parse(json.dumps(new), "JSON")
    problems = schema_types.check(CompatibilityLevel(level), new_p, [("version 1", old_p)])
    assert (not problems) == compatible, problems


def test_transitive_levels_look_at_every_version() -> None:
    v1 = schema_types.parse(json.dumps(obj({"a": STR}, closed=True)), "JSON")
    v2 = schema_types.parse(json.dumps(obj({"a": STR}, closed=False)), "JSON")
    v3 = schema_types.parse(json.dumps(obj({"a": STR, "b": INT}, closed=True)), "JSON")
    # against v2 alone (open), adding b is not compatible; v1 (closed) has no problem with it
    assert schema_types.check(CompatibilityLevel.BACKWARD, v3, [("v1", v1), ("v2", v2)])
    back = schema_types.check(CompatibilityLevel.BACKWARD_TRANSITIVE, v3, [("v1", v1), ("v2", v2)])
    assert any("v2" in m for m in back) and not any("v1" in m for m in back)


def test_json_and_avro_are_never_compatible_with_each_other() -> None:
    avro = schema_types.parse('{"type": "string"}', "AVRO")
    js = schema_types.parse('{"type": "string"}', "JSON")
    assert "Incompatible schema type" in schema_types.check(CompatibilityLevel.BACKWARD, js, [("v1", avro)])[0]


@pytest.mark.parametrize("text", ["{", '{"type": 5}', "[1]"])
def test_invalid_json_schema_is_refused(text: str) -> None:
    with pytest.raises(InvalidSchemaError):
        schema_types.parse(text, "JSON")


def test_spaces_never_make_another_schema_and_key_order_only_without_normalize() -> None:
    """As Confluent: its canonical string keeps key order; ``normalize=true`` sorts it away."""
    a = '{"type": "object", "properties": {"a": {"type": "string"}}}'
    spaced = '{"type":"object",   "properties":{"a":{"type":"string"}}}'
    reordered = '{"properties":{"a":{"type":"string"}},"type":"object"}'
    assert schema_types.parse(a, "JSON").canonical == schema_types.parse(spaced, "JSON").canonical
    assert schema_types.parse(a, "JSON").canonical != schema_types.parse(reordered, "JSON").canonical
    normal = schema_types.parse(reordered, "JSON", normalize=True)
    assert normal.canonical == schema_types.parse(a, "JSON", normalize=True).canonical
    assert normal.text == '{"properties":{"a":{"type":"string"}},"type":"object"}'
