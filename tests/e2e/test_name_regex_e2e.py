"""``table_discovery.name_regex`` cannot pin the bridge (issue 18, bug 9).

Python's ``re`` backtracks: ``(a+)+`` against a table named ``"a" * 34 + "b"`` ran for hours
on the event loop, so ``/health`` stopped answering and SIGTERM was ignored. The bridge now
matches with RE2 (linear time); the patterns RE2 cannot run in linear time are refused at start.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.faults.support import free_port, get_status
from tests.helpers import ROOT, BridgeProcess, bridge_config, bridge_env, create_table, dynamodb_client, unique

pytestmark = pytest.mark.slow

EVIL = "a" * 34 + "b"  # 2**34 ways for (a+)+ to fail to match it


def _create(ddb: Any, name: str) -> None:
    try:
        create_table(ddb, name)
    except ddb.exceptions.ResourceInUseException:
        pass  # made by an earlier run on this session's stack


def test_catastrophic_name_regex_neither_pins_the_loop_nor_blocks_sigterm(stack: Any, tmp_path: Path) -> None:
    ddb = dynamodb_client(stack.dynamodb_endpoint)
    _create(ddb, EVIL)
    _create(ddb, "aaa")  # matches: its "found" line shows that discovery got past EVIL
    port = free_port()
    cfg = bridge_config(stack, [], table_discovery={"name_regex": "(a+)+", "interval_ms": 1000},
                        metrics={"port": port, "host": "127.0.0.1"})
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        # Discovery matches every listed name before it starts any: "aaa" found means EVIL was matched.
        bridge.wait_for_log("table_discovery: table aaa found", 90)
        assert f"table_discovery: table {EVIL} found" not in bridge.log()
        # The loop is free: /health answers, again and again across discovery rounds.
        for _ in range(5):
            status, _body = get_status(f"http://127.0.0.1:{port}/health", timeout=10)
            assert status in (200, 503), f"/health did not answer ({status}):\n{bridge.log()[-3000:]}"
        bridge.send(signal.SIGTERM)
        rc = bridge.wait(45)  # shutdown_timeout_s is 20
        assert rc == 0, bridge.log()[-3000:]
    finally:
        if bridge.proc is not None and bridge.proc.poll() is None:
            bridge.proc.kill()
            bridge.proc.wait(30)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [("(a+)\\1", "backreferences"), ("orders-(?!test)", "lookaround"), ("(?<=x)y", "lookaround")],
    ids=["backreference", "lookahead", "lookbehind"],
)
def test_a_pattern_re2_cannot_run_is_refused_at_start(stack: Any, tmp_path: Path, pattern: str, why: str) -> None:
    cfg = bridge_config(stack, [], name=unique("re"), table_discovery={"name_regex": pattern})
    path = BridgeProcess.write(tmp_path, cfg).config_path
    done = subprocess.run([sys.executable, "-m", "bridge_app.cli", "run", "-c", str(path)], capture_output=True,
                          text=True, timeout=120, env=bridge_env(), cwd=ROOT)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "table_discovery.name_regex" in lines[0] and why in lines[0] and "rewrite it" in lines[0], lines[0]
