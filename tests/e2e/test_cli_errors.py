"""A bad setup fails at start: exit code != 0 and one clear line naming the problem."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT, bridge_config, bridge_env, create_table, unique

pytestmark = pytest.mark.slow


def run_cli(tmp_path: Path, cfg: dict[str, Any], timeout: float = 120) -> tuple[int, str]:
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "bridge_app.cli", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        env=bridge_env(),
        cwd=ROOT,
        timeout=timeout,
    )
    return proc.returncode, proc.stderr


def last_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1]


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unknown_key(stack, tmp_path: Path) -> None:
    cfg = bridge_config(stack, ["whatever"])
    cfg["tables"][0]["strat_position"] = "latest"
    code, err = run_cli(tmp_path, cfg)
    assert code == 2
    assert last_line(err) == (
        f"ddb-kafka-bridge: config error: {tmp_path / 'bridge.yaml'}: "
        "tables[0].strat_position: unknown key; did you mean 'start_position'?"
    )


def test_missing_table(stack, tmp_path: Path) -> None:
    name = unique("missing")
    code, err = run_cli(tmp_path, bridge_config(stack, [name]))
    assert code == 2
    line = last_line(err)
    assert f"table {name!r} not found" in line and "config error" in line


def test_table_without_stream(stack, dynamodb, tmp_path: Path) -> None:
    name = unique("nostream")
    create_table(dynamodb, name, view_type=None)
    code, err = run_cli(tmp_path, bridge_config(stack, [name]))
    assert code == 2
    assert f"table {name!r} has no stream enabled" in last_line(err)


def test_unreachable_broker(stack, tmp_path: Path) -> None:
    cfg = bridge_config(stack, ["whatever"])
    cfg["kafka"]["bootstrap.servers"] = f"127.0.0.1:{dead_port()}"
    code, err = run_cli(tmp_path, cfg)
    assert code == 2
    assert "cannot reach Kafka at 127.0.0.1:" in last_line(err)


def test_unreachable_registry(stack, tmp_path: Path) -> None:
    cfg = bridge_config(stack, ["whatever"])
    cfg["schema_registry"] = {"url": f"http://127.0.0.1:{dead_port()}", "max_retries": 1}
    code, err = run_cli(tmp_path, cfg)
    assert code == 2
    line = last_line(err)
    assert "schema_registry.url" in line and "127.0.0.1" in line


def test_unreachable_dynamodb(stack, tmp_path: Path) -> None:
    cfg = bridge_config(stack, ["whatever"])
    cfg["aws"]["endpoint_url"] = f"http://127.0.0.1:{dead_port()}"
    code, err = run_cli(tmp_path, cfg)
    assert code == 2
    assert "cannot reach DynamoDB at http://127.0.0.1:" in last_line(err)
