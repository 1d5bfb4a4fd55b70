"""The bridge where users run it: Kafka over SASL_SSL (SCRAM-SHA-512) and mutual TLS, the
registry over HTTPS with client certificates, and bad credentials refused at start.

Everything talks through the secured listeners: the bridge's producer, offsets reader,
group member and offsets follower, its status topic, the bundled registry's Kafka client
and the test's consumer. Only the test's own checks ("no topic was created") use the
PLAINTEXT listener.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

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
from tests.secure.conftest import SecureKafka, SecureRegistry

pytestmark = pytest.mark.slow


def _reader_registry(reg: SecureRegistry, sk: SecureKafka) -> dict[str, str]:
    p = sk.pki
    return {"ssl.ca.location": str(p.ca), "ssl.certificate.location": str(p.client_cert),
            "ssl.key.location": str(p.client_key)}


def _write_items(ddb: Any, table: str, n: int) -> None:
    for i in range(n):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "sk": {"N": "1"}, "v": {"N": str(i)}})


def _status_records(kafka: dict[str, Any], topic: str) -> int:
    """How many records the status topic holds, read over the secured listener."""
    c = Consumer({k: v for k, v in kafka.items()} | {"group.id": unique("status"), "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        total = 0
        for p in md.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += hi - lo
        return total
    finally:
        c.close()


def test_bridge_over_sasl_ssl_in_a_group_with_the_https_registry(
    secure_kafka: SecureKafka, secure_registry: SecureRegistry, tmp_path: Any
) -> None:
    """moto → bridge (exactly-once, group member + offsets follower, status topic) over
    SASL_SSL/SCRAM → consumer over SASL_SSL; schemas through the HTTPS registry with client
    certificates, whose own Kafka client also runs over SASL_SSL."""
    sk = secure_kafka
    ddb = dynamodb_client(sk.endpoints.dynamodb_endpoint)
    table = unique("sec")
    create_table(ddb, table)
    cfg = bridge_config(sk.endpoints, [table], delivery="exactly-once")
    cfg["kafka"] = sk.scram()
    cfg["schema_registry"] = {"url": secure_registry.url, **secure_registry.client_settings(sk.pki)}
    cfg["group"] = {"enabled": True, "partitions": 4, "session_timeout_ms": 3000}
    cfg["status"] = {"interval_ms": 200}
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    reader = TopicReader(sk.scram_bootstrap, secure_registry.url, f"ddb.{table}", kafka=sk.scram() | {
        "isolation.level": "read_committed"}, registry=_reader_registry(secure_registry, sk))
    try:
        bridge.wait_for_log("running", 90)
        _write_items(ddb, table, 30)
        events = reader.read_count(30, 90, check=bridge.check)
        assert sorted(e.after["v"]["N"] for e in events) == sorted(str(i) for i in range(30))
        assert _status_records(sk.scram(), f"{cfg['name']}-status") > 0
        assert bridge.stop() == 0, bridge.log()[-3000:]
    finally:
        reader.close()
        bridge.stop(signal.SIGKILL)
    assert "ERROR" not in bridge.log(), bridge.log()[-3000:]


def test_bridge_over_mutual_tls(secure_kafka: SecureKafka, tmp_path: Any) -> None:
    """moto → bridge over SSL with a client certificate → consumer over the same listener."""
    sk = secure_kafka
    ddb = dynamodb_client(sk.endpoints.dynamodb_endpoint)
    table = unique("mtls")
    create_table(ddb, table)
    cfg = bridge_config(sk.endpoints, [table])
    cfg["kafka"] = sk.mtls()
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    reader = TopicReader(sk.mtls_bootstrap, sk.endpoints.registry_url, f"ddb.{table}", kafka=sk.mtls())
    try:
        bridge.wait_for_log("running", 90)
        _write_items(ddb, table, 10)
        assert len(reader.read_count(10, 90, check=bridge.check)) == 10
        assert bridge.stop() == 0, bridge.log()[-3000:]
    finally:
        reader.close()
        bridge.stop(signal.SIGKILL)


def _bad(sk: SecureKafka, case: str) -> dict[str, Any]:
    p = sk.pki
    return {
        "wrong-password": sk.scram(**{"sasl.password": "not-the-password"}),
        "untrusted-certificate": sk.scram(**{"ssl.ca.location": str(p.other_ca)}),
        "expired-certificate": sk.mtls(**{"bootstrap.servers": sk.expired_bootstrap}),
        "client-certificate-refused": sk.mtls(**{"ssl.certificate.location": str(p.other_client_cert),
                                                 "ssl.key.location": str(p.other_client_key)}),
    }[case]


@pytest.mark.parametrize("case,names", [
    ("wrong-password", "kafka.sasl.password: Kafka at"),
    ("untrusted-certificate", "kafka.ssl.ca.location: the broker at"),
    ("expired-certificate", "presents a TLS certificate that has expired"),
    ("client-certificate-refused", "kafka.ssl.certificate.location: the broker at"),
])
def test_bad_credentials_fail_at_start_with_one_line_and_create_nothing(
    secure_kafka: SecureKafka, tmp_path: Any, case: str, names: str
) -> None:
    sk = secure_kafka
    cfg = bridge_config(sk.endpoints, [unique("never")], name=unique("bad"))
    cfg["kafka"] = _bad(sk, case)
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(cfg))
    done = subprocess.run([sys.executable, "-m", "bridge_app.cli", "run", "-c", str(path)], capture_output=True,
                          text=True, env=bridge_env(), cwd=ROOT, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr[-3000:]  # librdkafka's own retry lines stay out of it
    assert names in lines[0], lines[0]
    assert "not-the-password" not in done.stderr
    topics = AdminClient({"bootstrap.servers": sk.endpoints.kafka_bootstrap}).list_topics(timeout=10).topics
    assert not [t for t in topics if t.startswith((cfg["name"], "ddb.never"))], sorted(topics)


def test_registry_requires_a_client_certificate(secure_kafka: SecureKafka, secure_registry: SecureRegistry) -> None:
    import ssl

    p = secure_kafka.pki

    def ctx(ca: Any, cert: Any = None, key: Any = None) -> ssl.SSLContext:
        c = ssl.create_default_context(cafile=str(ca))
        if cert:
            c.load_cert_chain(str(cert), str(key))
        return c

    with httpx.Client(verify=ctx(p.ca, p.client_cert, p.client_key)) as good:
        assert good.get(f"{secure_registry.url}/subjects").status_code == 200
    with httpx.Client(verify=ctx(p.ca, p.other_client_cert, p.other_client_key)) as stranger, pytest.raises(
            (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        stranger.get(f"{secure_registry.url}/subjects")
    with httpx.Client(verify=ctx(p.ca)) as anonymous, pytest.raises(
            (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        anonymous.get(f"{secure_registry.url}/subjects")
    with httpx.Client(verify=ctx(p.other_ca, p.client_cert, p.client_key)) as distrustful, pytest.raises(
            httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        distrustful.get(f"{secure_registry.url}/subjects")
