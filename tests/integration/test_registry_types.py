"""The dev registry's JSON Schema and Protobuf types, references, ``/schemas``, ``/mode`` and
``normalize``, over HTTP against a real broker-backed registry, checked with confluent-kafka's
``SchemaRegistryClient`` where it speaks the endpoint and with raw HTTP for status codes,
error codes and bodies (Confluent's documented API)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient, SchemaRegistryError
from google.protobuf import descriptor_pb2

from devtools.registry import RegistryServer
from tests.integration.test_registry import _kafka, _registry  # noqa: F401  (the module's broker and registry)

CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


@pytest.fixture()
def sr(_registry: RegistryServer) -> SchemaRegistryClient:  # noqa: F811
    return SchemaRegistryClient({"url": _registry.url})


@pytest.fixture()
def http(_registry: RegistryServer) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(base_url=_registry.url, headers=CT) as c:
        yield c


def _subject(kind: str = "value") -> str:
    return f"t{uuid.uuid4().hex[:10]}-{kind}"


def _closed(props: dict[str, object]) -> str:
    return json.dumps({"type": "object", "properties": props, "additionalProperties": False})


PROTO_V1 = 'syntax = "proto3";\npackage fmt.test;\nmessage M { string a = 1; }\n'
PROTO_V2 = 'syntax = "proto3";\npackage fmt.test;\nmessage M { string a = 1; int64 b = 2; }\n'
PROTO_BAD = 'syntax = "proto3";\npackage fmt.test;\nmessage M { int64 a = 1; }\n'


def test_json_schema_register_read_lookup_and_compatibility(sr: SchemaRegistryClient, http: httpx.Client) -> None:
    subject = _subject()
    v1 = _closed({"a": {"type": "string"}})
    sid = sr.register_schema(subject, Schema(v1, "JSON"))
    got = http.get(f"/subjects/{subject}/versions/1").json()
    assert got["schemaType"] == "JSON" and got["id"] == sid and json.loads(got["schema"]) == json.loads(v1)
    assert http.get(f"/schemas/ids/{sid}").json()["schemaType"] == "JSON"
    assert sr.lookup_schema(subject, Schema(v1, "JSON")).version == 1
    # an optional property added to the closed model: BACKWARD compatible, registered as version 2
    v2 = _closed({"a": {"type": "string"}, "b": {"type": "integer"}})
    assert sr.test_compatibility(subject, Schema(v2, "JSON"))
    assert sr.register_schema(subject, Schema(v2, "JSON")) != sid
    # a type changed: 409, Confluent's code and message
    bad = _closed({"a": {"type": "integer"}, "b": {"type": "integer"}})
    r = http.post(f"/compatibility/subjects/{subject}/versions/latest?verbose=true",
                  json={"schema": bad, "schemaType": "JSON"})
    assert r.status_code == 200 and r.json()["is_compatible"] is False and "TYPE_CHANGED" in r.json()["messages"][0]
    r = http.post(f"/subjects/{subject}/versions", json={"schema": bad, "schemaType": "JSON"})
    assert r.status_code == 409 and r.json()["error_code"] == 409
    r = http.post(f"/subjects/{subject}/versions", json={"schema": '{"type": 5}', "schemaType": "JSON"})
    assert r.status_code == 422 and r.json()["error_code"] == 42201
    # another type under the subject is never compatible
    r = http.post(f"/subjects/{subject}/versions", json={"schema": '"string"', "schemaType": "AVRO"})
    assert r.status_code == 409


def test_protobuf_register_serialized_form_and_compatibility(sr: SchemaRegistryClient, http: httpx.Client) -> None:
    subject = _subject()
    sid = sr.register_schema(subject, Schema(PROTO_V1, "PROTOBUF"))
    assert sr.register_schema(subject, Schema(PROTO_V2, "PROTOBUF")) != sid
    body = http.get(f"/schemas/ids/{sid}", params={"format": "serialized"}).json()
    fd = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(body["schema"]))
    assert body["schemaType"] == "PROTOBUF" and fd.package == "fmt.test" and fd.message_type[0].name == "M"
    assert http.get(f"/schemas/ids/{sid}").json()["schema"] == PROTO_V1
    version = http.get(f"/subjects/{subject}/versions/2", params={"format": "serialized"}).json()
    assert len(descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(version["schema"])).message_type[0]
               .field) == 2
    r = http.post(f"/subjects/{subject}/versions", json={"schema": PROTO_BAD, "schemaType": "PROTOBUF"})
    assert r.status_code == 409 and r.json()["error_code"] == 409
    r = http.post(f"/subjects/{subject}/versions", json={"schema": "message {", "schemaType": "PROTOBUF"})
    assert r.status_code == 422 and r.json()["error_code"] == 42201
    assert http.get("/schemas/types").json() == ["JSON", "PROTOBUF", "AVRO"]


def test_references_for_each_type(sr: SchemaRegistryClient, http: httpx.Client) -> None:
    base = _subject("ref")
    # Avro: a record type used by name
    inner = json.dumps({"type": "record", "name": "Inner", "namespace": "fmt", "fields": [{"name": "x",
                                                                                            "type": "int"}]})
    sr.register_schema(base, Schema(inner, "AVRO"))
    outer = json.dumps({"type": "record", "name": "Outer", "namespace": "fmt", "fields": [{"name": "i",
                                                                                            "type": "fmt.Inner"}]})
    subject = _subject()
    refs = [SchemaReference("fmt.Inner", base, 1)]
    sid = sr.register_schema(subject, Schema(outer, "AVRO", refs))
    got = http.get(f"/subjects/{subject}/versions/latest").json()
    assert got["references"] == [{"name": "fmt.Inner", "subject": base, "version": 1}]
    assert http.get(f"/schemas/ids/{sid}").json()["references"] == got["references"]
    assert sr.lookup_schema(subject, Schema(outer, "AVRO", refs)).schema_id == sid
    assert http.get(f"/subjects/{base}/versions/1/referencedby").json() == [sid]
    # a referenced version cannot be deleted
    r = http.delete(f"/subjects/{base}/versions/1")
    assert r.status_code == 422 and r.json()["error_code"] == 42206
    # without its reference the schema does not parse; a missing reference is refused
    r = http.post(f"/subjects/{_subject()}/versions", json={"schema": outer})
    assert r.status_code == 422 and r.json()["error_code"] == 42201
    r = http.post(f"/subjects/{_subject()}/versions",
                  json={"schema": outer, "references": [{"name": "fmt.Inner", "subject": "nope", "version": 1}]})
    assert r.status_code == 422 and r.json()["error_code"] == 42201
    # Protobuf: an import
    common = _subject("common")
    sr.register_schema(common, Schema('syntax = "proto3";\npackage fmt.common;\nmessage C { string c = 1; }\n',
                                      "PROTOBUF"))
    main = 'syntax = "proto3";\npackage fmt.main;\nimport "fmt/common.proto";\nmessage M { fmt.common.C c = 1; }\n'
    psid = sr.register_schema(_subject(), Schema(main, "PROTOBUF", [SchemaReference("fmt/common.proto", common, 1)]))
    body = http.get(f"/schemas/ids/{psid}", params={"format": "serialized"}).json()
    assert list(descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(body["schema"])).dependency) == [
        "fmt/common.proto"]
    # JSON Schema: a $ref to another subject's schema
    address = _subject("address")
    sr.register_schema(address, Schema(_closed({"city": {"type": "string"}}), "JSON"))
    person = json.dumps({"type": "object", "properties": {"home": {"$ref": "address.json"}}})
    assert sr.register_schema(_subject(), Schema(person, "JSON", [SchemaReference("address.json", address, 1)]))


def test_schemas_listing(sr: SchemaRegistryClient, http: httpx.Client) -> None:
    prefix = f"list{uuid.uuid4().hex[:8]}"
    sr.register_schema(f"{prefix}-a", Schema(_closed({"a": {"type": "string"}}), "JSON"))
    sr.register_schema(f"{prefix}-a", Schema(_closed({"a": {"type": "string"}, "b": {"type": "string"}}), "JSON"))
    sr.register_schema(f"{prefix}-b", Schema(PROTO_V1, "PROTOBUF"))
    every = http.get("/schemas", params={"subjectPrefix": prefix}).json()
    assert [(s["subject"], s["version"]) for s in every] == [(f"{prefix}-a", 1), (f"{prefix}-a", 2), (f"{prefix}-b", 1)]
    assert every[2]["schemaType"] == "PROTOBUF"
    latest = http.get("/schemas", params={"subjectPrefix": prefix, "latestOnly": "true"}).json()
    assert [(s["subject"], s["version"]) for s in latest] == [(f"{prefix}-a", 2), (f"{prefix}-b", 1)]
    page = http.get("/schemas", params={"subjectPrefix": prefix, "offset": 1, "limit": 1}).json()
    assert [(s["subject"], s["version"]) for s in page] == [(f"{prefix}-a", 2)]


def test_mode_readonly_and_import_per_subject(sr: SchemaRegistryClient, http: httpx.Client) -> None:
    assert http.get("/mode").json() == {"mode": "READWRITE"}
    subject = _subject()
    sr.register_schema(subject, Schema(PROTO_V1, "PROTOBUF"))
    r = http.get(f"/mode/{subject}")
    assert r.status_code == 404 and r.json()["error_code"] == 40409
    assert http.get(f"/mode/{subject}", params={"defaultToGlobal": "true"}).json() == {"mode": "READWRITE"}
    assert http.put(f"/mode/{subject}", json={"mode": "READONLY"}).json() == {"mode": "READONLY"}
    r = http.post(f"/subjects/{subject}/versions", json={"schema": PROTO_V2, "schemaType": "PROTOBUF"})
    assert r.status_code == 422 and r.json()["error_code"] == 42205
    assert http.delete(f"/subjects/{subject}").status_code == 422
    assert http.delete(f"/mode/{subject}").json() == {"mode": "READONLY"}
    assert sr.register_schema(subject, Schema(PROTO_V2, "PROTOBUF"))
    r = http.put(f"/mode/{subject}", json={"mode": "SOMETIMES"})
    assert r.status_code == 422 and r.json()["error_code"] == 42204
    # IMPORT: refused on a subject with schemas unless forced; an empty one keeps the given ids
    r = http.put(f"/mode/{subject}", json={"mode": "IMPORT"})
    assert r.status_code == 422 and r.json()["error_code"] == 42205
    imported = _subject()
    assert http.put(f"/mode/{imported}", json={"mode": "IMPORT"}).json() == {"mode": "IMPORT"}
    body = {"schema": _closed({"z": {"type": "string"}}), "schemaType": "JSON", "id": 90001, "version": 7}
    assert http.post(f"/subjects/{imported}/versions", json=body).json() == {"id": 90001}
    assert http.get(f"/subjects/{imported}/versions/7").json()["id"] == 90001
    clash = {"schema": PROTO_V1, "schemaType": "PROTOBUF", "id": 90001, "version": 8}
    r = http.post(f"/subjects/{imported}/versions", json=clash)
    assert r.status_code == 422 and r.json()["error_code"] == 42207
    http.delete(f"/mode/{imported}")
    r = http.post(f"/subjects/{imported}/versions", json={**body, "id": 90002, "version": 9})
    assert r.status_code == 422 and r.json()["error_code"] == 42205  # ids only in IMPORT mode


def test_normalize_makes_key_order_one_schema(http: httpx.Client) -> None:
    subject = _subject()
    a = '{"type":"object","properties":{"a":{"type":"string"}}}'
    b = '{"properties":{"a":{"type":"string"}},"type":"object"}'
    first = http.post(f"/subjects/{subject}/versions", json={"schema": a, "schemaType": "JSON"}).json()["id"]
    r = http.post(f"/subjects/{subject}", json={"schema": b, "schemaType": "JSON"})
    assert r.status_code == 404 and r.json()["error_code"] == 40403  # another schema as written
    other = _subject()
    normal = http.post(f"/subjects/{other}/versions?normalize=true", json={"schema": b, "schemaType": "JSON"}).json()
    again = http.post(f"/subjects/{other}/versions?normalize=true", json={"schema": a, "schemaType": "JSON"}).json()
    assert normal == again and normal["id"] != first
    assert http.get(f"/subjects/{other}/versions").json() == [1]
    assert http.post(f"/subjects/{other}?normalize=true", json={"schema": a, "schemaType": "JSON"}).status_code == 200


def test_unknown_schema_type_is_refused(http: httpx.Client) -> None:
    r = http.post(f"/subjects/{_subject()}/versions", json={"schema": "x", "schemaType": "XML"})
    assert r.status_code == 422 and r.json()["error_code"] == 42201


def test_sr_errors_are_confluents(sr: SchemaRegistryClient) -> None:
    with pytest.raises(SchemaRegistryError) as e:
        sr.get_version(_subject(), 1)
    assert e.value.error_code == 40401


TYPES = {
    "JSON": (_closed({"a": {"type": "string"}}), _closed({"a": {"type": "string"}, "b": {"type": "integer"}}),
             json.dumps({"type": "object", "properties": {"a": {"type": "string"}}})),
    "PROTOBUF": (PROTO_V1, PROTO_V2, PROTO_BAD),
}


@pytest.mark.parametrize("schema_type", sorted(TYPES))
def test_every_subject_endpoint_with_the_type(schema_type: str, http: httpx.Client) -> None:
    """register, versions, raw schema, ids' subjects and versions, per-subject config, and the
    soft then permanent deletes, with a non-Avro type (the bodies carry its schemaType)."""
    tag = uuid.uuid4().hex[:8]  # schemas of this test alone: ids are shared by equal schemas
    v1, v2, other = (t.replace("fmt.test", f"fmt.t{tag}").replace('"object"', f'"object", "title": "t{tag}"')
                     for t in TYPES[schema_type])
    subject = _subject()

    def register(schema: str) -> httpx.Response:
        return http.post(f"/subjects/{subject}/versions", json={"schema": schema, "schemaType": schema_type})

    id1 = register(v1).json()["id"]
    assert register(v1).json() == {"id": id1}  # the same schema again: the same id, no new version
    assert subject in http.get("/subjects").json()
    assert http.get(f"/subjects/{subject}/versions").json() == [1]
    assert http.get(f"/subjects/{subject}/versions/1/schema").text == v1
    assert http.get(f"/schemas/ids/{id1}/schema").text == v1
    assert http.get(f"/schemas/ids/{id1}/subjects").json() == [subject]
    assert http.get(f"/schemas/ids/{id1}/versions").json() == [{"subject": subject, "version": 1}]
    # FULL: the added field fits both ways for protobuf; JSON's closed model refuses it forward
    assert http.put(f"/config/{subject}", json={"compatibility": "FULL"}).json() == {"compatibility": "FULL"}
    r = register(v2)
    assert (r.status_code == 200) == (schema_type == "PROTOBUF"), r.text
    assert http.put(f"/config/{subject}", json={"compatibility": "NONE"}).status_code == 200
    id_other = register(other).json()["id"]  # anything goes under NONE
    versions = http.get(f"/subjects/{subject}/versions").json()
    assert http.get(f"/subjects/{subject}/versions/latest").json()["id"] == id_other
    # soft delete, then permanent, of the latest version; then the subject
    last = versions[-1]
    assert http.delete(f"/subjects/{subject}/versions/{last}").json() == last
    r = http.delete(f"/subjects/{subject}/versions/{last}")
    assert r.status_code == 404 and r.json()["error_code"] == 40406
    assert http.delete(f"/subjects/{subject}/versions/{last}", params={"permanent": "true"}).json() == last
    assert http.delete(f"/subjects/{subject}").json() == versions[:-1]
    r = http.get(f"/subjects/{subject}/versions")
    assert r.status_code == 404 and r.json()["error_code"] == 40401
    assert http.get(f"/schemas/ids/{id1}", params={"deleted": "true"}).json()["schemaType"] == schema_type


def test_protobuf_union_evolution_through_the_bridges_client(_registry: RegistryServer) -> None:  # noqa: F811
    """The bridge's own client against the registry, BACKWARD: a union that gains a branch
    before another keeps its oneof numbers and registers; a long field become a union is
    refused with one line naming the field and both types (docs/schemas.md, Evolution)."""
    from bridge.errors import SchemaError
    from bridge.registry.client import SchemaRegistryClient as BridgeClient
    from bridge.serde.formats.protobuf import proto_file

    def item(x: object) -> str:
        return json.dumps({"type": "record", "name": "Item", "namespace": "t",
                           "fields": [{"name": "id", "type": "string"}, {"name": "x", "type": x}]})

    widened, scalar = _subject(), _subject()
    with BridgeClient(_registry.url) as client:
        first = client.register(widened, proto_file(item(["null", "double", "string"])), "PROTOBUF")
        assert client.register(widened, proto_file(item(["null", "long", "double", "string"])), "PROTOBUF") != first
        client.register(scalar, proto_file(item(["null", "long"])), "PROTOBUF")
        with pytest.raises(SchemaError) as e:
            client.register(scalar, proto_file(item(["null", "long", "string"])), "PROTOBUF")
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"schema for subject '{scalar}' is incompatible")
    assert "FIELD_KIND_CHANGED t.Item.x (#2) from int64 to message t.Item_x_union" in message
