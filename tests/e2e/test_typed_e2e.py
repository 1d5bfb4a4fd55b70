"""Typed values through the real stack: moto table → bridge process → broker and the dev
registry over HTTP → confluent-kafka's SchemaRegistryClient and AvroDeserializer.

- a table gains attributes (one new, one removed, a nested map gaining a key): the registry
  holds versions that each pass BACKWARD against the one before; the deserializer reads the
  old and the new messages (also with the newest schema as reader); a declared
  decimal(38, 0) round-trips a 38-digit value; original names ride as ``attribute``;
- each conflict policy does what it says: dead-letter (reason in the headers), widen (a
  union all messages read through), stop (one line naming the table, attribute and types;
  non-zero exit; the offset stays before the page, so a restart reads it again).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.e2e.test_record_format_e2e import _messages
from tests.helpers import BridgeProcess, bridge_config, create_table, unique

pytestmark = pytest.mark.slow

BIG = "12345678901234567890123456789012345678"


def _table(dynamodb: Any, **value: Any) -> tuple[str, dict[str, Any]]:
    name = unique("typed")
    create_table(dynamodb, name, range_key=None)
    return name, {"name": name, "stream": {"poll_interval_ms": 100, "discovery_interval_ms": 1000},
                  "value": {"shape": "typed", **value}}


def _values(sr: SchemaRegistryClient, topic: str, msgs: list[Any], reader: str | None = None) -> list[Any]:
    deserialize = AvroDeserializer(sr, reader)
    return [deserialize(m.value(), SerializationContext(topic, MessageField.VALUE)) for m in msgs]


def test_table_gains_attributes_backward_versions_read_old_and_new(
    stack: Any, dynamodb: Any, tmp_path: Path
) -> None:
    table, entry = _table(dynamodb, attributes=[{"name": "big", "type": "decimal", "precision": 38, "scale": 0}])
    topic = f"ddb.{table}"
    # Before the bridge starts: the sample Scan gives the first version name and m.
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "1"}, "name": {"S": "one"}, "m": {"M": {"k1": {"N": "1"}}}})
    bridge = BridgeProcess.write(tmp_path, bridge_config(stack, [entry])).start()
    try:
        (first,) = _messages(stack.kafka_bootstrap, topic, 1, check=bridge.check)
        # a new attribute (its name not an Avro name), and the declared decimal(38, 0)
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "2"}, "name": {"S": "two"}, "unit-price": {"N": "2.5"},
                                                 "big": {"N": BIG}, "m": {"M": {"k1": {"N": "2"}}}})
        # name removed; m gains a key
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "3"}, "m": {"M": {"k1": {"N": "3"}, "k2": {"S": "x"}}}})
        msgs = _messages(stack.kafka_bootstrap, topic, 3, check=bridge.check)
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]

    sr = SchemaRegistryClient({"url": stack.registry_url})
    subject = f"{topic}-value"
    assert sr.get_compatibility() == "BACKWARD"  # the registry's level, which every version passed on register
    versions = sr.get_versions(subject)
    assert len(versions) == 3, versions  # the sampled one, + unit-price/big, + m.k2
    schemas = [sr.get_version(subject, v).schema for v in versions]
    for older, newer in zip(versions, schemas[1:]):
        assert sr.test_compatibility(subject, Schema(newer.schema_str, "AVRO"), version=older)
    ids = [int.from_bytes(m.value()[1:5], "big") for m in msgs]
    assert ids == [sr.get_version(subject, v).schema_id for v in versions]

    a, b, c = (v["after"] for v in _values(sr, topic, msgs))
    assert a == {"pk": "1", "name": "one", "m": {"k1": 1}, "big": None}
    assert b["big"] == Decimal(BIG) and b["unit_price_" + b_hash()] == 2.5
    assert c["name"] is None and c["m"] == {"k1": 3, "k2": "x"}
    # The newest version as the reader schema reads the oldest message too.
    latest = sr.get_latest_version(subject).schema.schema_str
    old = _values(sr, topic, msgs[:1], latest)[0]["after"]
    assert old["m"] == {"k1": 1, "k2": None} and old["unit_price_" + b_hash()] is None
    # The original attribute name rides as a field property.
    item = json.loads(latest)["fields"][1]["type"][1]
    assert {f["attribute"]: f["name"] for f in item["fields"]}["unit-price"] == "unit_price_" + b_hash()
    assert first.value() == msgs[0].value()


def b_hash() -> str:
    import hashlib

    return hashlib.sha256(b"unit-price").hexdigest()[:8]


@pytest.mark.parametrize("policy", ["dead-letter", "widen", "stop"])
def test_each_conflict_policy_does_what_it_says(stack: Any, dynamodb: Any, tmp_path: Path, policy: str) -> None:
    table, entry = _table(dynamodb, on_conflict=policy, sample_items=0)
    topic = f"ddb.{table}"
    cfg = bridge_config(stack, [entry], errors={"tolerance": "all"})
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "b"}, "n": {"S": "one"}})
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "c"}, "n": {"N": "3"}})
    sr = SchemaRegistryClient({"url": stack.registry_url})
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    if policy == "stop":
        code = bridge.wait(timeout=90)
        lines = [ln for ln in bridge.log().splitlines() if "on_conflict: stop" in ln]
        assert code != 0 and lines, bridge.log()[-3000:]
        assert "attribute n" in lines[0] and "does not fit long" in lines[0] and table in lines[0]
        return
    try:
        n = 2 if policy == "dead-letter" else 3
        msgs = _messages(stack.kafka_bootstrap, topic, n, check=bridge.check)
        dead = _messages(stack.kafka_bootstrap, f"{cfg['name']}-dlq", 1, check=bridge.check, timeout=30) \
            if policy == "dead-letter" else []
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
    values = [v["after"]["n"] for v in _values(sr, topic, msgs)]
    if policy == "widen":
        assert values == [1, "one", 3]
        return
    assert values == [1, 3]
    headers = dict(dead[0].headers())
    reason = headers["__connect.errors.exception.message"].decode()
    assert "attribute n" in reason and "does not fit long" in reason, reason
    assert json.loads(dead[0].value())["after"]["n"] == {"S": "one"}


def test_a_restart_goes_on_from_the_latest_version(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    """A widened field stays a union after a restart (re-inferring it narrower would fail
    BACKWARD), and a steady table registers nothing new."""
    table, entry = _table(dynamodb, on_conflict="widen", sample_items=0)
    topic, subject = f"ddb.{table}", f"ddb.{table}-value"
    cfg = bridge_config(stack, [entry])
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "b"}, "n": {"S": "one"}})
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        _messages(stack.kafka_bootstrap, topic, 2, check=bridge.check)
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
    sr = SchemaRegistryClient({"url": stack.registry_url})
    before = sr.get_versions(subject)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "c"}, "n": {"N": "3"}})
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        msgs = _messages(stack.kafka_bootstrap, topic, 3, check=bridge.check)
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
    assert sr.get_versions(subject) == before
    assert int.from_bytes(msgs[2].value()[1:5], "big") == int.from_bytes(msgs[1].value()[1:5], "big")
    assert [v["after"]["n"] for v in _values(sr, topic, msgs)] == [1, "one", 3]


def test_a_snapshot_then_the_stream_write_typed_records(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    table, entry = _table(dynamodb, sample_items=0)
    entry["snapshot"] = {"mode": "initial", "method": "scan", "segments": 2}
    topic = f"ddb.{table}"
    for i in range(6):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "n": {"N": str(i)}, "tags": {"SS": ["a", "b"]}})
    bridge = BridgeProcess.write(tmp_path, bridge_config(stack, [entry])).start()
    try:
        snap = _messages(stack.kafka_bootstrap, topic, 6, check=bridge.check)
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "new"}, "n": {"N": "9"}, "added": {"BOOL": True}})
        msgs = _messages(stack.kafka_bootstrap, topic, 7, check=bridge.check)
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
    sr = SchemaRegistryClient({"url": stack.registry_url})
    values = _values(sr, topic, msgs)
    assert sorted((v["op"], v["after"]["pk"], v["after"]["n"]) for v in values[:6]) == [
        ("r", f"k{i}", i) for i in range(6)]
    assert all(v["after"]["tags"] == ["a", "b"] for v in values[:6])
    assert values[6]["op"] == "c" and values[6]["after"] == {"pk": "new", "n": 9, "tags": None, "added": True}
    assert len(snap) == 6
