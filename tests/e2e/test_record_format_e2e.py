"""Subject name strategies, the auto_register: false start check and headers, through the real
stack: moto table → bridge process → broker and the dev registry → confluent-kafka's clients.

- each strategy registers where Confluent's clients look: confluent's SchemaRegistryClient
  finds the subjects its own strategy functions name, its AvroSerializer (same strategy,
  ``auto.register.schemas: False``) finds the bridge's schema there with the id the messages
  carry, and its AvroDeserializer reads them;
- ``auto_register: false`` checks every subject before any topic exists: one line, exit 2;
- ``tables[].headers``: a plain consumer sees ``ddb.*`` headers without decoding the value.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fastavro
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import (
    Schema,
    SchemaRegistryClient,
    record_subject_name_strategy,
    topic_record_subject_name_strategy,
    topic_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connectors.dynamodb.schemas import KeyField, table_schemas
from tests.helpers import ROOT, BridgeProcess, bridge_config, bridge_env, create_table, unique

pytestmark = pytest.mark.slow

CONFLUENT = {
    "TopicNameStrategy": topic_subject_name_strategy,
    "RecordNameStrategy": record_subject_name_strategy,
    "TopicRecordNameStrategy": topic_record_subject_name_strategy,
}
KEYS = (KeyField("pk", "S"),)


def _table(stack: Any, dynamodb: Any, **options: Any) -> tuple[str, dict[str, Any]]:
    name = unique("fmt")
    create_table(dynamodb, name, range_key=None)
    return name, {"name": name, "stream": {"poll_interval_ms": 100, "discovery_interval_ms": 1000}, **options}


def _messages(bootstrap: str, topic: str, n: int, timeout: float = 90, check: Any = None) -> list[Any]:
    """The first ``n`` messages of ``topic``, raw (bytes and headers), read with assign()."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("raw"), "enable.auto.commit": False})
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    assigned = False
    try:
        while len(out) < n:
            if check is not None:
                check()
            assert time.monotonic() < deadline, f"read {len(out)} of {n} messages of {topic!r} in {timeout}s"
            if not assigned:
                meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
                if meta is None or meta.error is not None or not meta.partitions:
                    time.sleep(0.1)
                    continue
                consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
                assigned = True
            msg = consumer.poll(0.2)
            if msg is not None:
                assert msg.error() is None, msg.error()
                out.append(msg)
    finally:
        consumer.close()
    return out


def _write_changes(dynamodb: Any, table: str) -> None:
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"N": "2"}})
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": "a"}})


@pytest.mark.parametrize("strategy", list(CONFLUENT))
def test_each_strategy_registers_where_confluents_clients_look(
    stack: Any, dynamodb: Any, tmp_path: Path, strategy: str
) -> None:
    table, entry = _table(stack, dynamodb, subject_name_strategy=strategy, headers=True)
    _write_changes(dynamodb, table)
    topic = f"ddb.{table}"
    bridge = BridgeProcess.write(tmp_path, bridge_config(stack, [entry])).start()
    try:
        msgs = _messages(stack.kafka_bootstrap, topic, 4, check=bridge.check)  # c, u, d and the tombstone
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]

    sr = SchemaRegistryClient({"url": stack.registry_url})
    schemas = table_schemas(table, KEYS)
    for field, text, data in ((MessageField.KEY, schemas.key_schema, msgs[0].key()),
                              (MessageField.VALUE, schemas.value_schema, msgs[0].value())):
        ctx = SerializationContext(topic, field)
        # The subject Confluent's own strategy names holds the schema the message was written with.
        subject = CONFLUENT[strategy](ctx, fastavro.parse_schema(json.loads(text))["name"])
        latest = sr.get_latest_version(subject)
        assert latest.schema_id == int.from_bytes(data[1:5], "big"), (subject, latest)
        # Confluent's serializer with that strategy and no auto-registration finds it there.
        serializer = AvroSerializer(sr, text, conf={"auto.register.schemas": False,
                                                    "subject.name.strategy": CONFLUENT[strategy]})
        sample = {"pk": "a"} if field == MessageField.KEY else fastavro.schemaless_reader(
            io.BytesIO(data[5:]), fastavro.parse_schema(json.loads(text)))
        assert serializer(sample, ctx)[1:5] == data[1:5]
    # A consumer reads them (the deserializer finds the writer schema by id).
    deserialize = AvroDeserializer(sr)
    ops = [deserialize(m.value(), SerializationContext(topic, MessageField.VALUE)) for m in msgs]
    assert [None if v is None else v["op"] for v in ops] == ["c", "u", "d", None]
    # Headers ride along: filterable without decoding.
    heads = [dict(m.headers() or []) for m in msgs]
    assert [h["ddb.op"] for h in heads] == [b"c", b"u", b"d", b"d"]
    assert all(h["ddb.table"] == table.encode() and h["ddb.shard"].startswith(b"shardId-") for h in heads)
    seqs = [int(h["ddb.seq"]) for h in heads]
    assert seqs[0] < seqs[1] < seqs[2] == seqs[3]
    assert all(abs(int(h["ddb.created_ms"]) - time.time() * 1000) < 600_000 for h in heads)


def test_headers_are_off_by_default_and_a_list_picks_them(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    plain, plain_entry = _table(stack, dynamodb)
    some, some_entry = _table(stack, dynamodb, headers=["op", "seq"])
    for t in (plain, some):
        dynamodb.put_item(TableName=t, Item={"pk": {"S": "a"}})
    bridge = BridgeProcess.write(tmp_path, bridge_config(stack, [plain_entry, some_entry])).start()
    try:
        (none,) = _messages(stack.kafka_bootstrap, f"ddb.{plain}", 1, check=bridge.check)
        (picked,) = _messages(stack.kafka_bootstrap, f"ddb.{some}", 1, check=bridge.check)
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
    assert not none.headers()
    assert [k for k, _ in picked.headers()] == ["ddb.op", "ddb.seq"]


def _run(cfg: dict[str, Any], tmp: Path) -> subprocess.CompletedProcess[str]:
    path = tmp / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "bridge_app.cli", "run", "-c", str(path), "--until-caught-up"],
                          capture_output=True, text=True, env=bridge_env(), cwd=ROOT, timeout=120)


def _topics(stack: Any) -> set[str]:
    return set(AdminClient({"bootstrap.servers": stack.kafka_bootstrap}).list_topics(timeout=10).topics)


@pytest.mark.parametrize("strategy", ["RecordNameStrategy", "TopicRecordNameStrategy"])
def test_auto_register_false_checks_every_subject_before_any_topic(
    stack: Any, dynamodb: Any, tmp_path: Path, strategy: str
) -> None:
    # A namespace of its own: RecordNameStrategy subjects are named by the record, not the topic.
    table, entry = _table(stack, dynamodb, subject_name_strategy=strategy)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}})
    topic = f"ddb.{table}"
    cfg = bridge_config(stack, [entry])
    cfg["schema_registry"]["auto_register"] = False
    schemas = table_schemas(table, KEYS)
    sr = SchemaRegistryClient({"url": stack.registry_url})
    ns = f"ddbkafka.{table.replace('-', '_')}"
    prefix = "" if strategy == "RecordNameStrategy" else f"{topic}-"
    key_subject, value_subject = f"{prefix}{ns}.Key", f"{prefix}{ns}.Envelope"
    mine = {topic, f"{cfg['name']}-offsets", f"{cfg['name']}-dlq"}

    def refused(*words: str) -> None:
        proc = _run(cfg, tmp_path)
        out = (proc.stdout + proc.stderr).strip()
        lines = [ln for ln in out.splitlines() if ln.strip()]
        assert proc.returncode == 2, out
        assert len(lines) == 1, out
        for w in words:
            assert w in lines[0], (w, lines[0])
        assert not _topics(stack) & mine, "a topic was created before the start check refused"

    # Nothing registered: the key subject is named first.
    refused(f"subject {key_subject!r}", "does not exist", "auto_register")
    # The key registered, the value subject holding something else (not compatible with it).
    sr.register_schema(key_subject, Schema(schemas.key_schema, "AVRO"))
    sr.register_schema(value_subject, Schema('"string"', "AVRO"))
    sr.set_compatibility(subject_name=value_subject, level="NONE")
    refused(f"subject {value_subject!r}", "compatible with its latest version but not registered")
    sr.set_compatibility(subject_name=value_subject, level="BACKWARD")
    refused(f"subject {value_subject!r}", "not compatible with version 1")
    # Both registered: it runs, writes with those ids and creates its topics.
    sr.set_compatibility(subject_name=value_subject, level="NONE")
    value_id = sr.register_schema(value_subject, Schema(schemas.value_schema, "AVRO"))
    proc = _run(cfg, tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (msg,) = _messages(stack.kafka_bootstrap, topic, 1)
    assert int.from_bytes(msg.value()[1:5], "big") == value_id
