"""Typed values: inference, evolution under BACKWARD, exact numbers, conflict policies,
name sanitising, and the Avro the writer produces, read back by fastavro (old bytes with the
newest schema too, as a consumer on the latest version does)."""

from __future__ import annotations

import base64
import io
import json
from decimal import Context, Decimal
from typing import Any, NamedTuple

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bridge.errors import ConversionError
from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.typed import TypeConflictStop, TypedTable, TypedValueConfig
from connectors.dynamodb.typed.encode import UnknownAttribute
from connectors.dynamodb.typed.infer import TypeConflict
from connectors.dynamodb.typed.names import field_name
from connectors.dynamodb.typed.numbers import encode_number, infer_number
from connectors.dynamodb.typed.types import Dec, Prim
from devtools.registry.compat import CompatibilityLevel, can_read
from tests.ddb_strategies import attribute_values, names

SOURCE = {"connector": "dynamodb", "table": "orders", "region": "us-east-1", "sequence_number": "1"}
KEY = (KeyField("pk", "S"),)


class Change(NamedTuple):
    op: str
    before: Any
    after: Any


class Rec:  # what the runtime hands a schema handle: a record's fields
    def __init__(self, key: Any, op: str, before: Any, after: Any, ts_ms: int = 7) -> None:
        self.key, self.ts_ms, self.position = key, ts_ms, SOURCE
        self.value = Change(op, before, after)


def table(on_conflict: str = "dead-letter", **cfg: Any) -> TypedTable:
    c = TypedValueConfig.model_validate({"shape": "typed", "on_conflict": on_conflict, **cfg})
    return TypedTable("orders", KEY, c)


def write(t: TypedTable, after: dict[str, Any], before: Any = None, op: str = "c") -> tuple[Any, bytes]:
    h = t.absorb(before, after)
    return h, h.encode_value(Rec({"pk": after.get("pk", {"S": "k"})}, op, before, after))


def read(body: bytes, writer: str, reader: str | None = None) -> Any:
    w = fastavro.parse_schema(json.loads(writer))
    r = None if reader is None else fastavro.parse_schema(json.loads(reader))
    return fastavro.schemaless_reader(io.BytesIO(body), w, r)


# --------------------------------------------------------------------------- names

def test_sanitising_rule() -> None:
    assert field_name("price") == "price"
    assert field_name("order-id") == "order_id_e3f2b5e8"
    assert field_name("1st")[:5] == "_1st_" and len(field_name("1st")) == 5 + 8
    assert field_name("") == "__e3b0c442"
    assert field_name("ü").startswith("__")


def test_original_names_are_field_properties_in_key_and_value() -> None:
    c = TypedValueConfig.model_validate({"shape": "typed"})
    t = TypedTable("my-table", (KeyField("order-id", "S"),), c)
    h = t.absorb(None, {"order-id": {"S": "a"}, "unit price": {"N": "2"}})
    key = json.loads(h.key_schema)
    assert key["namespace"] == "ddbkafka.my_table.typed"
    assert key["fields"] == [{"name": "order_id_e3f2b5e8", "type": "string", "attribute": "order-id"}]
    item = json.loads(h.value_schema)["fields"][1]["type"][1]
    assert [(f["name"], f["attribute"]) for f in item["fields"]] == [
        ("order_id_e3f2b5e8", "order-id"), (field_name("unit price"), "unit price")]


def test_a_name_is_kept_when_a_clashing_one_arrives_later() -> None:
    t = table()
    h1, _ = write(t, {"order-id": {"S": "a"}})
    h2, _ = write(t, {"order_id": {"S": "b"}})
    f1 = json.loads(h1.value_schema)["fields"][1]["type"][1]["fields"]
    f2 = json.loads(h2.value_schema)["fields"][1]["type"][1]["fields"]
    assert f2[0] == f1[0] and f2[1]["name"] == "order_id"


# --------------------------------------------------------------------------- numbers

@pytest.mark.parametrize("text, expected", [
    ("5", Prim("long")), ("-9223372036854775808", Prim("long")), ("9223372036854775808", Dec(38, 0)),
    ("9" * 38, Dec(38, 0)), ("19.99", Prim("double")), ("1E+3", Prim("long")), ("1E+125", Prim("double")),
    ("0.12345678901234567891", Dec(38, 20)), ("1.2345678901234567890123456789012345678901", None), ("x", None),
])
def test_number_inference_from_exact_text(text: str, expected: Any) -> None:
    assert infer_number(text) == expected


def test_declared_decimal_38_0_round_trips_38_digits() -> None:
    t = table(attributes=[{"name": "big", "type": "decimal", "precision": 38, "scale": 0}])
    v = "12345678901234567890123456789012345678"
    h, body = write(t, {"pk": {"S": "k"}, "big": {"N": v}})
    assert read(body, h.value_schema)["after"]["big"] == Decimal(v)
    with pytest.raises(TypeConflict, match=r"big.*decimal\(38,0\)"):  # 39 digits: a conflict, not a rounding
        write(t, {"pk": {"S": "k"}, "big": {"N": v + "9"}})
    with pytest.raises(TypeConflict):
        write(t, {"pk": {"S": "k"}, "big": {"N": "1.5"}})


def test_declared_decimal_scale_is_exact() -> None:
    t = table(attributes=[{"name": "p", "type": "decimal", "precision": 5, "scale": 2}])
    h, body = write(t, {"p": {"N": "1.5"}})
    assert read(body, h.value_schema)["after"]["p"] == Decimal("1.50")
    for bad in ("1.555", "1234.5"):
        with pytest.raises(TypeConflict):
            write(t, {"p": {"N": bad}})


def test_declared_double_refuses_what_it_would_round() -> None:
    t = table(attributes=[{"name": "d", "type": "double"}])
    h, body = write(t, {"d": {"N": "0.1"}})
    assert read(body, h.value_schema)["after"]["d"] == 0.1
    with pytest.raises(TypeConflict):
        write(t, {"d": {"N": "0.12345678901234567891"}})


# --------------------------------------------------------------------------- evolution

def test_steady_table_keeps_one_handle() -> None:
    t = table()
    h1, _ = write(t, {"pk": {"S": "a"}, "n": {"N": "1"}})
    for i in range(50):
        h, _ = write(t, {"pk": {"S": str(i)}, "n": {"N": str(i)}, "gone": {"NULL": True}} if i == 3 else
                     {"pk": {"S": str(i)}, "n": {"N": str(i)}})
        if i < 3:
            assert h is h1
    assert h is t.handle and h is not h1  # "gone" (NULL only) added one optional field, once


def test_table_gains_and_loses_attributes_backward() -> None:
    t = table()
    steps = [
        {"pk": {"S": "1"}, "a": {"S": "x"}, "m": {"M": {"k1": {"N": "1"}}}},
        {"pk": {"S": "2"}, "a": {"S": "y"}, "b": {"BOOL": True}, "m": {"M": {"k1": {"N": "2"}}}},  # new attribute
        {"pk": {"S": "3"}, "b": {"BOOL": False}, "m": {"M": {"k1": {"N": "3"}, "k2": {"SS": ["s"]}}}},  # a gone, m grows
    ]
    written = [write(t, s) for s in steps]
    schemas = [h.value_schema for h, _ in written]
    assert len(set(schemas)) == 3
    for old, new in zip(schemas, schemas[1:]):
        assert can_read(new, old) == []  # BACKWARD: the new version reads the old one's data
    latest = schemas[-1]
    decoded = [read(body, h.value_schema, latest)["after"] for h, body in written]
    assert decoded[0] == {"pk": "1", "a": "x", "m": {"k1": 1, "k2": None}, "b": None}
    assert decoded[2] == {"pk": "3", "a": None, "m": {"k1": 3, "k2": ["s"]}, "b": False}
    assert CompatibilityLevel.parse("BACKWARD").backward


def test_unknown_attribute_is_refused_by_an_older_handle() -> None:
    t = table()
    h, _ = write(t, {"pk": {"S": "1"}})
    with pytest.raises(UnknownAttribute):
        h.encode_value(Rec({"pk": {"S": "1"}}, "c", None, {"pk": {"S": "1"}, "new": {"S": "x"}}))


# --------------------------------------------------------------------------- conflicts

def test_conflict_dead_letter_names_attribute_value_and_type() -> None:
    t = table("dead-letter")
    h, _ = write(t, {"pk": {"S": "1"}, "n": {"N": "1"}})
    with pytest.raises(TypeConflict) as e:
        write(t, {"pk": {"S": "2"}, "n": {"S": "one"}, "new": {"S": "still added"}})
    assert "attribute n" in str(e.value) and "'S': 'one'" in str(e.value) and "long" in str(e.value)
    assert "\n" not in str(e.value) and isinstance(e.value, ConversionError)
    assert t.rec.get("new") is not None and t.rec.get("n").type == Prim("long")


def test_conflict_widen_makes_a_union_both_read() -> None:
    t = table("widen")
    h1, b1 = write(t, {"pk": {"S": "1"}, "n": {"N": "1"}})
    h2, b2 = write(t, {"pk": {"S": "2"}, "n": {"N": "1.5"}})
    h3, b3 = write(t, {"pk": {"S": "3"}, "n": {"S": "one"}})
    assert can_read(h2.value_schema, h1.value_schema) == [] and can_read(h3.value_schema, h2.value_schema) == []
    assert [read(b, h.value_schema, h3.value_schema)["after"]["n"] for h, b in ((h1, b1), (h2, b2), (h3, b3))] == [
        1, 1.5, "one"]


def test_conflict_stop_is_one_line() -> None:
    t = table("stop")
    write(t, {"pk": {"S": "1"}, "n": {"N": "1"}})
    with pytest.raises(TypeConflictStop) as e:
        t.absorb(None, {"pk": {"S": "2"}, "n": {"S": "one"}})
    assert "\n" not in str(e.value) and "on_conflict: stop" in str(e.value) and "attribute n" in str(e.value)


# --------------------------------------------------------------------------- shapes and config

def test_maps_as_attribute_values_and_after_image_alone() -> None:
    t = table(maps="attribute_value", image="after")
    h, body = write(t, {"pk": {"S": "1"}, "m": {"M": {"x": {"N": "1"}}}})
    assert json.loads(h.value_schema)["name"] == "Item"
    assert read(body, h.value_schema)["m"]["x"]["N"] == "1"
    with pytest.raises(ConversionError, match="tombstone"):
        h.encode_value(Rec({"pk": {"S": "1"}}, "d", {"pk": {"S": "1"}}, None))


@pytest.mark.parametrize("decl, why", [
    ({"name": "a", "type": "decimal"}, "needs precision"),
    ({"name": "a", "type": "decimal", "precision": 39}, "less than or equal to 38"),
    ({"name": "a", "type": "array"}, "needs items"),
    ({"name": "a", "type": "string", "logical_type": "timestamp-millis"}, "needs type long"),
    ({"name": "a", "type": "long", "default": 5}, "only read with nullable: false"),
    ({"name": "a", "type": "long", "nullable": False, "default": "x"}, "must be a long"),
])
def test_bad_declarations_name_the_fix(decl: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        TypedValueConfig.model_validate({"shape": "typed", "attributes": [decl]})


def test_not_null_declared_with_default() -> None:
    t = table(attributes=[{"name": "qty", "type": "long", "nullable": False, "default": 0}])
    h, body = write(t, {"pk": {"S": "1"}})
    schema = json.loads(h.value_schema)["fields"][1]["type"][1]["fields"][0]
    assert schema["type"] == "long" and schema["default"] == 0
    assert read(body, h.value_schema)["after"]["qty"] == 0


def test_a_declared_default_keeps_its_type_first_when_widened() -> None:
    """Avro reads a union's default as its first branch: a declared double widened by a long
    (a 19-digit integer a double cannot hold) keeps double first, and the schema parses with
    its default (it did not: long went first, the default 0.5 did not fit it)."""
    t = table("widen", attributes=[{"name": "x", "type": "double", "nullable": False, "default": 0.5}])
    write(t, {"pk": {"S": "1"}, "x": {"N": "1.5"}})
    h, body = write(t, {"pk": {"S": "2"}, "x": {"N": "1234567890123456789"}})
    field = json.loads(h.value_schema)["fields"][1]["type"][1]["fields"][0]
    assert field["type"] == ["double", "long"] and field["default"] == 0.5
    fastavro.parse_schema(json.loads(h.value_schema))
    assert read(body, h.value_schema)["after"]["x"] == 1234567890123456789
    h3, missing = write(t, {"pk": {"S": "3"}})
    assert read(missing, h3.value_schema)["after"]["x"] == 0.5


# --------------------------------------------------------------------------- generated

def _digits_ok(av: dict[str, Any]) -> bool:
    ((k, v),) = av.items()
    if k == "N":
        return infer_number(v) is not None
    if k == "NS":
        return all(infer_number(x) is not None for x in v)
    if k == "L":
        return all(_digits_ok(x) for x in v)
    if k == "M":
        return all(_digits_ok(x) for x in v.values())
    return True


def _expected(t: Any, av: dict[str, Any] | None) -> Any:
    """What fastavro reads for ``av`` (an oracle written from the DynamoDB types)."""
    if av is None:
        return None
    ((k, v),) = av.items()
    if k == "NULL":
        return None
    if k == "S" or k == "BOOL":
        return v
    if k == "B":
        return base64.b64decode(v)
    if k == "N":  # the first branch that holds the text exactly (the writer's rule), read back exactly
        for b in (t.branches if type(t).__name__ == "UnionT" else (t,)):
            if type(b) not in (Prim, Dec) or encode_number(b, v) is None:
                continue
            if b == Prim("long"):
                return int(Decimal(v))
            if b == Prim("double"):
                assert Decimal(repr(float(Decimal(v)))) == Decimal(v)
                return float(Decimal(v))
            return Decimal(v).quantize(Decimal(1).scaleb(-b.scale), context=Context(prec=100))
        raise AssertionError(v)
    if k in ("SS", "NS", "BS"):
        return [_expected(_items(t), {k[0]: x}) for x in v]
    if k == "L":
        return [_expected(_items(t), x) for x in v]
    rec = next(b for b in (t.branches if type(t).__name__ == "UnionT" else (t,)) if type(b).__name__ == "Rec")
    return {field_name(f.attribute): _expected(f.type, v.get(f.attribute)) for f in rec.fields}


def _items(t: Any) -> Any:
    return next(b for b in (t.branches if type(t).__name__ == "UnionT" else (t,)) if type(b).__name__ == "Arr").items


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(names, attribute_values.filter(_digits_ok), max_size=5), min_size=1, max_size=5))
def test_generated_tables_evolve_backward_and_read_back(images: list[dict[str, Any]]) -> None:
    t = table("widen")
    written = []
    for item in images:
        try:
            h, body = write(t, item)
        except ConversionError:  # widening refused (a second bytes branch, a name clash): dead-letter
            continue
        written.append((h, body, item))
    latest = t.handle.value_schema
    fastavro.parse_schema(json.loads(latest))
    versions = list(dict.fromkeys(h.value_schema for h, _, _ in written))
    for old, new in zip(versions, versions[1:]):
        assert can_read(new, old) == []
    for h, body, item in written:
        got = read(body, h.value_schema, latest)["after"]
        assert got == _expected(t.rec, {"M": item})


def test_write_encodes_once_when_steady_and_grows_when_not() -> None:
    t = table()
    h1, body1 = t.write("c", None, {"pk": {"S": "1"}, "a": {"N": "1"}}, SOURCE, 7)
    h2, body2 = t.write("c", None, {"pk": {"S": "2"}, "a": {"N": "2"}}, SOURCE, 7)
    assert h1 is h2 and body2 == h2.encode_value(Rec({"pk": {"S": "2"}}, "c", None, {"pk": {"S": "2"}, "a": {"N": "2"}}))
    h3, body3 = t.write("c", None, {"pk": {"S": "3"}, "b": {"S": "x"}}, SOURCE, 7)
    assert h3 is not h2 and read(body3, h3.value_schema)["after"] == {"pk": "3", "a": None, "b": "x"}
    h4, body4 = t.write("c", None, {"pk": {"S": "4"}, "a": {"S": "x"}}, SOURCE, 7)
    assert h4 is h3 and body4 is None  # dead-letter: the runtime's encode_value raises the conflict


def test_typed_in_the_discovery_template_and_refused_with_an_export() -> None:
    from connectors.dynamodb.config import TableConfig, parse_config

    base = {"name": "b", "kafka": {"bootstrap.servers": "localhost:9092"}, "schema_registry": {"url": "http://r:8081"},
            "aws": {"region": "us-east-1"}}
    cfg = parse_config({**base, "table_discovery": {"name_prefix": "orders", "template": {
        "value": {"shape": "typed", "on_conflict": "widen"}}}}, check_kafka=False)
    assert cfg.table_discovery is not None
    found = TableConfig(name="orders-1", **cfg.table_discovery.template.model_dump())  # as discovery.py makes it
    fmt = found.record_format()
    assert fmt.typed is not None and fmt.typed.shape == "typed" and fmt.typed.on_conflict == "widen"
    assert fmt.typed_table("orders-1", KEY).handle is fmt.schema("orders-1", KEY)
    with pytest.raises(Exception, match="value.shape: typed takes snapshots by Scan only"):
        parse_config({**base, "tables": [{"name": "orders", "value": {"shape": "typed"}, "snapshot": {
            "mode": "only", "method": "export", "export": {"export_arn": "arn:aws:dynamodb:us-east-1:1:table/o/export/x"}}}]},
            check_kafka=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(names, attribute_values.filter(_digits_ok), max_size=5), min_size=1, max_size=4),
       st.sampled_from(["envelope", "after"]))
def test_a_registered_schema_reads_back_into_its_model(images: list[dict[str, Any]], image: str) -> None:
    from connectors.dynamodb.typed.from_avro import rec_from_value_schema

    t = table("widen", image=image, attributes=[{"name": "q", "type": "long", "nullable": False, "default": 0}])
    for item in images:
        t.absorb(None, item)
    h = t.handle
    assert rec_from_value_schema(h.value_schema, image) == h.rec


@pytest.mark.parametrize("value, words", [
    ({"on_conflict": "widen"}, ["tables[0].value", "on_conflict is only read with shape: typed"]),
    ({"shape": "typed", "on_conflict": "merge"}, ["tables[0].value.on_conflict", "widen"]),
    ({"shape": "typed", "attributes": [{"name": "a", "type": "decimal"}]}, ["tables[0].value.attributes[0]",
                                                                             "needs precision"]),
])
def test_typed_config_errors_are_one_line_naming_the_key(value: dict[str, Any], words: list[str]) -> None:
    from bridge.errors import ConfigError
    from connectors.dynamodb.config import parse_config

    cfg = {"name": "b", "kafka": {"bootstrap.servers": "localhost:9092"}, "schema_registry": {"url": "http://r:8081"},
           "aws": {"region": "us-east-1"}, "tables": [{"name": "orders", "value": value}]}
    with pytest.raises(ConfigError) as e:
        parse_config(cfg, check_kafka=False)
    assert len(str(e.value).strip().splitlines()) == 1, str(e.value)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_a_null_where_an_attribute_value_belongs_is_a_conversion_error() -> None:
    """A malformed image (``"a": null`` for an attribute that has a field) is one record that
    does not convert (dead letter or stop, as in envelope mode), never an unexpected error."""
    t = table()
    t.write("c", None, {"pk": {"S": "1"}, "a": {"N": "1"}}, SOURCE, 7)
    bad = {"pk": {"S": "2"}, "a": None}
    h, body = t.write("c", None, bad, SOURCE, 7)  # was: StopIteration out of the encoder
    assert body is None  # the runtime's encode_value raises it, and errors.tolerance decides
    with pytest.raises(ConversionError, match="attribute a: must be an attribute value object, got null"):
        h.encode_value(Rec({"pk": {"S": "2"}}, "c", None, bad))


def test_a_concurrent_snapshots_watermark_never_shapes_the_typed_schema() -> None:
    """Watermark items (a numeric hash key of about -1E+126, no real item's) pass through the
    stream reader before the snapshot filters them out: with ``on_conflict: stop`` they must not
    stop the bridge, with ``widen`` not turn the key field into a union."""
    from connectors.dynamodb.records import StreamContext, from_stream_records
    from connectors.dynamodb.watermarks import watermark_item

    key = (KeyField("id", "N"),)
    for policy in ("stop", "widen"):
        t = TypedTable("orders", key, TypedValueConfig.model_validate({"shape": "typed", "on_conflict": policy}))
        ctx = StreamContext(topic="t", table="orders", region="us-east-1", key_fields=key, stream_arn="arn",
                            shard_id="shardId-1", typed=t)

        def change(image: dict[str, Any], seq: str) -> dict[str, Any]:
            return {"eventName": "INSERT", "dynamodb": {"Keys": {"id": image["id"]}, "NewImage": image,
                                                        "SequenceNumber": seq, "ApproximateCreationDateTime": 1}}

        from_stream_records([change({"id": {"N": "7"}, "a": {"S": "x"}}, "1")], ctx)
        steady = t.handle
        wm = watermark_item(ctx, "m1")
        records = from_stream_records([change(wm, "2"), change({"id": {"N": "8"}, "a": {"S": "y"}}, "3")], ctx)
        assert t.handle is steady, policy
        assert [r.key for r in records] == [{"id": wm["id"]}, {"id": {"N": "8"}}]
