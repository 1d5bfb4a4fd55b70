"""The README's kcat line over SASL_SSL runs as written against the secured Apache Kafka.

The line is read from README.md; only the broker address, the CA file and the table are
put in (``b-1.example:9096``, ``ca.pem``, ``ddb.orders``), and the password comes from the
environment as the README has it. A kcat on librdkafka before 2.6.1 cannot do SCRAM with a
Kafka 4.x broker (the README says so); with one, the line runs with ``PLAIN`` instead, which
the listener also allows, and the figure printed says which ran.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, BridgeProcess, bridge_config, create_table, dynamodb_client, not_run, unique
from tests.secure.conftest import PASSWORD, SecureKafka

pytestmark = pytest.mark.slow


def _readme_line() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"```console\n\$ (kcat [^\n]*security\.protocol=SASL_SSL[^\n]*)\n```", text)
    assert m, "README.md lost its kcat line over SASL_SSL"
    return m.group(1)


def _kcat_librdkafka() -> tuple[int, ...]:
    out = subprocess.run(["kcat", "-V"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def test_readme_kcat_line_over_sasl_ssl(secure_kafka: SecureKafka, tmp_path: Path, measured) -> None:
    if shutil.which("kcat") is None:
        not_run("kcat not installed (Debian: apt-get install kcat)", "BRIDGE_REQUIRE_APACHE_KAFKA")
    sk = secure_kafka
    ddb = dynamodb_client(sk.endpoints.dynamodb_endpoint)
    table = unique("kcat")
    create_table(ddb, table)
    cfg = bridge_config(sk.endpoints, [table])
    cfg["kafka"] = sk.scram()
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        bridge.wait_for_log("running", 90)
        for i in range(5):
            ddb.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "sk": {"N": "1"}})
        line = (_readme_line().replace("b-1.example:9096", sk.scram_bootstrap)
                .replace("ssl.ca.location=ca.pem", f"ssl.ca.location={sk.pki.ca}")
                .replace("ddb.orders", f"ddb.{table}"))
        version = _kcat_librdkafka()
        if version < (2, 6, 1):
            line = line.replace("sasl.mechanisms=SCRAM-SHA-512", "sasl.mechanisms=PLAIN")
        env = dict(os.environ, KAFKA_PASSWORD=PASSWORD)
        got: list[str] = []
        for _ in range(60):  # until the five records are there (each run reads to the end and exits)
            done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env, timeout=60)
            assert done.returncode == 0, done.stderr[-2000:]
            got = done.stdout.split("\n")
            got = [g for g in got if g.strip()]
            if len(got) >= 5:
                break
            bridge.check()
        assert len(got) == 5 and all(re.fullmatch(r"0 \d+ \d+", g) for g in got), got
        measured(f"kcat (librdkafka {'.'.join(map(str, version))}) over SASL_SSL: "
                 f"{'as written (SCRAM-SHA-512)' if version >= (2, 6, 1) else 'with PLAIN (SCRAM needs librdkafka 2.6.1+)'}")
        assert bridge.stop() == 0, bridge.log()[-3000:]
    finally:
        bridge.stop(signal.SIGKILL)
