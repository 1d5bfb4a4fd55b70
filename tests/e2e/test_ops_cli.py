"""The operator commands as users run them: ``run --until-caught-up`` (streams, and a
snapshot with ``mode: only``), ``tail``, ``offsets show|export|reset|import``, ``status``
and ``validate --connect``, against moto, the broker and the registry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT, bridge_config, bridge_env, create_table, unique

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge_app.cli", *args], capture_output=True, text=True,
                          env=bridge_env(), cwd=ROOT, timeout=timeout, input=stdin)


def test_until_caught_up_tail_offsets_status_and_validate_connect(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    table = unique("ops")
    create_table(dynamodb, table)
    for i in range(12):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}, "v": {"N": "1"}})
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": "k0"}, "sk": {"N": "0"}})
    cfg_path = tmp_path / "bridge.yaml"
    cfg_path.write_text(yaml.safe_dump(bridge_config(stack, [table])))

    check = cli("validate", "-c", str(cfg_path), "--connect")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"table {table}: may read the stream (GetShardIterator)" in check.stdout
    assert f"{table} -> ddb.{table} (would be created): stream only" in check.stdout

    run = cli("run", "-c", str(cfg_path), "--until-caught-up", timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "caught up" in run.stderr

    tail = cli("tail", "-c", str(cfg_path))
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(x) for x in tail.stdout.splitlines()]
    assert len(lines) == 14  # 12 inserts, a delete and its tombstone
    assert [x.get("op") for x in lines if x["key"] == {"pk": "k0", "sk": "0"}] == ["c", "d", None]
    assert lines[-1]["tombstone"] is True
    assert {x["after"]["v"]["N"] for x in lines if x.get("op") == "c"} == {"1"}

    shown = cli("offsets", "show", "-c", str(cfg_path), "--json")
    assert shown.returncode == 0, shown.stderr
    stored = [json.loads(x) for x in shown.stdout.splitlines()]
    assert len(stored) == 1 and stored[0]["partition"]["table"] == table and stored[0]["offset"]["seq"]
    export = tmp_path / "offsets.jsonl"
    assert cli("offsets", "export", "-c", str(cfg_path), "-o", str(export)).returncode == 0
    assert cli("offsets", "reset", "-c", str(cfg_path)).returncode == 2  # says what to name
    assert cli("offsets", "reset", "-c", str(cfg_path), "--all").returncode == 0
    assert "no stored offsets" in cli("offsets", "show", "-c", str(cfg_path)).stdout
    assert cli("offsets", "import", "-c", str(cfg_path), "-i", str(export)).returncode == 0
    again = cli("offsets", "show", "-c", str(cfg_path), "--json")
    assert [json.loads(x) for x in again.stdout.splitlines()] == stored
    bad = cli("offsets", "import", "-c", str(cfg_path), "-i", "-", stdin="not json\n{\"offset\": {}}\n")
    assert bad.returncode == 2 and "line 1: not JSON; line 2:" in bad.stderr

    status = cli("status", "-c", str(cfg_path), "--json")
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    assert view["connector"]["state"] == "UNASSIGNED"  # the process ended
    (task,) = view["tasks"]
    assert task["offset"] == stored[0]["offset"] and task["millis_behind_latest"] == 0
    text = cli("status", "-c", str(cfg_path)).stdout
    assert task["id"] in text

    # A second run with the imported offsets reads nothing new and ends just the same.
    again_run = cli("run", "-c", str(cfg_path), "--until-caught-up", timeout=120)
    assert again_run.returncode == 0, again_run.stderr[-3000:]
    assert len(cli("tail", "-c", str(cfg_path)).stdout.splitlines()) == 14


def test_snapshot_only_once_ends_with_until_caught_up(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    table = unique("ops-snap")
    create_table(dynamodb, table, view_type=None)
    for i in range(25):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}})
    t = {"name": table, "snapshot": {"mode": "only", "repeat": "once", "segments": 2, "straggler_split": False}}
    cfg_path = tmp_path / "snap.yaml"
    cfg_path.write_text(yaml.safe_dump(bridge_config(stack, [t])))
    run = cli("run", "-c", str(cfg_path), "--until-caught-up", timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(x) for x in cli("tail", "-c", str(cfg_path)).stdout.splitlines()]
    assert len(lines) == 25 and {x["op"] for x in lines} == {"r"}
    verify = cli("verify", "-c", str(cfg_path))
    assert verify.returncode == 0 and "clean" in verify.stdout, verify.stdout + verify.stderr
