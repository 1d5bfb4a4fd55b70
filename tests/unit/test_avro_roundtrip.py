"""Any DynamoDB item survives the bridge's Avro encoder and fastavro's reader unchanged."""

from __future__ import annotations

import io
import json

import fastavro
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.dynamodb.avro import encode_envelope, encode_key, item_from_avro
from connectors.dynamodb.schemas import KeyField, table_schemas
from tests.ddb_strategies import expected_item, items, numbers, strings

KEYS = (KeyField("pk", "S"), KeyField("sk", "N"))
SCHEMAS = table_schemas("roundtrip", KEYS)
VALUE = fastavro.parse_schema(json.loads(SCHEMAS.value_schema))
KEY = fastavro.parse_schema(json.loads(SCHEMAS.key_schema))

sources = st.fixed_dictionaries(
    {"connector": st.just("dynamodb"), "table": st.just("roundtrip")},
    optional={
        "region": st.none() | strings,
        "stream_arn": st.none() | strings,
        "shard_id": st.none() | strings,
        "sequence_number": st.none() | st.from_regex(r"[0-9]{1,40}", fullmatch=True),
        "event_id": st.none() | strings,
        "approximate_creation_ms": st.none() | st.integers(-(2**63), 2**63 - 1),
        "ttl_delete": st.booleans(),
    },
)


def read(schema, data: bytes):
    buf = io.BytesIO(data)
    out = fastavro.schemaless_reader(buf, schema, schema)
    assert buf.tell() == len(data), "bytes left over after the record"
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    op=st.sampled_from("cudr"),
    before=st.none() | items,
    after=st.none() | items,
    source=sources,
    ts_ms=st.integers(-(2**63), 2**63 - 1),
)
def test_envelope_round_trips_through_fastavro(op, before, after, source, ts_ms) -> None:
    decoded = read(VALUE, encode_envelope(op, before, after, source, ts_ms))
    assert decoded["op"] == op and decoded["ts_ms"] == ts_ms
    assert item_from_avro(decoded["before"]) == expected_item(before)
    assert item_from_avro(decoded["after"]) == expected_item(after)
    src = decoded["source"]
    for name in ("connector", "table", "region", "stream_arn", "shard_id", "sequence_number", "event_id",
                 "approximate_creation_ms"):
        assert src[name] == source.get(name)
    assert src["ttl_delete"] is bool(source.get("ttl_delete"))
    assert src["snapshot"] is src["segment"] is src["total_segments"] is None


@settings(max_examples=100, deadline=None)
@given(pk=strings, sk=numbers)
def test_key_round_trips_through_fastavro(pk, sk) -> None:
    assert read(KEY, encode_key(KEYS, {"pk": {"S": pk}, "sk": {"N": sk}})) == {"pk": pk, "sk": sk}
