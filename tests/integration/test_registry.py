"""The local Schema Registry against a real tansu broker, driven by real clients over HTTP.

confluent_kafka's SchemaRegistryClient and Avro serde prove wire compatibility with what the
bridge's users run; the bridge's own httpx client is tested against the same server, and
against a tiny stub server for retries and error handling.

The broker is private: the session stack's own registry already keeps its state in the
shared broker's ``_schemas`` topic.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from bridge.errors import SchemaError
from bridge.registry import RegistryClientConfig
from bridge.registry import SchemaRegistryClient as BridgeClient
from devtools.devstack import LocalStack
from devtools.registry import RegistryServer, RegistryServerConfig, canonical_form

REPO = Path(__file__).resolve().parents[2]

# ============================================================================ local stack


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def _kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private broker: the session stack's registry already owns ``_schemas`` there."""
    broker = LocalStack(tmp_path_factory.mktemp("registry-broker"))
    broker.start_one("kafka")
    try:
        yield f"127.0.0.1:{broker.port('kafka')}"
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def _registry(_kafka: str) -> Iterator[RegistryServer]:
    server = RegistryServer(RegistryServerConfig(bootstrap_servers=_kafka, port=0))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def sr(_registry: RegistryServer) -> SchemaRegistryClient:
    """confluent_kafka's client, fresh per test so its caches prove nothing."""
    return SchemaRegistryClient({"url": _registry.url})


@pytest.fixture()
def client(_registry: RegistryServer) -> Iterator[BridgeClient]:
    with BridgeClient(_registry.url) as c:
        yield c


@pytest.fixture()
def http(_registry: RegistryServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=_registry.url) as c:
        yield c


@pytest.fixture()
def subject() -> str:
    return f"t{uuid.uuid4().hex[:10]}-value"


def _schema(name: str, *fields: tuple[str, Any] | tuple[str, Any, Any]) -> str:
    """A record schema; a 3-tuple field carries a default."""
    out = []
    for f in fields:
        d: dict[str, Any] = {"name": f[0], "type": f[1]}
        if len(f) == 3:
            d["default"] = f[2]
        out.append(d)
    return json.dumps({"type": "record", "name": name, "namespace": "test", "fields": out})


def _unique_name() -> str:
    return f"R{uuid.uuid4().hex[:10]}"


# ============================================================================ confluent clients


def test_confluent_serializer_and_deserializer_round_trip(
    sr: SchemaRegistryClient, subject: str, _registry: RegistryServer
) -> None:
    topic = subject.removesuffix("-value")
    schema = _schema(_unique_name(), ("id", "long"), ("name", ["null", "string"], None), ("price", "double"))
    serializer = AvroSerializer(sr, schema)
    ctx = SerializationContext(topic, MessageField.VALUE)
    value = {"id": 42, "name": "widget", "price": 9.5}
    data = serializer(value, ctx)

    assert data[0] == 0  # Confluent framing: magic byte, then the 4-byte id
    schema_id = int.from_bytes(data[1:5], "big")
    latest = sr.get_latest_version(subject)
    assert latest.schema_id == schema_id and latest.version == 1

    # A fresh client has no cache, so the deserializer must fetch the id over HTTP.
    fresh = SchemaRegistryClient({"url": _registry.url})
    assert AvroDeserializer(fresh)(data, ctx) == value
    assert json.loads(fresh.get_schema(schema_id).schema_str or "") == json.loads(schema)


def test_confluent_serializer_without_auto_register_uses_lookup(sr: SchemaRegistryClient, subject: str) -> None:
    topic = subject.removesuffix("-value")
    schema = _schema(_unique_name(), ("a", "int"))
    ctx = SerializationContext(topic, MessageField.VALUE)
    strict = AvroSerializer(sr, schema, conf={"auto.register.schemas": False})
    with pytest.raises(SchemaRegistryError) as info:
        strict({"a": 1}, ctx)
    assert info.value.http_status_code == 404 and info.value.error_code == 40401

    schema_id = sr.register_schema(subject, Schema(schema, "AVRO"))
    again = AvroSerializer(SchemaRegistryClient(sr.config()), schema, conf={"auto.register.schemas": False})
    assert int.from_bytes(again({"a": 1}, ctx)[1:5], "big") == schema_id
    found = sr.lookup_schema(subject, Schema(schema, "AVRO"))
    assert (found.schema_id, found.version, found.subject) == (schema_id, 1, subject)


def test_confluent_serializer_use_latest_version(sr: SchemaRegistryClient, subject: str) -> None:
    name = _unique_name()
    v1 = _schema(name, ("a", "int"))
    v2 = _schema(name, ("a", "int"), ("b", "string", "x"))
    sr.register_schema(subject, Schema(v1, "AVRO"))
    id2 = sr.register_schema(subject, Schema(v2, "AVRO"))
    serializer = AvroSerializer(sr, v1, conf={"auto.register.schemas": False, "use.latest.version": True})
    data = serializer({"a": 5, "b": "y"}, SerializationContext(subject.removesuffix("-value"), MessageField.VALUE))
    assert int.from_bytes(data[1:5], "big") == id2


def test_same_schema_under_two_subjects_gets_the_same_id(sr: SchemaRegistryClient, subject: str) -> None:
    schema = _schema(_unique_name(), ("a", "int"))
    other = subject.replace("-value", "-key")
    id1 = sr.register_schema(subject, Schema(schema, "AVRO"))
    # Same schema, different whitespace and key order: still the same schema.
    reordered = json.dumps(json.loads(schema), indent=2, sort_keys=True)
    id2 = SchemaRegistryClient(sr.config()).register_schema(other, Schema(reordered, "AVRO"))
    assert id1 == id2
    assert sr.get_version(other, 1).schema_id == id1
    assert sr.register_schema(f"third-{subject}", Schema(_schema(_unique_name(), ("a", "int")), "AVRO")) != id1


def test_versions_and_reregistration(sr: SchemaRegistryClient, client: BridgeClient, subject: str) -> None:
    name = _unique_name()
    v1 = _schema(name, ("a", "int"))
    v2 = _schema(name, ("a", "int"), ("b", "long", 0))
    id1 = sr.register_schema(subject, Schema(v1, "AVRO"))
    id2 = sr.register_schema(subject, Schema(v2, "AVRO"))
    assert id2 != id1
    # Re-registering an existing version returns its id and adds no version.
    assert SchemaRegistryClient(sr.config()).register_schema(subject, Schema(v1, "AVRO")) == id1
    assert sr.get_versions(subject) == [1, 2]
    assert sr.get_version(subject, 1).schema_id == id1
    latest = sr.get_latest_version(subject)
    assert (latest.version, latest.schema_id) == (2, id2)
    assert subject in sr.get_subjects()

    found = client.get_version(subject, 1)
    assert (found.subject, found.version, found.schema_id) == (subject, 1, id1)
    assert client.get_version(subject).version == 2
    assert json.loads(client.get_schema(id2)) == json.loads(v2)
    assert client.lookup(subject, v2) is not None and client.lookup(subject, v2).version == 2  # type: ignore[union-attr]
    assert client.lookup(subject, _schema(_unique_name(), ("z", "int"))) is None
    assert client.lookup(f"missing-{subject}", v1) is None
    assert subject in client.subjects()


def test_incompatible_schema_is_refused_under_backward(
    sr: SchemaRegistryClient, client: BridgeClient, subject: str
) -> None:
    name = _unique_name()
    sr.register_schema(subject, Schema(_schema(name, ("a", "int")), "AVRO"))
    breaking = _schema(name, ("a", "int"), ("b", "string"))  # new field without default
    with pytest.raises(SchemaRegistryError) as info:
        sr.register_schema(subject, Schema(breaking, "AVRO"))
    assert info.value.http_status_code == 409 and info.value.error_code == 409

    with pytest.raises(SchemaError) as err:
        client.register(subject, breaking)
    assert (err.value.status, err.value.code) == (409, 409)
    message = str(err.value)
    assert message.startswith(f"schema for subject '{subject}' is incompatible")
    assert "version 1" in message and "'b'" in message and "\n" not in message
    assert sr.get_versions(subject) == [1]


def test_none_level_allows_incompatible_changes(sr: SchemaRegistryClient, client: BridgeClient, subject: str) -> None:
    name = _unique_name()
    sr.register_schema(subject, Schema(_schema(name, ("a", "int")), "AVRO"))
    assert sr.set_compatibility(subject, "NONE") == {"compatibility": "NONE"}
    assert sr.get_compatibility(subject) == "NONE"
    new_id = client.register(subject, _schema(name, ("a", "string")))
    assert sr.get_latest_version(subject).schema_id == new_id
    assert sr.get_versions(subject) == [1, 2]


def test_compatibility_endpoint(sr: SchemaRegistryClient, client: BridgeClient, subject: str) -> None:
    name = _unique_name()
    v1 = _schema(name, ("a", "int"))
    sr.register_schema(subject, Schema(v1, "AVRO"))
    sr.register_schema(subject, Schema(_schema(name, ("a", "int"), ("b", "int", 0)), "AVRO"))
    good = Schema(_schema(name, ("a", "long"), ("b", "int", 0)), "AVRO")
    bad = Schema(_schema(name, ("a", "int"), ("c", "int")), "AVRO")
    assert sr.test_compatibility(subject, good) is True
    assert sr.test_compatibility(subject, bad) is False
    assert sr.test_compatibility(subject, good, version=1) is True
    assert sr.test_compatibility_all_versions(subject, bad) is False

    result = client.check_compatibility(subject, bad.schema_str)  # type: ignore[arg-type]
    assert not result and result.is_compatible is False
    assert any("'c'" in m and "version 2" in m for m in result.messages)
    ok = client.check_compatibility(subject, good.schema_str, version=1)  # type: ignore[arg-type]
    assert ok and ok.messages == ()

    with pytest.raises(SchemaRegistryError) as info:
        sr.test_compatibility(subject, good, version=7)
    assert info.value.error_code == 40402
    # A subject with no versions accepts anything against "latest", as Confluent does.
    assert sr.test_compatibility(f"none-{subject}", bad) is True


def test_soft_and_permanent_delete(sr: SchemaRegistryClient, http: httpx.Client, subject: str) -> None:
    name = _unique_name()
    v1 = _schema(name, ("a", "int"))
    id1 = sr.register_schema(subject, Schema(v1, "AVRO"))
    id2 = sr.register_schema(subject, Schema(_schema(name, ("a", "int"), ("b", "int", 0)), "AVRO"))

    assert sr.delete_version(subject, 2) == 2
    assert sr.get_versions(subject) == [1]
    assert sr.get_versions(subject, deleted=True) == [1, 2]
    assert sr.get_version(subject, 2, deleted=True).schema_id == id2
    with pytest.raises(SchemaRegistryError) as info:
        SchemaRegistryClient(sr.config()).get_version(subject, 2)
    assert info.value.error_code == 40402
    # Soft-deleted ids still decode old messages.
    assert http.get(f"/schemas/ids/{id2}").status_code == 200

    # Permanent deletes require a soft delete first.
    with pytest.raises(SchemaRegistryError) as info:
        sr.delete_version(subject, 1, permanent=True)
    assert info.value.error_code == 40407
    assert sr.delete_version(subject, 2, permanent=True) == 2
    assert sr.get_versions(subject, deleted=True) == [1]
    assert http.get(f"/schemas/ids/{id2}").json()["error_code"] == 40403

    # Re-registering a permanently deleted schema must not reuse its id for something else.
    fresh = SchemaRegistryClient(sr.config())
    id_other = fresh.register_schema(f"x-{subject}", Schema(_schema(_unique_name(), ("q", "int")), "AVRO"))
    assert id_other > id2

    assert sr.delete_subject(subject) == [1]
    assert subject not in sr.get_subjects()
    assert subject in sr.get_subjects(deleted=True)
    r = http.delete(f"/subjects/{subject}")
    assert (r.status_code, r.json()["error_code"]) == (404, 40404)
    # Registering after a soft delete keeps the id and numbers after every version still
    # stored, soft-deleted ones included (2 was permanently deleted, so it is free again).
    assert fresh.register_schema(subject, Schema(v1, "AVRO")) == id1
    assert fresh.get_versions(subject) == [2]
    assert fresh.get_versions(subject, deleted=True) == [1, 2]
    assert http.delete(f"/subjects/{subject}", params={"permanent": "true"}).json()["error_code"] == 40405
    assert sr.delete_subject(subject) == [2]
    assert sr.delete_subject(subject, permanent=True) == [1, 2]
    r = http.get(f"/subjects/{subject}/versions", params={"deleted": "true"})
    assert r.json()["error_code"] == 40401


def test_config_global_and_per_subject(
    sr: SchemaRegistryClient, client: BridgeClient, http: httpx.Client, subject: str
) -> None:
    assert sr.get_compatibility() == "BACKWARD"
    r = http.get(f"/config/{subject}")
    assert (r.status_code, r.json()["error_code"]) == (404, 40408)
    assert http.get(f"/config/{subject}", params={"defaultToGlobal": "true"}).json() == {
        "compatibilityLevel": "BACKWARD"
    }
    assert client.get_compatibility(subject) == "BACKWARD"

    assert client.set_compatibility("full_transitive", subject) == "FULL_TRANSITIVE"
    assert sr.get_compatibility(subject) == "FULL_TRANSITIVE"
    assert http.delete(f"/config/{subject}").json() == {"compatibilityLevel": "FULL_TRANSITIVE"}
    assert client.get_compatibility(subject) == "BACKWARD"

    try:
        assert sr.set_compatibility(level="FORWARD") == {"compatibility": "FORWARD"}
        assert client.get_compatibility() == "FORWARD"
        assert client.get_compatibility(subject) == "FORWARD"  # falls back to the global level
    finally:
        http.put("/config", json={"compatibility": "BACKWARD"})
    assert sr.get_compatibility() == "BACKWARD"

    r = http.put("/config", json={"compatibility": "SIDEWAYS"})
    assert (r.status_code, r.json()["error_code"]) == (422, 42203)
    with pytest.raises(SchemaError) as err:
        client.set_compatibility("SIDEWAYS", subject)
    assert (err.value.status, err.value.code) == (422, 42203)
    assert subject in str(err.value)


@pytest.mark.parametrize(
    "body",
    [{}, {"compatibility": None}, {"compatibility": 1}, {"compatibilityLevel": ["FULL"]}, {"other": "NONE"}],
    ids=["empty", "null", "number", "list", "other-key"],
)
@pytest.mark.parametrize("where", ["subject", "global"])
def test_put_config_without_a_level_is_refused_and_changes_nothing(
    http: httpx.Client, subject: str, body: dict[str, Any], where: str
) -> None:
    """Issue 11: a PUT /config/{subject} without "compatibility" answered 200 and set NONE
    (a silent downgrade). Confluent and Karapace answer 422 / 42203 and keep the setting."""
    path = f"/config/{subject}" if where == "subject" else "/config"
    if where == "subject":
        assert http.put(path, json={"compatibility": "FULL"}).status_code == 200
    before = http.get(path).json()
    r = http.put(path, json=body)
    assert (r.status_code, r.json()["error_code"]) == (422, 42203), r.text
    assert "Invalid compatibility level" in r.json()["message"]
    assert http.get(path).json() == before


def test_http_shapes_and_error_codes(http: httpx.Client, subject: str) -> None:
    schema = _schema(_unique_name(), ("a", "int"))
    r = http.post(f"/subjects/{subject}/versions?normalize=false&whatever=1", json={"schema": schema})
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.schemaregistry.v1+json"
    schema_id = r.json()["id"]
    assert r.json() == {"id": schema_id}

    assert http.get(f"/subjects/{subject}/versions/1").json() == {
        "subject": subject,
        "version": 1,
        "id": schema_id,
        "schema": json.dumps(json.loads(schema), separators=(",", ":")),
    }
    assert json.loads(http.get(f"/subjects/{subject}/versions/latest/schema").text) == json.loads(schema)
    assert json.loads(http.get(f"/schemas/ids/{schema_id}/schema").text) == json.loads(schema)
    assert http.get(f"/schemas/ids/{schema_id}/subjects").json() == [subject]
    assert http.get(f"/schemas/ids/{schema_id}/versions").json() == [{"subject": subject, "version": 1}]
    assert http.post(f"/subjects/{subject}", json={"schema": schema}).json()["version"] == 1
    assert http.get("/schemas/types").json() == ["JSON", "PROTOBUF", "AVRO"]

    def err(r: httpx.Response) -> tuple[int, int]:
        return r.status_code, r.json()["error_code"]

    assert err(http.get("/subjects/nope-x/versions")) == (404, 40401)
    assert err(http.get(f"/subjects/{subject}/versions/9")) == (404, 40402)
    assert err(http.get(f"/subjects/{subject}/versions/zero")) == (422, 42202)
    assert err(http.get("/schemas/ids/999999")) == (404, 40403)
    assert err(http.post(f"/subjects/{subject}", json={"schema": _schema(_unique_name(), ("b", "int"))})) == (
        404,
        40403,
    )
    assert err(http.post("/subjects/nope-x", json={"schema": schema})) == (404, 40401)
    assert err(http.post(f"/subjects/{subject}/versions", json={"schema": "{not json"})) == (422, 42201)
    assert err(http.post(f"/subjects/{subject}/versions", json={"schema": '{"type":"record","name":"R"}'})) == (
        422,
        42201,
    )
    assert err(http.post(f"/subjects/{subject}/versions", json={"schema": schema, "schemaType": "PROTOBUF"})) == (
        422,
        42201,
    )
    assert err(http.get("/no/such/path")) == (404, 404)
    assert err(http.put(f"/subjects/{subject}/versions")) == (405, 405)
    # A subject name that needs URL encoding round-trips.
    odd = f"a/b c-{subject}"
    r = http.post(f"/subjects/{quote(odd, safe='')}/versions", json={"schema": schema})
    assert r.json() == {"id": schema_id}
    assert odd in http.get("/subjects").json()


def test_restart_keeps_ids_versions_and_config(_kafka: str) -> None:
    topic = f"_schemas_{uuid.uuid4().hex[:8]}"
    config = RegistryServerConfig(bootstrap_servers=_kafka, port=0, topic=topic)
    name = _unique_name()
    v1 = _schema(name, ("a", "int"))
    v2 = _schema(name, ("a", "int"), ("b", "int", 0))
    ctx = SerializationContext("orders", MessageField.VALUE)

    with RegistryServer(config) as first:
        sr = SchemaRegistryClient({"url": first.url})
        id1 = sr.register_schema("orders-value", Schema(v1, "AVRO"))
        id2 = sr.register_schema("orders-value", Schema(v2, "AVRO"))
        assert sr.register_schema("other-value", Schema(v1, "AVRO")) == id1
        sr.set_compatibility("orders-value", "FULL")
        sr.delete_version("other-value", 1)
        data = AvroSerializer(sr, v2)({"a": 1, "b": 2}, ctx)

    with RegistryServer(config) as second:
        sr = SchemaRegistryClient({"url": second.url})
        assert sr.get_versions("orders-value") == [1, 2]
        assert sr.get_version("orders-value", 1).schema_id == id1
        assert sr.get_latest_version("orders-value").schema_id == id2
        assert sr.get_compatibility("orders-value") == "FULL"
        assert "other-value" not in sr.get_subjects()
        assert sr.get_versions("other-value", deleted=True) == [1]
        assert AvroDeserializer(sr)(data, ctx) == {"a": 1, "b": 2}
        # New ids continue after the restored ones; identical schemas keep theirs.
        with BridgeClient(second.url) as client:
            assert client.register("orders-value", v2) == id2
            id3 = client.register("new-value", _schema(_unique_name(), ("x", "int")))
        assert id3 == max(id1, id2) + 1


def test_restore_reads_past_the_high_watermark(_kafka: str) -> None:
    """tansu reports the last batch's first offset + 1 as the watermark: records written in
    one batch must all be restored, not just the first."""
    topic = f"_schemas_{uuid.uuid4().hex[:8]}"
    config = RegistryServerConfig(bootstrap_servers=_kafka, port=0, topic=topic)
    with RegistryServer(config):
        pass  # creates the topic

    producer = Producer({"bootstrap.servers": _kafka, "linger.ms": 200, "batch.num.messages": 100})
    schemas = [_schema(_unique_name(), ("a", "int")) for _ in range(6)]
    for i, text in enumerate(schemas, start=1):
        key = {"keytype": "SCHEMA", "subject": f"s{i}", "version": 1, "magic": 1}
        value = {"subject": f"s{i}", "version": 1, "id": i, "schema": text, "deleted": False}
        producer.produce(topic, key=json.dumps(key).encode(), value=json.dumps(value).encode(), partition=0)
    assert producer.flush(10) == 0

    with RegistryServer(config) as server:
        sr = SchemaRegistryClient({"url": server.url})
        assert sr.get_subjects() == [f"s{i}" for i in range(1, 7)]
        assert json.loads(sr.get_schema(6).schema_str or "") == json.loads(schemas[5])


def test_cli_serves_and_stops_on_sigterm(_kafka: str) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.registry.server",
            "--port",
            str(port),
            "--bootstrap-servers",
            _kafka,
            "--topic",
            f"_schemas_{uuid.uuid4().hex[:8]}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode()
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/subjects", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "registry CLI did not start serving"
                time.sleep(0.05)  # polling interval while waiting for the port to open
        assert r.json() == []
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        _stop_process(proc)  # type: ignore[arg-type]
    assert proc.returncode == 0, err.decode()
    assert out == b""  # logs go to stderr
    assert "listening on" in err.decode() and "stopped" in err.decode()


# ============================================================================ bridge client vs a stub


@dataclass
class _Stub:
    """A scripted HTTP server: answers the queued responses in order, records requests."""

    responses: list[tuple[int, Any, dict[str, str]]]
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""


@pytest.fixture()
def stub() -> Iterator[_Stub]:
    state = _Stub(responses=[])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            state.requests.append((self.command, self.path, dict(self.headers)))
            status, body, headers = (
                state.responses.pop(0)
                if state.responses
                else (500, {"error_code": 50001, "message": "stub ran out"}, {})
            )
            data = json.dumps(body).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_client_retries_5xx_and_429_then_succeeds(stub: _Stub) -> None:
    stub.responses = [
        (503, {"error_code": 50003, "message": "forwarding failed"}, {}),
        (429, {"error_code": 429, "message": "slow down"}, {"Retry-After": "0.01"}),
        (200, {"id": 7}, {}),
    ]
    sleeps: list[float] = []
    config = RegistryClientConfig(url=stub.url, max_attempts=4, backoff_initial_s=0.01, backoff_max_s=0.05)
    with BridgeClient(config, sleep=sleeps.append) as client:
        assert client.register("orders-value", '"string"') == 7
        assert len(stub.requests) == 3
        assert len(sleeps) == 2 and all(0 <= s <= 0.05 for s in sleeps)
        assert sleeps[1] >= 0.01  # Retry-After honoured
        # Cached: no further request for the same (subject, schema).
        assert client.register("orders-value", '"string"') == 7
        assert len(stub.requests) == 3
    method, path, headers = stub.requests[0]
    assert (method, path) == ("POST", "/subjects/orders-value/versions")
    assert headers["Content-Type"] == "application/vnd.schemaregistry.v1+json"


def test_client_gives_up_after_bounded_5xx(stub: _Stub) -> None:
    stub.responses = [(503, {"error_code": 50003, "message": "down"}, {})] * 5
    config = RegistryClientConfig(url=stub.url, max_attempts=3, backoff_initial_s=0.001)
    with BridgeClient(config, sleep=lambda s: None) as client, pytest.raises(SchemaError) as err:
        client.get_schema(1)
    assert len(stub.requests) == 3
    assert (err.value.status, err.value.code) == (503, 50003)
    assert "after 3 attempts" in str(err.value) and "down" in str(err.value)


def test_client_4xx_raises_at_once_with_status_and_code(stub: _Stub) -> None:
    stub.responses = [(422, {"error_code": 42201, "message": "Invalid schema: bad\nthing"}, {})]
    with BridgeClient(RegistryClientConfig(url=stub.url, max_attempts=5), sleep=lambda s: None) as client:
        with pytest.raises(SchemaError) as err:
            client.register("orders-value", "{}")
    assert len(stub.requests) == 1
    assert (err.value.status, err.value.code) == (422, 42201)
    message = str(err.value)
    assert "'orders-value'" in message and "Invalid schema: bad thing" in message and "\n" not in message


def test_client_sends_credentials_but_never_shows_them(stub: _Stub) -> None:
    stub.responses = [(401, {"error_code": 401, "message": "Unauthorized"}, {})]
    host = stub.url.removeprefix("http://")
    with BridgeClient(f"http://alice:s3cret@{host}") as client:
        assert client.urls == [stub.url]
        with pytest.raises(SchemaError) as err:
            client.subjects()
    assert stub.requests[0][2]["Authorization"].startswith("Basic ")
    assert err.value.status == 401 and "s3cret" not in str(err.value)

    stub.responses = [(200, ["a"], {})]
    with BridgeClient(RegistryClientConfig(url=stub.url, bearer_token="tok")) as client:
        assert client.subjects() == ["a"]
    assert stub.requests[1][2]["Authorization"] == "Bearer tok"
    assert "tok" not in repr(RegistryClientConfig(url=stub.url, bearer_token="tok"))


def test_client_unreachable_fails_fast_with_bounded_retries() -> None:
    dead = _free_port()  # nothing listens there: connection refused
    sleeps: list[float] = []
    config = RegistryClientConfig(
        url=f"http://bob:hunter2@127.0.0.1:{dead}",
        max_attempts=3,
        backoff_initial_s=0.01,
        backoff_max_s=0.02,
        timeout_s=2,
    )
    started = time.monotonic()
    with BridgeClient(config, sleep=sleeps.append) as client, pytest.raises(SchemaError) as err:
        client.register("orders-value", '"string"')
    assert time.monotonic() - started < 2
    assert len(sleeps) == 2
    message = str(err.value)
    assert f"cannot reach the schema registry at http://127.0.0.1:{dead}" in message
    assert "after 3 attempts" in message and "hunter2" not in message and "bob" not in message
    assert err.value.status is None


def test_client_fails_over_to_the_next_url(stub: _Stub) -> None:
    dead = _free_port()
    stub.responses = [(200, {"schema": '"string"'}, {})]
    sleeps: list[float] = []
    with BridgeClient(f"http://127.0.0.1:{dead}, {stub.url}", sleep=sleeps.append) as client:
        assert client.get_schema(3) == '"string"'
        assert client.get_schema(3) == '"string"'  # cached
    assert sleeps == [] and len(stub.requests) == 1


def test_client_against_real_registry_register_is_idempotent(
    client: BridgeClient, sr: SchemaRegistryClient, subject: str
) -> None:
    schema = _schema(_unique_name(), ("a", "int"))
    schema_id = client.register(subject, schema)
    with BridgeClient(client.config) as other:
        assert other.register(subject, schema) == schema_id
    assert sr.get_versions(subject) == [1]
    assert sr.get_schema(schema_id).schema_str is not None


def test_bridge_table_schemas_register_once_per_subject(client: BridgeClient, sr: SchemaRegistryClient) -> None:
    from connectors.dynamodb.schemas import KeyField, table_schemas

    table = f"orders_{uuid.uuid4().hex[:6]}"
    s = table_schemas(table, (KeyField("pk", "S"), KeyField("sk", "N")))
    key_id = client.register(f"{table}-key", s.key_schema)
    value_id = client.register(f"{table}-value", s.value_schema)
    with BridgeClient(client.config) as other:  # no cache: both go to the server
        assert other.register(f"{table}-value", s.value_schema) == value_id
        assert canonical_form(other.get_schema(value_id)) == canonical_form(s.value_schema)
    assert key_id != value_id
    assert sr.get_versions(f"{table}-value") == [1]
