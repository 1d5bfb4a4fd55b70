"""Heartbeats through the real stack: an idle table's reader writes one every interval to the
heartbeat topic (read back with AvroDeserializer); a busy table's changes go on as before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.e2e.test_record_format_e2e import _messages
from tests.helpers import BridgeProcess, bridge_config, create_table, unique

pytestmark = pytest.mark.slow


def test_an_idle_table_beats_on_the_heartbeat_topic(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    idle, busy = unique("idle"), unique("busy")
    for t in (idle, busy):
        create_table(dynamodb, t, range_key=None)
    stream = {"poll_interval_ms": 100, "discovery_interval_ms": 1000}
    cfg = bridge_config(stack, [{"name": idle, "stream": dict(stream)}, {"name": busy, "stream": dict(stream)}],
                        heartbeat={"interval_ms": 300})
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        dynamodb.put_item(TableName=busy, Item={"pk": {"S": "a"}})
        (change,) = _messages(stack.kafka_bootstrap, f"ddb.{busy}", 1, check=bridge.check)
        beats = _messages(stack.kafka_bootstrap, f"{cfg['name']}-heartbeats", 6, check=bridge.check)
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
    sr = SchemaRegistryClient({"url": stack.registry_url})
    deserialize = AvroDeserializer(sr)
    topic = f"{cfg['name']}-heartbeats"
    values = [deserialize(m.value(), SerializationContext(topic, MessageField.VALUE)) for m in beats]
    idle_beats = [v for v in values if json.loads(v["partition"])["table"] == idle]
    assert len(idle_beats) >= 2, values
    assert all(v["connector"] == cfg["name"] and v["idle_ms"] >= 300 for v in values)
    assert idle_beats[1]["ts_ms"] - idle_beats[0]["ts_ms"] >= 250  # one an interval, not one a poll
    key = AvroDeserializer(sr)(beats[0].key(), SerializationContext(topic, MessageField.KEY))
    assert key == {"partition": values[0]["partition"]}
    assert change.value() is not None


def test_auto_register_false_checks_the_heartbeat_subjects_at_start(stack: Any, dynamodb: Any,
                                                                    tmp_path: Path) -> None:
    """The table's subjects registered, the heartbeat topic's not: one line, exit 2, at start."""
    from confluent_kafka.schema_registry import Schema

    from connectors.dynamodb.schemas import table_schemas
    from tests.e2e.test_record_format_e2e import KEYS, _run

    table = unique("hbsub")
    create_table(dynamodb, table, range_key=None)
    cfg = bridge_config(stack, [{"name": table, "stream": {"poll_interval_ms": 100}}],
                        heartbeat={"interval_ms": 1000})
    cfg["schema_registry"]["auto_register"] = False
    schemas = table_schemas(table, KEYS)
    sr = SchemaRegistryClient({"url": stack.registry_url})
    sr.register_schema(f"ddb.{table}-key", Schema(schemas.key_schema, "AVRO"))
    sr.register_schema(f"ddb.{table}-value", Schema(schemas.value_schema, "AVRO"))
    proc = _run(cfg, tmp_path)
    out = (proc.stdout + proc.stderr).strip()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, out[-3000:]
    assert f"subject '{cfg['name']}-heartbeats-key'" in lines[0] and "does not exist" in lines[0], lines
