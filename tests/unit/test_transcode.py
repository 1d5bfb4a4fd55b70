"""The one-pass GetRecords → Avro transcoder: C and pure Python give identical output, equal to
the general path (orjson → from_stream_records → connectors.dynamodb.avro), and fastavro reads it
back to the original items. Pages are generated, then written by different JSON writers
(raw UTF-8, \\u escapes with surrogate pairs, whitespace, escaped slashes)."""

from __future__ import annotations

import base64
import gc
import io
import json
import os
import subprocess
import sys
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connectors.dynamodb.records as records_module
from bridge.errors import ConversionError
from bridge.serde.serializer import RecordSerializer
from connectors.dynamodb import transcode
from connectors.dynamodb.avro import encode_envelope, encode_key, item_from_avro
from connectors.dynamodb.envelope import envelope_schema
from connectors.dynamodb.records import PageReader, StreamContext, from_stream_records
from connectors.dynamodb.schemas import KeyField, avro_field_names, table_schemas
from tests.ddb_strategies import binaries, expected_item, items, numbers, strings
from tests.helpers import ROOT

TABLE, REGION, SHARD, TOPIC = "orders", "us-east-1", "shardId-7", "ddb.orders"
ARN = "arn:aws:dynamodb:us-east-1:1:table/orders/stream/x"
TS = 1_700_000_000_999
KEY_SETS = {
    "S+N": (("pk", "S"), ("sk", "N")),
    "B": (("id", "B"),),
    # key names that sanitise to the same Avro name (issue 11): C and Python must still agree
    "clash-dash": (("order-id", "S"), ("order_id", "N")),
    "clash-umlaut": (("ü", "S"), ("ö", "B")),
    "clash-digit": (("1st", "N"), ("_1st", "S")),
}

IMPLS = [pytest.param(transcode.PyTranscoder, id="python")]
if transcode.CTranscoder is not None:
    IMPLS.insert(0, pytest.param(transcode.CTranscoder, id="c"))
needs_c = pytest.mark.skipif(transcode.CTranscoder is None, reason="the C extension was not built here (no compiler?)")


def make(impl: Any, keys: tuple[tuple[str, str], ...] = KEY_SETS["S+N"], records: bool = False) -> Any:
    spec = (TOPIC, envelope_schema(TABLE, tuple(KeyField(n, t) for n, t in keys))) if records else None  # type: ignore[arg-type]
    return impl(keys, TABLE, REGION, ARN, SHARD, records=spec)


def as_fields(page: tuple[list[Any], str | None, str | None]) -> tuple[list[tuple[Any, ...]], str | None, str | None]:
    """A records-mode page with each record as its field values (C StreamRecord or SourceRecord)."""
    records, last, nxt = page
    return [tuple(getattr(r, f) for f in transcode.RECORD_FIELDS) for r in records], last, nxt


def ctx(keys: tuple[tuple[str, str], ...]) -> StreamContext:
    return StreamContext(TOPIC, TABLE, REGION, tuple(KeyField(n, t) for n, t in keys), ARN, SHARD)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- generated pages

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | strings,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(strings, c, max_size=3),
    max_leaves=6,
)
identities = st.sampled_from(
    [
        {"type": "Service", "principalId": "dynamodb.amazonaws.com"},  # the TTL docs' spelling
        {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"},  # the SDK model's
        {"type": "User", "principalId": "dynamodb.amazonaws.com"},
        {"type": None, "Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"},  # lower case wins, null
        {"type": "Service", "principalId": 5},
        {},
        None,
    ]
)
OMIT = object()


@st.composite
def stream_record(draw: st.DrawFn, keys: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    event = draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"]))
    key = {}
    for name, t in keys:
        key[name] = {t: draw({"S": strings, "N": numbers, "B": binaries}[t])}
    view = draw(st.sampled_from(["NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY"]))
    d: dict[str, Any] = {}
    fields: dict[str, Any] = {
        "ApproximateCreationDateTime": draw(
            st.sampled_from([OMIT, None]) | st.integers(0, 2**40) | st.floats(-1e12, 1e12, allow_nan=False)
        ),
        "Keys": key,
        "SequenceNumber": draw(st.from_regex(r"[1-9][0-9]{0,39}", fullmatch=True)),
        "SizeBytes": draw(st.integers(0, 800_000)),
        "StreamViewType": view,
        "x-unknown": draw(st.just(OMIT) | json_values),
    }
    if event != "REMOVE" and view in ("NEW_AND_OLD_IMAGES", "NEW_IMAGE"):
        fields["NewImage"] = {**draw(items), **key}
    if event != "INSERT" and view in ("NEW_AND_OLD_IMAGES", "OLD_IMAGE"):
        fields["OldImage"] = draw(st.just(None) | items.map(lambda i: {**i, **key}))
    for name in draw(st.permutations(list(fields))):
        if fields[name] is not OMIT:
            d[name] = fields[name]
    rec_fields: dict[str, Any] = {
        "awsRegion": draw(st.sampled_from([REGION, "eu-west-1", "", None, OMIT])),
        "dynamodb": d,
        "eventID": draw(st.just(OMIT) | st.none() | strings),
        "eventName": event,
        "eventSource": "aws:dynamodb",
        "eventVersion": "1.1",
        "userIdentity": draw(st.just(OMIT) | identities),
    }
    rec: dict[str, Any] = {}
    for name in draw(st.permutations(list(rec_fields))):
        if rec_fields[name] is not OMIT:
            rec[name] = rec_fields[name]
    return rec


def write(doc: dict[str, Any], style: str) -> bytes:
    if style == "orjson":
        return orjson.dumps(doc)
    if style == "ascii":  # every non-ASCII character as \uXXXX, astral ones as surrogate pairs
        return json.dumps(doc, ensure_ascii=True).encode()
    if style == "indent":
        return json.dumps(doc, ensure_ascii=False, indent=1).encode()
    # '/' only ever occurs inside JSON strings, so escaping every one keeps the meaning
    return json.dumps(doc, ensure_ascii=True).replace("/", "\\/").encode()


@st.composite
def pages(draw: st.DrawFn) -> tuple[tuple[tuple[str, str], ...], dict[str, Any], bytes]:
    keys = KEY_SETS[draw(st.sampled_from(sorted(KEY_SETS)))]
    doc: dict[str, Any] = {"Records": draw(st.lists(stream_record(keys), max_size=4))}
    nxt = draw(st.sampled_from(["arn:aws:dynamodb:...|1|AAAA/+==", None, OMIT]))
    if nxt is not OMIT:
        doc["NextShardIterator"] = nxt
    if draw(st.booleans()):
        doc = {"x-top": draw(json_values), **doc}
    return keys, doc, write(doc, draw(st.sampled_from(["orjson", "ascii", "indent", "slashes"])))


VALUE_SCHEMAS: dict[Any, Any] = {}


def value_schema(keys: tuple[tuple[str, str], ...]) -> Any:
    if keys not in VALUE_SCHEMAS:
        s = table_schemas(TABLE, tuple(KeyField(n, t) for n, t in keys))  # type: ignore[arg-type]
        VALUE_SCHEMAS[keys] = (
            fastavro.parse_schema(json.loads(s.key_schema)),
            fastavro.parse_schema(json.loads(s.value_schema)),
        )
    return VALUE_SCHEMAS[keys]


def read(schema: Any, data: bytes) -> Any:
    buf = io.BytesIO(data)
    out = fastavro.schemaless_reader(buf, schema, schema)
    assert buf.tell() == len(data)
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(page=pages())
def test_generated_pages(page: tuple[tuple[tuple[str, str], ...], dict[str, Any], bytes]) -> None:
    keys, doc, body = page
    out, last, nxt = make(transcode.PyTranscoder, keys).page(body, TS)
    if transcode.CTranscoder is not None:  # the C twin: the very same output, tuples and records
        assert make(transcode.CTranscoder, keys).page(body, TS) == (out, last, nxt)
        assert as_fields(make(transcode.CTranscoder, keys, records=True).page(body, TS)) == as_fields(
            make(transcode.PyTranscoder, keys, records=True).page(body, TS)
        )

    raw = doc["Records"]
    assert nxt == doc.get("NextShardIterator")
    assert last == (raw[-1]["dynamodb"]["SequenceNumber"] if raw else None)
    # the general path gives the same bytes and the same source block
    general = [r for r in from_stream_records(orjson.loads(body)["Records"], ctx(keys)) if not r.tombstone]
    assert len(general) == len(out) == len(raw)
    key_schema, schema = value_schema(keys)
    for (op, key, source, key_avro, value_avro), g, r in zip(out, general, raw, strict=True):
        assert (op, key, source) == (g.op, g.key, g.source)
        assert key_avro == encode_key(g.key_fields, g.key)
        assert value_avro == encode_envelope(g.op, g.before, g.after, g.source, TS)
        # and fastavro reads back the original items
        v = read(schema, value_avro)
        assert v["op"] == op and v["ts_ms"] == TS
        assert item_from_avro(v["before"]) == expected_item(r["dynamodb"].get("OldImage"))
        assert item_from_avro(v["after"]) == expected_item(r["dynamodb"].get("NewImage"))
        assert {k: v["source"][k] for k in source} == source
        k = read(key_schema, key_avro)
        for (name, t), field in zip(keys, avro_field_names([n for n, _ in keys]), strict=True):
            want = key[name][t]
            assert k[field] == (base64.b64decode(want) if t == "B" else want)


# --------------------------------------------------------------------------- hand-picked cases

GOOD = {"Keys": {"pk": {"S": "a"}, "sk": {"N": "1"}}, "SequenceNumber": "100"}


def body_with(record: dict[str, Any] | None = None, **dynamodb: Any) -> bytes:
    r = {"eventName": "INSERT", "dynamodb": {**GOOD, **dynamodb}} if record is None else record
    return orjson.dumps({"Records": [r], "NextShardIterator": "it"})


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("text", "want"),
    [
        (r'"a\"b\\c\/d\b\f\n\r\t"', 'a"b\\c/d\b\f\n\r\t'),
        (r'"\u0000\u001f\u00e9\u20ac"', "\x00\x1f\u00e9\u20ac"),
        (r'"\ud83d\ude00 \uD834\uDD1E"', "\U0001f600 \U0001d11e"),  # surrogate pairs, either case
        ('"ünï ✓ 😀"', "ünï ✓ 😀"),
        ('"' + "x" * 300 + '"', "x" * 300),
    ],
)
def test_string_escapes(impl: Any, text: str, want: str) -> None:
    body = ('{"Records":[{"eventName":"INSERT","dynamodb":{"Keys":{"pk":{"S":' + text + '},"sk":{"N":"1"}},'
            '"SequenceNumber":"1","NewImage":{' + text + ':{"S":' + text + "}}}}]}").encode()
    ((op, key, source, key_avro, value_avro),), _, nxt = make(impl).page(body, TS)
    assert key["pk"] == {"S": want} and nxt is None
    v = read(value_schema(KEY_SETS["S+N"])[1], value_avro)
    assert item_from_avro(v["after"]) == {want: {"S": want}}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("number", "ms"), [("1700000000", 1_700_000_000_000), ("1.700000000123E9", 1_700_000_000_123),
                       ("1.7e+9", 1_700_000_000_000), ("-0.5", -500), ("0", 0), ("1e-400", 0)],
)
def test_creation_time_number_forms(impl: Any, number: str, ms: int) -> None:
    body = body_with().replace(b'"SequenceNumber"',
                               b'"ApproximateCreationDateTime":' + number.encode() + b',"SequenceNumber"')
    ((_, _, source, _, _),), _, _ = make(impl).page(body, TS)
    assert source["approximate_creation_ms"] == ms == int(float(number) * 1000)


@pytest.mark.parametrize("impl", IMPLS)
def test_block_counts_and_lengths_over_one_byte(impl: Any) -> None:
    """Counts from 64 and lengths from 64 bytes take two varint bytes (the C code writes the
    count after the elements); nested, so an inner block moves inside an outer one."""
    big = {f"a{i}": {"N": str(i)} for i in range(70)}
    image = {
        **GOOD["Keys"], **big,
        "l": {"L": [{"M": big}] + [{"S": "x" * i} for i in range(130)]},
        "ss": {"SS": [f"s{i}" for i in range(200)]},
        "bs": {"BS": [base64.b64encode(bytes(range(i % 256)) * 3).decode() for i in range(66)]},
        "b": {"B": base64.b64encode(bytes(300)).decode()},
    }
    old = {"m": {"M": {"inner": {"M": big}, "big": {"L": [{"NULL": True}] * 8200}}}}
    body = body_with(NewImage=image, OldImage=old)
    ((op, key, source, key_avro, value_avro),), _, _ = make(impl).page(body, TS)
    v = read(value_schema(KEY_SETS["S+N"])[1], value_avro)
    raw = orjson.loads(body)["Records"][0]["dynamodb"]
    assert item_from_avro(v["after"]) == expected_item(raw["NewImage"])
    assert item_from_avro(v["before"]) == expected_item(raw["OldImage"])
    assert value_avro == encode_envelope("c", raw["OldImage"], raw["NewImage"], source, TS)


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_and_endless_pages(impl: Any) -> None:
    t = make(impl)
    assert t.page(b'{"Records":[],"NextShardIterator":"x"}', TS) == ([], None, "x")
    assert t.page(b' {"Records":null} ', TS) == ([], None, None)
    assert t.page(b"{}", TS) == ([], None, None)


@pytest.mark.parametrize("impl", IMPLS)
def test_records_mode_adds_tombstones(impl: Any) -> None:
    body = orjson.dumps({"Records": [
        {"eventName": "REMOVE", "eventID": "e1", "dynamodb": {**GOOD, "OldImage": GOOD["Keys"]},
         "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"}},
        {"eventName": "MODIFY", "dynamodb": {**GOOD, "SequenceNumber": "101"}},
    ]})
    recs, last, nxt = make(impl, records=True).page(body, TS)
    assert [(r.op, r.tombstone, r.encoded_value is None) for r in recs] == [
        ("d", False, False), ("d", True, True), ("u", False, False)
    ]
    assert recs[0].source["ttl_delete"] is True and recs[0].source["event_id"] == "e1"
    assert recs[1].encoded_key == recs[0].encoded_key and recs[1].key == recs[0].key
    assert (last, nxt) == ("101", None)
    assert all(r.topic == TOPIC and r.table == TABLE and r.ts_ms == TS and r.before is r.after is None for r in recs)


BAD = {
    "not JSON": b"{nope",
    "empty body": b"",
    "trailing garbage": body_with() + b"x",
    "trailing comma": b'{"Records":[],}',
    "leading zero in an unknown field": b'{"x":01,"Records":[]}',
    "infinite number in an unknown field": b'{"x":1e400,"Records":[]}',
    "NaN": b'{"x":NaN,"Records":[]}',
    "lone high surrogate": body_with(NewImage={"a": {"S": "X"}}).replace(b'"X"', b'"\\ud800"'),
    "lone low surrogate": body_with(NewImage={"a": {"S": "X"}}).replace(b'"X"', b'"\\udc00x"'),
    "bad escape": body_with(NewImage={"a": {"S": "X"}}).replace(b'"X"', b'"\\x41"'),
    "raw control character": body_with(NewImage={"a": {"S": "X"}}).replace(b'"X"', b'"\x01"'),
    "invalid UTF-8": body_with(NewImage={"a": {"S": "X"}}).replace(b'"X"', b'"\xff"'),
    "encoded surrogate": body_with(NewImage={"a": {"S": "X"}}).replace(b'"X"', b'"\xed\xa0\x80"'),
    "overlong UTF-8": body_with(NewImage={"a": {"S": "X"}}).replace(b'"X"', b'"\xc0\xaf"'),
    "unknown type": body_with(NewImage={"a": {"Q": "1"}}),
    "two types": body_with(NewImage={"a": {"S": "1", "N": "1"}}),
    "no type": body_with(NewImage={"a": {}}),
    "S not a string": body_with(NewImage={"a": {"S": 1}}),
    "BOOL not a bool": body_with(NewImage={"a": {"BOOL": "true"}}),
    "NULL null": body_with(NewImage={"a": {"NULL": None}}),
    "SS not a list": body_with(NewImage={"a": {"SS": "abc"}}),
    "NS holds a number": body_with(NewImage={"a": {"NS": [1]}}),
    "M not an object": body_with(NewImage={"a": {"M": []}}),
    "L holds a bare value": body_with(NewImage={"a": {"L": ["x"]}}),
    "image not an object": body_with(NewImage=[]),
    "base64 unpadded": body_with(NewImage={"a": {"B": "AQ"}}),
    "base64 short padding": body_with(NewImage={"a": {"B": "AQ="}}),
    "base64 three pads": body_with(NewImage={"a": {"B": "A==="}}),
    "base64 bad character": body_with(NewImage={"a": {"BS": ["AQ*="]}}),
    "base64 padding inside": body_with(NewImage={"a": {"B": "AQ==AQ=="}}),
    "too deep": body_with(NewImage={"a": json.loads('{"L":[' * 101 + '{"S":"x"}' + "]}" * 101)}),
    "Keys missing": body_with({"eventName": "INSERT", "dynamodb": {"SequenceNumber": "1"}}),
    "key attribute missing": body_with(Keys={"pk": {"S": "a"}}),
    "key attribute of another type": body_with(Keys={"pk": {"S": "a"}, "sk": {"S": "1"}}),
    "key attribute not S/N/B": body_with(Keys={"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"M": {}}}),
    "Keys with an attribute not in the key": body_with(Keys={"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"S": "b"}}),
    "SequenceNumber missing": body_with({"eventName": "INSERT", "dynamodb": {"Keys": GOOD["Keys"]}}),
    "SequenceNumber a number": body_with(SequenceNumber=100),
    "creation time a string": body_with(ApproximateCreationDateTime="1700000000"),
    "creation time out of range": body_with(ApproximateCreationDateTime=1e17),
    "unknown eventName": body_with({"eventName": "UPSERT", "dynamodb": GOOD}),
    "eventName missing": body_with({"dynamodb": GOOD}),
    "dynamodb missing": body_with({"eventName": "INSERT"}),
    "dynamodb null": body_with({"eventName": "INSERT", "dynamodb": None}),
    "eventID a number": body_with({"eventName": "INSERT", "eventID": 5, "dynamodb": GOOD}),
    "awsRegion a list": body_with({"eventName": "INSERT", "awsRegion": [], "dynamodb": GOOD}),
    "userIdentity a string": body_with({"eventName": "REMOVE", "userIdentity": "x", "dynamodb": GOOD}),
    "record not an object": b'{"Records":[1]}',
    "Records an object": b'{"Records":{}}',
    "NextShardIterator a number": b'{"Records":[],"NextShardIterator":1}',
    "top level an array": b"[]",
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", sorted(BAD))
def test_refuses_what_the_general_path_must_handle(impl: Any, case: str) -> None:
    with pytest.raises(ValueError, match="GetRecords page"):
        make(impl).page(BAD[case], TS)


@pytest.mark.parametrize("impl", IMPLS)
def test_binary_key_must_be_canonical_base64(impl: Any) -> None:
    t = make(impl, KEY_SETS["B"])
    record = {"eventName": "INSERT", "dynamodb": {"Keys": {"id": {"B": "AQI="}}, "SequenceNumber": "1"}}
    good = orjson.dumps({"Records": [record]})
    ((_, _, _, key_avro, _),), _, _ = t.page(good, TS)
    assert key_avro == b"\x04\x01\x02"
    with pytest.raises(ValueError, match="GetRecords page"):
        t.page(good.replace(b"AQI=", b"AQI"), TS)


@pytest.mark.parametrize("impl", IMPLS)
def test_constructor_checks_key_fields(impl: Any) -> None:
    with pytest.raises(ValueError, match="expected S, N or B"):
        impl((("pk", "M"),), TABLE, REGION, ARN, SHARD)
    with pytest.raises(ValueError, match="at least one"):
        impl((), TABLE, REGION, ARN, SHARD)


@needs_c
@pytest.mark.skipif(os.environ.get("BRIDGE_PURE_PYTHON") == "1", reason="the reader uses the twin then")
def test_c_refuses_a_name_given_twice_and_the_reader_falls_back() -> None:
    """A dict keeps the last of two equal names (at the first one's place); only the general
    path can mirror that, so the C transcoder refuses the page and the reader falls back."""
    def with_image(members: bytes) -> bytes:
        return body_with().replace(b'"SequenceNumber"', b'"NewImage":{' + members + b'},"SequenceNumber"')

    body = with_image(b'"a":{"S":"1"},"b":{"N":"2"},"a":{"S":"3"}')
    with pytest.raises(ValueError, match="repeated"):
        make(transcode.CTranscoder).page(body, TS)
    many = ",".join(f'"k{i}":{{"N":"{i}"}}' for i in range(40)) + ',"k7":{"N":"x"}'
    with pytest.raises(ValueError, match="repeated"):
        make(transcode.CTranscoder).page(with_image(many.encode()), TS)
    twice = body_with().replace(b'"sk":{"N":"1"}', b'"sk":{"N":"1"},"pk":{"S":"b"}')
    with pytest.raises(ValueError, match="given twice"):
        make(transcode.CTranscoder).page(twice, TS)
    assert PageReader(ctx(KEY_SETS["S+N"])).read(twice)[0][0].key == {"pk": {"S": "b"}, "sk": {"N": "1"}}
    records, last, nxt = PageReader(ctx(KEY_SETS["S+N"])).read(body)
    assert records[0].after == {"a": {"S": "3"}, "b": {"N": "2"}} and records[0].encoded_value is None
    assert (last, nxt) == ("100", "it")
    # the Python twin cannot see the repetition (orjson keeps the last): same bytes as the fallback
    ((_, _, source, _, value_avro),), _, _ = make(transcode.PyTranscoder).page(body, TS)
    assert value_avro == encode_envelope("c", None, records[0].after, source, TS)


class _Registry:
    def register(self, subject: str, schema_str: str) -> int:
        return 7

    def lookup(self, subject: str, schema_str: str) -> Any:
        return None


def test_page_reader_falls_back_to_the_general_path() -> None:
    """A page the transcoder refuses still reads; the bad record fails to serialize alone
    (a ConversionError: the dead-letter topic), its neighbours encode as before."""
    good = {"eventName": "INSERT", "dynamodb": {**GOOD, "NewImage": {"v": {"N": "1"}}}}
    bad = {"eventName": "INSERT", "dynamodb": {**GOOD, "SequenceNumber": "101", "NewImage": {"v": {"Q": "1"}}}}
    body = orjson.dumps({"Records": [good, bad], "NextShardIterator": "it"})
    reader = PageReader(ctx(KEY_SETS["S+N"]))
    records, last, nxt = reader.read(body)
    assert (last, nxt) == ("101", "it") and [r.encoded_value for r in records] == [None, None]
    serializer = RecordSerializer(_Registry(), frame_encoded=transcode.frame_records)
    serializer.prepare(records[0])
    key, value = serializer.serialize(records[0])
    assert value is not None and value[:5] == b"\x00\x00\x00\x00\x07"
    with pytest.raises(ConversionError):
        serializer.serialize(records[1])
    # the same good record through the one-pass way (where built) frames to the very same bytes
    (fast,), _, _ = reader.read(orjson.dumps({"Records": [good]}))
    assert (fast.encoded_value is not None) is (transcode.Transcoder is not None)
    assert serializer.serialize(fast)[0] == key
    assert serializer.serialize(fast)[1] == value[:5] + encode_envelope("c", None, good["dynamodb"]["NewImage"],
                                                                      fast.source, fast.ts_ms)
    # serialize_batch (framed in C where built) gives what serialize gives, record by record
    remove = {"eventName": "REMOVE", "dynamodb": {**GOOD, "SequenceNumber": "102", "OldImage": GOOD["Keys"]}}
    page, _, _ = reader.read(orjson.dumps({"Records": [good, remove]}))
    batch = serializer.serialize_batch(page)
    assert list(zip(batch.keys, batch.values, strict=True)) == [serializer.serialize(r) for r in page]
    assert batch.payload == sum(len(m) for m in batch.keys + batch.values if m) and not batch.errors


@needs_c
def test_c_records_stay_out_of_the_collector() -> None:
    """Tens of thousands wait for the broker at once: no GC tracking, no dicts until asked."""
    body = orjson.dumps({"Records": [
        {"eventName": "REMOVE", "eventID": "e1", "awsRegion": "eu-west-1", "dynamodb": {
            **GOOD, "ApproximateCreationDateTime": 1700000000.5, "OldImage": GOOD["Keys"]},
         "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"}},
    ]})
    recs, _, _ = make(transcode.CTranscoder, records=True).page(body, TS)
    assert not any(gc.is_tracked(r) for r in recs)
    assert type(recs[0]).__name__ == "StreamRecord" and "sequence_number='100'" in repr(recs[1])
    general = from_stream_records(orjson.loads(body)["Records"], ctx(KEY_SETS["S+N"]))
    assert [(r.key, r.source, r.tombstone) for r in recs] == [(g.key, g.source, g.tombstone) for g in general]
    assert recs[0].source["region"] == "eu-west-1" and recs[0].source["approximate_creation_ms"] == 1700000000500
    assert recs[0].key is not recs[0].key  # built on each read, not kept


@needs_c
def test_frame_records_writes_headers_once_and_never_changes_a_message_handed_out() -> None:
    body = orjson.dumps({"Records": [
        {"eventName": "REMOVE", "dynamodb": {**GOOD, "OldImage": GOOD["Keys"]}},
        {"eventName": "MODIFY", "dynamodb": {**GOOD, "SequenceNumber": "101", "NewImage": {"v": {"N": "2"}}}},
    ]})
    recs, _, _ = make(transcode.CTranscoder, records=True).page(body, TS)
    bodies = [(r.encoded_key, r.encoded_value) for r in recs]
    h1, h2 = (b"\0\0\0\0\x07", b"\0\0\0\0\x08"), (b"\0\0\0\x01\x00", b"\0\0\0\x01\x01")
    keys, values, payload = transcode.frame_records(recs, *h1)
    assert keys == [h1[0] + k for k, _ in bodies]
    assert values == [None if v is None else h1[1] + v for _, v in bodies]
    assert payload == sum(len(m) for m in keys + values if m is not None)
    assert transcode.frame_records(recs, *h1)[0][0] is keys[0]  # the same header again: no copy
    keys2, values2, _ = transcode.frame_records(recs, *h2)  # another header: copies, the first stay
    assert keys2 == [h2[0] + k for k, _ in bodies] and keys == [h1[0] + k for k, _ in bodies]
    assert values2[2] == h2[1] + bodies[2][1] and values[2] == h1[1] + bodies[2][1]
    assert [(r.encoded_key, r.encoded_value) for r in recs] == bodies  # bodies are unchanged
    general = from_stream_records(orjson.loads(body)["Records"], ctx(KEY_SETS["S+N"]))
    assert transcode.frame_records(recs + general[:1], *h1) is None  # not all its records: caller frames


def test_one_pass_records_are_on() -> None:
    """SourceRecord's fields are still those of the C transcoder's records (else the reader
    builds records in Python, correct but slower: update RECORD_FIELDS and StreamRecord)."""
    assert records_module.RECORDS_IN_ONE_PASS


@needs_c
@pytest.mark.skipif(os.environ.get("BRIDGE_PURE_PYTHON") == "1", reason="BRIDGE_PURE_PYTHON=1 asks for the fallback")
def test_the_c_extension_is_the_default() -> None:
    assert transcode.Transcoder is transcode.CTranscoder and transcode.IMPLEMENTATION == "c"


# The start-up line says which transcoder runs (issue 18: an image built without setup.py ran
# the pure-Python one, ~14x slower, and nothing said so). Each case in a fresh interpreter,
# since the choice is made once, at import.
_STARTUP_LINE = (
    "import json, logging, sys\n"
    "{prelude}\n"
    "from connectors.dynamodb.transcode import startup_line\n"
    "level, line = startup_line()\n"
    "print(json.dumps([logging.getLevelName(level), line]))\n"
)
# A meta path finder that finds no compiled extension: what an install without a compiler has.
_NOT_BUILT = (
    "class NotBuilt:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'connectors.dynamodb._transcode':\n"
    "            raise ImportError('No module named connectors.dynamodb._transcode')\n"
    "sys.meta_path.insert(0, NotBuilt())"
)


def _startup_line(prelude: str = "", **env: str) -> tuple[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != "BRIDGE_PURE_PYTHON"} | env
    proc = subprocess.run([sys.executable, "-c", _STARTUP_LINE.format(prelude=prelude)], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    level, line = json.loads(proc.stdout)
    return level, line


@needs_c
def test_startup_line_names_the_c_transcoder() -> None:
    level, line = _startup_line()
    assert level == "INFO" and line.startswith("transcoder: C (") and "_transcode" in line, line


def test_startup_line_warns_when_the_extension_is_not_built() -> None:
    level, line = _startup_line(_NOT_BUILT)
    assert level == "WARNING", line
    assert "pure Python" in line and "not built" in line and "compiler" in line and "docker/Dockerfile" in line, line


def test_startup_line_warns_when_pure_python_is_asked_for() -> None:
    level, line = _startup_line(BRIDGE_PURE_PYTHON="1")
    assert level == "WARNING" and "BRIDGE_PURE_PYTHON=1" in line and "unset BRIDGE_PURE_PYTHON" in line, line
