"""Each record format through the real stack (moto table → bridge process → broker, the dev
registry over HTTP), read back with the consumer's own tools for that format:

- ``json``: plain ``json.loads`` (envelope and typed, and Kafka Connect's wrapper);
- ``json_schema``: confluent-kafka's ``JSONDeserializer`` with ``SchemaRegistryClient``;
- ``protobuf``: confluent-kafka's ``ProtobufDeserializer`` with the message class protoc
  generated from the ``.proto`` the registry holds.

Values exact in each: a 38-digit number, binary, sets and nested maps.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_record_format_e2e import _messages
from tests.helpers import BridgeProcess, bridge_config, create_table, unique

pytestmark = pytest.mark.slow

BIG = "12345678901234567890123456789012345678"
ITEM = {
    "pk": {"S": "a"},
    "big": {"N": BIG},
    "frac": {"N": "-0.000000000000000000000000000000000001"},
    "bin": {"B": b"\x00\x01\xfe\xff"},
    "ss": {"SS": ["x", "y"]},
    "ns": {"NS": ["1", "2"]},
    "bs": {"BS": [b"\x01", b"\x02"]},
    "m": {"M": {"k": {"N": "1"}, "inner": {"M": {"flag": {"BOOL": True}, "s": {"S": "deep"}}}}},
    "l": {"L": [{"S": "one"}, {"N": "2"}]},
}


def _table(dynamodb: Any, **entry: Any) -> tuple[str, dict[str, Any]]:
    name = unique("fmt")
    create_table(dynamodb, name, range_key=None)
    return name, {"name": name, "stream": {"poll_interval_ms": 100, "discovery_interval_ms": 1000}, **entry}


def _run(stack: Any, dynamodb: Any, tmp_path: Path, entry: dict[str, Any], items: list[dict[str, Any]],
         **extra: Any) -> list[Any]:
    table = entry["name"]
    bridge = BridgeProcess.write(tmp_path, bridge_config(stack, [entry], **extra)).start()
    try:
        for item in items:
            dynamodb.put_item(TableName=table, Item=item)
        return _messages(stack.kafka_bootstrap, f"ddb.{table}", len(items), check=bridge.check)
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]


def _ddb_json(item: dict[str, Any]) -> Any:
    """An item as DynamoDB JSON text reads (binary as base64)."""
    def av(v: dict[str, Any]) -> Any:
        (t, x), = v.items()
        if t == "B":
            return {t: base64.b64encode(x).decode()}
        if t == "BS":
            return {t: [base64.b64encode(b).decode() for b in x]}
        if t == "M":
            return {t: {k: av(y) for k, y in x.items()}}
        if t == "L":
            return {t: [av(y) for y in x]}
        return {t: x}
    return {k: av(v) for k, v in item.items()}


def test_json_envelope_reads_back_as_dynamodb_json(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    _, entry = _table(dynamodb, key={"format": "json"}, value={"format": "json"})
    (msg,) = _run(stack, dynamodb, tmp_path, entry, [ITEM])
    assert json.loads(msg.key()) == {"pk": "a"}
    value = json.loads(msg.value())
    assert value["op"] == "c" and "before" not in value  # null optional fields are left out
    assert value["after"] == _ddb_json(ITEM)
    assert value["after"]["big"] == {"N": BIG}
    assert value["source"]["table"] == entry["name"]


TYPED = {"shape": "typed", "sample_items": 0,
         "attributes": [{"name": "big", "type": "decimal", "precision": 38, "scale": 0},
                        {"name": "frac", "type": "decimal", "precision": 38, "scale": 36}]}


def _typed_expected(after: dict[str, Any], decimal: Any) -> None:
    assert after["pk"] == "a"
    assert decimal(after["big"]) == Decimal(BIG)
    assert decimal(after["frac"]) == Decimal("-0.000000000000000000000000000000000001")
    assert base64.b64decode(after["bin"]) == b"\x00\x01\xfe\xff"
    assert sorted(after["ss"]) == ["x", "y"] and sorted(after["ns"]) == [1, 2]
    assert sorted(base64.b64decode(b) for b in after["bs"]) == [b"\x01", b"\x02"]
    assert after["m"]["k"] == 1 and after["m"]["inner"] == {"flag": True, "s": "deep"}


def test_json_typed_plain_and_exact(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    _, entry = _table(dynamodb, value={"format": "json", "image": "after", **TYPED})
    (msg,) = _run(stack, dynamodb, tmp_path, entry, [{k: v for k, v in ITEM.items() if k != "l"}])
    assert msg.key()[0] == 0  # the key stays Avro (its own format setting)
    after = json.loads(msg.value())
    _typed_expected(after, Decimal)  # decimals as their exact text


def test_json_typed_in_kafka_connect_wrapper(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    _, entry = _table(dynamodb, key={"format": "json", "schemas_enable": True},
                      value={"format": "json", "schemas_enable": True, **TYPED})
    (msg,) = _run(stack, dynamodb, tmp_path, entry, [{k: v for k, v in ITEM.items() if k != "l"}])
    key = json.loads(msg.key())
    assert key["payload"] == {"pk": "a"} and key["schema"]["type"] == "struct"
    value = json.loads(msg.value())
    schema, payload = value["schema"], value["payload"]
    after_schema = next(f for f in schema["fields"] if f["field"] == "after")
    big_schema = next(f for f in after_schema["fields"] if f["field"] == "big")
    assert big_schema["name"] == "org.apache.kafka.connect.data.Decimal" and big_schema["parameters"]["scale"] == "0"

    def connect_decimal(scale: int) -> Any:
        return lambda text: Decimal(f"{int.from_bytes(base64.b64decode(text), 'big', signed=True)}E-{scale}")

    after = payload["after"]
    assert connect_decimal(0)(after["big"]) == Decimal(BIG)
    assert connect_decimal(36)(after["frac"]) == Decimal("-0.000000000000000000000000000000000001")
    after["frac"] = str(connect_decimal(36)(after["frac"]))
    _typed_expected(after, lambda t: connect_decimal(0)(t) if t == after["big"] else Decimal(t))


def _sr(stack: Any) -> Any:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient({"url": stack.registry_url})


def test_json_schema_envelope_read_with_jsondeserializer(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    table, entry = _table(dynamodb, key={"format": "json_schema"}, value={"format": "json_schema"})
    (msg,) = _run(stack, dynamodb, tmp_path, entry, [ITEM])
    sr, topic = _sr(stack), f"ddb.{table}"
    registered = sr.get_latest_version(f"{topic}-value").schema
    assert registered.schema_type == "JSON" and json.loads(registered.schema_str)["additionalProperties"] is False
    deserialize = JSONDeserializer(None, schema_registry_client=sr)  # the writer's schema, by the message's id
    key = deserialize(msg.key(), SerializationContext(topic, MessageField.KEY))
    value = deserialize(msg.value(), SerializationContext(topic, MessageField.VALUE))
    assert key == {"pk": "a"}
    assert value["after"] == _ddb_json(ITEM) and value["op"] == "c"


def test_json_schema_typed_evolves_under_backward(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    first = {k: v for k, v in ITEM.items() if k not in ("l", "ss")}
    table, entry = _table(dynamodb, value={"format": "json_schema", **TYPED})
    # the second item gains an attribute (ss) and a nested map key (m.extra)
    second = {**first, "pk": {"S": "b"}, "ss": {"SS": ["x", "y"]},
              "m": {"M": {**first["m"]["M"], "extra": {"S": "new"}}}}
    msgs = sorted(_run(stack, dynamodb, tmp_path, entry, [first, second]), key=lambda m: m.key())  # by pk
    sr, topic = _sr(stack), f"ddb.{table}"
    subject = f"{topic}-value"
    assert sr.get_compatibility() == "BACKWARD"
    versions = sr.get_versions(subject)
    assert len(versions) == 2, versions
    old, new = (sr.get_version(subject, v).schema for v in versions)
    assert sr.test_compatibility(subject, Schema(new.schema_str, "JSON"), version=versions[0])
    ids = [int.from_bytes(m.value()[1:5], "big") for m in msgs]
    assert ids == [sr.get_version(subject, v).schema_id for v in versions]
    deserialize = JSONDeserializer(None, schema_registry_client=sr)
    a, b = (deserialize(m.value(), SerializationContext(topic, MessageField.VALUE))["after"] for m in msgs)
    assert "ss" not in a and b["ss"] == ["x", "y"] and b["m"]["extra"] == "new"
    a["ss"] = ["x", "y"]
    _typed_expected(a, Decimal)
    _typed_expected({**b, "pk": "a"}, Decimal)
    # The newest schema validates the oldest message (what BACKWARD promises a reader).
    newest = JSONDeserializer(new.schema_str)
    assert newest(msgs[0].value(), SerializationContext(topic, MessageField.VALUE))["after"]["pk"] == "a"


def _message_class(tmp_path: Path, proto: str, name: str, message: str) -> Any:
    """Compile ``proto`` with protoc (grpcio-tools) and import the message class it defines."""
    import importlib.util
    import os

    import grpc_tools
    from grpc_tools import protoc

    out = tmp_path / f"pb_{name}"
    out.mkdir()
    (out / f"{name}.proto").write_text(proto)
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    assert protoc.main(["protoc", f"-I{out}", f"-I{include}", f"--python_out={out}", f"{name}.proto"]) == 0
    spec = importlib.util.spec_from_file_location(f"{name}_pb2", out / f"{name}_pb2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, message)


def _proto_reader(stack: Any, tmp_path: Path, subject: str, name: str, message: str) -> Any:
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer

    sr = _sr(stack)
    latest = sr.get_latest_version(subject).schema
    assert latest.schema_type == "PROTOBUF"
    cls = _message_class(tmp_path, latest.schema_str, name, message)
    return ProtobufDeserializer(cls, {"use.deprecated.format": False}, schema_registry_client=sr)


def test_protobuf_envelope_read_with_protobufdeserializer(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    from confluent_kafka.serialization import MessageField, SerializationContext
    from google.protobuf.json_format import MessageToDict

    table, entry = _table(dynamodb, key={"format": "protobuf"}, value={"format": "protobuf"})
    (msg,) = _run(stack, dynamodb, tmp_path, entry, [ITEM])
    topic = f"ddb.{table}"
    safe = table.replace("-", "_")
    keys = _proto_reader(stack, tmp_path, f"{topic}-key", f"{safe}_key", "Key")
    values = _proto_reader(stack, tmp_path, f"{topic}-value", f"{safe}_value", "Envelope")
    key = keys(msg.key(), SerializationContext(topic, MessageField.KEY))
    value = values(msg.value(), SerializationContext(topic, MessageField.VALUE))
    assert key.pk == "a"
    assert value.op == "c" and not value.before
    assert MessageToDict(value)["after"] == _ddb_json(ITEM)  # bytes as base64, as DynamoDB JSON has them
    assert value.after["big"].N == BIG and value.after["bin"].B == b"\x00\x01\xfe\xff"
    assert value.after["m"].M["inner"].M["flag"].BOOL is True


def test_protobuf_typed_evolves_under_backward(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.serialization import MessageField, SerializationContext

    first = {k: v for k, v in ITEM.items() if k not in ("l", "ss")}
    second = {**first, "pk": {"S": "b"}, "ss": {"SS": ["x", "y"]},
              "m": {"M": {**first["m"]["M"], "extra": {"S": "new"}}}}
    table, entry = _table(dynamodb, value={"format": "protobuf", **TYPED})
    msgs = sorted(_run(stack, dynamodb, tmp_path, entry, [first, second]), key=lambda m: m.key())
    sr, topic = _sr(stack), f"ddb.{table}"
    subject = f"{topic}-value"
    versions = sr.get_versions(subject)
    assert len(versions) == 2, versions
    old, new = (sr.get_version(subject, v).schema for v in versions)
    assert sr.test_compatibility(subject, Schema(new.schema_str, "PROTOBUF"), version=versions[0])
    # never renumbered: every field of the old version keeps its number in the new one
    old_fields = {ln.strip() for ln in old.schema_str.splitlines() if ln.strip().endswith(";") and "=" in ln}
    assert old_fields <= {ln.strip() for ln in new.schema_str.splitlines()}
    ids = [int.from_bytes(m.value()[1:5], "big") for m in msgs]
    assert ids == [sr.get_version(subject, v).schema_id for v in versions]
    # The newest .proto reads the old message and the new one.
    read = _proto_reader(stack, tmp_path, subject, table.replace("-", "_"), "Envelope")
    a, b = (read(m.value(), SerializationContext(topic, MessageField.VALUE)).after for m in msgs)
    for after, pk in ((a, "a"), (b, "b")):
        assert after.pk == pk and Decimal(after.big) == Decimal(BIG)
        assert Decimal(after.frac) == Decimal("-0.000000000000000000000000000000000001")
        assert after.bin == b"\x00\x01\xfe\xff" and sorted(after.ns) == [1, 2]
        assert sorted(after.bs) == [b"\x01", b"\x02"]
        assert after.m.k == 1 and after.m.inner.flag is True and after.m.inner.s == "deep"
    assert list(a.ss) == [] and sorted(b.ss) == ["x", "y"] and not a.m.extra and b.m.extra == "new"


def test_auto_register_false_checks_protobuf_subjects_by_record_name(
    stack: Any, dynamodb: Any, tmp_path: Path
) -> None:
    """The start check looks up the schema the format registers (here the .proto, under the
    record name Confluent's protobuf serializer uses: package.Message); a key in plain JSON
    has no subject to check."""
    from confluent_kafka.schema_registry import Schema

    from bridge.serde.formats.protobuf import proto_file
    from connectors.dynamodb.schemas import KeyField, table_schemas
    from tests.e2e.test_record_format_e2e import _run as run_until_caught_up

    table, entry = _table(dynamodb, key={"format": "json"}, value={"format": "protobuf"},
                          subject_name_strategy="RecordNameStrategy")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}})
    cfg = bridge_config(stack, [entry])
    cfg["schema_registry"]["auto_register"] = False
    subject = f"ddbkafka.{table.replace('-', '_')}.Envelope"
    proc = run_until_caught_up(cfg, tmp_path)
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2 and f"subject {subject!r}" in out and "does not exist" in out, out
    assert len(out.splitlines()) == 1, out
    proto = proto_file(table_schemas(table, (KeyField("pk", "S"),)).value_schema)
    value_id = _sr(stack).register_schema(subject, Schema(proto, "PROTOBUF"))
    proc = run_until_caught_up(cfg, tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (msg,) = _messages(stack.kafka_bootstrap, f"ddb.{table}", 1)
    assert json.loads(msg.key()) == {"pk": "a"} and int.from_bytes(msg.value()[1:5], "big") == value_id
