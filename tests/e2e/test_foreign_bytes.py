"""Records the bridge did not write in its topic (issue 18): ``tail`` and ``verify`` name
the partition and offset of the first one and how to go on; with ``--skip-undecodable``
they skip them, count them and say where the first was."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer

from tests.helpers import ROOT, bridge_config, bridge_env, create_table, unique

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge_app.cli", *args], capture_output=True, text=True,
                          env=bridge_env(), cwd=ROOT, timeout=timeout)


def test_tail_and_verify_name_foreign_records_and_can_skip_them(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    table = unique("foreign")
    create_table(dynamodb, table)
    for i in range(3):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}})
    cfg = bridge_config(stack, [table], topic_creation={"partitions": 1})
    cfg_path = tmp_path / "bridge.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    run = cli("run", "-c", str(cfg_path), "--until-caught-up")
    assert run.returncode == 0, run.stderr[-3000:]
    topic = f"ddb.{table}"
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    producer.produce(topic, b"plain text, no framing", b"some key")  # offset 3
    producer.produce(topic, b"\x00" + struct.pack(">I", 987654) + b"\x02", b"\x00" + struct.pack(">I", 987654))  # 4
    assert producer.flush(30) == 0

    tail = cli("tail", "-c", str(cfg_path))
    line = tail.stderr.strip().splitlines()[-1]
    assert tail.returncode == 1, tail.stderr
    assert f"topic {topic!r} partition 0 offset 3: cannot decode the record" in line and "--skip-undecodable" in line
    assert len(tail.stdout.splitlines()) == 3  # what came before it was printed

    tail = cli("tail", "-c", str(cfg_path), "--skip-undecodable")
    assert tail.returncode == 0, tail.stderr
    assert [json.loads(x)["key"]["pk"] for x in tail.stdout.splitlines()] == ["k0", "k1", "k2"]
    assert f"skipped 2 undecodable record(s) in {topic!r}, the first at topic {topic!r} partition 0 offset 3" \
        in tail.stderr

    verify = cli("verify", "-c", str(cfg_path))
    assert verify.returncode == 2, verify.stdout + verify.stderr
    assert "partition 0 offset 3: cannot decode the record" in verify.stderr
    verify = cli("verify", "-c", str(cfg_path), "--skip-undecodable")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "clean" in verify.stdout and "skipped 2 undecodable record(s)" in verify.stdout
