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

import pytest
import yaml

from tests.helpers import ROOT, bridge_env

pytestmark = pytest.mark.slow


def test_sigterm_while_the_kafka_check_hangs_stops_within_two_seconds(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    cfg = {
        "name": "hang-check",
        "kafka": {"bootstrap.servers": f"127.0.0.1:{port}"},
        "schema_registry": {"url": f"http://127.0.0.1:{port}"},
        "aws": {"region": "us-east-1", "endpoint_url": f"http://127.0.0.1:{port}"},
        "tables": [{"name": "some-table"}],
    }
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = (tmp_path / "bridge.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(path)], stdout=log,
                            stderr=subprocess.STDOUT, env=bridge_env(), cwd=ROOT)
    held = []
    try:
        silent.settimeout(30)
        held.append(silent.accept()[0])  # the bridge is in its Kafka check now, waiting for an answer
        time.sleep(0.5)  # and inside the blocking call, not just before it (no condition to await here)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for s in [*held, silent]:
            s.close()
        log.close()
    text = (tmp_path / "bridge.log").read_text(errors="replace")
    assert took < 2.0, f"SIGTERM took {took:.1f}s to stop the bridge:\n{text[-2000:]}"
    assert code == 0, text[-2000:]
    assert "stopped during start-up: nothing was read or written" in text, text[-2000:]
