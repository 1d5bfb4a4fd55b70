"""Avro schema-resolution rules as the registry applies them; every rule is tested both ways."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools.registry.compat import (
    CompatibilityLevel,
    InvalidSchemaError,
    can_read,
    canonical_form,
    check,
    compact_form,
    parse_schema,
)


def record(name: str, *fields: dict[str, Any], namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "record", "name": name, "fields": list(fields)}
    if namespace:
        out["namespace"] = namespace
    out.update(extra)
    return out


def fld(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(name: str, *symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": name, "symbols": list(symbols), **extra}


# ------------------------------------------------------------------------------ primitives


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    ],
)
def test_promotions_are_readable_one_way(writer: str, reader: str) -> None:
    assert can_read(reader, writer) == []
    if {writer, reader} != {"string", "bytes"}:
        problems = can_read(writer, reader)
        assert len(problems) == 1
        assert f"reader type '{writer}' cannot read writer type '{reader}'" in problems[0]


@pytest.mark.parametrize("prim", ["null", "boolean", "int", "long", "float", "double", "bytes", "string"])
def test_same_primitive_is_readable(prim: str) -> None:
    assert can_read(prim, prim) == []
    assert can_read({"type": prim}, prim) == []


@pytest.mark.parametrize(
    ("reader", "writer"), [("int", "string"), ("boolean", "int"), ("null", "string"), ("long", "double")]
)
def test_unrelated_primitives_are_not_readable(reader: str, writer: str) -> None:
    assert can_read(reader, writer)


def test_logical_types_resolve_as_their_underlying_type() -> None:
    ts = {"type": "long", "logicalType": "timestamp-millis"}
    assert can_read(ts, "long") == []
    assert can_read("long", ts) == []
    assert can_read(ts, "int") == []
    assert can_read("int", ts)


# ------------------------------------------------------------------------------ records


def test_reader_field_missing_in_writer_needs_default() -> None:
    writer = record("R", fld("a", "int"))
    with_default = record("R", fld("a", "int"), fld("b", "string", default="x"))
    without_default = record("R", fld("a", "int"), fld("b", "string"))
    assert can_read(with_default, writer) == []
    problems = can_read(without_default, writer)
    assert len(problems) == 1
    assert "reader field 'b' is missing from the writer and has no default" in problems[0]
    assert "R.b" in problems[0]


def test_null_default_counts_as_a_default() -> None:
    writer = record("R", fld("a", "int"))
    reader = record("R", fld("a", "int"), fld("b", ["null", "string"], default=None))
    assert can_read(reader, writer) == []


def test_writer_extra_fields_are_ignored_but_not_the_other_way() -> None:
    small = record("R", fld("a", "int"))
    big = record("R", fld("a", "int"), fld("extra", "string"))
    assert can_read(small, big) == []
    assert can_read(big, small)


def test_field_type_changes_are_checked_recursively() -> None:
    old = record("R", fld("n", "int"))
    new = record("R", fld("n", "long"))
    assert can_read(new, old) == []
    problems = can_read(old, new)
    assert problems == ["at R.n: reader type 'int' cannot read writer type 'long'"]


def test_field_aliases_match_a_renamed_writer_field() -> None:
    writer = record("R", fld("old_name", "int"))
    renamed = record("R", fld("new_name", "int", aliases=["old_name"]))
    renamed_no_alias = record("R", fld("new_name", "int"))
    assert can_read(renamed, writer) == []
    assert can_read(renamed_no_alias, writer)
    # Writer aliases do not help a reader: resolution looks up reader names and reader aliases.
    assert can_read(writer, record("R", fld("new_name", "int", aliases=["old_name"])))


def test_field_aliases_still_check_the_type() -> None:
    writer = record("R", fld("old", "string"))
    reader = record("R", fld("new", "int", aliases=["old"]))
    assert "reader type 'int' cannot read writer type 'string'" in can_read(reader, writer)[0]


def test_record_names_must_match_unless_aliased() -> None:
    writer = record("Order", fld("a", "int"), namespace="shop")
    other = record("Purchase", fld("a", "int"), namespace="shop")
    aliased = record("Purchase", fld("a", "int"), namespace="shop", aliases=["Order"])
    aliased_full = record("Purchase", fld("a", "int"), namespace="other", aliases=["shop.Order"])
    assert "does not match writer record 'shop.Order'" in can_read(other, writer)[0]
    assert can_read(aliased, writer) == []
    assert can_read(aliased_full, writer) == []
    # An alias relative to the reader's namespace names a different type.
    assert can_read(record("Purchase", fld("a", "int"), namespace="other", aliases=["Order"]), writer)


def test_record_namespace_change_is_compatible_like_avro_java() -> None:
    a = record("Order", fld("a", "int"), namespace="v1")
    b = record("Order", fld("a", "int"), namespace="v2")
    assert can_read(a, b) == []
    assert can_read(b, a) == []


def test_record_vs_non_record() -> None:
    assert can_read(record("R", fld("a", "int")), "int")
    assert can_read("int", record("R", fld("a", "int")))


def test_every_problem_is_reported_not_just_the_first() -> None:
    writer = record("R", fld("a", "string"), fld("b", "string"))
    reader = record("R", fld("a", "int"), fld("b", "int"), fld("c", "int"))
    problems = can_read(reader, writer)
    assert len(problems) == 3
    assert any("R.a" in p for p in problems)
    assert any("R.b" in p for p in problems)
    assert any("'c'" in p for p in problems)


def test_nested_record_paths() -> None:
    inner_old = record("Inner", fld("x", "int"))
    inner_new = record("Inner", fld("x", "int"), fld("y", "int"))
    old = record("Outer", fld("inner", inner_old))
    new = record("Outer", fld("inner", inner_new))
    problems = can_read(new, old)
    assert len(problems) == 1
    assert "Outer.inner.y" in problems[0]
    assert can_read(old, new) == []


# ------------------------------------------------------------------------------ enums


def test_enum_writer_symbols_must_be_in_reader() -> None:
    small = enum("Color", "RED", "GREEN")
    big = enum("Color", "RED", "GREEN", "BLUE")
    assert can_read(big, small) == []
    problems = can_read(small, big)
    assert len(problems) == 1
    assert "lacks writer symbols ['BLUE']" in problems[0]


def test_enum_reader_default_absorbs_unknown_symbols() -> None:
    big = enum("Color", "RED", "GREEN", "BLUE")
    small_with_default = enum("Color", "UNKNOWN", "RED", "GREEN", default="UNKNOWN")
    assert can_read(small_with_default, big) == []
    # ...but a writer-side default does not help the reader.
    big_with_default = enum("Color", "RED", "GREEN", "BLUE", default="RED")
    assert can_read(enum("Color", "RED", "GREEN"), big_with_default)


def test_enum_symbol_order_does_not_matter() -> None:
    assert can_read(enum("E", "B", "A"), enum("E", "A", "B")) == []


def test_enum_names_must_match() -> None:
    assert "does not match writer enum 'Other'" in can_read(enum("E", "A"), enum("Other", "A"))[0]
    assert can_read(enum("E", "A", aliases=["Other"]), enum("Other", "A")) == []


def test_enum_vs_string_is_not_readable_either_way() -> None:
    assert can_read("string", enum("E", "A"))
    assert can_read(enum("E", "A"), "string")


# ------------------------------------------------------------------------------ arrays and maps


def test_array_items_recurse() -> None:
    assert can_read({"type": "array", "items": "long"}, {"type": "array", "items": "int"}) == []
    problems = can_read({"type": "array", "items": "int"}, {"type": "array", "items": "long"})
    assert problems and "[]" in problems[0]


def test_map_values_recurse() -> None:
    assert can_read({"type": "map", "values": "double"}, {"type": "map", "values": "float"}) == []
    problems = can_read({"type": "map", "values": "float"}, {"type": "map", "values": "double"})
    assert problems and "{}" in problems[0]


def test_array_vs_map() -> None:
    assert can_read({"type": "array", "items": "int"}, {"type": "map", "values": "int"})
    assert can_read({"type": "map", "values": "int"}, {"type": "array", "items": "int"})


def test_array_of_records_recurses_into_fields() -> None:
    old = {"type": "array", "items": record("R", fld("a", "int"))}
    new = {"type": "array", "items": record("R", fld("a", "int"), fld("b", "int"))}
    assert can_read(old, new) == []
    assert "'b'" in can_read(new, old)[0]


# ------------------------------------------------------------------------------ fixed


def test_fixed_size_must_match() -> None:
    f4 = {"type": "fixed", "name": "F", "size": 4}
    f8 = {"type": "fixed", "name": "F", "size": 8}
    assert can_read(f4, f4) == []
    assert "size 4" in can_read(f4, f8)[0]
    assert "size 8" in can_read(f8, f4)[0]


def test_fixed_name_must_match() -> None:
    assert can_read({"type": "fixed", "name": "F", "size": 4}, {"type": "fixed", "name": "G", "size": 4})
    assert (
        can_read({"type": "fixed", "name": "F", "size": 4, "aliases": ["G"]}, {"type": "fixed", "name": "G", "size": 4})
        == []
    )


def test_fixed_vs_bytes() -> None:
    assert can_read("bytes", {"type": "fixed", "name": "F", "size": 4})
    assert can_read({"type": "fixed", "name": "F", "size": 4}, "bytes")


# ------------------------------------------------------------------------------ unions


def test_non_union_writer_resolves_to_some_reader_branch() -> None:
    assert can_read(["null", "string"], "string") == []
    assert can_read(["null", "long"], "int") == []  # through promotion
    problems = can_read(["null", "string"], "int")
    assert problems and "matches no branch of reader union[null, string]" in problems[0]


def test_union_writer_vs_non_union_reader_needs_every_branch() -> None:
    assert can_read("long", ["int", "long"]) == []
    problems = can_read("string", ["null", "string"])
    assert problems and "writer union branch 'null' cannot be read as 'string'" in problems[0]


def test_union_writer_vs_union_reader_each_writer_branch() -> None:
    assert can_read(["null", "string", "int"], ["null", "string"]) == []
    problems = can_read(["null", "string"], ["null", "string", "int"])
    assert len(problems) == 1
    assert "writer union branch 'int' matches no branch" in problems[0]


def test_adding_null_to_field_is_backward_but_not_forward() -> None:
    old = record("R", fld("a", "string"))
    new = record("R", fld("a", ["null", "string"], default=None))
    assert check("BACKWARD", new, [old]) == []
    assert check("FORWARD", new, [old])


def test_union_of_records_resolves_by_name() -> None:
    a1 = record("A", fld("x", "int"))
    b1 = record("B", fld("y", "int"))
    a2 = record("A", fld("x", "long"))
    assert can_read([a2, b1], [a1, b1]) == []
    assert can_read([a1, b1], [a2, b1])


# ------------------------------------------------------------------------------ named references and recursion

LINKED_LIST = record("Node", fld("value", "int"), fld("next", ["null", "Node"], default=None))


def test_recursive_schema_terminates_and_is_self_compatible() -> None:
    assert can_read(LINKED_LIST, LINKED_LIST) == []


def test_recursive_schema_finds_problems_inside_the_cycle() -> None:
    widened = record("Node", fld("value", "long"), fld("next", ["null", "Node"], default=None))
    assert can_read(widened, LINKED_LIST) == []
    problems = can_read(LINKED_LIST, widened)
    assert problems and any("Node.value" in p for p in problems)


def test_mutually_recursive_schemas_terminate() -> None:
    tree = record(
        "Tree",
        fld("children", {"type": "array", "items": record("Child", fld("tree", ["null", "Tree"]))}),
        fld("label", "string"),
    )
    tree2 = json.loads(json.dumps(tree))
    tree2["fields"].append(fld("extra", "int", default=0))
    assert can_read(tree2, tree) == []
    assert can_read(tree, tree2) == []


def test_named_references_resolve_by_full_name() -> None:
    schema = record(
        "Outer",
        fld("a", enum("E", "X", "Y", namespace="n1")),
        fld("b", "n1.E"),
        namespace="top",
    )
    reader = json.loads(json.dumps(schema))
    reader["fields"][0]["type"]["symbols"] = ["X"]
    problems = can_read(reader, schema)
    # Both fields refer to the same (narrowed) enum, so both are reported.
    assert len(problems) == 2
    assert any("Outer.a" in p for p in problems) and any("Outer.b" in p for p in problems)


def test_attribute_value_style_recursive_union_map() -> None:
    av = record(
        "AttributeValue",
        fld("S", ["null", "string"], default=None),
        fld("M", ["null", {"type": "map", "values": "AttributeValue"}], default=None),
        fld("L", ["null", {"type": "array", "items": "AttributeValue"}], default=None),
    )
    av2 = json.loads(json.dumps(av))
    av2["fields"].append(fld("N", ["null", "string"], default=None))
    assert can_read(av2, av) == []
    assert can_read(av, av2) == []
    av3 = json.loads(json.dumps(av))
    av3["fields"].append(fld("BOOL", "boolean"))
    assert any("'BOOL'" in p for p in can_read(av3, av))


# ------------------------------------------------------------------------------ levels

V1 = record("R", fld("a", "int"))
V2 = record("R", fld("a", "int"), fld("b", "string", default=""))  # adds a field with default
V3 = record("R", fld("b", "string", default=""))  # drops a (no default on a)
V3_NEEDS_A = record("R", fld("b", "string"))  # b has no default


def test_backward_checks_new_reads_latest() -> None:
    assert check("BACKWARD", V2, [V1]) == []
    problems = check("BACKWARD", V3_NEEDS_A, [V1])
    assert len(problems) == 1
    assert problems[0].startswith("the new schema cannot read data written with existing schema #1")


def test_forward_checks_latest_reads_new() -> None:
    # Dropping field `a` (no default in V1) breaks old readers.
    problems = check("FORWARD", V3, [V2])
    assert problems and problems[0].startswith("existing schema #1 cannot read data written with the new schema")
    assert check("FORWARD", V2, [V3]) == []
    assert check("BACKWARD", V3, [V2]) == []


def test_full_checks_both_ways() -> None:
    assert check("FULL", V2, [V1]) == []
    assert check("FULL", V1, [V2]) == []
    assert check("FULL", V3, [V2])  # V2 readers need `a`, which V3 no longer writes
    assert check("FULL", V2, [V3])  # and V2 cannot read V3 data for the same reason


def test_non_transitive_only_looks_at_latest() -> None:
    v1 = record("R", fld("v", "string"))
    v2 = record("R", fld("v", "string"), fld("w", "long", default=0))
    new = record("R", fld("v", ["null", "long"], default=None), fld("w", "long", default=0))
    # `new` cannot read `v: string` from either version; BACKWARD looks at the latest only.
    assert len(check("BACKWARD", new, [v1, v2])) == 1
    assert len(check("BACKWARD_TRANSITIVE", new, [v1, v2])) == 2


def test_transitive_catches_what_latest_misses() -> None:
    v1 = record("R", fld("a", "int"))
    v2 = record("R", fld("a", "int", default=0), fld("b", "int", default=0))
    v3 = record("R", fld("b", "int", default=0), fld("c", "int", default=0))
    # v3 drops `a`: v2 readers fall back to a's default, v1 readers have none.
    assert check("FORWARD", v3, [v1, v2]) == []
    problems = check("FORWARD_TRANSITIVE", v3, [v1, v2], labels=["version 1", "version 2"])
    assert len(problems) == 1
    assert problems[0].startswith("version 1 cannot read data written with the new schema")
    assert check("FULL", v3, [v1, v2]) == []
    assert len(check("FULL_TRANSITIVE", v3, [v1, v2])) == 1


def test_none_allows_anything_and_no_history_is_compatible() -> None:
    assert check("NONE", "string", [V1]) == []
    assert check(CompatibilityLevel.FULL_TRANSITIVE, "string", []) == []
    assert check("BACKWARD", "string", [V1])


def test_level_parsing() -> None:
    assert CompatibilityLevel.parse("backward_transitive") is CompatibilityLevel.BACKWARD_TRANSITIVE
    with pytest.raises(ValueError, match="unknown compatibility level"):
        CompatibilityLevel.parse("SIDEWAYS")
    with pytest.raises(ValueError):
        check("SIDEWAYS", V1, [V1])


def test_labels_must_match_existing() -> None:
    with pytest.raises(ValueError):
        check("BACKWARD", V1, [V1], labels=[])


# ------------------------------------------------------------------------------ parsing and identity


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "{}",
        '{"type": "record", "name": "R"}',
        '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "Nope"}]}',
        '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "default": "x"}]}',
        '{"type": "enum", "name": "E", "symbols": ["A"], "default": "B"}',
        '{"type": "fixed", "name": "F"}',
        '{"type": "array"}',
        '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}, {"name": "a", "type": "int"}]}',
        '{"type": "record", "name": "1R", "fields": []}',
        '{"type": "record", "name": "R", "fields": [{"name": "a-b", "type": "int"}]}',
        '["int", "int"]',
        '["int", ["string"]]',
        '{"type": "enum", "name": "E", "symbols": ["A", "A"]}',
        '{"type": "enum", "name": "E", "symbols": ["not valid"]}',
    ],
)
def test_invalid_schemas_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidSchemaError):
        parse_schema(bad)
    with pytest.raises(InvalidSchemaError):
        check("BACKWARD", bad, [])


def test_strings_and_dicts_are_both_accepted() -> None:
    assert can_read(json.dumps(V2), V1) == []
    assert parse_schema('"string"').root == "string"


def test_canonical_form_ignores_whitespace_key_order_and_primitive_wrapping() -> None:
    a = '{"type": "record", "name": "R", "fields": [{"name": "a", "type": {"type": "int"}}]}'
    b = '{"fields":[{"type":"int","name":"a"}],"name":"R","type":"record"}'
    assert canonical_form(a) == canonical_form(b)
    assert compact_form(a) == '{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}'


def test_canonical_form_keeps_docs_defaults_and_field_order() -> None:
    base = record("R", fld("a", "int"), fld("b", "int"))
    assert canonical_form(base) != canonical_form(record("R", fld("b", "int"), fld("a", "int")))
    assert canonical_form(base) != canonical_form(record("R", fld("a", "int"), fld("b", "int"), doc="d"))
    assert canonical_form(record("R", fld("a", "int", default=1))) != canonical_form(
        record("R", fld("a", "int", default=2))
    )


def test_canonical_form_leaves_default_values_alone() -> None:
    # A map default that looks like a schema must not be "collapsed".
    s = record("R", fld("m", {"type": "map", "values": "string"}, default={"type": "int"}))
    assert json.loads(compact_form(s))["fields"][0]["default"] == {"type": "int"}


def test_the_bridges_own_table_schemas_are_valid_and_self_compatible() -> None:
    """The envelope's AttributeValue is recursive: the real schema exercises the cycle guard."""
    from connectors.dynamodb.schemas import KeyField, table_schemas

    s = table_schemas("orders", (KeyField("pk", "S"), KeyField("sk", "N")))
    for text in (s.key_schema, s.value_schema):
        assert check("FULL_TRANSITIVE", text, [text, text]) == []
        assert canonical_form(compact_form(text)) == canonical_form(text)
    # Dropping the sort key: new readers ignore the writer's extra `sk` (BACKWARD holds), but
    # old readers need `sk`, which has no default (FORWARD breaks).
    narrower = table_schemas("orders", (KeyField("pk", "S"),))
    assert check("BACKWARD", narrower.key_schema, [s.key_schema]) == []
    assert check("FORWARD", narrower.key_schema, [s.key_schema])
