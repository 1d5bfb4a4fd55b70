"""The walking skeleton end to end: moto table → bridge process → Kafka → Avro consumer."""

from __future__ import annotations

import random
import signal
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from connectors.dynamodb.transcode import IMPLEMENTATION
from tests.helpers import BridgeProcess, Event, TopicReader, bridge_config, create_table, normalize, unique

pytestmark = pytest.mark.slow

BIG_N = "12345678901234567890123456789012345678"


def rich_item(pk: str, sk: int, version: int) -> dict[str, Any]:
    """Every DynamoDB type, nested, sets, binary, a 38-digit number."""
    return {
        "pk": {"S": pk},
        "sk": {"N": str(sk)},
        "version": {"N": str(version)},
        "big": {"N": BIG_N},
        "tiny": {"N": "-0.000000000000000000000000000000000001"},
        "text": {"S": f"ünïcødé ✓ {version}"},
        "blob": {"B": bytes([0, 255, version % 256, 10])},
        "flag": {"BOOL": version % 2 == 0},
        "nothing": {"NULL": True},
        "tags": {"SS": ["a", "b", f"v{version}"]},
        "scores": {"NS": ["1", "2.5", str(version)]},
        "blobs": {"BS": [b"\x01", b"\x02\x03"]},
        "doc": {
            "M": {
                "list": {"L": [{"N": "1"}, {"S": "two"}, {"M": {"deep": {"L": [{"BOOL": False}, {"NULL": True}]}}}]},
                "empty_map": {"M": {}},
                "empty_list": {"L": []},
            }
        },
    }


class TableWriter:
    """Writes to the table and remembers, per key, the change events that must follow."""

    def __init__(self, ddb: Any, table: str) -> None:
        self.ddb = ddb
        self.table = table
        self.state: dict[tuple[str, str], dict[str, Any]] = {}
        self.expected: dict[tuple[str, str], list[tuple[str, Any, Any]]] = defaultdict(list)
        self.count = 0  # Kafka records expected (a delete counts twice: event + tombstone)
        self.lock = threading.Lock()

    def put(self, item: dict[str, Any]) -> None:
        k = (item["pk"]["S"], item["sk"]["N"])
        self.ddb.put_item(TableName=self.table, Item=item)
        with self.lock:
            old = self.state.get(k)
            self.expected[k].append(("u" if old else "c", normalize(old), normalize(item)))
            self.state[k] = item
            self.count += 1

    def delete(self, pk: str, sk: str) -> None:
        k = (pk, sk)
        self.ddb.delete_item(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"N": sk}})
        with self.lock:
            old = self.state.pop(k)
            self.expected[k].append(("d", normalize(old), None))
            self.expected[k].append(("tombstone", None, None))
            self.count += 2


def by_key(events: list[Event]) -> dict[tuple[str, str], list[tuple[str, Any, Any]]]:
    out: dict[tuple[str, str], list[tuple[str, Any, Any]]] = defaultdict(list)
    partitions: dict[tuple[str, str], set[int]] = defaultdict(set)
    for e in sorted(events, key=lambda e: (e.partition, e.offset)):
        k = (e.key["pk"], e.key["sk"])
        partitions[k].add(e.partition)
        if e.value is None:
            out[k].append(("tombstone", None, None))
        else:
            out[k].append((e.op, normalize(e.before), normalize(e.after)))
    assert all(len(p) == 1 for p in partitions.values()), "one key's changes went to several partitions"
    return out


def dedupe_keep_order(changes: list[tuple[str, Any, Any]]) -> list[tuple[str, Any, Any]]:
    """At-least-once: a replay repeats a run of changes; collapse consecutive repeats of the sequence."""
    out: list[tuple[str, Any, Any]] = []
    for c in changes:
        if c not in out or c[0] == "tombstone" and out[-1] != c:
            out.append(c)
    return out


@pytest.fixture
def table(stack: Any, dynamodb: Any) -> str:
    name = unique("orders")
    create_table(dynamodb, name)
    return name


def test_every_change_arrives_in_order_with_exact_values(stack, dynamodb, table, tmp_path: Path) -> None:
    w = TableWriter(dynamodb, table)
    for i in range(6):
        w.put(rich_item(f"user#{i}", i, 1))
    for i in range(6):
        w.put(rich_item(f"user#{i}", i, 2))
    for i in range(0, 6, 2):
        w.delete(f"user#{i}", str(i))
    w.put(rich_item("user#0", 0, 3))  # re-insert after delete

    bridge = BridgeProcess.write(tmp_path, bridge_config(stack, [table], topic_creation={"partitions": 3})).start()
    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, f"ddb.{table}")
    try:
        reader.read_count(w.count, timeout=90, check=lambda: bridge.check())
        reader.drain(1.0)
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
        reader.close()

    got = by_key(reader.events)
    assert len(reader.events) == w.count
    assert dict(got) == dict(w.expected)
    # The source block says where each change came from.
    first = next(e for e in reader.events if e.value is not None)
    src = first.value["source"]
    assert src["table"] == table and src["connector"] == "dynamodb"
    assert src["shard_id"].startswith("shardId-") and src["sequence_number"].isdigit()
    assert src["approximate_creation_ms"] > 1_600_000_000_000
    # The start-up log names the transcoder in use: a WARNING for the slow pure-Python one (issue 18).
    want = "INFO bridge_app.app: transcoder: C (" if IMPLEMENTATION == "c" else "WARNING bridge_app.app: transcoder: pure Python"
    assert want in bridge.log(), bridge.log()[-3000:]


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_sigterm_then_restart_loses_nothing_and_duplicates_nothing(
    stack, dynamodb, table, tmp_path: Path, delivery: str
) -> None:
    w = TableWriter(dynamodb, table)
    cfg = bridge_config(stack, [table], name=unique("restart"), delivery=delivery)
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, f"ddb.{table}")
    try:
        for i in range(20):
            w.put(rich_item(f"k{i % 5}", i % 5, i))
        reader.read_count(w.count, timeout=90, check=lambda: bridge.check())
        assert bridge.stop(signal.SIGTERM) == 0, bridge.log()[-3000:]
        assert "stopped" in bridge.log()

        for i in range(20, 40):
            w.put(rich_item(f"k{i % 5}", i % 5, i))
        w.delete("k1", "1")
        bridge = BridgeProcess.write(tmp_path, cfg).start()
        reader.read_count(w.count, timeout=90, check=lambda: bridge.check())
        reader.drain(2.0)
    finally:
        bridge.stop()
        reader.close()
    assert len(reader.events) == w.count, "duplicates or losses after a clean restart"
    assert dict(by_key(reader.events)) == dict(w.expected)


def test_sigkill_mid_stream_loses_nothing(stack, dynamodb, table, tmp_path: Path) -> None:
    w = TableWriter(dynamodb, table)
    cfg = bridge_config(stack, [table], name=unique("crash"))
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, f"ddb.{table}")
    stop_writing = threading.Event()
    rng = random.Random(7)

    def writer() -> None:
        i = 0
        while not stop_writing.is_set() and i < 400:
            w.put(rich_item(f"k{i % 13}", i % 13, i))
            i += 1

    t = threading.Thread(target=writer)
    try:
        t.start()
        reader.read_until(lambda ev: len(ev) >= 30, timeout=90, check=lambda: bridge.check())
        bridge.stop(signal.SIGKILL)
        bridge = BridgeProcess.write(tmp_path, cfg).start()
        second_kill_at = 100 + rng.randint(0, 50)
        reader.read_until(lambda ev: len(ev) >= second_kill_at, timeout=90, check=lambda: bridge.check())
        bridge.stop(signal.SIGKILL)
        stop_writing.set()
        t.join()
        bridge = BridgeProcess.write(tmp_path, cfg).start()
        reader.read_until(lambda ev: {(e.key["pk"], e.key["sk"], e.after["version"]["N"]) for e in ev if e.value}
                          >= {(k[0], k[1], v["version"]["N"]) for k, v in w.state.items()}, timeout=120,
                          check=lambda: bridge.check())
        reader.drain(2.0)
    finally:
        stop_writing.set()
        t.join()
        bridge.stop()
        reader.close()

    got = by_key(reader.events)
    for k, expected in w.expected.items():
        # Every change present, and the first occurrences appear in write order.
        seen = dedupe_keep_order(got[k])
        assert seen == expected, f"key {k}: order or content differs"
    dupes = len(reader.events) - w.count
    print(f"\nSIGKILL test: {w.count} changes, {dupes} duplicates after 2 kills")
