"""The hand-written encoder must give exactly the bytes fastavro gives for the same schema."""

from __future__ import annotations

import base64
import io
import json

import fastavro
import pytest

from bridge.errors import ConversionError
from connectors.dynamodb.avro import encode_envelope, encode_key, encode_long, item_from_avro
from connectors.dynamodb.schemas import KeyField, table_schemas

KEYS = (KeyField("pk", "S"), KeyField("sk", "N"))
SCHEMAS = table_schemas("orders-v1.test", KEYS)
VALUE = fastavro.parse_schema(json.loads(SCHEMAS.value_schema))
KEY = fastavro.parse_schema(json.loads(SCHEMAS.key_schema))

ITEM = {
    "pk": {"S": "user#1 ünïcode"},
    "sk": {"N": "12345678901234567890123456789012345678"},
    "neg": {"N": "-0.000000000000000000000000000000000001"},
    "bin": {"B": base64.b64encode(b"\x00\xff\x10").decode()},
    "yes": {"BOOL": True},
    "no": {"BOOL": False},
    "nothing": {"NULL": True},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [base64.b64encode(b"x").decode(), base64.b64encode(b"").decode()]},
    "empty_l": {"L": []},
    "empty_m": {"M": {}},
    "deep": {"M": {"l": {"L": [{"M": {"x": {"L": [{"N": "1"}, {"S": ""}]}}}, {"NULL": True}]}}},
}


def to_avro_dict(item):
    """The generic (slow) conversion a user would write, used as the reference."""

    def av(v):
        ((t, x),) = v.items()
        out = dict.fromkeys(["S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"])
        if t == "M":
            x = {k: av(y) for k, y in x.items()}
        elif t == "L":
            x = [av(y) for y in x]
        elif t == "B":
            x = base64.b64decode(x)
        elif t == "BS":
            x = [base64.b64decode(y) for y in x]
        out[t] = x
        return out

    return {k: av(v) for k, v in item.items()}


SOURCE = {
    "connector": "dynamodb",
    "table": "orders",
    "region": "us-east-1",
    "stream_arn": "arn:aws:dynamodb:us-east-1:1:table/orders/stream/x",
    "shard_id": "shardId-1",
    "sequence_number": "100",
    "event_id": "e1",
    "approximate_creation_ms": 1_700_000_000_123,
    "ttl_delete": True,
}


def fastavro_bytes(schema, record) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


@pytest.mark.parametrize("n", [0, 1, -1, 63, 64, -64, -65, 2**31, -(2**63), 2**63 - 1])
def test_long_matches_fastavro(n: int) -> None:
    assert encode_long(n) == fastavro_bytes("long", n)


@pytest.mark.parametrize(
    ("op", "before", "after"),
    [("c", None, ITEM), ("u", ITEM, {"pk": ITEM["pk"], "sk": ITEM["sk"]}), ("d", ITEM, None), ("r", None, {})],
)
def test_envelope_bytes_equal_fastavro(op, before, after) -> None:
    ours = encode_envelope(op, before, after, SOURCE, 1_700_000_000_999)
    ref_source = {f["name"]: SOURCE.get(f["name"]) for f in VALUE["fields"][3]["type"]["fields"]}
    ref_source["ttl_delete"] = True
    reference = {
        "op": op,
        "before": None if before is None else to_avro_dict(before),
        "after": None if after is None else to_avro_dict(after),
        "source": ref_source,
        "ts_ms": 1_700_000_000_999,
    }
    assert ours == fastavro_bytes(VALUE, reference)
    decoded = fastavro.schemaless_reader(io.BytesIO(ours), VALUE, VALUE)
    assert decoded["source"]["ttl_delete"] is True
    for image, original in ((decoded["before"], before), (decoded["after"], after)):
        expected = None if original is None else to_avro_dict(original)
        assert (None if image is None else item_from_avro(image)) == (
            None if expected is None else item_from_avro(expected)
        )


def test_key_bytes_equal_fastavro() -> None:
    key = {"pk": ITEM["pk"], "sk": ITEM["sk"]}
    assert encode_key(KEYS, key) == fastavro_bytes(KEY, {"pk": "user#1 ünïcode", "sk": ITEM["sk"]["N"]})


def test_binary_key_accepts_bytes_and_base64() -> None:
    fields = (KeyField("id", "B"),)
    assert encode_key(fields, {"id": {"B": b"\x01\x02"}}) == encode_key(fields, {"id": {"B": "AQI="}})


@pytest.mark.parametrize(
    "bad",
    [{"x": {"Q": "1"}}, {"x": {"S": "a", "N": "1"}}, {"x": {"B": "not base64!"}}],
)
def test_bad_attribute_raises_conversion_error(bad) -> None:
    with pytest.raises(ConversionError):
        encode_envelope("c", None, bad, SOURCE, 0)


def test_missing_key_attribute_names_it() -> None:
    with pytest.raises(ConversionError, match="'sk'"):
        encode_key(KEYS, {"pk": {"S": "a"}})
