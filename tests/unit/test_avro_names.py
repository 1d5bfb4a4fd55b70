"""Key attribute names map to Avro field names one-to-one, for every legal DynamoDB name.

``ü`` and ``ö`` both sanitise to ``_``, ``order-id`` and ``order_id`` to ``order_id``,
``1st`` and ``_1st`` to ``_1st``: such tables once failed at their first record with a
traceback. The mapping is decided from the key schema alone (at start), keeps names that
are valid Avro names as they are, and gives a schema that Avro libraries accept.
"""

from __future__ import annotations

import json
import re

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.dynamodb.avro import encode_key
from connectors.dynamodb.schemas import KeyField, avro_field_names, table_schemas

VALID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# DynamoDB attribute names: 1 to 64 KB of UTF-8 (key attributes at most 255 bytes); any character.
names = st.text(min_size=1, max_size=30)


@settings(max_examples=500, deadline=None)
@given(st.lists(names, min_size=1, max_size=3, unique=True))
def test_distinct_names_get_distinct_valid_avro_names(attrs: list[str]) -> None:
    out = avro_field_names(attrs)
    assert len(set(out)) == len(attrs)
    assert all(VALID.match(n) for n in out), out
    for a, n in zip(attrs, out, strict=True):
        if VALID.match(a):
            assert n == a, "a valid Avro name must stay as it is (existing schemas keep their fields)"
    assert avro_field_names(attrs) == out, "deterministic"


@pytest.mark.parametrize(
    "pair",
    [("order-id", "order_id"), ("ü", "ö"), ("1st", "_1st"), ("a.b", "a-b"), ("x y", "x_y"),
     ("😀", "_"), ("é", "_")],
)
def test_the_issue_pairs_build_a_schema_avro_accepts(pair: tuple[str, ...]) -> None:
    fields = tuple(KeyField(n, t) for n, t in zip(pair, ("S", "N"), strict=False))
    s = table_schemas("orders", fields)
    schema = fastavro.parse_schema(json.loads(s.key_schema))
    key = {f.name: ({"S": "a"} if f.type == "S" else {"N": "12"}) for f in fields}
    body = encode_key(fields, key)
    import io

    back = fastavro.schemaless_reader(io.BytesIO(body), schema, schema)
    names = avro_field_names([f.name for f in fields])
    assert [back[n] for n in names] == [key[f.name]["S" if f.type == "S" else "N"] for f in fields]


def test_names_that_never_clashed_keep_their_schema_text() -> None:
    s = table_schemas("orders", (KeyField("order-id", "S"), KeyField("sk", "N")))
    assert json.loads(s.key_schema)["fields"] == [{"name": "order_id", "type": "string"},
                                                  {"name": "sk", "type": "string"}]


def test_documented_examples() -> None:
    assert avro_field_names(["order-id", "order_id"]) == ("order_id_e3f2b5e8", "order_id")
    assert avro_field_names(["ü", "ö"]) == ("__607474ca", "__6dbd11fd")
    assert avro_field_names(["1st", "_1st"]) == ("_1st_e01ddf65", "_1st")
