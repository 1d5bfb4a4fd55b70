"""`ddb-kafka-bridge demo` (what `make demo` ends with) prints the decoded change events."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT, bridge_env

pytestmark = pytest.mark.slow


def test_demo_prints_insert_modify_remove_and_tombstone(stack) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bridge_app.cli", "demo", "--kafka", stack.kafka_bootstrap,
         "--registry", stack.registry_url, "--dynamodb", stack.dynamodb_endpoint],
        capture_output=True, text=True, env=bridge_env(), cwd=ROOT, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert events == ["INSERT", "MODIFY", "INSERT", "REMOVE", "TOMBSTONE"]
    modify = next(line for line in proc.stdout.splitlines() if "MODIFY" in line)
    assert '"status": "NEW"' in modify.split("after=")[0] and '"status": "SHIPPED"' in modify.split("after=")[1]
    assert "demo done: 5 events" in proc.stdout
