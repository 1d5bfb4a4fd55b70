"""Transforms through the real stack: moto table → bridge process → broker and the dev
registry over HTTP → confluent-kafka's SchemaRegistryClient and AvroDeserializer.

- the issue's pipeline: ``orders`` → ``processed_orders`` with one ``select``, order_total an
  exact decimal, event_name the operation, nothing else in the value;
- filter + mask + flatten + insert_field + insert_header + route in one chain: the routed
  topics are created, deletes and TTL deletes are filtered, the values are flat;
- a bad path or an unknown transform is one line at start, exit 2.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.e2e.test_record_format_e2e import _messages
from tests.helpers import BridgeProcess, bridge_config, create_table, unique

pytestmark = pytest.mark.slow

STREAM = {"poll_interval_ms": 100, "discovery_interval_ms": 1000}
ORDER_TOTAL = {"name": "orderTotal", "type": "decimal", "precision": 12, "scale": 2}
SELECT = ["op as event_name", "after.orderId as order_id", "after.customerEmail as customer_email",
          "after.orderTotal as order_total", "after.status as status"]


def orders_table(dynamodb: Any) -> str:
    name = unique("orders")
    create_table(dynamodb, name, hash_key=("orderId", "S"), range_key=None)
    return name


def write_orders(dynamodb: Any, table: str) -> None:
    dynamodb.put_item(TableName=table, Item={"orderId": {"S": "o-1"}, "customerEmail": {"S": "ann@example.com"},
                                             "orderTotal": {"N": "1234567890.25"}, "status": {"S": "new"},
                                             "internalNote": {"S": "not for consumers"}})
    dynamodb.update_item(TableName=table, Key={"orderId": {"S": "o-1"}}, UpdateExpression="SET #s = :s",
                         ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "paid"}})
    dynamodb.delete_item(TableName=table, Key={"orderId": {"S": "o-1"}})


def decode(sr: SchemaRegistryClient, topic: str, msgs: list[Any]) -> list[Any]:
    deserialize = AvroDeserializer(sr)
    return [None if m.value() is None else deserialize(m.value(), SerializationContext(topic, MessageField.VALUE))
            for m in msgs]


def check_processed_orders(stack: Any, topic: str, msgs: list[Any]) -> None:
    """What the issue asks of ``processed_orders``: the shared check of the YAML and Python runs."""
    sr = SchemaRegistryClient({"url": stack.registry_url})
    values = decode(sr, topic, msgs)
    assert [v and v["event_name"] for v in values] == ["c", "u", "d", None]  # the delete's tombstone last
    first, second, deleted, tombstone = values
    assert first == {"event_name": "c", "order_id": "o-1", "customer_email": "ann@example.com",
                     "order_total": Decimal("1234567890.25"), "status": "new"}
    assert isinstance(first["order_total"], Decimal)
    assert second["status"] == "paid" and second["order_total"] == Decimal("1234567890.25")
    assert deleted == {"event_name": "d", "order_id": None, "customer_email": None, "order_total": None,
                       "status": None}
    assert tombstone is None
    schema = json.loads(sr.get_latest_version(f"{topic}-value").schema.schema_str)
    assert [f["name"] for f in schema["fields"]] == ["event_name", "order_id", "customer_email", "order_total",
                                                     "status"]
    assert len(sr.get_versions(f"{topic}-value")) == 1  # one schema, registered once


def test_processed_orders_pipeline_in_yaml(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    table = orders_table(dynamodb)
    topic = unique("processed_orders")
    entry = {"name": table, "topic": topic, "stream": STREAM,
             "value": {"shape": "typed", "attributes": [ORDER_TOTAL]},
             "transforms": [{"select": SELECT}]}
    write_orders(dynamodb, table)
    bridge = BridgeProcess.write(tmp_path, bridge_config(stack, [entry])).start()
    try:
        msgs = _messages(stack.kafka_bootstrap, topic, 4, check=bridge.check)
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
    check_processed_orders(stack, topic, msgs)


def test_filter_mask_flatten_drop_insert_route_rename(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    """Inserts and updates of orders over 100, routed by status, flat, e-mail hashed, with the
    table as a field and a header; deletes (and so their tombstones) filtered out. The small
    order is written first: the first message of the ``new`` topic being o-1 shows it was filtered."""
    table = orders_table(dynamodb)
    prefix = unique("orders_by_status")
    entry = {"name": table, "topic": unique("unused"), "stream": STREAM,
             "value": {"shape": "typed", "attributes": [ORDER_TOTAL]},
             "transforms": [
                 {"filter": {"op": ["c", "u"], "where": {"after.orderTotal": {"gt": "100.00"}}}},
                 {"mask": {"fields": ["after.customerEmail"], "with": "hash"}},
                 {"flatten": {}},
                 {"drop": ["internalNote"]},
                 {"insert_field": {"source_table": "{__table}"}},
                 {"insert_header": {"order-status": "{status}", "pipeline": "orders-v1"}},
                 {"route": {"topic": prefix + ".{status}"}},
                 {"rename": {"source_table": "table_name"}},
             ]}
    dynamodb.put_item(TableName=table, Item={"orderId": {"S": "small"}, "orderTotal": {"N": "100.00"},
                                             "status": {"S": "new"}})
    write_orders(dynamodb, table)
    bridge = BridgeProcess.write(tmp_path, bridge_config(stack, [entry])).start()
    try:
        new = _messages(stack.kafka_bootstrap, f"{prefix}.new", 1, check=bridge.check)
        paid = _messages(stack.kafka_bootstrap, f"{prefix}.paid", 1, check=bridge.check)
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
    sr = SchemaRegistryClient({"url": stack.registry_url})
    (a,) = decode(sr, f"{prefix}.new", new)
    (b,) = decode(sr, f"{prefix}.paid", paid)
    import hashlib

    email = hashlib.sha256(b"ann@example.com").hexdigest()
    assert a == {"orderId": "o-1", "customerEmail": email, "orderTotal": Decimal("1234567890.25"), "status": "new",
                 "__op": "c", "__table": table, "__source_ts_ms": a["__source_ts_ms"], "__deleted": False,
                 "table_name": table}
    assert b["status"] == "paid" and b["__op"] == "u"
    assert dict(new[0].headers()) == {"order-status": b"new", "pipeline": b"orders-v1"}


@pytest.mark.parametrize("transforms, line", [
    ([{"selekt": ["op"]}], "unknown transform 'selekt'"),
    ([{"select": ["after.orderId", "metadata.no_such_field"]}], "no field 'no_such_field'"),
    ([{"select": ["op.x"]}], "op is a string, it has no field 'x'"),
    ([{"python": "no_such_module_xyz:fn"}], "cannot import 'no_such_module_xyz'"),
])
def test_a_bad_chain_is_one_line_at_start(stack: Any, dynamodb: Any, tmp_path: Path, transforms: Any,
                                          line: str) -> None:
    table = orders_table(dynamodb)
    entry = {"name": table, "stream": STREAM, "value": {"shape": "typed"}, "transforms": transforms}
    bridge = BridgeProcess.write(tmp_path, bridge_config(stack, [entry])).start()
    assert bridge.wait(timeout=60) == 2, bridge.log()[-3000:]
    errors = [ln for ln in bridge.log().splitlines() if line in ln]
    assert errors, bridge.log()[-3000:]
    assert "Traceback" not in bridge.log()


USER_MODULE = '''
"""A user's transforms, in a module outside the bridge's package."""
from dataclasses import replace


def mask_pii(record):
    after = record.value["after"]
    if after is not None and after["status"] == "boom":
        raise ValueError(f"cannot handle order {after['orderId']}")
    if after is not None:
        after["customerEmail"] = "***"
    record.headers.append(("pii", b"masked"))
    return [record, replace(record, topic=record.topic + "-audit")] if record.value["op"] == "c" else record
'''


def user_module(tmp_path: Path) -> dict[str, str]:
    """The module in its own folder, on the bridge process's PYTHONPATH."""
    folder = tmp_path / "user_code" / "shop_transforms"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "pii.py").write_text(USER_MODULE)
    from tests.helpers import bridge_env

    return {"PYTHONPATH": f"{tmp_path / 'user_code'}:{bridge_env()['PYTHONPATH']}"}


def test_user_python_transform_by_dotted_path_and_its_exception_in_the_dead_letter_topic(
        stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    table = orders_table(dynamodb)
    topic = unique("masked_orders")
    entry = {"name": table, "topic": topic, "stream": STREAM, "value": {"shape": "typed", "attributes": [ORDER_TOTAL]},
             "transforms": [{"python": "shop_transforms.pii:mask_pii"}, {"select": SELECT}]}
    cfg = bridge_config(stack, [entry], errors={"tolerance": "all"})
    dynamodb.put_item(TableName=table, Item={"orderId": {"S": "bad"}, "status": {"S": "boom"}})
    write_orders(dynamodb, table)
    bridge = BridgeProcess.write(tmp_path, cfg)
    bridge.env = user_module(tmp_path)
    bridge.start()
    try:
        msgs = _messages(stack.kafka_bootstrap, topic, 4, check=bridge.check)
        audit = _messages(stack.kafka_bootstrap, topic + "-audit", 1, check=bridge.check)
        (dead,) = _messages(stack.kafka_bootstrap, f"{cfg['name']}-dlq", 1, check=bridge.check)
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
    sr = SchemaRegistryClient({"url": stack.registry_url})
    values = decode(sr, topic, msgs)
    assert [v and (v["event_name"], v["customer_email"]) for v in values] == [
        ("c", "***"), ("u", "***"), ("d", None), None]
    assert dict(msgs[0].headers())["pii"] == b"masked"
    assert decode(sr, topic + "-audit", audit)[0]["customer_email"] == "***"
    headers = dict(dead.headers())
    assert headers["__bridge.transform"] == b"shop_transforms.pii:mask_pii"
    assert headers["__bridge.transform.exception.class.name"] == b"builtins.ValueError"
    assert headers["__bridge.transform.exception.message"] == b"cannot handle order bad"
    assert b"mask_pii" in headers["__connect.errors.exception.stacktrace"]
    assert b"raised ValueError" in headers["__connect.errors.exception.message"]
    assert json.loads(dead.value())["record"]["after"]["status"] == "boom"  # the change as read (typed values)


def test_user_transform_exception_stops_the_task_with_one_line_under_tolerance_none(
        stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    table = orders_table(dynamodb)
    entry = {"name": table, "stream": STREAM, "value": {"shape": "typed"},
             "transforms": [{"python": "shop_transforms.pii:mask_pii"}]}
    dynamodb.put_item(TableName=table, Item={"orderId": {"S": "bad"}, "status": {"S": "boom"}})
    bridge = BridgeProcess.write(tmp_path, bridge_config(stack, [entry]))
    bridge.env = user_module(tmp_path)
    bridge.start()
    code = bridge.wait(timeout=90)
    lines = [ln for ln in bridge.log().splitlines() if "raised ValueError: cannot handle order bad" in ln]
    assert code != 0 and lines, bridge.log()[-3000:]
    assert "errors.tolerance: all sends such records to the dead-letter topic" in lines[0]
    assert "Traceback" not in bridge.log()


def test_processed_orders_pipeline_with_the_python_api(stack: Any, dynamodb: Any, monkeypatch: Any) -> None:
    """The same pipeline, in-process, in about ten lines of Python."""
    from tests.helpers import bridge_env

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(k, bridge_env()[k])
    table, topic = orders_table(dynamodb), unique("processed_orders")
    write_orders(dynamodb, table)
    config = bridge_config(stack, [])  # connections as the other tests make them

    # -- the ten lines -----------------------------------------------------------------
    from ddb_kafka_bridge import Bridge

    bridge = Bridge({**config, "tables": [{"name": table, "topic": topic, "value": {
        "shape": "typed", "attributes": [{"name": "orderTotal", "type": "decimal", "precision": 12, "scale": 2}]}}]})
    bridge.transform(table, select=["op as event_name", "after.orderId as order_id",
                                    "after.customerEmail as customer_email", "after.orderTotal as order_total",
                                    "after.status as status"])
    produced = bridge.run_until_caught_up()
    # -------------------------------------------------------------------------------------

    assert produced == 4
    check_processed_orders(stack, topic, _messages(stack.kafka_bootstrap, topic, 4))


def test_python_api_decorated_transform_and_one_line_config_errors(stack: Any, dynamodb: Any, monkeypatch: Any
                                                                    ) -> None:
    from ddb_kafka_bridge import Bridge, ConfigError, Record
    from tests.helpers import bridge_env

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(k, bridge_env()[k])
    table, topic = orders_table(dynamodb), unique("api_orders")
    write_orders(dynamodb, table)
    bridge = Bridge({**bridge_config(stack, []), "tables": [{"name": table, "topic": topic, "value": {
        "shape": "typed", "attributes": [ORDER_TOTAL]}}]})
    seen: list[str] = []  # state: a closure (or an object's attributes), on the loop's thread

    @bridge.transform(table)
    def only_changes_of_new_orders(record: Record) -> Record | None:
        seen.append(record.value["op"])
        return record if record.value["op"] == "c" else None

    bridge.transform(table, select=["after.orderId", "after.orderTotal"])
    # The insert only: the delete the function dropped takes its tombstone along.
    assert bridge.run_until_caught_up() == 1
    assert seen == ["c", "u", "d"]  # a tombstone is not shown to the function: it goes as its delete went
    sr = SchemaRegistryClient({"url": stack.registry_url})
    msgs = _messages(stack.kafka_bootstrap, topic, 1)
    assert decode(sr, topic, msgs) == [{"orderId": "o-1", "orderTotal": Decimal("1234567890.25")}]

    with pytest.raises(ConfigError, match="no table 'nope'"):
        bridge.transform("nope", select=["op"])
    bad = Bridge({**bridge_config(stack, []), "tables": [{"name": table, "transforms": [{"select": ["op.x"]}]}]})
    with pytest.raises(ConfigError, match="op is a string, it has no field 'x'"):
        bad.run()


def test_python_api_stops_on_sigterm_and_on_stop_as_the_cli_does(stack: Any, dynamodb: Any,
                                                                  monkeypatch: Any) -> None:
    """``run()`` in the main thread: SIGTERM drains, commits and returns; ``stop()`` from another
    thread does the same; ``health()`` answers as /health does meanwhile."""
    import os
    import signal as signals
    import threading
    import time

    from ddb_kafka_bridge import Bridge
    from tests.helpers import bridge_env

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(k, bridge_env()[k])
    table, topic = orders_table(dynamodb), unique("api_signals")
    write_orders(dynamodb, table)
    config = {**bridge_config(stack, []), "tables": [{"name": table, "topic": topic, "stream": STREAM}]}
    for how in ("SIGTERM", "stop()"):
        bridge = Bridge(config)
        answers: list[tuple[bool, str]] = []

        def stop_when_written(bridge: Any = bridge, how: str = how, answers: Any = answers) -> None:
            if how == "SIGTERM":
                _messages(stack.kafka_bootstrap, topic, 4, timeout=60)  # the changes are in Kafka
            deadline = time.monotonic() + 60
            while bridge.health() != (True, "ok") and time.monotonic() < deadline:
                time.sleep(0.05)
            answers.append(bridge.health())
            if how == "SIGTERM":
                os.kill(os.getpid(), signals.SIGTERM)
            else:
                bridge.stop()

        helper = threading.Thread(target=stop_when_written)
        helper.start()
        assert answers == [] and bridge.health() == (False, "STARTING")
        produced = bridge.run()
        helper.join(60)
        assert answers == [(True, "ok")], (how, answers)
        assert produced == (4 if how == "SIGTERM" else 0), how  # the second run resumes after the committed offsets


def test_python_api_stop_is_never_lost_and_does_nothing_after_the_run(stack: Any, dynamodb: Any,
                                                                       monkeypatch: Any) -> None:
    """``stop()`` before ``run`` (as during its start-up checks) stops the run once it has started;
    after the run ``stop()`` does nothing and ``health()`` says STOPPED, not the old worker's answer."""
    import threading

    from ddb_kafka_bridge import Bridge
    from tests.helpers import bridge_env

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(k, bridge_env()[k])
    table, topic = orders_table(dynamodb), unique("api_stop")
    bridge = Bridge({**bridge_config(stack, []), "tables": [{"name": table, "topic": topic, "stream": STREAM}]})
    bridge.stop()
    done: list[int] = []
    runner = threading.Thread(target=lambda: done.append(bridge.run()), daemon=True)
    runner.start()
    runner.join(60)
    assert not runner.is_alive() and done == [0], "stop() before run() was lost"
    bridge.stop()  # no loop to call: nothing happens
    assert bridge.health() == (False, "STOPPED")
