"""Malformed stream records and attribute values are conversion errors, never a crash (issue 18, bug 12).

moto wrote an item holding a map key ``""`` as ``{"M": {"S": "v"}}``: not an AttributeValue.
The general path (orjson → ``from_stream_records`` → ``connectors.dynamodb.avro``) stopped the bridge
with ``unexpected TypeError ... (a bug in the bridge)``. Now, for any input:

- the general path never raises anything but ConversionError for a record (which sends it to
  the dead-letter topic, or stops the worker with one line naming its shard and sequence);
- the C transcoder and its Python twin refuse (ValueError: the page goes the general way)
  exactly the pages where the general path finds a record that does not convert, and
  otherwise give the very same bytes as each other and as the general path.

Pages are generated property-based: every shape of wrong AttributeValue (wrong container
types, unknown tags, two tags, non-string S, bad base64, empty sets, nested garbage),
non-object images, missing or wrong Keys, wrong record fields.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge.errors import ConversionError
from bridge.serde.serializer import RecordSerializer
from connectors.dynamodb import transcode
from connectors.dynamodb.avro import MAX_ATTRIBUTE_DEPTH, encode_envelope, encode_item, encode_key
from connectors.dynamodb.envelope import UnreadableChange
from connectors.dynamodb.records import PageReader, StreamContext, from_stream_records
from connectors.dynamodb.schemas import KeyField
from tests.ddb_strategies import attribute_values, binaries, numbers, strings

TABLE, REGION, SHARD, TOPIC = "orders", "us-east-1", "shardId-7", "ddb.orders"
ARN = "arn:aws:dynamodb:us-east-1:1:table/orders/stream/x"
TS = 1_700_000_000_999
KEYS = (("pk", "S"), ("sk", "N"))
BKEYS = (("id", "B"),)

IMPLS = [transcode.PyTranscoder] + ([transcode.CTranscoder] if transcode.CTranscoder is not None else [])


class _Registry:
    def register(self, subject: str, schema_str: str) -> int:
        return 7

    def lookup(self, subject: str, schema_str: str) -> Any:
        return None


def _ctx(keys: tuple[tuple[str, str], ...]) -> StreamContext:
    return StreamContext(TOPIC, TABLE, REGION, tuple(KeyField(n, t) for n, t in keys), ARN, SHARD)  # type: ignore[arg-type]


def general(raw: list[Any], keys: tuple[tuple[str, str], ...]) -> list[bytes | ConversionError]:
    """Each record the general path makes from ``raw``: its framed value (key for a tombstone), or its error.

    Values are written at the transcoders' ``TS`` so that the bytes compare."""
    serializer = RecordSerializer(_Registry())
    out: list[bytes | ConversionError] = []
    for record in from_stream_records(raw, _ctx(keys)):
        record.ts_ms = TS
        serializer.prepare(record)
        try:
            key, value = serializer.serialize(record)
        except ConversionError as e:
            out.append(e)
        else:
            out.append(key if value is None else value)
    return out


def transcoded(impl: Any, body: bytes, keys: tuple[tuple[str, str], ...]) -> Any:
    try:
        return impl(keys, TABLE, REGION, ARN, SHARD).page(body, TS)
    except ValueError as e:
        assert str(e).startswith("GetRecords page"), e
        return ValueError


# --------------------------------------------------------------------------- strategies

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False,
                                                                                          allow_infinity=False) | strings
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(strings, c, max_size=3),
                           max_leaves=5)
tags = st.sampled_from(["S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"])
any_tags = tags | st.sampled_from(["", "s", "SSS", "Q", "B64", "null"]) | strings
bad_base64 = st.sampled_from(["AQ", "AQ=", "A===", "AQ*=", "AQ==AQ==", "é", " AQ==", "AQ==\n", "====", "A"])


def malformed_leaves() -> st.SearchStrategy[Any]:
    return st.one_of(
        json_values,  # not an object at all (a list where a map was expected, a bare string, ...)
        st.just({}),  # no type
        st.dictionaries(tags, json_values, min_size=2, max_size=3),  # two (or three) types
        st.builds(lambda t, v: {t: v}, any_tags, json_values),  # one type, any value
        st.builds(lambda t, v: {t: v}, st.sampled_from(["B"]), bad_base64),
        st.builds(lambda v: {"BS": v}, st.lists(bad_base64 | binaries, min_size=1, max_size=3)),
        st.builds(lambda t: {t: []}, st.sampled_from(["SS", "NS", "BS", "L"])),  # empty sets (and list)
        st.builds(lambda v: {"N": v}, strings | st.sampled_from(["", "1e", "--1", "0x1F", "NaN", "1,5"])),
        st.builds(lambda t, v: {t: v}, st.sampled_from(["S", "N", "SS", "NS"]), json_scalars),
        st.builds(lambda v: {"SS": v}, st.lists(json_scalars, min_size=1, max_size=3)),
        st.builds(lambda v: {"S": v, "": None}, strings),
        attribute_values,  # and good ones among them
    )


malformed_avs = st.recursive(
    malformed_leaves(),
    lambda c: st.one_of(
        st.lists(c, max_size=3).map(lambda v: {"L": v}),
        st.dictionaries(strings, c, max_size=3).map(lambda v: {"M": v}),
        st.lists(c, max_size=3).map(lambda v: {"M": v}),  # a list where a map was expected
        st.dictionaries(strings, c, max_size=3).map(lambda v: {"L": v}),
        st.dictionaries(strings, c, max_size=2).map(lambda v: {"M": v, "L": [v]}),
    ),
    max_leaves=8,
)
images = st.dictionaries(strings, malformed_avs, max_size=4) | json_values | st.just(None)
OMIT = object()


@st.composite
def malformed_records(draw: st.DrawFn, keys: tuple[tuple[str, str], ...]) -> Any:
    if draw(st.integers(0, 20)) == 0:
        return draw(json_values)  # not even an object
    good = {"S": strings, "N": numbers, "B": binaries}
    key: Any = {n: {t: draw(good[t])} for n, t in keys}
    mutation = draw(st.sampled_from(["none", "none", "none", "key-av", "key-drop", "key-extra", "keys-junk",
                                     "keys-omit"]))
    if mutation == "key-av":
        key[keys[0][0]] = draw(malformed_avs)
    elif mutation == "key-drop":
        key.pop(keys[-1][0])
    elif mutation == "key-extra":
        key["extra"] = draw(malformed_avs)
    elif mutation == "keys-junk":
        key = draw(json_values)
    fields: dict[str, Any] = {
        "Keys": OMIT if mutation == "keys-omit" else key,
        "SequenceNumber": draw(st.from_regex(r"[1-9][0-9]{0,20}", fullmatch=True) | st.just(OMIT) | json_scalars),
        "NewImage": draw(st.just(OMIT) | images),
        "OldImage": draw(st.just(OMIT) | images),
        "ApproximateCreationDateTime": draw(st.just(OMIT) | st.just(None) | json_scalars),
    }
    d: Any = {k: v for k, v in fields.items() if v is not OMIT}
    if draw(st.integers(0, 15)) == 0:
        d = draw(json_values)
    rec: dict[str, Any] = {
        "eventName": draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"]) | st.just(OMIT) | json_scalars),
        "dynamodb": d,
        "eventID": draw(st.just(OMIT) | st.none() | strings | json_scalars),
        "awsRegion": draw(st.just(OMIT) | st.sampled_from([REGION, ""]) | json_scalars),
        "userIdentity": draw(st.just(OMIT) | st.none() | json_values),
    }
    return {k: v for k, v in rec.items() if v is not OMIT}


def _has_extra_key_attribute(record: Any, keys: tuple[tuple[str, str], ...]) -> bool:
    """Keys naming an attribute outside the table's key: the transcoders refuse such a page,
    the general path takes the key it needs (both are right; the page goes the general way)."""
    d = record.get("dynamodb") if type(record) is dict else None
    k = d.get("Keys") if type(d) is dict else None
    return type(k) is dict and any(n not in dict(keys) for n in k)


def _binary_key_differs_from_image(record: Any, keys: tuple[tuple[str, str], ...]) -> bool:
    """A binary key whose bytes in Keys differ from an image's (moto): the transcoders refuse
    the page, the general path takes the image's key (tested below)."""
    d = record.get("dynamodb") if type(record) is dict else None
    k = d.get("Keys") if type(d) is dict else None
    if type(k) is not dict:
        return False
    for name, t in keys:
        kv = k.get(name, {}).get("B") if t == "B" and type(k.get(name)) is dict else None
        for image in (d.get("NewImage"), d.get("OldImage")):
            av = image.get(name) if type(image) is dict else None
            iv = av.get("B") if type(av) is dict and len(av) == 1 else None
            if type(kv) is str and type(iv) is str and kv != iv:
                return True
    return False


# --------------------------------------------------------------------------- properties

MOTO_EMPTY_MAP_KEY = {"eventName": "INSERT", "dynamodb": {
    "Keys": {"pk": {"S": "x"}, "sk": {"N": "1"}}, "SequenceNumber": "11",
    "NewImage": {"pk": {"S": "x"}, "sk": {"N": "1"}, "m": {"M": {"S": "v"}}}}}
LIST_AS_AV = {"eventName": "MODIFY", "dynamodb": {
    "Keys": {"pk": {"S": "x"}, "sk": {"N": "1"}}, "SequenceNumber": "12",
    "OldImage": {"m": [{"S": "a"}, {"S": "b"}]}}}  # sorted(av) raised TypeError here


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(keys=st.sampled_from([KEYS, BKEYS]), data=st.data())
@example(keys=KEYS, data=None)
def test_any_record_converts_or_is_a_conversion_error_and_all_paths_agree(keys: Any, data: Any) -> None:
    records = [MOTO_EMPTY_MAP_KEY, LIST_AS_AV] if data is None else data.draw(
        st.lists(malformed_records(keys), min_size=1, max_size=3))
    for record in records:
        body = orjson.dumps({"Records": [record], "NextShardIterator": "it"})
        out = general([record], keys)  # raises nothing but ConversionError, caught per record
        assert out, "every record is handed on (converted, or as its conversion error)"
        failed = any(isinstance(x, ConversionError) for x in out)
        results = [transcoded(impl, body, keys) for impl in IMPLS]
        assert all(r == results[0] for r in results), "C and the Python twin disagree"
        if _has_extra_key_attribute(record, keys) or _binary_key_differs_from_image(record, keys):
            continue
        refused = results[0] is ValueError
        assert refused == failed, (record, results[0], out)
        if not refused:  # the same bytes on every path
            page, _, _ = results[0]
            values = [x for x in out if isinstance(x, bytes)]
            assert [value for (_, _, _, _, value) in page] == [v[5:] for v in values[: len(page)]]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(item=st.dictionaries(strings, malformed_avs, max_size=4) | json_values)
def test_the_encoder_of_scan_and_export_items_refuses_with_conversion_errors_only(item: Any) -> None:
    try:
        encode_item(item)
    except ConversionError:
        pass
    try:
        encode_key((KeyField("m", "S"),), item)
    except ConversionError:
        pass


def _nested(kind: str, levels: int, leaf: dict[str, Any]) -> dict[str, Any]:
    av: dict[str, Any] = leaf
    for _ in range(levels - 1):
        av = {"L": [av]} if kind == "L" else {"M": {"a": av}}
    return av


@pytest.mark.parametrize("leaf", [{"S": "x"}, {"M": {}}, {"L": []}], ids=["S", "empty-M", "empty-L"])
@pytest.mark.parametrize("kind", ["L", "M"])
@pytest.mark.parametrize("levels", [MAX_ATTRIBUTE_DEPTH, MAX_ATTRIBUTE_DEPTH + 1, 400])
def test_depth_limit_is_the_same_everywhere_and_never_a_recursion_error(kind: str, levels: int, leaf: Any) -> None:
    record = {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "a"}, "sk": {"N": "1"}}, "SequenceNumber": "5",
                                                  "NewImage": {"deep": _nested(kind, levels, leaf)}}}
    (out,) = general([record], KEYS)
    results = [transcoded(impl, json.dumps({"Records": [record]}).encode(), KEYS) for impl in IMPLS]
    assert all(r == results[0] for r in results)
    assert isinstance(out, ConversionError) == (levels > MAX_ATTRIBUTE_DEPTH) == (results[0] is ValueError)


def test_an_unreadable_record_names_its_shard_and_sequence_and_keeps_its_neighbours() -> None:
    good = {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "a"}, "sk": {"N": "1"}}, "SequenceNumber": "9"}}
    bad = {"eventName": "INSERT", "dynamodb": {"SequenceNumber": "10"}}  # no Keys
    body = orjson.dumps({"Records": [good, bad, [1, 2]], "NextShardIterator": "it"})
    records, last, nxt = PageReader(_ctx(KEYS)).read(body)
    assert (last, nxt) == ("10", "it")  # the last record that has a sequence number
    assert [type(r) for r in records][1:] == [UnreadableChange, UnreadableChange]
    assert records[1].source["sequence_number"] == "10" and records[1].source["shard_id"] == SHARD
    assert "dynamodb.Keys must be an object" in records[1].reason and records[2].raw == [1, 2]
    assert json.loads(json.dumps(records[2].raw)) == [1, 2]
    serializer = RecordSerializer(_Registry())
    serializer.prepare(records[0])
    batch = serializer.serialize_batch(records)
    assert batch.values[0] is not None and sorted(batch.errors) == [1, 2]
    assert all(isinstance(e, ConversionError) for e in batch.errors.values())


@pytest.mark.parametrize("body", [b"{nope", b"[]", b'{"Records": {}}', b'{"Records": [], "NextShardIterator": 5}'])
def test_a_page_that_is_not_a_getrecords_response_is_one_connector_error(body: bytes) -> None:
    from bridge.errors import ConnectorError

    with pytest.raises(ConnectorError, match=f"{TABLE} {SHARD}: GetRecords answered"):
        PageReader(_ctx(KEYS))._general(body)


def test_envelope_refuses_non_object_images() -> None:
    with pytest.raises(ConversionError):
        encode_envelope("c", None, [{"S": "a"}], {"connector": "dynamodb", "table": "t"}, 0)  # type: ignore[arg-type]


def test_snapshot_items_share_the_encoder_and_a_non_object_item_fails_alone() -> None:
    """Scan and export items go through the same encoder: a bad one is a ConversionError;
    an export line whose Item is not an object is one record that does not convert."""
    from connectors.dynamodb.scan import snapshot_records
    from connectors.dynamodb.table import TableInfo

    table = TableInfo(TABLE, REGION, (KeyField("pk", "S"), KeyField("sk", "N")), None, None, 0)
    good = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    items = [good, [good], {**good, "m": {"M": {"S": "v"}}}, "text"]
    records = snapshot_records(items, topic=TOPIC, table=table, source={"connector": "dynamodb", "table": TABLE})
    assert [type(r) for r in records] == [type(records[0]), UnreadableChange, type(records[0]), UnreadableChange]
    serializer = RecordSerializer(_Registry())
    serializer.prepare(records[0])
    batch = serializer.serialize_batch(records)
    assert batch.values[0] is not None and sorted(batch.errors) == [1, 2, 3]
    assert "NewImage['m']['S']" in str(batch.errors[2]) and "not an object" in str(batch.errors[1])


# --------------------------------------------------------------------------- moto's binary Keys

MOTO_BINARY = {"eventName": "MODIFY", "dynamodb": {
    "Keys": {"id": {"B": "QVA4PQ=="}},  # moto: base64 of the text "AP8="
    "NewImage": {"id": {"B": "AP8="}, "v": {"S": "new"}}, "OldImage": {"id": {"B": "AP8="}, "v": {"S": "old"}},
    "SequenceNumber": "21"}}


@pytest.mark.parametrize("image", ["NewImage", "OldImage", "both"])
def test_a_binary_key_that_differs_from_the_image_is_taken_from_the_image(image: str) -> None:
    record = json.loads(json.dumps(MOTO_BINARY))
    if image != "both":
        del record["dynamodb"]["OldImage" if image == "NewImage" else "NewImage"]
    body = orjson.dumps({"Records": [record]})
    for impl in IMPLS:  # the one-pass transcoders leave such a page to the general path
        with pytest.raises(ValueError, match="differs from the image's"):
            impl(BKEYS, TABLE, REGION, ARN, SHARD).page(body, TS)
    records, last, _ = PageReader(_ctx(BKEYS)).read(body)
    assert last == "21" and [r.key for r in records] == [{"id": {"B": "AP8="}}]
    assert encode_key(records[0].key_fields, records[0].key) == b"\x04\x00\xff"
    # Keys that agree (in bytes, whatever the text) are left alone, on every path
    same = json.loads(json.dumps(record))
    same["dynamodb"]["Keys"]["id"]["B"] = "AP9="  # the same two bytes (non-zero unused bits)
    body = orjson.dumps({"Records": [same]})
    outs = [impl(BKEYS, TABLE, REGION, ARN, SHARD).page(body, TS)[0][0][3] for impl in IMPLS]
    assert outs == [b"\x04\x00\xff"] * len(IMPLS)
    (kept,) = PageReader(_ctx(BKEYS)).read(body)[0]
    assert encode_key(kept.key_fields, kept.key) == b"\x04\x00\xff"
    # KEYS_ONLY: nothing to check against; Keys are taken as they are
    keys_only = {"eventName": "MODIFY", "dynamodb": {"Keys": {"id": {"B": "QVA4PQ=="}}, "SequenceNumber": "22"}}
    body = orjson.dumps({"Records": [keys_only]})
    assert [impl(BKEYS, TABLE, REGION, ARN, SHARD).page(body, TS)[0][0][3] for impl in IMPLS] == [
        b"\x08AP8="] * len(IMPLS)
