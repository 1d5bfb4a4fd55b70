"""Why Kafka will not let the bridge in, said in one line naming the setting to fix.

librdkafka retries a refused login or a failed TLS handshake forever and only says so in
its error callback; a plain metadata request just times out as "broker transport failure".
At start the bridge asks for metadata while listening to that callback, so a wrong
password, a CA that does not match, a client certificate the broker refuses or an expired
broker certificate stop the start at once with the cause, before anything is created.

librdkafka reports every certificate problem as "certificate verify failed"; to tell an
expired certificate from an unknown CA or a wrong host name, the broker's address is
probed once more with Python's ``ssl`` (same CA file), which names the X.509 reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from bridge.errors import ConfigError

__all__ = ["check_access", "explain_refusal"]

# The probe's own librdkafka lines repeat what the error callback says, once per retry;
# the one line the start fails with says it once.
_QUIET = logging.getLogger("bridge.kafka_access.probe")
_QUIET.propagate = False
_QUIET.addHandler(logging.NullHandler())


def _first_broker(bootstrap: str) -> tuple[str, int] | None:
    first = bootstrap.split(",")[0].strip()
    first = first.split("://", 1)[-1]
    host, _, port = first.rpartition(":")
    try:
        return host.strip("[]") or "localhost", int(port)
    except ValueError:
        return None


def _tls_verify_reason(kafka: dict[str, Any], timeout_s: float = 3.0) -> str | None:
    """The X.509 reason the broker's certificate fails verification, or None if it passes."""
    addr = _first_broker(str(kafka.get("bootstrap.servers", "")))
    if addr is None:
        return None
    ctx = ssl.create_default_context()
    ca = kafka.get("ssl.ca.location")
    if ca and ca != "probe":
        try:
            ctx.load_verify_locations(capath=ca) if os.path.isdir(ca) else ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError):
            return None  # librdkafka says what is wrong with the file itself
    if str(kafka.get("ssl.endpoint.identification.algorithm", "https")).lower() == "none":
        ctx.check_hostname = False
    try:
        with socket.create_connection(addr, timeout=timeout_s) as raw, ctx.wrap_socket(raw, server_hostname=addr[0]):
            return None
    except ssl.SSLCertVerificationError as e:
        return str(e.verify_message or e.reason or e)
    except (OSError, ssl.SSLError):
        return None


def explain_refusal(kafka: dict[str, Any], err: KafkaError) -> str | None:
    """One line naming the setting behind ``err``, when it is a refusal retrying will not cure."""
    bootstrap = kafka.get("bootstrap.servers")
    text = " ".join(err.str().split())
    detail = text.split(": ", 1)[-1] if "://" in text.split(": ", 1)[0] else text
    code = err.code()
    if code == KafkaError._AUTHENTICATION:
        mech = kafka.get("sasl.mechanisms") or kafka.get("sasl.mechanism") or "GSSAPI"
        if str(mech).upper() == "OAUTHBEARER":
            return (f"kafka_auth: Kafka at {bootstrap} refused the OAUTHBEARER token ({detail}); check the AWS "
                    "credentials that sign MSK IAM tokens (kafka_auth.region, aws.role_arn) and that their IAM policy "
                    "allows kafka-cluster:Connect on the cluster")
        return (f"kafka.sasl.password: Kafka at {bootstrap} refused the {mech} login of user "
                f"{kafka.get('sasl.username')!r} ({detail}); check kafka.sasl.username and kafka.sasl.password")
    lowered = detail.lower()
    if code == KafkaError._SSL and "certificate verify failed" in lowered:
        reason = _tls_verify_reason(kafka) or "the broker's certificate could not be verified"
        r = reason.lower()
        if "expired" in r:
            return (f"kafka.bootstrap.servers: the broker at {bootstrap} presents a TLS certificate that has expired "
                    f"({reason}); renew the broker's certificate")
        if "not yet valid" in r:
            return (f"kafka.bootstrap.servers: the broker at {bootstrap} presents a TLS certificate that is not yet "
                    f"valid ({reason}); check the broker's certificate and this machine's clock")
        if "mismatch" in r or "hostname" in r:
            return (f"kafka.bootstrap.servers: the broker's TLS certificate does not name the host in {bootstrap} "
                    f"({reason}); connect by a name the certificate holds, or set "
                    "kafka.ssl.endpoint.identification.algorithm: none")
        return (f"kafka.ssl.ca.location: the broker at {bootstrap} presents a TLS certificate not signed by a CA the "
                f"bridge trusts ({reason}); set kafka.ssl.ca.location to the CA file that signed it")
    if code == KafkaError._SSL and ("wrong version number" in lowered or "packet length too long" in lowered):
        return (f"kafka.security.protocol: the listener at {bootstrap} does not speak TLS ({detail}); use the TLS "
                "listener's port or set security.protocol to PLAINTEXT/SASL_PLAINTEXT")
    if "alert bad certificate" in lowered or "certificate required" in lowered or "alert unknown ca" in lowered \
            or "certificate unknown" in lowered:
        if not kafka.get("ssl.certificate.location") and not kafka.get("ssl.certificate.pem"):
            return (f"kafka.ssl.certificate.location: the broker at {bootstrap} requires a client certificate "
                    f"({detail}); set kafka.ssl.certificate.location and kafka.ssl.key.location")
        return (f"kafka.ssl.certificate.location: the broker at {bootstrap} refused the bridge's client certificate "
                f"({detail}); use a certificate signed by a CA the broker trusts (ssl.truststore on the broker)")
    if code == KafkaError._SSL:
        return (f"kafka.ssl.*: the TLS handshake with {bootstrap} failed ({detail}); check kafka.ssl.ca.location, "
                "kafka.ssl.certificate.location and kafka.ssl.key.location")
    return None


def check_access(kafka: dict[str, Any], client_conf: dict[str, Any], timeout_s: float = 10.0) -> None:
    """Metadata from the cluster within ``timeout_s``, or a ConfigError saying why not."""
    bootstrap = kafka.get("bootstrap.servers")
    lock = threading.Lock()
    errors: list[KafkaError] = []

    def on_error(err: KafkaError) -> None:
        with lock:
            errors.append(err)

    admin = AdminClient(client_conf | {"error_cb": on_error, "logger": _QUIET})
    deadline = time.monotonic() + timeout_s
    last: KafkaException | None = None
    while True:
        try:
            admin.list_topics(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
            return
        except KafkaException as e:
            last = e
        with contextlib.suppress(Exception):
            admin.poll(0)
        with lock:
            seen = list(errors)
        for err in seen:
            line = explain_refusal(kafka, err)
            if line is not None:
                raise ConfigError(line)
        if time.monotonic() >= deadline:
            break
    seen_text = next((e.str() for e in reversed(seen) if e.code() != KafkaError._ALL_BROKERS_DOWN), None)
    why = seen_text or (last.args[0].str() if last is not None and last.args else str(last))
    raise ConfigError(
        f"kafka.bootstrap.servers: cannot reach Kafka at {bootstrap} within {timeout_s:.0f}s "
        f"({' '.join(str(why).split())}); check the address and that the broker is up"
    )
