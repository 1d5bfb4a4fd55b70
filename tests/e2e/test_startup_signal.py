"""SIGTERM during the start-up reachability checks stops the bridge promptly (issue 18).

The checks of Kafka and the registry block for their whole timeout against an endpoint
that accepts connections and never answers; they ran on the event loop, so the stop
signal waited ~8-10 s for them. Here the "broker" is a listening socket that accepts and
says nothing: once the bridge has connected to it, SIGTERM must end the process within
two seconds, through the clean "stopped during start-up" path.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT, bridge_config, bridge_env

pytestmark = pytest.mark.slow


def _silent_endpoint() -> socket.socket:
    """A port that accepts connections and never says a word."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    silent.settimeout(60)
    return silent


def _sigterm_once_connected(tmp_path: Path, cfg: dict, silent: socket.socket) -> tuple[float, int, str]:
    """Start the bridge, wait until it has connected to ``silent`` (then it is in the check
    that waits on it), SIGTERM it; (seconds to exit, exit code, log)."""
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = (tmp_path / "bridge.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "bridge_app.cli", "run", "-c", str(path)], stdout=log,
                            stderr=subprocess.STDOUT, env=bridge_env(), cwd=ROOT)
    held = []
    try:
        held.append(silent.accept()[0])
        # The client connects as its check begins; give it the moment to be inside the blocking
        # call (nothing outside the process shows that moment, so this one wait is on the clock).
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for s in [*held, silent]:
            s.close()
        log.close()
    return took, code, (tmp_path / "bridge.log").read_text(errors="replace")


def test_sigterm_while_the_kafka_check_hangs_stops_within_two_seconds(tmp_path: Path) -> None:
    silent = _silent_endpoint()
    port = silent.getsockname()[1]
    cfg = {
        "name": "hang-check",
        "kafka": {"bootstrap.servers": f"127.0.0.1:{port}"},
        "schema_registry": {"url": f"http://127.0.0.1:{port}"},
        "aws": {"region": "us-east-1", "endpoint_url": f"http://127.0.0.1:{port}"},
        "tables": [{"name": "some-table"}],
    }
    took, code, text = _sigterm_once_connected(tmp_path, cfg, silent)
    assert took < 2.0, f"SIGTERM took {took:.1f}s to stop the bridge:\n{text[-2000:]}"
    assert code == 0, text[-2000:]
    assert "stopped during start-up: nothing was read or written" in text, text[-2000:]


def test_sigterm_while_the_registry_check_hangs_stops_within_two_seconds(stack: Any, tmp_path: Path) -> None:
    silent = _silent_endpoint()
    port = silent.getsockname()[1]
    cfg = bridge_config(stack, ["some-table"], name="hang-registry")
    cfg["schema_registry"] = {"url": f"http://127.0.0.1:{port}", "timeout_s": 30}
    took, code, text = _sigterm_once_connected(tmp_path, cfg, silent)
    assert took < 2.0, f"SIGTERM took {took:.1f}s to stop the bridge:\n{text[-2000:]}"
    assert code == 0, text[-2000:]
    assert "stopped during start-up: nothing was read or written" in text, text[-2000:]
