"""``verify`` against a real table and topic: every planted difference is found, a clean
live table under writes is reported clean, and the exit code says which."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.dynamodb.config import parse_config
from connectors.dynamodb.verify import verify_table
from tests.helpers import ROOT, InProcessBridge, TopicReader, bridge_config, bridge_env, create_table, unique

pytestmark = pytest.mark.slow

BIG = "12345678901234567890123456789012345678"  # 38 digits


def item(pk: str, sk: int, **extra: Any) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}, "big": {"N": BIG}, "tags": {"SS": ["a", "b"]},
            "blob": {"B": b"\x00\xff"}, "status": {"S": "NEW"}, **extra}


def run_verify(cfg_path: Path, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bridge_app.cli", "verify", "-c", str(cfg_path), "--json", *args],
        capture_output=True, text=True, env=bridge_env(), cwd=ROOT, timeout=180,
    )
    out = json.loads(proc.stdout) if proc.stdout.strip() else []
    return proc.returncode, out, proc.stderr


def test_verify_finds_each_planted_difference_and_a_live_table_is_clean(stack: Any, dynamodb: Any,
                                                                        tmp_path: Path) -> None:
    table = unique("verify")
    create_table(dynamodb, table)
    for i in range(20):
        dynamodb.put_item(TableName=table, Item=item(f"k{i}", i))
    raw = bridge_config(stack, [table])
    cfg_path = tmp_path / "bridge.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    topic = f"ddb.{table}"
    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, topic)
    try:
        with InProcessBridge(raw) as bridge:
            reader.read_count(20, timeout=60, check=bridge.check)
        code, out, err = run_verify(cfg_path)
        assert code == 0, err
        assert out[0]["clean"] and out[0]["table_items"] == 20 and out[0]["topic_keys"] == 20

        # Plant one of each while no bridge runs: the topic keeps the old state.
        dynamodb.put_item(TableName=table, Item=item("new", 100))  # missing from the topic
        dynamodb.delete_item(TableName=table, Key={"pk": {"S": "k1"}, "sk": {"N": "1"}})  # extra in the topic
        dynamodb.put_item(TableName=table, Item=item("k2", 2, status={"S": "SHIPPED"}))  # changed attribute
        last_digit = BIG[:-1] + "9"
        dynamodb.put_item(TableName=table, Item=item("k3", 3, big={"N": last_digit}))  # 38th digit changed
        code, out, err = run_verify(cfg_path, "--examples", "10")
        assert code == 1, err
        report = out[0]
        assert report["counts"] == {"missing": 1, "extra": 1, "changed": 2}, report
        ex = report["examples"]
        assert ex["missing"][0]["key"] == {"pk": {"S": "new"}, "sk": {"N": "100"}}
        assert ex["extra"][0]["key"] == {"pk": {"S": "k1"}, "sk": {"N": "1"}}
        changed = {e["key"]["pk"]["S"]: e["attributes"] for e in ex["changed"]}
        assert changed == {"k2": ["status"], "k3": ["big"]}
        k3 = next(e for e in ex["changed"] if e["key"]["pk"]["S"] == "k3")
        assert k3["table"]["big"] == {"N": last_digit} and k3["topic"]["big"] == {"N": BIG}

        # The text report names them too, and says not clean.
        proc = subprocess.run([sys.executable, "-m", "bridge_app.cli", "verify", "-c", str(cfg_path)],
                              capture_output=True, text=True, env=bridge_env(), cwd=ROOT, timeout=180)
        assert proc.returncode == 1
        assert "1 missing, 1 extra, 2 changed" in proc.stdout and "attributes big" in proc.stdout

        # Live: the bridge catches up while a writer keeps changing the table; verify
        # re-checks what differs and reports clean.
        stop = threading.Event()

        def write() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                dynamodb.put_item(TableName=table, Item=item(f"live{n % 40}", n, status={"S": f"v{n}"}))
                if n % 7 == 0:
                    dynamodb.delete_item(TableName=table, Key={"pk": {"S": f"k{4 + n % 10}"}, "sk": {"N": str(4 + n % 10)}})

        writer = threading.Thread(target=write, daemon=True)
        with InProcessBridge(raw) as bridge:
            writer.start()
            try:
                report_obj = verify_table(parse_config(raw), parse_config(raw).tables[0], settle_s=60)
            finally:
                stop.set()
                writer.join(10)
            bridge.check()
        assert report_obj.clean, report_obj.lines(10)
        assert report_obj.table_items > 20
    finally:
        reader.close()
