"""Apache Kafka with TLS and SASL listeners, for the tests that prove the bridge over them.

One KRaft node per session with, beside PLAINTEXT (controller, probes):
- ``SCRAM``: SASL_SSL, SCRAM-SHA-512, users created at storage format (``--add-scram``);
- ``MTLS``: SSL with client certificates required (signed by the test's CA);
- ``EXPIRED``: SSL serving a broker certificate that expired yesterday.
The CA and certificates are made by the test (tests/secure/pki.py), in PEM, which the JVM
broker reads directly (``ssl.keystore.type=PEM``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import BridgeError
from devtools.apache_kafka import KafkaSecurity, Listener
from devtools.devstack import LocalStack, StackEndpoints, free_port
from tests.conftest import _need_apache_kafka, _remember_logs
from tests.secure.pki import Pki, make_pki

USER = "bridge"
PASSWORD = "scram-pw-4417"
SCRAM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SecureKafka:
    endpoints: StackEndpoints  # moto and a plain registry; kafka_bootstrap is the PLAINTEXT listener
    pki: Pki
    scram_bootstrap: str
    mtls_bootstrap: str
    expired_bootstrap: str
    oauth_bootstrap: str
    workdir: Path

    @property
    def broker_log(self) -> Path:
        return self.workdir / "logs" / "kafka.log"

    def msk_iam(self, **over: Any) -> dict[str, Any]:
        """librdkafka settings for the OAUTHBEARER listener, as for MSK IAM (kafka_auth does the rest)."""
        return {"bootstrap.servers": self.oauth_bootstrap, "security.protocol": "SASL_SSL",
                "sasl.mechanism": "OAUTHBEARER", "ssl.ca.location": str(self.pki.ca)} | over

    def scram(self, **over: Any) -> dict[str, Any]:
        """librdkafka settings for the SASL_SSL listener, as a user writes them."""
        return {"bootstrap.servers": self.scram_bootstrap, "security.protocol": "SASL_SSL",
                "sasl.mechanisms": SCRAM, "sasl.username": USER, "sasl.password": PASSWORD,
                "ssl.ca.location": str(self.pki.ca)} | over

    def mtls(self, **over: Any) -> dict[str, Any]:
        return {"bootstrap.servers": self.mtls_bootstrap, "security.protocol": "SSL",
                "ssl.ca.location": str(self.pki.ca), "ssl.certificate.location": str(self.pki.client_cert),
                "ssl.key.location": str(self.pki.client_key)} | over


MSK_REGION = "us-east-1"
MSK_ACCESS_KEY = "AKIAMSKIAMTEST000001"


def compile_msk_validator(out: Path) -> Path:
    """tests/secure/MskIamLikeValidator.java compiled against the cached Kafka jars."""
    import subprocess

    from devtools.apache_kafka import ensure_distribution

    libs = ensure_distribution()
    out.mkdir(parents=True, exist_ok=True)
    src = Path(__file__).with_name("MskIamLikeValidator.java")
    done = subprocess.run(["javac", "-d", str(out), "-cp", str(libs / "*"), str(src)], capture_output=True,
                          text=True, timeout=180)
    if done.returncode != 0:
        raise BridgeError(f"javac failed: {done.stderr[-2000:]}")
    return out


def security_for(pki: Pki, scram_port: int, mtls_port: int, expired_port: int, oauth_port: int,
                 classes: Path) -> KafkaSecurity:
    return KafkaSecurity(
        listeners=(Listener("SCRAM", "SASL_SSL", scram_port), Listener("MTLS", "SSL", mtls_port),
                   Listener("EXPIRED", "SSL", expired_port), Listener("OAUTH", "SASL_SSL", oauth_port)),
        classpath=(classes,),
        properties={
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(pki.broker),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(pki.ca),
            # PLAIN beside SCRAM: librdkafka before 2.6.1 (Debian 12's kcat has 2.0.2) fails SCRAM
            # against Kafka 4.x brokers (a nonce bug), so the kcat test needs another way in.
            "listener.name.scram.sasl.enabled.mechanisms": f"{SCRAM},PLAIN",
            "listener.name.scram.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.scram.plain.sasl.jaas.config":
                f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}="{PASSWORD}";',
            "listener.name.mtls.ssl.client.auth": "required",
            "listener.name.expired.ssl.keystore.type": "PEM",
            "listener.name.expired.ssl.keystore.location": str(pki.broker_expired),
            # MSK IAM's shape on a local broker: OAUTHBEARER with a validator that accepts only
            # MSK-IAM-shaped tokens (tests/secure/MskIamLikeValidator.java); re-authentication
            # every 3 s, so a refreshed token reaches the broker within the run.
            "listener.name.oauth.sasl.enabled.mechanisms": "OAUTHBEARER",
            "listener.name.oauth.oauthbearer.sasl.jaas.config":
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
                f'region="{MSK_REGION}" accessKey="{MSK_ACCESS_KEY}" unsecuredLoginStringClaim_sub="broker";',
            "listener.name.oauth.oauthbearer.sasl.server.callback.handler.class": "bridgetest.MskIamLikeValidator",
            "listener.name.oauth.connections.max.reauth.ms": "3000",
        },
        scram_credentials=(f"{SCRAM}=[name={USER},password={PASSWORD}]",),
    )


@pytest.fixture(scope="session")
def secure_kafka(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    _need_apache_kafka()
    workdir = tmp_path_factory.mktemp("secure-kafka")
    _remember_logs(request.config, workdir / "logs")
    pki = make_pki(workdir / "pki")
    ports = [free_port() for _ in range(4)]
    try:
        classes = compile_msk_validator(workdir / "classes")
        local = LocalStack(workdir, broker="kafka", kafka_security=security_for(pki, *ports, classes))
        endpoints = local.start()
    except BridgeError as exc:
        pytest.fail(f"the secured Apache Kafka stack did not start (logs in {workdir / 'logs'}):\n{exc}", pytrace=False)
    try:
        yield SecureKafka(endpoints, pki, *(f"127.0.0.1:{p}" for p in ports), workdir=workdir)
    finally:
        local.stop()


# The fault tests' fixtures (Streams doubles, bridge processes, readers), for the guarantees
# over SASL_SSL in this folder.
from tests.faults.conftest import bridges, make_double, make_reader  # noqa: E402,F401


@dataclass(frozen=True)
class SecureRegistry:
    url: str
    log_path: Path

    def client_settings(self, pki: Pki) -> dict[str, str]:
        """The bridge's ``schema_registry`` TLS keys for this registry."""
        return {"ssl_ca_location": str(pki.ca), "ssl_certificate_location": str(pki.client_cert),
                "ssl_key_location": str(pki.client_key)}


@pytest.fixture(scope="session")
def secure_registry(secure_kafka: SecureKafka) -> Iterator[SecureRegistry]:
    """The bundled registry over HTTPS (private CA, client certificates required), keeping its
    schemas in Kafka through the SASL_SSL listener."""
    import subprocess
    import sys
    import time

    from devtools.devstack import _tcp_open
    from tests.helpers import ROOT, bridge_env

    sk, pki = secure_kafka, secure_kafka.pki
    port = free_port()
    log_path = sk.workdir / "logs" / "secure-registry.log"
    args = [sys.executable, "-m", "devtools.registry.server", "--port", str(port), "--topic", "_schemas_secure",
            "--bootstrap-servers", sk.scram_bootstrap, "--tls-cert", str(pki.server_cert), "--tls-key",
            str(pki.server_key), "--tls-client-ca", str(pki.ca)]
    for k, v in sk.scram().items():
        if k != "bootstrap.servers":
            args += ["--kafka-config", f"{k}={v}"]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=bridge_env())
    try:
        deadline = time.monotonic() + 60
        while "schema registry listening" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the HTTPS registry did not start:\n{log_path.read_text()[-3000:]}", pytrace=False)
            time.sleep(0.1)
        assert _tcp_open(port)
        yield SecureRegistry(f"https://127.0.0.1:{port}", log_path)
    finally:
        proc.terminate()
        proc.wait(20)
