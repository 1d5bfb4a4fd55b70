"""``ddb-kafka-bridge demo``: a table, some writes, the bridge, and a consumer printing them.

Runs against the local stack from ``ddb-kafka-bridge dev up`` (or any endpoints given on
the command line). The bridge runs as its own process, as users run it; the consumer is
confluent-kafka's DeserializingConsumer with AvroDeserializer, as users would write it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bridge.errors import BridgeError

__all__ = ["add_demo_subcommand", "format_event", "plain"]


def plain(item: dict[str, Any] | None) -> Any:
    """DynamoDB JSON → plain values, for printing."""
    if item is None:
        return None

    def av(v: dict[str, Any]) -> Any:
        ((t, x),) = v.items()
        if t == "M":
            return plain(x)
        if t == "L":
            return [av(y) for y in x]
        if t in ("SS", "NS", "BS"):
            return {"set": sorted(y.hex() if isinstance(y, bytes) else y for y in x)}
        if t == "B":
            return {"bytes": x.hex()}
        if t == "NULL":
            return None
        return x

    return {k: av(v) for k, v in item.items()}


def format_event(key: dict[str, Any], value: dict[str, Any] | None) -> str:
    from connectors.dynamodb.avro import item_from_avro

    if value is None:
        return f"TOMBSTONE key={json.dumps(key)}"
    name = {"c": "INSERT", "u": "MODIFY", "d": "REMOVE", "r": "SNAPSHOT"}[value["op"]]
    parts = [f"{name:<9} key={json.dumps(key)}"]
    for side in ("before", "after"):
        if value[side] is not None:
            parts.append(f"{side}={json.dumps(plain(item_from_avro(value[side])), sort_keys=True)}")
    return "  ".join(parts)


def _writes(ddb: Any, table: str) -> int:
    ddb.put_item(TableName=table, Item={
        "order_id": {"S": "order#1"}, "status": {"S": "NEW"}, "total": {"N": "19.99"},
        "items": {"L": [{"M": {"sku": {"S": "A-1"}, "qty": {"N": "2"}}}]}, "tags": {"SS": ["gift", "express"]},
    })
    ddb.update_item(TableName=table, Key={"order_id": {"S": "order#1"}},
                    UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":s": {"S": "SHIPPED"}})
    ddb.put_item(TableName=table, Item={"order_id": {"S": "order#2"}, "status": {"S": "NEW"}, "total": {"N": "5"}})
    ddb.delete_item(TableName=table, Key={"order_id": {"S": "order#2"}})
    return 5  # insert, modify, insert, remove + tombstone


def run_demo(kafka: str, registry: str, dynamodb: str, timeout: float = 90) -> int:
    import boto3
    from confluent_kafka import DeserializingConsumer, TopicPartition
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer

    table = f"demo-orders-{int(time.time())}"
    ddb = boto3.client("dynamodb", endpoint_url=dynamodb, region_name="us-east-1",
                       aws_access_key_id="demo", aws_secret_access_key="demo")
    ddb.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    expected = _writes(ddb, table)
    print(f"wrote {expected - 1} changes to table {table}", flush=True)

    cfg = {
        "name": f"demo-{int(time.time())}",
        "kafka": {"bootstrap.servers": kafka},
        "schema_registry": {"url": registry},
        "aws": {"region": "us-east-1", "endpoint_url": dynamodb},
        "tables": [{"name": table, "stream": {"poll_interval_ms": 200}}],
        "log_level": "WARNING",
    }
    workdir = Path(tempfile.mkdtemp(prefix="ddb-demo-"))
    (workdir / "bridge.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo")
    bridge = subprocess.Popen([sys.executable, "-m", "bridge_app.cli", "run", "-c", str(workdir / "bridge.yaml")], env=env)
    print(f"bridge started (config {workdir / 'bridge.yaml'}); reading topic ddb.{table}:", flush=True)

    sr = SchemaRegistryClient({"url": registry})
    consumer = DeserializingConsumer({
        "bootstrap.servers": kafka, "group.id": "demo-reader", "enable.auto.commit": False,
        "key.deserializer": AvroDeserializer(sr), "value.deserializer": AvroDeserializer(sr),
    })
    topic = f"ddb.{table}"
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while topic not in consumer.list_topics(timeout=5).topics:
            if time.monotonic() > deadline or bridge.poll() is not None:
                raise BridgeError(f"topic {topic} never appeared; is the bridge running?")
            time.sleep(0.2)
        parts = consumer.list_topics(topic, timeout=5).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        while seen < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            # A DeserializingConsumer's message holds the decoded key and value, not bytes.
            print("  " + format_event(msg.key(), msg.value()), flush=True)  # type: ignore[arg-type]
            seen += 1
    finally:
        consumer.close()
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(60)
    if seen < expected:
        raise BridgeError(f"demo saw {seen} of {expected} events in {timeout:.0f}s")
    print(f"demo done: {seen} events; schemas are in the registry at {registry}/subjects")
    return 0


def _cmd(args: argparse.Namespace) -> int:
    kafka, registry, dynamodb = args.kafka, args.registry, args.dynamodb
    if not (kafka and registry and dynamodb):
        from devtools.devstack import dev_status

        status = dev_status(Path(args.dir))
        ep = status.get("endpoints") if status else None
        if not ep:
            raise BridgeError("no local stack running: start it with 'ddb-kafka-bridge dev up' or pass --kafka/--registry/--dynamodb")
        kafka = kafka or ep["kafka_bootstrap"]
        registry = registry or ep["registry_url"]
        dynamodb = dynamodb or ep["dynamodb_endpoint"]
    return run_demo(kafka, registry, dynamodb)


def add_demo_subcommand(sub: Any) -> None:
    p = sub.add_parser("demo", help="write to a demo table and print the decoded change events")
    p.add_argument("--dir", default=".devstack", help="local stack folder (from 'dev up')")
    p.add_argument("--kafka")
    p.add_argument("--registry")
    p.add_argument("--dynamodb")
    p.set_defaults(func=_cmd)
