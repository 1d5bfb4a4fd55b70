"""Amazon MSK IAM as far as a local broker can show it: tokens signed from the AWS credential
chain, attached by every Kafka client of the bridge, and refreshed mid-run.

The broker's OAUTHBEARER listener uses tests/secure/MskIamLikeValidator.java, which accepts a
token only if it is an MSK IAM token (a SigV4-presigned kafka-cluster:Connect URL for the
region) signed by the expected access key and not expired, and prints each one it accepts.
Tokens are reported to librdkafka as valid for 10 s, and the listener re-authenticates
every 3 s, so renewed tokens reach the broker during the run. What only real MSK can show
(the signature checked against IAM, the IAM policy, MSK's re-authentication limits) is
listed in docs/aws.md.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import yaml

from tests.helpers import (
    ROOT,
    BridgeProcess,
    TopicReader,
    bridge_config,
    bridge_env,
    create_table,
    dynamodb_client,
    unique,
)
from tests.secure.conftest import MSK_ACCESS_KEY, MSK_REGION, SecureKafka

pytestmark = pytest.mark.slow

ACCEPTED = re.compile(r"msk-iam-like: accepted (\S+) token ([0-9a-f]{64}) signed (\d{8}T\d{6}Z)")


def _accepted(sk: SecureKafka, since: int) -> list[tuple[str, str, str]]:
    return ACCEPTED.findall(sk.broker_log.read_text(errors="replace")[since:])


def test_msk_iam_tokens_are_signed_attached_and_refreshed(secure_kafka: SecureKafka, tmp_path: Any,
                                                         measured) -> None:
    sk = secure_kafka
    ddb = dynamodb_client(sk.endpoints.dynamodb_endpoint)
    table = unique("msk")
    create_table(ddb, table)
    cfg = bridge_config(sk.endpoints, [table])
    cfg["kafka"] = sk.msk_iam()
    cfg["kafka_auth"] = {"aws_msk_iam": True, "region": MSK_REGION, "token_lifetime_s": 10}
    cfg["group"] = {"enabled": True, "partitions": 4, "session_timeout_ms": 3000}  # member + follower too
    mark = sk.broker_log.stat().st_size
    bridge = BridgeProcess.write(tmp_path, cfg)
    bridge.env = {"AWS_ACCESS_KEY_ID": MSK_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": "msk-test-secret"}
    bridge.start()
    reader = TopicReader(sk.endpoints.kafka_bootstrap, sk.endpoints.registry_url, f"ddb.{table}")
    try:
        bridge.wait_for_log("running", 90)
        started = time.monotonic()
        n = 0
        # Changes keep flowing for 25 s: past two renewals of a 10 s token (librdkafka renews at 80 %).
        while time.monotonic() - started < 25:
            ddb.put_item(TableName=table, Item={"pk": {"S": f"k{n}"}, "sk": {"N": "1"}})
            n += 1
            reader.read_count(n, 30, check=bridge.check)
        assert bridge.stop() == 0, bridge.log()[-3000:]
    finally:
        reader.close()
        bridge.stop(signal.SIGKILL)
    seen = _accepted(sk, mark)
    text = sk.broker_log.read_text(errors="replace")[mark:]
    assert "msk-iam-like: refused" not in text, [ln for ln in text.splitlines() if "refused" in ln][:3]
    assert seen and {who for who, _, _ in seen} == {MSK_ACCESS_KEY}
    signed = sorted({when for _, _, when in seen})
    tokens = {sig for _, sig, _ in seen}
    span = time.mktime(time.strptime(signed[-1], "%Y%m%dT%H%M%SZ")) - time.mktime(time.strptime(signed[0], "%Y%m%dT%H%M%SZ"))
    assert span >= 12, f"no token signed 12 s or more after the first reached the broker: {signed}"
    assert len(tokens) >= 3, tokens
    assert "ERROR" not in bridge.log(), bridge.log()[-3000:]
    measured(f"MSK IAM (local OAUTHBEARER stand-in): {len(tokens)} distinct tokens accepted over {span:.0f} s "
             f"({len(seen)} authentications, re-auth every 3 s), {n} changes delivered")


def test_msk_iam_token_refused_fails_the_start_with_one_line(secure_kafka: SecureKafka, tmp_path: Any) -> None:
    sk = secure_kafka
    cfg = bridge_config(sk.endpoints, [unique("never")], name=unique("mskbad"))
    cfg["kafka"] = sk.msk_iam()
    cfg["kafka_auth"] = {"aws_msk_iam": True, "region": MSK_REGION}
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = bridge_env() | {"AWS_ACCESS_KEY_ID": "AKIASOMEONEELSE00001", "AWS_SECRET_ACCESS_KEY": "x"}
    done = subprocess.run([sys.executable, "-m", "bridge_app.cli", "run", "-c", str(path)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "kafka_auth: Kafka at" in lines[0] and "refused the OAUTHBEARER token" in lines[0], \
        done.stderr[-3000:]


def test_bundled_registry_keeps_its_schemas_through_msk_iam(secure_kafka: SecureKafka, tmp_path: Any) -> None:
    """``python -m devtools.registry.server --aws-msk-iam-region``: its Kafka client signs tokens too."""
    import httpx

    from devtools.devstack import free_port

    sk = secure_kafka
    port = free_port()
    log_path = tmp_path / "registry.log"
    mark = sk.broker_log.stat().st_size
    env = bridge_env() | {"AWS_ACCESS_KEY_ID": MSK_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": "msk-test-secret"}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.registry.server", "--port", str(port), "--topic", "_schemas_msk",
             "--bootstrap-servers", sk.oauth_bootstrap, "--aws-msk-iam-region", MSK_REGION,
             "--kafka-config", f"ssl.ca.location={sk.pki.ca}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while "schema registry listening" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.1)
        schema = '{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}'
        r = httpx.post(f"http://127.0.0.1:{port}/subjects/msk-value/versions", json={"schema": schema}, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert {who for who, _, _ in _accepted(sk, mark)} == {MSK_ACCESS_KEY}
