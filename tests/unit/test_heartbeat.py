"""Heartbeats: one per interval of a reader that read nothing; none while records come."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import fastavro
import pytest

from bridge.heartbeat import HEARTBEAT_VALUE_SCHEMA, Heartbeats
from bridge.task import Batch, SourceRecord


def test_a_heartbeat_per_idle_interval_only() -> None:
    partition = {"table": "t", "shard": "s-1"}
    beat = Heartbeats("hb", 0.05, "b").task(partition)
    busy = Batch([SourceRecord("t", None, {}, {}, {}, 0)], {"seq": "1"})  # type: ignore[arg-type]
    beat.on_batch(busy)
    assert len(busy.records) == 1
    empty = Batch([], {"seq": "1"})
    beat.on_batch(empty)
    assert empty.records == []  # not idle long enough yet
    time.sleep(0.06)
    beat.on_batch(empty)
    (record,) = empty.records
    assert record.topic == "hb" and empty.offset == {"seq": "1"}  # committed with it
    value = fastavro.schemaless_reader(io.BytesIO(record.schema.encode_value(record)),
                                       fastavro.parse_schema(json.loads(HEARTBEAT_VALUE_SCHEMA)), None)
    assert json.loads(value["partition"]) == partition and value["idle_ms"] >= 50
    again = Batch([], None)
    beat.on_batch(again)
    assert again.records == []  # the next one an interval later


def _idle_ms(record: SourceRecord) -> int:
    value = fastavro.schemaless_reader(io.BytesIO(record.schema.encode_value(record)),
                                       fastavro.parse_schema(json.loads(HEARTBEAT_VALUE_SCHEMA)), None)
    return int(value["idle_ms"])


def test_idle_ms_counts_from_the_last_read_not_the_last_beat() -> None:
    beat = Heartbeats("hb", 0.05, "b").task({"table": "t"})
    first, second = Batch([], None), Batch([], None)
    time.sleep(0.06)
    beat.on_batch(first)
    time.sleep(0.06)
    beat.on_batch(second)
    assert _idle_ms(first.records[0]) >= 50 and _idle_ms(second.records[0]) >= 110


def test_a_reader_whose_records_were_all_filtered_is_not_idle() -> None:
    beat = Heartbeats("hb", 0.05, "b").task({"table": "t"})
    time.sleep(0.06)
    filtered = Batch([], {"seq": "2"})  # the transforms dropped what it read
    beat.on_batch(filtered, read=True)
    assert filtered.records == []


def _parse(**cfg: Any) -> Any:
    from connectors.dynamodb.config import parse_config

    return parse_config({"name": "b", "kafka": {"bootstrap.servers": "localhost:9092"},
                         "schema_registry": {"url": "http://r"}, "tables": [{"name": "orders"}], **cfg}, check_kafka=False)


@pytest.mark.parametrize("cfg, line", [
    ({"heartbeat": {"topic": "beats"}}, "heartbeat.topic: set without heartbeat.interval_ms"),
    ({"name": "b" * 240, "heartbeat": {"interval_ms": 1000}}, "characters; Kafka allows at most 249"),
])
def test_heartbeat_config_mistakes_are_one_line_at_start(cfg: dict[str, Any], line: str) -> None:
    from bridge.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        _parse(**cfg)
    assert line in str(e.value) and "\n" not in str(e.value), str(e.value)
