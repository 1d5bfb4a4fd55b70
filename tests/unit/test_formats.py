"""Converters (bridge/serde/formats): config checks at start, and Avro → each format, exact."""

from __future__ import annotations

import base64
import json
import struct
from decimal import Decimal
from typing import Any

import pytest

from bridge.errors import ConfigError
from bridge.serde.formats import FormatOptions, converter
from bridge.serde.formats.model import decimal_text, unscaled_of
from connectors.dynamodb.config import parse_config
from connectors.dynamodb.envelope import change_record, envelope_schema
from connectors.dynamodb.schemas import KeyField

GOOD: dict[str, Any] = {"name": "b", "kafka": {"bootstrap.servers": "localhost:9092"},
                        "schema_registry": {"url": "http://localhost:8081"}}
BIG = "12345678901234567890123456789012345678"


def _table(**entry: Any) -> dict[str, Any]:
    return {**GOOD, "tables": [{"name": "orders", **entry}]}


def test_formats_are_read_per_key_and_value() -> None:
    cfg = parse_config(_table(key={"format": "json"}, value={"format": "protobuf", "shape": "typed"}))
    f = cfg.tables[0].formats()
    assert (f.key.format, f.value.format) == ("json", "protobuf")
    assert parse_config(_table()).tables[0].formats().all_avro


@pytest.mark.parametrize("entry, words", [
    ({"value": {"format": "xml"}}, "format"),
    ({"key": {"format": "avro", "schemas_enable": True}}, "schemas_enable is only read with format: json"),
    ({"value": {"format": "json", "schemas_enable": True}}, "recursive AttributeValue"),
    ({"value": {"format": "json", "schemas_enable": True, "shape": "typed", "maps": "attribute_value"}},
     "maps: attribute_value"),
])
def test_bad_format_config_fails_at_start_with_the_fix(entry: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_config(_table(**entry))


def test_decimals_stay_exact() -> None:
    d = Decimal(BIG)
    assert unscaled_of(d, 0) == int(BIG)
    assert unscaled_of(Decimal("-1.5"), 3) == -1500
    assert decimal_text(Decimal("1E+3")) == "1000"


ITEM = {"pk": {"S": "a"}, "big": {"N": BIG}, "b": {"B": "AAH+/w=="}, "ss": {"SS": ["x", "y"]},
        "m": {"M": {"k": {"N": "1"}, "inner": {"M": {"t": {"BOOL": True}}}}}, "nul": {"NULL": True}}


def _envelope() -> tuple[Any, Any]:
    h = envelope_schema("orders", (KeyField("pk", "S"),))
    r = change_record("ddb.orders", h, {"pk": {"S": "a"}}, "c", None, ITEM, {"connector": "x", "table": "orders"}, 7)
    return h, r


def test_plain_json_envelope_images_are_dynamodb_json() -> None:
    h, r = _envelope()
    value = json.loads(converter(FormatOptions("json"), h.value_schema).convert(h.encode_value(r)))
    assert value == {"op": "c", "after": ITEM, "source": {"connector": "x", "table": "orders", "ttl_delete": False},
                     "ts_ms": 7}
    assert json.loads(converter(FormatOptions("json"), h.key_schema).convert(h.encode_key(r))) == {"pk": "a"}


def test_connect_wrapper_of_a_key() -> None:
    h, r = _envelope()
    key = json.loads(converter(FormatOptions("json", True), h.key_schema).convert(h.encode_key(r)))
    assert key["payload"] == {"pk": "a"}
    assert key["schema"]["type"] == "struct" and key["schema"]["fields"][0] == {
        "type": "string", "optional": False, "field": "pk"}


def test_connect_wrapper_refuses_a_recursive_schema() -> None:
    h, _ = _envelope()
    with pytest.raises(ConfigError, match="recursive"):
        converter(FormatOptions("json", True), h.value_schema)


def test_connect_decimal_is_base64_of_the_unscaled_integer() -> None:
    schema = json.dumps({"type": "record", "name": "R", "fields": [
        {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 2}}]})
    import io

    from fastavro import parse_schema, schemaless_writer

    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(json.loads(schema)), {"d": Decimal("-123456789012345678901234567890123456.78")})
    out = json.loads(converter(FormatOptions("json", True), schema).convert(buf.getvalue()))
    unscaled = int.from_bytes(base64.b64decode(out["payload"]["d"]), "big", signed=True)
    assert unscaled == -12345678901234567890123456789012345678
    plain = json.loads(converter(FormatOptions("json"), schema).convert(buf.getvalue()))
    assert plain == {"d": "-123456789012345678901234567890123456.78"}


ALL_TYPES = {
    "type": "record", "name": "All", "namespace": "t", "fields": [
        {"name": "l", "type": "long"}, {"name": "i", "type": "int"}, {"name": "d", "type": "double"},
        {"name": "f", "type": "float"}, {"name": "b", "type": "boolean"}, {"name": "s", "type": "string"},
        {"name": "y", "type": "bytes"}, {"name": "fx", "type": {"type": "fixed", "name": "F", "size": 3}},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
        {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 4}},
        {"name": "dfx", "type": {"type": "fixed", "name": "DF", "size": 16, "logicalType": "decimal",
                                 "precision": 38, "scale": 0}},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "a", "type": {"type": "array", "items": ["null", "string"]}},
        {"name": "m", "type": {"type": "map", "values": ["null", "long", "string"]}},
        {"name": "o", "type": ["null", "All"], "default": None},
    ]}
VALUES = [
    {"l": -(2**63), "i": 2**31 - 1, "d": -1.5, "f": 0.25, "b": True, "s": "ü€\U0001f600", "y": b"\x00\xff",
     "fx": b"abc", "e": "B", "dec": Decimal("-12345678901234567890123456789012.3456"), "dfx": Decimal(BIG),
     "ts": 1700000000123, "a": ["x", None], "m": {"k": 1, "n": None, "s": "v"}, "o": None},
    {"l": 2**63 - 1, "i": -(2**31), "d": 0.0, "f": -2.0, "b": False, "s": "", "y": b"", "fx": b"\x00\x00\x01",
     "e": "A", "dec": Decimal("0.0001"), "dfx": Decimal("-1"), "ts": 0, "a": [], "m": {},
     "o": {"l": 1, "i": 0, "d": 1e300, "f": 1.0, "b": True, "s": "x" * 300, "y": b"\x01" * 200, "fx": b"xyz",
           "e": "A", "dec": Decimal("1.0000"), "dfx": Decimal("0"), "ts": 1, "a": None or [], "m": {"z": 5},
           "o": None}},
]


@pytest.mark.parametrize("value", VALUES)
def test_every_avro_type_decodes_with_logical_types_kept_exact(value: dict[str, Any]) -> None:
    import io

    from fastavro import parse_schema, schemaless_reader, schemaless_writer

    from bridge.serde.formats.model import avro_model

    parsed = parse_schema(ALL_TYPES)
    buf = io.BytesIO()
    schemaless_writer(buf, parsed, value)
    ours = avro_model(json.dumps(ALL_TYPES)).decode(buf.getvalue())
    theirs = schemaless_reader(io.BytesIO(buf.getvalue()), parsed, None)
    theirs["ts"] = value["ts"]  # fastavro makes a datetime of timestamp-millis; ours stays the long
    if theirs["o"] is not None:
        theirs["o"]["ts"] = value["o"]["ts"]
    assert ours == theirs


def test_bodies_that_do_not_fit_the_schema_do_not_convert() -> None:
    from bridge.errors import ConversionError
    from bridge.serde.formats.model import avro_model

    h, r = _envelope()
    model = avro_model(h.value_schema)
    body = h.encode_value(r)
    with pytest.raises(ConversionError):
        model.decode(body[:-3])
    with pytest.raises(ConversionError):
        model.decode(body + b"\x00")


class _Ids:
    """The registry's protocol (register, lookup) handing out one id: what is tested is the writing."""

    def register(self, subject: str, schema: str, schema_type: str = "AVRO") -> int:
        return 7

    def lookup(self, subject: str, schema: str, schema_type: str = "AVRO") -> Any:
        return None


def test_a_record_the_format_cannot_write_goes_to_the_dead_letter_path() -> None:
    """A list holding NULL has no protobuf form: that record gets its ConversionError (the
    worker dead-letters it), the batch's other records are written."""
    from bridge.serde.formats import TopicFormats
    from bridge.serde.serializer import RecordSerializer
    from connectors.dynamodb.typed import TypedTable, TypedValueConfig

    typed = TypedTable("orders", (KeyField("pk", "S"),), TypedValueConfig.model_validate(
        {"shape": "typed", "attributes": [{"name": "tags", "type": "array", "items": "string"}]}))
    protobuf = TopicFormats(FormatOptions("avro"), FormatOptions("protobuf"))
    ser = RecordSerializer(_Ids(), formats=lambda topic: protobuf)
    records = []
    for pk, tags in (("a", {"L": [{"S": "x"}]}), ("b", {"L": [{"S": "x"}, {"NULL": True}]})):
        item = {"pk": {"S": pk}, "tags": tags}
        handle = typed.absorb(None, item)
        records.append(change_record("ddb.orders", handle, {"pk": {"S": pk}}, "c", None, item,
                                     {"connector": "x", "table": "orders"}, 1))
    for r in ser.unprepared(records):
        ser.prepare(r)
    framed = ser.serialize_batch(records)
    assert framed.values[0] is not None and framed.values[0][:6] == b"\x00\x00\x00\x00\x07\x00"
    assert framed.keys[1] is None and "repeated field 'tags' holds a null" in str(framed.errors[1])


@pytest.mark.parametrize("schema", ['{"type": "object", "properties": {}}', 'syntax = "proto3";'])
def test_tail_and_verify_say_they_read_avro_topics_only(schema: str) -> None:
    from bridge.errors import ConversionError
    from bridge.ops.decode import TopicDecoder

    class Registry:  # the client's protocol: a schema by id
        def get_schema(self, schema_id: int) -> str:
            return schema

    with pytest.raises(ConversionError, match="tail and verify read Avro topics"):
        TopicDecoder(Registry()).decode(b"\x00\x00\x00\x00\x01{}")  # type: ignore[arg-type]


def _empty(v: Any) -> bool:
    """What protobuf cannot tell from nothing (docs/schemas.md, lossy corners): {"L": []} too."""
    return v in (None, [], {}) or (isinstance(v, dict) and all(_empty(x) for x in v.values()))


def _same(json_value: Any, proto_value: Any) -> bool:
    """The plain-JSON and the protobuf (MessageToDict) pictures of one value agree: a oneof
    wrapper ({"long_value": 1}) or a box ({"value": [...]}) stands for what it holds, int64 is
    text in protobuf's JSON, an empty list or map is what protobuf has for a missing one."""
    if isinstance(proto_value, dict) and len(proto_value) == 1:
        (k, inner), = proto_value.items()
        if (k == "value" or k.endswith("_value")) and not (isinstance(json_value, dict) and k in json_value):
            return _same(json_value, inner)
    if _empty(json_value) or _empty(proto_value):
        return _empty(json_value) and _empty(proto_value)
    if isinstance(json_value, dict) and isinstance(proto_value, dict):
        keys = {k for k, v in json_value.items() if v not in (None, [], {})}
        return keys == {k for k, v in proto_value.items() if v not in (None, [], {})} and all(
            _same(json_value[k], proto_value[k]) for k in keys)
    if isinstance(json_value, list) and isinstance(proto_value, list):
        return len(json_value) == len(proto_value) and all(map(_same, json_value, proto_value))
    if isinstance(json_value, int) and not isinstance(json_value, bool) and isinstance(proto_value, str):
        return str(json_value) == proto_value
    if isinstance(json_value, float) and isinstance(proto_value, (int, float)):
        return json_value == proto_value
    return bool(json_value == proto_value)


def test_protobuf_and_json_agree_on_the_wide_workload_in_both_shapes(tmp_path: Any) -> None:
    """Every record of the bench's wide pages (nested maps, sets, lists of mixed types widened
    to unions, lists in lists), written as protobuf and read back with the class protoc
    generates from the .proto, says what the plain JSON of the same record says."""
    import importlib.util
    import os

    import grpc_tools
    from google.protobuf.json_format import MessageToDict
    from grpc_tools import protoc

    from bench.workload import KEYS, REGION, STREAM_ARN, TABLE, WORKLOADS, make_pages
    from connectors.dynamodb.records import PageReader, StreamContext
    from connectors.dynamodb.typed import TypedTable, TypedValueConfig

    keys = tuple(KeyField(n, t) for n, t in KEYS)  # type: ignore[arg-type]
    page = make_pages(WORKLOADS["wide"], 1)[0]
    for shape in ("envelope", "typed"):
        typed = None if shape == "envelope" else TypedTable(TABLE, keys, TypedValueConfig.model_validate(
            {"shape": "typed", "on_conflict": "widen"}))
        reader = PageReader(StreamContext("t", TABLE, REGION, keys, STREAM_ARN, "shardId-0", typed=typed))
        records, _, _ = reader.read(page)
        last = records[-1].schema  # the newest version reads them all (fields only appended)
        pb = converter(FormatOptions("protobuf"), last.value_schema)
        out = tmp_path / shape
        out.mkdir()
        (out / f"wide_{shape}.proto").write_text(pb.schema)
        include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        assert protoc.main(["protoc", f"-I{out}", f"-I{include}", f"--python_out={out}", f"wide_{shape}.proto"]) == 0
        spec = importlib.util.spec_from_file_location(f"wide_{shape}_pb2", out / f"wide_{shape}_pb2.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cls = module.Envelope
        checked = 0
        for r in records[:200]:
            if r.tombstone:
                continue
            body = r.encoded_value if r.encoded_value is not None else r.schema.encode_value(r)
            plain = json.loads(converter(FormatOptions("json"), r.schema.value_schema).convert(body))
            message = cls.FromString(converter(FormatOptions("protobuf"), r.schema.value_schema).convert(body)[1:])
            pictured = MessageToDict(message, preserving_proto_field_name=True)
            assert _same(plain.get("after"), pictured.get("after")), (shape, plain.get("after"), pictured.get("after"))
            checked += 1
        assert checked > 100


def test_json_schema_values_of_the_wide_workload_validate_against_their_and_the_newest_schema() -> None:
    from jsonschema import Draft7Validator  # type: ignore[import-untyped]

    from bench.workload import KEYS, REGION, STREAM_ARN, TABLE, WORKLOADS, make_pages
    from connectors.dynamodb.records import PageReader, StreamContext
    from connectors.dynamodb.typed import TypedTable, TypedValueConfig

    keys = tuple(KeyField(n, t) for n, t in KEYS)  # type: ignore[arg-type]
    page = make_pages(WORKLOADS["wide"], 1)[0]
    for shape in ("envelope", "typed"):
        typed = None if shape == "envelope" else TypedTable(TABLE, keys, TypedValueConfig.model_validate(
            {"shape": "typed", "on_conflict": "widen"}))
        records, _, _ = PageReader(StreamContext("t", TABLE, REGION, keys, STREAM_ARN, "shardId-0",
                                                 typed=typed)).read(page)
        newest = Draft7Validator(json.loads(converter(FormatOptions("json_schema"), records[-1].schema.value_schema)
                                            .schema))
        for r in records[:300]:
            if r.tombstone:
                continue
            conv = converter(FormatOptions("json_schema"), r.schema.value_schema)
            body = r.encoded_value if r.encoded_value is not None else r.schema.encode_value(r)
            value = json.loads(conv.convert(body))
            Draft7Validator(json.loads(conv.schema)).validate(value)
            newest.validate(value)  # what BACKWARD promises: the newest schema reads old values


def test_discovered_tables_take_the_templates_formats() -> None:
    from connectors.dynamodb.plugin import topic_formats

    cfg = parse_config({**GOOD, "tables": [{"name": "orders", "value": {"format": "json_schema"}}],
                        "table_discovery": {"name_prefix": "app-",
                                            "template": {"key": {"format": "json"}, "value": {"format": "protobuf"}}}})
    formats = topic_formats(cfg)
    assert formats(cfg.topic_for(cfg.tables[0])).value.format == "json_schema"
    found = formats(cfg.prefixed("app-users"))
    assert (found.key.format, found.value.format) == ("json", "protobuf")


def test_the_start_check_names_the_topic_whose_schema_a_format_cannot_write() -> None:
    from bridge.serde.formats import TopicFormats
    from bridge.serde.serializer import check_formats

    h, _ = _envelope()
    wrapped = TopicFormats(FormatOptions("avro"), FormatOptions("json", True))
    with pytest.raises(ConfigError, match="topic 'ddb.orders': value.format json: .*recursive"):
        check_formats([("ddb.orders", h)], lambda topic: wrapped)
    check_formats([("ddb.orders", h)], lambda topic: TopicFormats(FormatOptions("protobuf"), FormatOptions("json")))


@pytest.mark.parametrize("value", VALUES)
def test_the_one_pass_json_reader_writes_what_to_json_makes_of_fastavros_datum(value: dict[str, Any]) -> None:
    import io

    from fastavro import parse_schema, schemaless_writer

    from bridge.serde.formats.avro_json import compile_json_reader
    from bridge.serde.formats.json_plain import to_json
    from bridge.serde.formats.model import avro_model

    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(ALL_TYPES), value)
    model = avro_model(json.dumps(ALL_TYPES))
    assert compile_json_reader(model.root)(buf.getvalue()) == to_json(model.root, model.decode(buf.getvalue()))


def test_the_one_pass_json_reader_agrees_on_the_wide_workload_in_both_shapes() -> None:
    from bench.workload import KEYS, REGION, STREAM_ARN, TABLE, WORKLOADS, make_pages
    from bridge.serde.formats.avro_json import compile_json_reader
    from bridge.serde.formats.json_plain import to_json
    from bridge.serde.formats.model import avro_model
    from connectors.dynamodb.records import PageReader, StreamContext
    from connectors.dynamodb.typed import TypedTable, TypedValueConfig

    keys = tuple(KeyField(n, t) for n, t in KEYS)  # type: ignore[arg-type]
    page = make_pages(WORKLOADS["wide"], 1)[0]
    readers: dict[str, Any] = {}
    for shape in ("envelope", "typed"):
        typed = None if shape == "envelope" else TypedTable(TABLE, keys, TypedValueConfig.model_validate(
            {"shape": "typed", "on_conflict": "widen"}))
        records, _, _ = PageReader(StreamContext("t", TABLE, REGION, keys, STREAM_ARN, "shardId-0",
                                                 typed=typed)).read(page)
        for r in records:
            for text, body in ((r.schema.key_schema, r.encoded_key or r.schema.encode_key(r)),
                               (r.schema.value_schema, None if r.tombstone else
                                r.encoded_value if r.encoded_value is not None else r.schema.encode_value(r))):
                if body is None:
                    continue
                model = avro_model(text)
                read = readers.get(text) or readers.setdefault(text, compile_json_reader(model.root))
                assert read(body) == to_json(model.root, model.decode(body))


def _item(*fields: tuple[str, Any]) -> str:
    return json.dumps({"type": "record", "name": "Item", "namespace": "t",
                       "fields": [{"name": n, "type": t} for n, t in fields]})


def _proto_problems(old_avro: str, new_avro: str) -> list[str]:
    """What the registry's Protobuf rules say of the .proto of ``new_avro`` after that of ``old_avro``."""
    from bridge.serde.formats.protobuf import proto_file
    from devtools.registry import types as schema_types
    from devtools.registry.compat import CompatibilityLevel

    old, new = (schema_types.parse(proto_file(a), "PROTOBUF") for a in (old_avro, new_avro))
    return schema_types.check(CompatibilityLevel.BACKWARD, new, [("v1", old)])


def test_a_union_gaining_a_branch_before_another_keeps_the_oneof_numbers() -> None:
    """Widening puts long before double: the double branch keeps its number."""
    old = _item(("x", ["null", "double", "string"]))
    new = _item(("x", ["null", "long", "double", "string"]))
    assert _proto_problems(old, new) == []


@pytest.mark.parametrize("branches", [["null", "int", "long"], ["null", "float", "double"], ["bytes", "string", {
    "type": "enum", "name": "E", "symbols": ["A"]}], [{"type": "map", "values": "long"}, {
        "type": "record", "name": "R", "fields": []}]])
def test_protobuf_refuses_a_union_whose_branches_a_value_does_not_tell_apart(branches: list[Any]) -> None:
    """The branch is found from the decoded value's type, so two branches of one type would
    be a guess: refused when the schema is built, with the field named."""
    from bridge.serde.formats.protobuf import ProtobufConverter

    with pytest.raises(ConfigError, match="field 'x' has branches") as e:
        ProtobufConverter(_item(("x", branches)))
    assert "\n" not in str(e.value)


def test_a_field_widened_to_a_union_is_refused_in_one_line_naming_the_field_and_both_types() -> None:
    """Protobuf has no compatible change from a scalar to a oneof (docs/schemas.md, Evolution)."""
    old = _item(("id", "string"), ("x", ["null", "long"]))
    new = _item(("id", "string"), ("x", ["null", "long", "string"]))
    (problem,) = _proto_problems(old, new)
    assert problem.endswith("FIELD_KIND_CHANGED t.Item.x (#2) from int64 to message t.Item_x_union")
    assert "\n" not in problem


def _avro_body(schema: str, value: dict[str, Any]) -> bytes:
    import io

    from fastavro import parse_schema, schemaless_writer

    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(json.loads(schema)), value)
    return buf.getvalue()


@pytest.mark.parametrize("kind, packed", [("double", b"\x09" + struct.pack("<d", -0.0)),
                                          ("float", b"\x0d" + struct.pack("<f", -0.0))], ids=["double", "float"])
def test_protobuf_writes_negative_zero_which_is_not_the_default(kind: str, packed: bytes) -> None:
    from bridge.serde.formats.protobuf import ProtobufConverter

    schema = _item(("x", kind))
    conv = ProtobufConverter(schema)
    assert conv.convert(_avro_body(schema, {"x": -0.0})) == b"\x00" + packed
    assert conv.convert(_avro_body(schema, {"x": 0.0})) == b"\x00"  # +0.0 is the default: not written


@pytest.mark.parametrize("kind", ["double", "float"])
def test_a_body_cut_inside_a_double_or_float_is_a_conversion_error(kind: str) -> None:
    """So the record goes to the dead-letter topic like any other body that does not decode."""
    from bridge.errors import ConversionError
    from bridge.serde.formats.avro_json import compile_json_reader
    from bridge.serde.formats.model import avro_model

    schema = _item(("x", kind))
    read = compile_json_reader(avro_model(schema).root)
    with pytest.raises(ConversionError, match="does not decode"):
        read(_avro_body(schema, {"x": 1.5})[:-1])


def test_the_formats_package_names_no_connector_even_in_its_docstrings() -> None:
    """Where a connector's config sets the formats, and how its schemas evolve, is said in the
    connector's docs (README, docs/schemas.md), not in the generic converters."""
    import re
    from pathlib import Path

    import bridge.serde.formats as formats

    words = re.compile(r"dynamo|tables\[\]|attribute ?value", re.IGNORECASE)
    found = [f"{p.name}:{n}: {line.strip()}" for p in sorted(Path(formats.__file__).parent.glob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1) if words.search(line)]
    assert not found, found
