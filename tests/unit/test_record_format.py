"""Subject name strategies as Confluent's serializers name them, and the headers of a table.

The strategy functions are confluent_kafka.schema_registry's own, fed the record name its
AvroSerializer computes (fastavro's parsed ``name``, the full name); the headers come from
both record paths (the C transcoder's records and the general path's) and must agree.
"""

from __future__ import annotations

import json
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import (
    record_subject_name_strategy,
    topic_record_subject_name_strategy,
    topic_subject_name_strategy,
)
from confluent_kafka.serialization import MessageField, SerializationContext

from bridge.serde.converter import STRATEGIES, subject_name
from bridge.serde.serializer import RecordSerializer, subjects
from connectors.dynamodb import transcode
from connectors.dynamodb.envelope import envelope_schema
from connectors.dynamodb.headers import HEADER_NAMES
from connectors.dynamodb.records import PageReader, StreamContext, from_stream_records
from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.snapshot_rows import snapshot_records
from connectors.dynamodb.table import TableInfo

CONFLUENT = {
    "TopicNameStrategy": topic_subject_name_strategy,
    "RecordNameStrategy": record_subject_name_strategy,
    "TopicRecordNameStrategy": topic_record_subject_name_strategy,
}
KEYS = (KeyField("pk", "S"), KeyField("sk", "N"))
SOURCE = {"connector": "dynamodb", "table": "orders"}


def confluent_subject(strategy: str, topic: str, schema: str, field: str) -> str:
    """What Confluent's AvroSerializer asks the registry for: its strategy of the parsed name."""
    name = fastavro.parse_schema(json.loads(schema))["name"]
    return CONFLUENT[strategy](SerializationContext(topic, getattr(MessageField, field)), name)


def test_every_confluent_strategy_is_offered() -> None:
    assert set(STRATEGIES) == set(CONFLUENT)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("table", ["orders", "orders-v1.test", "1st"])
def test_subjects_are_confluents(strategy: Any, table: str) -> None:
    schema = envelope_schema(table, KEYS, strategy)
    topic = f"ddb.{table}"
    key_subject, value_subject = subjects(topic, schema)
    assert key_subject == confluent_subject(strategy, topic, schema.key_schema, "KEY")
    assert value_subject == confluent_subject(strategy, topic, schema.value_schema, "VALUE")
    assert subject_name(strategy, topic, schema.key_schema, is_key=True) == key_subject


def test_record_name_strategy_names_the_records() -> None:
    schema = envelope_schema("orders-v1.test", KEYS, "RecordNameStrategy")
    assert subjects("t", schema) == ("ddbkafka.orders_v1_test.Key", "ddbkafka.orders_v1_test.Envelope")


class _Registry:
    """Registers under the subject it is given (records the calls); protocol-level double."""

    def __init__(self) -> None:
        self.registered: list[str] = []

    def register(self, subject: str, schema_str: str) -> int:
        self.registered.append(subject)
        return len(self.registered)

    def lookup(self, subject: str, schema_str: str) -> Any:
        return None


def test_the_serializer_registers_under_the_strategys_subjects() -> None:
    registry = _Registry()
    serializer = RecordSerializer(registry)
    rows = snapshot_records([{"pk": {"S": "a"}, "sk": {"N": "1"}}], topic="t",
                            table=TableInfo("orders", "us-east-1", KEYS, None, None, 0), source=SOURCE,
                            schema=envelope_schema("orders", KEYS, "TopicRecordNameStrategy"))
    serializer.prepare(rows[0])
    assert registry.registered == ["t-ddbkafka.orders.Key", "t-ddbkafka.orders.Envelope"]
    # The default strategy is a new handle of other content: registered apart, under <topic>-key/-value.
    serializer.prepare(snapshot_records([{"pk": {"S": "a"}, "sk": {"N": "1"}}], topic="t",
                                        table=TableInfo("orders", "us-east-1", KEYS, None, None, 0),
                                        source=SOURCE)[0])
    assert registry.registered[2:] == ["t-key", "t-value"]


PAGE = {
    "Records": [
        {"eventID": "e1", "eventName": "INSERT", "awsRegion": "us-east-1",
         "dynamodb": {"ApproximateCreationDateTime": 1700000000.5, "Keys": {"pk": {"S": "a"}, "sk": {"N": "1"}},
                      "NewImage": {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"S": "x"}},
                      "SequenceNumber": "100", "StreamViewType": "NEW_AND_OLD_IMAGES"}},
        {"eventID": "e2", "eventName": "REMOVE", "awsRegion": "us-east-1",
         "dynamodb": {"ApproximateCreationDateTime": 1700000001, "Keys": {"pk": {"S": "a"}, "sk": {"N": "1"}},
                      "OldImage": {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"S": "x"}},
                      "SequenceNumber": "101", "StreamViewType": "NEW_AND_OLD_IMAGES"}},
    ],
    "NextShardIterator": "it",
}
WANT = [
    [("ddb.op", b"c"), ("ddb.table", b"orders"), ("ddb.shard", b"shardId-1"), ("ddb.seq", b"100"),
     ("ddb.created_ms", b"1700000000500")],
    [("ddb.op", b"d"), ("ddb.table", b"orders"), ("ddb.shard", b"shardId-1"), ("ddb.seq", b"101"),
     ("ddb.created_ms", b"1700000001000")],
    [("ddb.op", b"d"), ("ddb.table", b"orders"), ("ddb.shard", b"shardId-1"), ("ddb.seq", b"101"),
     ("ddb.created_ms", b"1700000001000")],  # the tombstone after the delete
]


def _headers(records: list[Any]) -> list[Any]:
    serializer = RecordSerializer(_Registry(), frame_encoded=transcode.frame_records)
    for r in serializer.unprepared(records):
        serializer.prepare(r)
    framed = serializer.serialize_batch(records)
    assert not framed.errors
    return framed.headers  # type: ignore[return-value]


def test_stream_headers_on_both_paths() -> None:
    schema = envelope_schema("orders", KEYS, "TopicNameStrategy", HEADER_NAMES)
    ctx = StreamContext("ddb.orders", "orders", "us-east-1", KEYS, "arn:s", "shardId-1", record_schema=schema)
    general = from_stream_records(PAGE["Records"], ctx)  # type: ignore[arg-type]
    assert _headers(general) == WANT
    one_pass, _, _ = PageReader(ctx).read(json.dumps(PAGE).encode())
    assert _headers(one_pass) == WANT
    if transcode.Transcoder is not None:  # the C transcoder's own records took the one pass
        assert type(one_pass[0]).__name__ == "StreamRecord"


def test_snapshot_headers_and_a_chosen_subset() -> None:
    table = TableInfo("orders", "us-east-1", KEYS, None, None, 0)
    source = {"connector": "dynamodb", "table": "orders", "snapshot": "scan", "segment": 2, "total_segments": 8}
    rows = snapshot_records([{"pk": {"S": "a"}, "sk": {"N": "1"}}], topic="t", table=table, source=source,
                            schema=envelope_schema("orders", KEYS, "TopicNameStrategy", HEADER_NAMES))
    assert _headers(rows) == [[("ddb.op", b"r"), ("ddb.table", b"orders"), ("ddb.segment", b"2/8"),
                               ("ddb.snapshot", b"scan")]]
    rows = snapshot_records([{"pk": {"S": "a"}, "sk": {"N": "1"}}], topic="t", table=table, source=source,
                            schema=envelope_schema("orders", KEYS, "TopicNameStrategy", ("op",)))
    assert _headers(rows) == [[("ddb.op", b"r")]]


def test_no_headers_by_default() -> None:
    table = TableInfo("orders", "us-east-1", KEYS, None, None, 0)
    rows = snapshot_records([{"pk": {"S": "a"}, "sk": {"N": "1"}}], topic="t", table=table,
                            source={"connector": "dynamodb", "table": "orders"})
    assert _headers(rows) is None


def _config(**table: Any) -> Any:
    from connectors.dynamodb.config import parse_config

    return parse_config({"name": "b", "kafka": {"bootstrap.servers": "localhost:9"},
                         "schema_registry": {"url": "http://localhost:8081"},
                         "tables": [{"name": "orders", **table}]}, check_kafka=False)


def test_config_defaults_and_choices() -> None:
    default = _config().tables[0].record_format()
    assert (default.strategy, default.headers) == ("TopicNameStrategy", None)
    chosen = _config(subject_name_strategy="RecordNameStrategy", headers=True, value={"shape": "envelope"})
    assert chosen.tables[0].record_format().headers == HEADER_NAMES
    assert _config(headers=["seq", "op"]).tables[0].record_format().headers == ("seq", "op")


@pytest.mark.parametrize(("table", "words"), [
    ({"headers": ["op", "shard_id"]}, ["tables[0].headers", "unknown header 'shard_id'", "created_ms"]),
    ({"headers": "yes"}, ["tables[0].headers", "true, false or a list"]),
    ({"subject_name_strategy": "TopicStrategy"}, ["tables[0].subject_name_strategy", "TopicRecordNameStrategy"]),
    ({"value": {"shape": "columns"}}, ["tables[0].value.shape", "envelope"]),
    ({"value": {"shap": "envelope"}}, ["tables[0].value.shap"]),
])
def test_config_errors_are_one_line_naming_the_key(table: dict[str, Any], words: list[str]) -> None:
    from bridge.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        _config(**table)
    line = str(e.value)
    assert "\n" not in line
    for w in words:
        assert w in line, (w, line)
