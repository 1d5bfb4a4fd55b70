"""Each transform on DynamoDB records of both value shapes, through the stage the worker runs:
values decoded from what the stage wrote, with the schema it derived (as a consumer would)."""

from __future__ import annotations

import asyncio
import io
import json
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from bridge.errors import ConfigError
from bridge.serde.serializer import RecordSerializer
from bridge.task import SourceRecord, UnreadableRecord
from bridge.transforms import TransformStage, parse_transforms
from connectors.dynamodb.envelope import Change, ChangeRecord, envelope_schema
from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.transforms import expand, layout
from connectors.dynamodb.typed.config import TypedOptions
from connectors.dynamodb.typed.handle import TypedSchema
from connectors.dynamodb.typed.infer import absorb_item

KEY = (KeyField("orderId", "S"),)
ORDER = {"orderId": {"S": "o1"}, "customerEmail": {"S": "ann@example.com"}, "status": {"S": "new"},
         "orderTotal": {"N": "12.50"}, "address": {"M": {"city": {"S": "Oslo"}, "zip": {"S": "0150"}}}}


def typed(*items: dict[str, Any]) -> TypedSchema:
    cfg = TypedOptions(attributes=[{"name": "orderTotal", "type": "decimal", "precision": 12, "scale": 2}])
    rec = cfg.declared()
    for item in items:
        rec = absorb_item(rec, item, "record", False)
    return TypedSchema(rec, "orders", KEY)


def source(**kw: Any) -> dict[str, Any]:
    return {"connector": "dynamodb", "table": "orders", "region": "eu-north-1", "stream_arn": None, "shard_id": None,
            "sequence_number": "1", "event_id": None, "approximate_creation_ms": 1700000000000, "ttl_delete": False,
            **kw}


def change(handle: Any, op: str, before: Any, after: Any, **src: Any) -> list[SourceRecord]:
    key = {"orderId": (after or before)["orderId"]}
    out: list[SourceRecord] = [ChangeRecord("orders", handle, key, Change(op, before, after), source(**src), 7)]
    if op == "d":
        out.append(ChangeRecord("orders", handle, key, None, source(**src), 7, True))
    return out


def run(chain: list[Any], records: list[SourceRecord], *, is_typed: bool = True, **kw: Any
        ) -> tuple[TransformStage, list[SourceRecord]]:
    stage = TransformStage(parse_transforms(expand(chain)), layout(is_typed), **kw)
    return stage, asyncio.run(stage.apply(records))


def values(records: list[SourceRecord]) -> list[Any]:
    out = []
    for r in records:
        assert not isinstance(r, UnreadableRecord), r.reason
        if r.tombstone:
            out.append(None)
            continue
        schema = fastavro.parse_schema(json.loads(r.schema.value_schema))
        out.append(fastavro.schemaless_reader(io.BytesIO(r.encoded_value), schema, None))
    return out


def test_select_with_aliases_keeps_decimals_exact_and_nothing_else() -> None:
    h = typed(ORDER)
    _, out = run([{"select": ["op as event_name", "after.orderId as order_id", "after.orderTotal as order_total",
                              "after.address.city", "metadata.table"]}], change(h, "c", None, ORDER))
    assert values(out) == [{"event_name": "c", "order_id": "o1", "order_total": Decimal("12.50"), "city": "Oslo",
                            "table": "orders"}]
    fields = json.loads(out[0].schema.value_schema)["fields"]
    assert [f["type"] for f in fields][:2] == ["string", ["null", "string"]]  # after may be null: so may its fields


def test_a_delete_keeps_its_tombstone_and_the_key() -> None:
    h = typed(ORDER)
    records = change(h, "d", ORDER, None)
    _, out = run([{"select": ["op", "before.status"]}], records)
    assert values(out) == [{"op": "d", "status": "new"}, None]
    assert out[1].encoded_key == out[0].encoded_key == h.encode_key(records[0])


def test_rename_drop_and_mask_nested_paths() -> None:
    h = typed(ORDER)
    _, out = run([{"rename": {"after.address.zip": "postcode", "after.status": "state"}},
                  {"drop": ["before", "after.address.city", "source"]},
                  {"mask": {"fields": ["after.customerEmail"], "with": "blank"}},
                  {"mask": ["after.orderId"]}], change(h, "c", None, ORDER))
    (v,) = values(out)
    assert set(v) == {"op", "after", "ts_ms"}
    import hashlib
    assert v["after"]["address"] == {"postcode": "0150"}
    assert v["after"]["state"] == "new" and v["after"]["customerEmail"] is None
    assert v["after"]["orderId"] == hashlib.sha256(b"o1").hexdigest()


@pytest.mark.parametrize("where, kept", [
    ({"after.orderTotal": {"gt": "12.49"}}, True),
    ({"after.orderTotal": {"gt": 12.5}}, False),
    ({"after.orderTotal": {"gte": "12.5"}}, True),
    ({"after.orderTotal": 12.5}, True),  # equality of numbers is exact: 12.50 == 12.5
    ({"after.status": "new", "after.orderId": {"ne": "o2"}}, True),
    ({"after.missing": {"present": True}}, False),
    ({"after.address.city": {"present": True}}, True),
])
def test_filter_predicates_compare_numbers_exactly(where: dict[str, Any], kept: bool) -> None:
    _, out = run([{"filter": {"where": where}}], change(typed(ORDER), "c", None, ORDER))
    assert len(out) == int(kept)


PRICED = {"orderId": {"S": "o1"}, "price": {"N": "19.99"}, "orderTotal": {"N": "0.10"}}


@pytest.mark.parametrize("where, kept", [
    ({"after.price": {"eq": 19.99}}, True),  # a double read back as the text it came as
    ({"after.price": {"lte": 19.99}}, True),
    ({"after.price": {"lt": 19.99}}, False),
    ({"after.price": {"gte": "19.99"}}, True),
    ({"after.price": {"ne": 19.99}}, False),
    ({"after.orderTotal": {"eq": 0.1}}, True),  # a limit is the decimal it reads as, not a double
    ({"after.orderTotal": {"lt": 0.1}}, False),
    ({"after.orderTotal": {"gte": 0.1}}, True),
])
@pytest.mark.parametrize("encoded", [False, True])  # the structured path; the fast path (value already written)
def test_numbers_compare_alike_on_both_paths_doubles_as_written(where: dict[str, Any], kept: bool,
                                                                 encoded: bool) -> None:
    from connectors.dynamodb.transforms import fast_plan

    h = typed(PRICED)
    assert '"price","type":["null","double"]' in h.value_schema.replace(" ", "")
    records = change(h, "c", None, PRICED)
    if encoded:
        records[0].encoded_value = h.encode_value(records[0])
    chain = parse_transforms([{"filter": {"where": where}}, {"select": ["op", "after.price"]}])
    stage = TransformStage(chain, layout(True), fast=fast_plan)
    out = asyncio.run(stage.apply(records))
    assert values(out) == ([{"op": "c", "price": 19.99}] if kept else [])


@pytest.mark.parametrize("chain, later, check", [
    ([{"rename": {"after.status": "state"}}], {"state": {"S": "theirs"}},
     lambda v: v["after"]["state"] == "new"),
    ([{"flatten": None}], {"__op": {"S": "theirs"}, "__deleted": {"BOOL": True}},
     lambda v: v["__op"] == "c" and v["__deleted"] is False),
    ([{"flatten": None}, {"insert_field": {"region": "eu"}}], {"region": {"S": "theirs"}},
     lambda v: v["region"] == "eu"),
])
@pytest.mark.parametrize("fast", [False, True])
def test_an_attribute_gained_later_with_a_transforms_name_is_shadowed_not_a_stop(
        chain: list[Any], later: dict[str, Any], check: Any, fast: bool) -> None:
    from connectors.dynamodb.transforms import fast_plan

    stage = TransformStage(parse_transforms(chain), layout(True), fast=fast_plan if fast else None)
    first = change(typed(ORDER), "c", None, ORDER)
    grown = dict(ORDER, **later)
    second = change(typed(ORDER, grown), "c", None, grown)
    for r in first + second:
        r.encoded_value = r.schema.encode_value(r)
    out = asyncio.run(stage.apply(first)) + asyncio.run(stage.apply(second))
    assert len(out) == 2 and all(check(v) for v in values(out))


@pytest.mark.parametrize("text, test", [("NaN", {"gt": 5}), ("sNaN", {"lte": 5}), ("sNaN", {"eq": 5}),
                                         ("NaN", {"eq": "NaN"})])
def test_nan_makes_a_test_false_and_stops_nothing(text: str, test: dict[str, Any]) -> None:
    item = dict(ORDER, status={"S": text})
    _, out = run([{"filter": {"where": {"after.status": test}}}], change(typed(item), "c", None, item))
    assert out == [] if "NaN" not in test.values() else len(out) == 1  # a string "NaN" equals the string


def value_a_list(record: Any) -> Any:
    record.value = [1, 2]
    return record


def test_a_step_failing_on_a_record_is_a_record_error_naming_the_step() -> None:
    _, out = run([{"python": "tests.unit.test_transforms:value_a_list"}, {"insert_field": {"x": 1}}],
                 change(typed(ORDER), "c", None, ORDER))
    (failed,) = out
    assert isinstance(failed, UnreadableRecord) and failed.reason.startswith(
        "transforms[1].insert_field failed on this record: TypeError"), failed.reason


def route_deletes(record: Any) -> Any:
    from dataclasses import replace

    if record.value["op"] != "d":
        return record
    return replace(record, topic="orders.deleted", key={"orderId": record.key["orderId"].upper()})


def drop_deletes(record: Any) -> Any:
    return None if record.value["op"] == "d" else record


def fail_deletes(record: Any) -> Any:
    if record.value["op"] == "d":
        raise RuntimeError("no deletes here")
    return record


def test_a_python_transforms_routed_rekeyed_or_dropped_delete_takes_its_tombstone_along() -> None:
    h = typed(ORDER)
    records = change(h, "c", None, ORDER) + change(h, "d", ORDER, None)
    _, out = run([{"python": "tests.unit.test_transforms:route_deletes"}], records)
    assert [(r.topic, r.tombstone) for r in out] == [("orders", False), ("orders.deleted", False),
                                                     ("orders.deleted", True)]
    assert out[2].encoded_key == out[1].encoded_key != out[0].encoded_key
    _, out = run([{"python": "tests.unit.test_transforms:drop_deletes"}], records)
    assert [(r.topic, r.tombstone) for r in out] == [("orders", False)]


def test_a_failed_delete_takes_its_tombstone_along() -> None:
    h = typed(ORDER)
    records = change(h, "d", ORDER, None)
    _, out = run([{"python": "tests.unit.test_transforms:fail_deletes"}, {"route": "orders.{after.status}"}],
                 records)
    (failed,) = out
    assert isinstance(failed, UnreadableRecord) and "no deletes here" in failed.reason


@pytest.mark.parametrize("chain", [
    [{"route": "orders.{after.status}"}],
    [{"filter": {"where": {"after.status": "paid"}}}, {"route": {"topic": "orders.{after.status}"}}],
])
@pytest.mark.parametrize("fast", [False, True])
def test_a_delete_is_routed_and_filtered_by_the_item_it_deleted(chain: list[Any], fast: bool) -> None:
    from connectors.dynamodb.transforms import fast_plan

    h = typed(ORDER)
    paid = dict(ORDER, status={"S": "paid"})
    records = change(h, "d", paid, None)
    records[0].encoded_value = h.encode_value(records[0])
    out = asyncio.run(TransformStage(parse_transforms(chain), layout(True),
                                     fast=fast_plan if fast else None).apply(records))
    assert [(r.topic, r.tombstone) for r in out] == [("orders.paid", False), ("orders.paid", True)]


@pytest.mark.parametrize("fast", [False, True])
def test_a_filter_on_the_after_image_keeps_a_delete_of_a_matching_item(fast: bool) -> None:
    from connectors.dynamodb.transforms import fast_plan

    h = typed(ORDER)
    paid = dict(ORDER, status={"S": "paid"})
    records = change(h, "d", paid, None) + change(h, "d", ORDER, None)
    for r in records:
        if not r.tombstone:
            r.encoded_value = h.encode_value(r)
    chain = parse_transforms([{"filter": {"where": {"after.status": "paid"}}}, {"select": ["op", "before.orderId"]}])
    out = asyncio.run(TransformStage(chain, layout(True), fast=fast_plan if fast else None).apply(records))
    assert values(out) == [{"op": "d", "orderId": "o1"}, None]


def test_flatten_rewrite_of_a_delete_without_its_before_image_keeps_the_key_fields() -> None:
    h = typed(ORDER)
    key = {"orderId": {"S": "o1"}}
    records: list[SourceRecord] = [ChangeRecord("orders", h, key, Change("d", None, None), source(), 7),
                                   ChangeRecord("orders", h, key, None, source(), 7, True)]
    _, out = run([{"flatten": {"deletes": "rewrite"}}], records)
    (v,) = values(out)
    assert v["orderId"] == "o1" and v["__deleted"] is True and v["status"] is None


def test_filter_by_operation_drops_a_delete_and_its_tombstone() -> None:
    h = typed(ORDER)
    records = change(h, "c", None, ORDER) + change(h, "d", ORDER, None)
    _, out = run([{"filter": {"op": ["c", "u"]}}], records)
    assert [v["op"] for v in values(out)] == ["c"]


def test_filter_ttl_deletes() -> None:
    h = typed(ORDER)
    records = change(h, "d", ORDER, None, ttl_delete=True) + change(h, "d", ORDER, None)
    _, dropped = run([{"filter": {"ttl_deletes": "drop"}}], records)
    assert [v and v["source"]["ttl_delete"] for v in values(dropped)] == [False, None]
    _, only = run([{"filter": {"ttl_deletes": "only"}}], records)
    assert [v and v["source"]["ttl_delete"] for v in values(only)] == [True, None]


def test_flatten_as_extract_new_record_state() -> None:
    h = typed(ORDER)
    updated = dict(ORDER, status={"S": "paid"})
    records = change(h, "u", ORDER, updated) + change(h, "d", updated, None)
    _, out = run([{"flatten": None}], records)
    flat = values(out)
    assert flat[0]["status"] == "paid" and flat[0]["__op"] == "u" and flat[0]["__table"] == "orders"
    assert flat[0]["__source_ts_ms"] == 1700000000000 and flat[0]["__deleted"] is False
    assert flat[1:] == [None]  # deletes: tombstone (the default): the delete is its tombstone only
    _, out = run([{"flatten": {"deletes": "rewrite"}}], records)
    flat = values(out)
    assert len(flat) == 2 and flat[1]["__deleted"] is True and flat[1]["status"] == "paid"


def test_insert_field_and_header_static_and_from_metadata() -> None:
    h = typed(ORDER)
    _, out = run([{"select": ["after.orderId"]},
                  {"insert_field": {"pipeline": "v1", "version": 3, "exact": True}}], change(h, "c", None, ORDER))
    assert values(out) == [{"orderId": "o1", "pipeline": "v1", "version": 3, "exact": True}]
    _, out = run([{"insert_header": {"table": "{metadata.table}", "op": "{op}", "team": "orders"}}],
                 change(h, "c", None, ORDER))
    assert out[0].schema.headers is not None
    assert out[0].schema.headers(out[0]) == [("table", b"orders"), ("op", b"c"), ("team", b"orders")]


def test_route_creates_each_topic_once() -> None:
    created: list[str] = []

    async def create(topic: str) -> None:
        created.append(topic)

    h = typed(ORDER)
    paid = dict(ORDER, status={"S": "paid"})
    records = change(h, "c", None, ORDER) + change(h, "u", ORDER, paid) + change(h, "u", paid, paid)
    stage, out = run([{"route": {"topic": "orders.{after.status}"}}], records, create_topic=create)
    assert [r.topic for r in out] == ["orders.new", "orders.paid", "orders.paid"]
    asyncio.run(stage.apply(records))
    assert created == ["orders.new", "orders.paid"]


def test_derived_schemas_are_cached_by_content() -> None:
    """A new input handle (the typed schema grew) with the same output registers nothing."""
    registered: list[tuple[str, str]] = []

    class Registry:  # the registry protocol, counting calls
        def register(self, subject: str, schema: str) -> int:
            registered.append((subject, schema))
            return len(registered)

        def lookup(self, subject: str, schema: str) -> Any:
            return None

    stage = TransformStage(parse_transforms([{"select": ["after.orderId", "after.status"]}]), layout(True))
    serializer = RecordSerializer(Registry())
    first, grown = typed(ORDER), typed(ORDER, {"orderId": {"S": "o2"}, "extra": {"S": "x"}})
    records = change(first, "c", None, ORDER) * 3 + change(grown, "c", None, ORDER) * 3
    out = asyncio.run(stage.apply(records))
    assert len({id(r.schema) for r in out}) == 2  # one handle per input handle
    for r in serializer.unprepared(out):
        serializer.prepare(r)
    assert len(registered) == 2  # key and value, once: the grown table gives the same output text
    framed = serializer.serialize_batch(out)
    assert not framed.errors


def test_a_path_to_an_attribute_not_seen_yet_is_null_until_it_comes() -> None:
    stage = TransformStage(parse_transforms([{"select": ["after.orderId", "after.later"]}]), layout(True))
    before = json.loads(stage.handle(typed(ORDER)).value_schema)["fields"][1]
    assert before["type"] == "null"
    grown = typed(ORDER, {"orderId": {"S": "o"}, "later": {"S": "x"}})
    after = json.loads(stage.handle(grown).value_schema)["fields"][1]
    assert after == {"name": "later", "type": ["null", "string"], "default": None}


def test_envelope_images_are_maps_of_attribute_values() -> None:
    h = envelope_schema("orders", KEY)
    _, out = run([{"select": ["after.status", "op"]}], change(h, "c", None, ORDER), is_typed=False)
    (v,) = values(out)
    assert v["op"] == "c" and v["status"]["S"] == "new"


@pytest.mark.parametrize("where, kept, is_typed", [
    ({"after.gift": {"eq": 1}}, False, True),  # a boolean is no number
    ({"after.gift": {"ne": 1}}, True, True),
    ({"after.gift": {"eq": True}}, True, True),
    ({"after.gift.BOOL": {"eq": 1}}, False, False),
    ({"after.orderTotal.N": {"eq": 12.5}}, True, False),  # an envelope's N text compares as the number it is
    ({"after.orderTotal.N": {"ne": 12.5}}, False, False),
])
def test_booleans_are_no_numbers_and_envelope_numbers_compare_as_numbers(where: dict[str, Any], kept: bool,
                                                                         is_typed: bool) -> None:
    item = dict(ORDER, gift={"BOOL": True})
    h = typed(item) if is_typed else envelope_schema("orders", KEY)
    _, out = run([{"filter": {"where": where}}], change(h, "c", None, item), is_typed=is_typed)
    assert len(out) == int(kept)


@pytest.mark.parametrize("chain, line", [
    ([{"select": ["metadata.nope"]}], "transforms[0].select: path 'metadata.nope': no field 'nope' in source"),
    ([{"select": ["op.x"]}], "op is a string, it has no field 'x'"),
    ([{"select": ["op"]}, {"select": ["after.orderId"]}], "no field 'after' in the value (it has op)"),
    ([{"select": ["after.orderId", "op"]}, {"filter": {"op": ["c"]}}], "the records here have no op"),
])
def test_a_bad_path_is_one_config_line(chain: list[Any], line: str) -> None:
    stage = TransformStage(parse_transforms(chain), layout(True))
    with pytest.raises(ConfigError) as e:
        stage.check(typed(ORDER))
    assert line in str(e.value) and "\n" not in str(e.value)


def test_flatten_of_envelope_images_is_refused() -> None:
    stage = TransformStage(parse_transforms([{"flatten": None}]), layout(False))
    with pytest.raises(ConfigError, match="flatten needs the after image as a record"):
        stage.check(envelope_schema("orders", KEY))


@pytest.mark.parametrize("chain, line", [
    ([{"sellect": ["op"]}], "transforms[0]: unknown transform 'sellect'; one of select"),
    ([{"select": ["op as 9x"]}], "'9x' is not an Avro field name"),
    ([{"select": ["op", "after.op"]}], "two fields would be named 'op'"),
    ([{"filter": {"op": ["x"]}}], "'x' is not an operation"),
    ([{"filter": {"where": {"after.n": {"gt": "many"}}}}], "'many' is not a number"),
    ([{"flatten": {"deletes": "drop"}}], "write tombstone or rewrite"),
    ([{"python": "tests.unit.test_transforms:nothing_here"}], "has no 'nothing_here'"),
    ([{"python": "json"}], "is not a dotted path"),
    ([{"select": ["op"], "drop": ["op"]}], "one transform per entry"),
])
def test_spec_errors_are_one_line(chain: list[Any], line: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_transforms(chain)
    assert line in str(e.value)


def _config(**table: Any) -> dict[str, Any]:
    return {"name": "b", "kafka": {"bootstrap.servers": "localhost:9092"}, "schema_registry": {"url": "http://r"},
            **table}


def test_tables_and_the_discovery_template_take_transforms() -> None:
    from connectors.dynamodb.config import TableConfig, parse_config

    chain = [{"filter": {"ttl_deletes": "drop"}}, {"select": ["after.orderId as order_id"]}]
    cfg = parse_config(_config(tables=[{"name": "orders", "value": {"shape": "typed"}, "transforms": chain}],
                               table_discovery={"name_prefix": "o", "template": {"transforms": chain}}),
                       check_kafka=False)
    assert cfg.tables[0].transforms == chain
    found = TableConfig(name="orders2", **cfg.table_discovery.template.model_dump())  # as discovery makes it
    assert found.transforms == chain


def test_a_routed_topic_takes_its_tables_formats() -> None:
    """The serializer finds formats by topic: a topic only a route names (orders.paid) must
    still be written in the table's formats, not in the defaults."""
    from connectors.dynamodb.config import parse_config
    from connectors.dynamodb.plugin import topic_formats
    from connectors.dynamodb.transforms import table_stage

    cfg = parse_config(_config(tables=[
        {"name": "orders", "value": {"shape": "typed", "format": "json"},
         "transforms": [{"route": {"topic": "orders.{after.status}"}}]},
        {"name": "users"}]), check_kafka=False)
    h = typed(ORDER)
    out = asyncio.run(table_stage(cfg.tables[0]).apply(change(h, "c", None, dict(ORDER, status={"S": "paid"}))))
    assert [r.topic for r in out] == ["orders.paid"]
    formats = topic_formats(cfg)
    assert formats("orders.paid").value.format == "json"
    assert formats(cfg.topic_for(cfg.tables[1])).value.format == "avro"


@pytest.mark.parametrize("where, table, line", [
    ("tables", {"name": "orders", "transforms": [{"route": {}}]}, "tables[0].transforms: [0].route: write route"),
    ("template", {"transforms": [{"filter": {"ttl_deletes": "sometimes"}}]}, "write keep, drop or only"),
    ("tables", {"name": "orders", "value": {"shape": "typed", "image": "after"}, "transforms": [{"flatten": None}]},
     "use value.image: envelope"),
])
def test_config_refuses_a_bad_chain_in_one_line(where: str, table: dict[str, Any], line: str) -> None:
    from bridge.errors import ConfigError as Refused
    from connectors.dynamodb.config import parse_config

    data = _config(tables=[table]) if where == "tables" else _config(
        table_discovery={"name_prefix": "o", "template": table})
    with pytest.raises(Refused) as e:
        parse_config(data, check_kafka=False)
    assert line in str(e.value) and "\n" not in str(e.value), str(e.value)


# User transforms, named by dotted path below.
def drop_new(record: Any) -> Any:
    return None if record.value["after"]["status"] == "new" else record


def rekey(record: Any) -> Any:
    from dataclasses import replace

    return replace(record, key={"orderId": record.key["orderId"].upper()})


def add_field(record: Any) -> Any:
    record.value["after"]["nope"] = 1  # not in the schema
    record.value["op"] = 5
    return record


def wrong_type(record: Any) -> Any:
    return {"value": record.value}


def see_metadata(record: Any) -> Any:
    record.headers.append(("seq", record.metadata["sequence_number"].encode()))
    assert isinstance(record.value["after"]["orderTotal"], Decimal)
    return record


@pytest.mark.parametrize("fn, check", [
    ("drop_new", lambda out: out == []),
    ("see_metadata", lambda out: out[0].schema.headers(out[0]) == [("seq", b"1")]),
])
def test_python_transform_drops_or_changes(fn: str, check: Any) -> None:
    _, out = run([{"python": f"tests.unit.test_transforms:{fn}"}], change(typed(ORDER), "c", None, ORDER))
    values(out)
    assert check(out)


def test_python_transform_may_change_the_key() -> None:
    h = typed(ORDER)
    records = change(h, "c", None, ORDER)
    _, out = run([{"python": "tests.unit.test_transforms:rekey"}], records)
    changed = dict(records[0].key, orderId={"S": "O1"})
    assert out[0].encoded_key == h.encode_key(ChangeRecord("orders", h, changed, None, source(), 7))


@pytest.mark.parametrize("fn, reason", [
    ("add_field", "the transformed value does not fit its schema"),
    ("wrong_type", "returned dict; return a Record, a list of them or None"),
])
def test_python_transform_errors_are_record_errors(fn: str, reason: str) -> None:
    _, out = run([{"python": f"tests.unit.test_transforms:{fn}"}], change(typed(ORDER), "c", None, ORDER))
    (failed,) = out
    assert isinstance(failed, UnreadableRecord) and reason in failed.reason, failed
    serializer = RecordSerializer(type("R", (), {"register": lambda *a: 1, "lookup": lambda *a: None})())
    serializer.prepare(failed)
    assert reason in str(serializer.serialize_batch(out).errors[0])


def extra_key(record: Any) -> Any:
    record.value["after"]["nope"] = "x"  # a field the schema does not have
    return record


def empty_topic(record: Any) -> Any:
    record.topic = ""
    return record


def spaced_topic(record: Any) -> Any:
    record.topic = "orders by status"
    return record


def multi_line_error(record: Any) -> Any:
    raise ValueError("first line\nsecond line\n")


@pytest.mark.parametrize("fn, reason", [
    ("extra_key", "value.after.nope is not in the value's schema"),
    ("empty_topic", "returned topic '', not a Kafka topic name"),
    ("spaced_topic", "returned topic 'orders by status', not a Kafka topic name"),
    ("multi_line_error", "raised ValueError: first line | second line"),
])
def test_python_transform_output_is_checked_and_its_errors_are_one_line(fn: str, reason: str) -> None:
    topics: list[str] = []

    async def create_topic(name: str) -> None:
        topics.append(name)

    _, out = run([{"python": f"tests.unit.test_transforms:{fn}"}], change(typed(ORDER), "c", None, ORDER),
                 create_topic=create_topic)
    (failed,) = out
    assert isinstance(failed, UnreadableRecord) and reason in failed.reason and "\n" not in failed.reason, failed
    assert "" not in topics


@pytest.mark.parametrize("chain", [
    [{"filter": {"op": ["c"]}}],
    [{"route": {"topic": "static"}}, {"insert_header": {"team": "orders"}}],
    [{"python": "tests.unit.test_transforms:see_metadata"}],
])
def test_chains_that_keep_the_shape_keep_the_schema_and_the_bytes(chain: list[Any]) -> None:
    h = typed(ORDER)
    records = change(h, "c", None, ORDER)
    stage, out = run(chain, records)
    assert stage.handle(h).value_schema == h.value_schema
    assert out[0].encoded_value == h.encode_value(records[0])


def test_a_python_transform_that_changes_a_value_in_place_is_written_again() -> None:
    h = typed(ORDER)
    records = change(h, "c", None, ORDER)
    _, out = run([{"python": "tests.unit.test_transforms:blank_email"}], records)
    (v,) = values(out)
    assert v["after"]["customerEmail"] is None and out[0].encoded_value != h.encode_value(records[0])


def blank_email(record: Any) -> Any:
    record.value["after"]["customerEmail"] = None
    return record


def test_the_discovery_templates_paths_are_checked_at_start() -> None:
    from connectors.dynamodb.config import parse_config
    from connectors.dynamodb.plugin import check_template

    good = parse_config(_config(table_discovery={"name_prefix": "o", "template": {
        "value": {"shape": "typed"}, "transforms": [{"select": ["op", "after.anything", "metadata.table"]}]}}),
        check_kafka=False)
    check_template(good)
    bad = parse_config(_config(table_discovery={"name_prefix": "o", "template": {
        "transforms": [{"select": ["metadata.nope"]}]}}), check_kafka=False)
    with pytest.raises(ConfigError, match="no field 'nope' in source"):
        check_template(bad)


@pytest.mark.parametrize("chain", [
    [{"select": ["op as event_name", "after.orderId as order_id", "after.customerEmail as customer_email",
                 "after.orderTotal as order_total", "after.status as status"]}],
    [{"filter": {"op": ["c", "u"]}}, {"select": ["after.status", "before.status as was", "after.address",
                                                  "after.notYet", "metadata.table", "metadata.sequence_number",
                                                  "metadata.approximate_creation_ms", "metadata.ttl_delete",
                                                  "metadata.segment", "ts_ms", "op"]},
     {"rename": {"status": "state"}}, {"drop": ["table"]}],
    [{"filter": {"op": ["d"]}}, {"select": ["before.orderTotal", "after.orderTotal as gone"]}],
    [{"flatten": None}],
    [{"flatten": {"deletes": "rewrite"}}],
    [{"filter": {"op": ["u", "d"]}}, {"flatten": {"deletes": "rewrite"}},
     {"drop": ["address", "customerEmail", "__table", "neverSeen"]}],
    [{"filter": {"op": ["c", "u"]}}, {"flatten": {}}, {"drop": ["__deleted"]}],
    [{"filter": {"where": {"after.status": "new"}}}, {"select": ["op", "after.orderId"]}],
    [{"filter": {"where": {"before.orderTotal": {"gte": "99.9"}, "metadata.ttl_delete": False}}},
     {"flatten": {}}],
    [{"filter": {"where": {"before.orderTotal": {"gt": 12.5}, "after.neverSeen": {"present": False}}}},
     {"flatten": {"deletes": "rewrite"}}],
    [{"filter": {"ttl_deletes": "only"}}, {"select": ["op", "before.orderId"]}],
    [{"filter": {"where": {"after.orderTotal": {"lt": 50}, "op": {"ne": "d"}}}}, {"select": ["ts_ms"]}],
])
def test_the_typed_fast_path_writes_the_structured_paths_bytes(chain: list[Any]) -> None:
    from connectors.dynamodb.transforms import fast_plan

    h = typed(ORDER)
    paid = dict(ORDER, status={"S": "paid"}, orderTotal={"N": "99.90"})
    sparse = {"orderId": {"S": "o2"}}
    records = (change(h, "c", None, ORDER) + change(h, "u", ORDER, paid) + change(h, "c", None, sparse)
               + change(h, "d", paid, None) + change(h, "d", sparse, None, ttl_delete=True))
    for r in records:  # as the typed reader hands them on: the value already written
        if not r.tombstone:
            r.encoded_value = h.encode_value(r)
    specs = parse_transforms(expand(chain))
    assert fast_plan(specs, h) is not None
    slow = asyncio.run(TransformStage(specs, layout(True)).apply(records))
    fast = asyncio.run(TransformStage(specs, layout(True), fast=fast_plan).apply(records))
    assert [(r.topic, r.tombstone, r.encoded_key, r.encoded_value) for r in fast] == \
           [(r.topic, r.tombstone, r.encoded_key, r.encoded_value) for r in slow]
    assert fast[0].schema.value_schema == slow[0].schema.value_schema
    values(fast)


@pytest.mark.parametrize("chain", [
    [{"select": ["after.address.city"]}],
    [{"filter": {"where": {"after.address.city": "Oslo"}}}, {"select": ["op"]}],
    [{"flatten": None}, {"rename": {"status": "state"}}],
    [{"select": ["op"]}, {"insert_field": {"x": 1}}],
])
def test_the_fast_path_leaves_other_chains_to_the_structured_path(chain: list[Any]) -> None:
    from connectors.dynamodb.transforms import fast_plan

    assert fast_plan(parse_transforms(chain), typed(ORDER)) is None


def test_verify_refuses_a_table_with_transforms_in_one_line() -> None:
    from connectors.dynamodb.config import parse_config
    from connectors.dynamodb.verify import verify_table

    cfg = parse_config(_config(tables=[{"name": "orders", "transforms": [{"filter": {"op": ["c"]}}]}]),
                       check_kafka=False)
    with pytest.raises(ConfigError, match="verify: table 'orders' has transforms"):
        verify_table(cfg, cfg.tables[0])


@pytest.mark.parametrize("workload, chain", [
    ("wide", [{"filter": {"op": ["c", "u"], "where": {"after.active": True}}},
              {"select": ["op as event", "after.pk as customer", "after.email", "after.balance", "after.name"]},
              {"rename": {"email": "customer_email"}}]),
    ("wide", [{"filter": {"where": {"after.balance": {"gte": "100.5"}, "metadata.ttl_delete": False}}},
              {"select": ["op", "before.email as was", "after.email", "metadata.table", "ts_ms", "after.neverSeen"]}]),
    ("small", [{"filter": {"op": ["c", "u"], "where": {"after.count": {"gte": 1}}}},
               {"select": ["op as event", "after.pk as key", "after.count"]}, {"rename": {"count": "n"}}]),
    ("small", [{"filter": {"where": {"after.count": {"lt": 3}}}}, {"select": ["op", "before.count", "after.sk"]}]),
])
def test_the_fast_path_reads_the_one_pass_writers_bodies_as_the_structured_path_does(workload: str,
                                                                                    chain: list[Any]) -> None:
    """Records of the C one-pass writer carry the typed body only (no images as data): the chain's
    value is cut from the body's fields, byte for byte the structured path's."""
    from bench.typed_bench import _reader
    from bench.workload import WORKLOADS, make_pages
    from connectors.dynamodb.transforms import fast_plan

    records = [r for body in make_pages(WORKLOADS[workload], 2) for r in _reader("typed")(body)]
    changes = [r for r in records if not r.tombstone]
    assert sum(r.value is None and r.encoded_value is not None for r in changes) > len(changes) // 2
    specs = parse_transforms(expand(chain))
    writer = fast_plan(specs, changes[0].schema)
    assert writer is not None and all(writer(r) is not None for r in changes)  # none left to the structured path
    slow = asyncio.run(TransformStage(specs, layout(True)).apply(records))
    fast = asyncio.run(TransformStage(specs, layout(True), fast=fast_plan).apply(records))
    assert fast
    assert [(r.topic, r.tombstone, r.encoded_key, r.encoded_value) for r in fast] == \
           [(r.topic, r.tombstone, r.encoded_key, r.encoded_value) for r in slow]
