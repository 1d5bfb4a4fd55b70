"""Snapshots end to end: a 20,000-item moto table → bridge process → Kafka → Avro consumer.

One table, loaded once for the module, is read by every test (each into its own topic):
parallel Scan with and without a filter, an S3 export (triggered, and read from a
manifest), and a SIGKILL in the middle of a scan followed by a restart that must resume
from the stored segment keys.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from bridge.offsets import OffsetStore
from tests.helpers import (
    BridgeProcess,
    Event,
    TopicReader,
    bridge_config,
    create_table,
    dynamodb_client,
    normalize,
    unique,
)

pytestmark = pytest.mark.slow

N_ITEMS = int(os.environ.get("SNAPSHOT_TEST_ITEMS", "20000"))
BIG_N = "12345678901234567890123456789012345678"


def item(i: int) -> dict[str, Any]:
    """Small items with a rotating attribute type; every 250th carries every type, nested."""
    kinds: list[dict[str, Any]] = [
        {"S": f"ünï {i}"},
        {"N": BIG_N if i % 20 == 1 else str(i)},
        {"B": bytes([i % 256, 0, 255])},
        {"BOOL": i % 2 == 0},
        {"NULL": True},
        {"M": {"n": {"N": str(i)}, "s": {"S": "x"}}},
        {"L": [{"S": "a"}, {"N": "-0.5"}]},
        {"SS": ["a", f"s{i}"]},
        {"NS": ["1", str(i + 2)]},
        {"BS": [b"\x01", bytes([i % 256, 7])]},
    ]
    it: dict[str, Any] = {"pk": {"S": f"user#{i:06d}"}, "sk": {"N": str(i % 7)}, "g": {"N": str(i % 3)}, "v": kinds[i % 10]}
    if i % 250 == 0:
        it["all"] = {
            "M": {
                "s": {"S": "text ✓"},
                "n": {"N": "-0.000000000000000000000000000000000001"},
                "b": {"B": b"\x00\xff"},
                "t": {"BOOL": False},
                "z": {"NULL": True},
                "l": {"L": [{"M": {"deep": {"L": [{"NS": ["1", "2"]}]}}}, {"L": []}]},
                "ss": {"SS": ["x", "y"]},
                "bs": {"BS": [b"\x02"]},
                "empty": {"M": {}},
            }
        }
    return it


def key_of(it: dict[str, Any]) -> tuple[str, str]:
    return (it["pk"]["S"], it["sk"]["N"])


@pytest.fixture(scope="module")
def loaded(stack: Any) -> dict[str, Any]:
    """The module's table (stream enabled), loaded with BatchWriteItem, 25 items a call."""
    ddb = dynamodb_client(stack.dynamodb_endpoint)
    name = unique("snap")
    create_table(ddb, name)
    items = [item(i) for i in range(N_ITEMS)]
    started = time.monotonic()
    for i in range(0, len(items), 25):
        ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": x}} for x in items[i : i + 25]]})
    print(f"\nloaded {len(items)} items in {time.monotonic() - started:.1f}s")
    return {"name": name, "items": {key_of(x): normalize(x) for x in items}, "ddb": ddb}


def table_cfg(name: str, **snapshot: Any) -> dict[str, Any]:
    return {
        "name": name,
        "topic": unique("snapshot"),
        "stream": {"poll_interval_ms": 100, "discovery_interval_ms": 1000},
        "snapshot": {"mode": "only", "progress_interval_s": 1, **snapshot},
    }


def by_key(events: list[Event]) -> dict[tuple[str, str], list[Event]]:
    out: dict[tuple[str, str], list[Event]] = {}
    for e in events:
        out.setdefault((e.key["pk"], e.key["sk"]), []).append(e)
    return out


class DistinctKeys:
    """A read_until condition: ``n`` distinct keys seen (incremental, so O(events))."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.keys: set[tuple[str, str]] = set()
        self.seen = 0

    def __call__(self, events: list[Event]) -> bool:
        for e in events[self.seen :]:
            self.keys.add((e.key["pk"], e.key["sk"]))
        self.seen = len(events)
        return len(self.keys) >= self.n


def read_snapshot(stack: Any, topic: str, n: int, bridge: BridgeProcess, timeout: float = 240) -> list[Event]:
    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, topic)
    try:
        reader.read_count(n, timeout=timeout, check=bridge.check)
        bridge.wait_for_log("snapshot of", timeout=30)
        reader.drain(1.5)
    finally:
        reader.close()
    return reader.events


def assert_exactly(events: list[Event], expected: dict[tuple[str, str], Any], *, source: str) -> None:
    got = by_key(events)
    assert len(events) == len(expected), f"{len(events)} events for {len(expected)} items (duplicates or extras)"
    assert got.keys() == expected.keys()
    for k, (e,) in got.items():
        assert e.op == "r" and e.before is None
        assert normalize(e.after) == expected[k], f"item {k} differs"
        assert e.value["source"]["snapshot"] == source


def test_parallel_scan_4_segments_holds_exactly_the_table(stack, loaded, tmp_path: Path) -> None:
    cfg = bridge_config(
        stack, [table_cfg(loaded["name"], segments=4, straggler_split=False, page_size=1000)], name=unique("scan")
    )
    topic = cfg["tables"][0]["topic"]
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        events = read_snapshot(stack, topic, N_ITEMS, bridge)
        bridge.wait_for_log(f"snapshot of {loaded['name']} complete")
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
    assert_exactly(events, loaded["items"], source="scan")
    segments = {e.value["source"]["segment"] for e in events}
    assert segments == {0, 1, 2, 3} and {e.value["source"]["total_segments"] for e in events} == {4}
    log = bridge.log()
    assert "segments 4/4" in log, "the progress line reports every segment done"


def test_filtered_scan_with_straggler_split_holds_exactly_the_matching_items(stack, loaded, tmp_path: Path) -> None:
    snap = {
        "segments": 4,
        "split_factor": 4,
        "page_size": 800,
        "filter_expression": "#g = :g OR begins_with(pk, :p)",
        "expression_attribute_names": {"#g": "g"},
        "expression_attribute_values": {":g": {"N": "1"}, ":p": {"S": "user#0000"}},
        "consistent_read": True,
    }
    cfg = bridge_config(stack, [table_cfg(loaded["name"], **snap)], name=unique("filter"))
    topic = cfg["tables"][0]["topic"]
    want = {k: v for k, v in loaded["items"].items() if v["g"] == ("N", "1") or k[0].startswith("user#0000")}
    assert 0 < len(want) < N_ITEMS
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        events = read_snapshot(stack, topic, len(want), bridge)
        bridge.wait_for_log(f"snapshot of {loaded['name']} complete")
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
    assert_exactly(events, want, source="scan")
    assert {e.value["source"]["total_segments"] for e in events} == {16}


def test_triggered_export_holds_exactly_the_table(stack, loaded, tmp_path: Path) -> None:
    ddb = loaded["ddb"]
    s3 = boto3.client(
        "s3", endpoint_url=stack.dynamodb_endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    bucket = unique("exports")
    s3.create_bucket(Bucket=bucket)
    ddb.update_continuous_backups(
        TableName=loaded["name"], PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    snap = {"method": "export", "export": {"s3_bucket": bucket, "s3_prefix": "snapshots", "trigger": True, "poll_interval_s": 0.2}}
    cfg = bridge_config(stack, [table_cfg(loaded["name"], **snap)], name=unique("export"))
    topic = cfg["tables"][0]["topic"]
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        events = read_snapshot(stack, topic, N_ITEMS, bridge)
        bridge.wait_for_log(f"snapshot of {loaded['name']} complete")
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
    assert_exactly(events, loaded["items"], source="export")
    assert "requested export of" in bridge.log()


def wire(av: Any) -> Any:
    """DynamoDB JSON as an export file holds it: B and BS as base64 text."""
    if isinstance(av, dict):
        return {
            k: base64.b64encode(v).decode() if k == "B" else [base64.b64encode(b).decode() for b in v] if k == "BS" else wire(v)
            for k, v in av.items()
        }
    if isinstance(av, list):
        return [wire(x) for x in av]
    return av


def write_export(s3: Any, bucket: str, prefix: str, items: list[dict[str, Any]], files: int) -> None:
    """An export laid out as AWS writes it: data files plus manifest-summary/-files.json."""
    export_dir = f"{prefix}/AWSDynamoDB/01700000000000-abcdef12"
    manifest_lines = []
    for f in range(files):
        chunk = items[f::files]
        body = "".join(json.dumps({"Item": x}) + "\n" for x in chunk).encode()
        key = f"{export_dir}/data/file{f:02d}.json.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body))
        manifest_lines.append(json.dumps({"itemCount": len(chunk), "md5Checksum": "x", "etag": "y", "dataFileS3Key": key}))
    s3.put_object(Bucket=bucket, Key=f"{export_dir}/manifest-files.json", Body="\n".join(manifest_lines).encode())
    s3.put_object(
        Bucket=bucket,
        Key=f"{export_dir}/manifest-summary.json",
        Body=json.dumps({"manifestFilesS3Key": f"{export_dir}/manifest-files.json", "itemCount": len(items)}).encode(),
    )


def test_export_with_manifest_reads_every_file(stack, loaded, tmp_path: Path) -> None:
    s3 = boto3.client(
        "s3", endpoint_url=stack.dynamodb_endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    bucket = unique("manifest")
    s3.create_bucket(Bucket=bucket)
    write_export(s3, bucket, "exp", [wire(item(i)) for i in range(N_ITEMS)], files=6)
    snap = {"method": "export", "export": {"s3_bucket": bucket, "s3_prefix": "exp", "parallel_files": 3}}
    cfg = bridge_config(stack, [table_cfg(loaded["name"], **snap)], name=unique("manifest"))
    topic = cfg["tables"][0]["topic"]
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        events = read_snapshot(stack, topic, N_ITEMS, bridge)
        bridge.wait_for_log(f"snapshot of {loaded['name']} complete")
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
    assert_exactly(events, loaded["items"], source="export")
    assert "files 6/6" in bridge.log()


def stored_items(stack: Any, cfg: dict[str, Any]) -> tuple[int, int]:
    """(items covered by stored segment offsets, segments stored mid-way) from the offsets topic."""
    store = OffsetStore({"bootstrap.servers": stack.kafka_bootstrap}, f"{cfg['name']}-offsets", cfg["name"])
    store.load(timeout_s=10)
    offsets = [store.offset(p) for p in store.partitions() if "segment" in p]
    return sum(o["items"] for o in offsets if o), sum(1 for o in offsets if o and not o["done"])


def test_sigkill_mid_scan_resumes_from_stored_segment_keys(stack, loaded, tmp_path: Path) -> None:
    snap = {"segments": 4, "split_factor": 2, "page_size": max(50, N_ITEMS // 40), "max_items_per_second": 2500}
    cfg = bridge_config(stack, [table_cfg(loaded["name"], **snap)], name=unique("kill"))
    topic = cfg["tables"][0]["topic"]
    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, topic)
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        reader.read_until(lambda ev: len(ev) >= N_ITEMS // 3, timeout=120, check=bridge.check)
        bridge.stop(signal.SIGKILL)
        committed, partial = stored_items(stack, cfg)
        assert N_ITEMS // 10 <= committed < N_ITEMS, f"kill was not mid-snapshot: {committed} items committed"

        bridge = BridgeProcess.write(tmp_path / "second", cfg).start()
        bridge.wait_for_log(f"snapshot of {loaded['name']} complete", timeout=240)
        reader.read_until(DistinctKeys(N_ITEMS), timeout=120, check=bridge.check)
        reader.drain(1.5)
    finally:
        bridge.stop()
        reader.close()
    log = bridge.log()
    line = next(x for x in log.splitlines() if "items read in this run" in x)
    read_again = int(line.split("items read in this run")[0].rsplit(",", 1)[1])
    resumed = int(line.split("items read in this run, ")[1].split(" resumed")[0])
    assert resumed == committed, line
    assert read_again == N_ITEMS - committed, f"the restart read {read_again} items; {N_ITEMS - committed} were left"
    assert log.count("resumes after") == partial, "every segment stored mid-way resumes at its key"
    got = by_key(reader.events)
    assert got.keys() == loaded["items"].keys()
    for k, evs in got.items():
        assert all(normalize(e.after) == loaded["items"][k] for e in evs)
    dupes = len(reader.events) - N_ITEMS
    print(f"\nkill/restart: {committed} items committed before the kill, {read_again} read again, {dupes} duplicates")


def test_continuous_rescans_after_the_pause(stack, tmp_path: Path) -> None:
    ddb = dynamodb_client(stack.dynamodb_endpoint)
    name = unique("rescan")
    create_table(ddb, name, view_type=None)
    items = [item(i) for i in range(60)]
    for i in range(0, len(items), 25):
        ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": x}} for x in items[i : i + 25]]})
    snap = {"segments": 2, "straggler_split": False, "repeat": "continuous", "pass_interval_s": 1}
    cfg = bridge_config(stack, [table_cfg(name, **snap)], name=unique("rescan"))
    topic = cfg["tables"][0]["topic"]
    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, topic)
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        reader.read_count(len(items) * 2, timeout=60, check=bridge.check)
        bridge.wait_for_log("pass 1", timeout=30)
        ddb.put_item(TableName=name, Item={**items[0], "v": {"S": "changed"}})
        reader.read_until(lambda ev: any(e.after["v"] == {"S": "changed"} for e in ev), timeout=60, check=bridge.check)
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
        reader.close()
    counts = by_key(reader.events)
    assert counts.keys() == {key_of(x) for x in items}
    assert all(len(v) >= 2 for v in counts.values()), "every item again in the next pass"
    assert "next pass in" in bridge.log()
