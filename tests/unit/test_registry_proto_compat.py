"""The dev registry's Protobuf compatibility verdicts, pair by pair, against the rules
Confluent documents for Protobuf (fields and messages added or removed, renames, scalar
groups, labels, oneofs, enums, package). Parsing is protoc's (grpcio-tools)."""

from __future__ import annotations

import pytest

from devtools.registry import types as schema_types
from devtools.registry.compat import CompatibilityLevel, InvalidSchemaError


def proto(body: str, package: str = "p") -> str:
    return f'syntax = "proto3";\npackage {package};\n{body}\n'


BASE = proto("message M { string a = 1; int32 n = 2; }")

# (name, old, new, compatible under BACKWARD)
PAIRS: list[tuple[str, str, str, bool]] = [
    ("field added", BASE, proto("message M { string a = 1; int32 n = 2; bool b = 3; }"), True),
    ("field removed", BASE, proto("message M { string a = 1; }"), True),
    ("field renamed", BASE, proto("message M { string a = 1; int32 count = 2; }"), True),
    ("int32 to int64 (one wire group)", BASE, proto("message M { string a = 1; int64 n = 2; }"), True),
    ("int32 to uint32", BASE, proto("message M { string a = 1; uint32 n = 2; }"), True),
    ("int32 to bool", BASE, proto("message M { string a = 1; bool n = 2; }"), True),
    ("string to bytes", BASE, proto("message M { bytes a = 1; int32 n = 2; }"), True),
    ("int32 to sint32", BASE, proto("message M { string a = 1; sint32 n = 2; }"), False),
    ("int32 to string", BASE, proto("message M { string a = 1; string n = 2; }"), False),
    ("int32 to double", BASE, proto("message M { string a = 1; double n = 2; }"), False),
    ("fixed32 to sfixed32", proto("message M { fixed32 f = 1; }"), proto("message M { sfixed32 f = 1; }"), True),
    ("fixed32 to fixed64", proto("message M { fixed32 f = 1; }"), proto("message M { fixed64 f = 1; }"), False),
    ("scalar to message", BASE, proto("message M { string a = 1; N n = 2; } message N { int32 x = 1; }"), False),
    ("message type changed", proto("message M { N n = 1; } message N { int32 x = 1; } message O { int32 x = 1; }"),
     proto("message M { O n = 1; } message N { int32 x = 1; } message O { int32 x = 1; }"), False),
    ("message added", BASE, BASE + "message Other { int32 x = 1; }\n", True),
    ("message removed", BASE + "message Other { int32 x = 1; }\n", BASE, False),
    ("package changed", BASE, proto("message M { string a = 1; int32 n = 2; }", "q"), False),
    ("string made repeated", BASE, proto("message M { repeated string a = 1; int32 n = 2; }"), True),
    ("made optional (proto3 presence)", BASE, proto("message M { optional string a = 1; int32 n = 2; }"), True),
    ("one field moved into a new oneof", BASE, proto("message M { oneof o { string a = 1; } int32 n = 2; }"), True),
    ("two fields moved into a new oneof", BASE, proto("message M { oneof o { string a = 1; int32 n = 2; } }"), False),
    ("field moved into an existing oneof", proto("message M { oneof o { string a = 1; } int32 n = 2; }"),
     proto("message M { oneof o { string a = 1; int32 n = 2; } }"), False),
    ("oneof added with a new field", BASE, proto("message M { string a = 1; int32 n = 2; oneof o { bool b = 3; } }"),
     True),
    ("enum value added", proto("enum E { E_A = 0; } message M { E e = 1; }"),
     proto("enum E { E_A = 0; E_B = 1; } message M { E e = 1; }"), True),
    ("enum value renumbered (ENUM_CONST_CHANGED)", proto("enum E { E_A = 0; E_B = 1; } message M { E e = 1; }"),
     proto("enum E { E_A = 0; E_B = 2; } message M { E e = 1; }"), True),
    ("enum removed (ENUM_REMOVED)", proto("enum E { E_A = 0; } message M { int32 e = 1; }"),
     proto("message M { int32 e = 1; }"), True),
    ("enum to int32 (general number)", proto("enum E { E_A = 0; } message M { E e = 1; }"),
     proto("enum E { E_A = 0; } message M { int32 e = 1; }"), True),
    ("uint64 to enum", proto("enum E { E_A = 0; } message M { uint64 e = 1; }"),
     proto("enum E { E_A = 0; } message M { E e = 1; }"), True),
    ("bool to enum", proto("enum E { E_A = 0; } message M { bool e = 1; }"),
     proto("enum E { E_A = 0; } message M { E e = 1; }"), True),
    ("one enum to another", proto("enum E { E_A = 0; } enum F { F_A = 0; } message M { E e = 1; }"),
     proto("enum E { E_A = 0; } enum F { F_A = 0; } message M { F e = 1; }"), True),
    ("enum to string", proto("enum E { E_A = 0; } message M { E e = 1; }"),
     proto("enum E { E_A = 0; } message M { string e = 1; }"), False),
    ("enum to message", proto("enum E { E_A = 0; } message N { int32 x = 1; } message M { E e = 1; }"),
     proto("enum E { E_A = 0; } message N { int32 x = 1; } message M { N e = 1; }"), False),
    ("field removed from an existing oneof (ONEOF_FIELD_REMOVED)",
     proto("message M { oneof o { string a = 1; int32 n = 2; } }"), proto("message M { oneof o { string a = 1; } }"),
     False),
    ("field added to an existing oneof", proto("message M { oneof o { string a = 1; } }"),
     proto("message M { oneof o { string a = 1; int32 n = 2; } }"), True),
    ("whole oneof removed", proto("message M { string a = 1; oneof o { int32 n = 2; } }"),
     proto("message M { string a = 1; }"), True),
    ("map field removed (its entry message goes too)", proto("message M { string a = 1; map<string, int64> m = 2; }"),
     proto("message M { string a = 1; }"), True),
    ("implicit int32 made repeated", BASE, proto("message M { string a = 1; repeated int32 n = 2; }"), True),
    ("optional int32 made repeated (both labels explicit)", proto("message M { optional int32 n = 1; }"),
     proto("message M { repeated int32 n = 1; }"), False),
    ("repeated int64 made optional", proto("message M { repeated int64 n = 1; }"),
     proto("message M { optional int64 n = 1; }"), False),
    ("optional string made repeated", proto("message M { optional string s = 1; }"),
     proto("message M { repeated string s = 1; }"), True),
    ("nested message gains a field", proto("message M { N n = 1; } message N { int32 x = 1; }"),
     proto("message M { N n = 1; } message N { int32 x = 1; string y = 2; }"), True),
    ("comments and spacing only", BASE, proto("// a comment\nmessage M {\n  string a = 1;\n  int32 n = 2;\n}"), True),
]


@pytest.mark.parametrize("name, old, new, compatible", PAIRS, ids=[p[0] for p in PAIRS])
def test_protobuf_pair_backward(name: str, old: str, new: str, compatible: bool) -> None:
    old_p, new_p = schema_types.parse(old, "PROTOBUF"), schema_types.parse(new, "PROTOBUF")
    problems = schema_types.check(CompatibilityLevel.BACKWARD, new_p, [("version 1", old_p)])
    assert (not problems) == compatible, problems


@pytest.mark.parametrize("level", ["FORWARD", "FULL", "FULL_TRANSITIVE"])
def test_protobuf_rules_are_the_same_both_ways(level: str) -> None:
    old_p = schema_types.parse(BASE, "PROTOBUF")
    added = schema_types.parse(proto("message M { string a = 1; int32 n = 2; bool b = 3; }"), "PROTOBUF")
    changed = schema_types.parse(proto("message M { string a = 1; string n = 2; }"), "PROTOBUF")
    assert not schema_types.check(CompatibilityLevel(level), added, [("v1", old_p)])
    assert schema_types.check(CompatibilityLevel(level), changed, [("v1", old_p)])


def test_same_schema_spelled_differently_is_one_schema() -> None:
    a = schema_types.parse(BASE, "PROTOBUF")
    b = schema_types.parse(proto("message M {\n  string a = 1;   int32 n = 2; // n\n}"), "PROTOBUF")
    assert a.canonical == b.canonical


def test_invalid_proto_is_refused_with_protocs_words() -> None:
    with pytest.raises(InvalidSchemaError, match="protoc"):
        schema_types.parse(proto("message M { strin a = 1; }"), "PROTOBUF")
