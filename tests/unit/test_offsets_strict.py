"""Offsets are parsed strictly: a record that is not an offset the bridge wrote stops the start.

A hand-edited ``{"seq": "12345", "ended": "no"}`` once counted as ended (a non-empty
string is truthy) and the open shard was never read again; non-UTF-8 bytes or a JSON list
crashed every start with a traceback. Each case here is a record as it could sit in the
offsets topic; the store must refuse it with one line naming topic, partition, offset,
key and the fix, unless a later record of the same key replaces it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.errors import CorruptOffsetError, StartupError
from bridge.offsets import OffsetStore, parse_offset_record
from connectors.dynamodb.offset_shapes import check_offset

NAME = "b"
TOPIC = "b-offsets"
SHARD = {"shard": "shardId-0001", "table": "orders"}
SEGMENT = {"segment": 1, "table": "orders", "total_segments": 4}
EXPORT_FILE = {"export": "0123-abc", "file": "AWSDynamoDB/data/x.json.gz", "table": "orders"}


def key(partition: Any, name: str = NAME) -> bytes:
    return json.dumps([name, partition], sort_keys=True, separators=(",", ":")).encode()


def value(v: Any) -> bytes:
    return json.dumps(v).encode()


def store() -> OffsetStore:
    return OffsetStore({"bootstrap.servers": "unused:9092"}, TOPIC, NAME, check=check_offset)


GOOD: list[tuple[Any, Any]] = [
    (SHARD, {"seq": "12345", "ended": False}),
    (SHARD, {"seq": None, "ended": True}),
    (SHARD, {"seq": "9", "ended": True, "trimmed": True}),
    (SHARD, {"seq": None, "at": "77", "ended": False, "at_ms": 1700000000000}),
    (SEGMENT, {"pass": 0, "last_key": {"pk": {"S": "a"}}, "done": False, "items": 3, "scanned": 5}),
    (SEGMENT, {"pass": 2, "last_key": None, "done": True, "items": 3, "scanned": 5, "finished_ms": 17}),
    (EXPORT_FILE, {"line": 10, "items": 9, "done": False}),
    ({"export": "request", "table": "orders"}, {"export_arn": "arn:aws:dynamodb:x", "requested_ms": 5}),
    ({"handoff": "initial", "table": "orders"}, {"t0_ms": 1700000000000}),
]


@pytest.mark.parametrize(("partition", "offset"), GOOD, ids=[json.dumps(o)[:40] for _, o in GOOD])
def test_every_shape_the_connectors_write_is_accepted(partition: Any, offset: Any) -> None:
    s = store()
    s._apply(key(partition), value(offset), (0, 1))
    s.raise_if_corrupt()
    assert s.offset(partition) == offset


# (case id, key bytes, value bytes, words the one line must contain)
BAD: list[tuple[str, bytes | None, bytes | None, list[str]]] = [
    ("ended-string", key(SHARD), value({"seq": "12345", "ended": "no"}), ['"ended" must be true or false', '"no"']),
    ("ended-int", key(SHARD), value({"seq": "12345", "ended": 0}), ['"ended" must be true or false']),
    ("ended-missing", key(SHARD), value({"seq": "12345"}), ['lacks "ended"']),
    ("seq-number", key(SHARD), value({"seq": 12345, "ended": False}), ['"seq" must be a sequence number']),
    ("seq-text", key(SHARD), value({"seq": "abc", "ended": False}), ['"seq" must be a sequence number']),
    ("unknown-field", key(SHARD), value({"seq": "1", "ended": False, "skip": True}), ['unknown field "skip"']),
    ("value-not-utf8", key(SHARD), b"\xff\xfe{}", ["value is not UTF-8"]),
    ("value-not-json", key(SHARD), b"{seq: 1}", ["value is not JSON"]),
    ("value-list", key(SHARD), b"[1, 2]", ["a JSON list"]),
    ("value-string", key(SHARD), b'"12345"', ["not an object"]),
    ("value-number", key(SHARD), b"12345", ["not an object"]),
    ("key-not-utf8", b"\xff\xfe", value({"seq": "1", "ended": False}), ["key is not UTF-8", "--key-hex fffe"]),
    ("key-not-json", b"orders/shard-1", value({"seq": "1", "ended": False}), ["key is not JSON"]),
    ("key-object", b'{"table": "orders"}', value({"seq": "1", "ended": False}), ["key is not"]),
    ("key-short-list", json.dumps([NAME]).encode(), value({"seq": "1", "ended": False}), ["key is not"]),
    ("key-name-not-string", json.dumps([1, SHARD]).encode(), value({"seq": "1", "ended": False}), ["key is not"]),
    ("no-key", None, value({"seq": "1", "ended": False}), ["no key", "new offsets.topic"]),
    ("partition-unknown", key({"table": "orders", "stream": "x"}), value({"seq": "1", "ended": False}),
     ["none this bridge writes"]),
    ("partition-no-table", key({"shard": "s"}), value({"seq": "1", "ended": False}), ['"table"']),
    ("segment-as-text", key({**SEGMENT, "segment": "1"}), value({"pass": 0}), ['"segment" must be a whole number']),
    ("segment-done-string", key(SEGMENT),
     value({"pass": 0, "last_key": None, "done": "yes", "items": 1, "scanned": 1}), ['"done" must be true or false']),
    ("segment-pass-bool", key(SEGMENT),
     value({"pass": True, "last_key": None, "done": False, "items": 1, "scanned": 1}), ['"pass" must be a whole number']),
    ("segment-items-negative", key(SEGMENT),
     value({"pass": 0, "last_key": None, "done": False, "items": -1, "scanned": 1}), ['"items" must not be negative']),
    ("segment-last-key-list", key(SEGMENT),
     value({"pass": 0, "last_key": ["a"], "done": False, "items": 1, "scanned": 1}), ['"last_key" must be a JSON object']),
    # Not a key: DynamoDB refuses it as ExclusiveStartKey on every retry (moto: HTTP 500 ten times and on).
    ("segment-last-key-plain-value", key(SEGMENT),
     value({"pass": 0, "last_key": {"pk": "k1"}, "done": False, "items": 1, "scanned": 1}),
     ['attribute "pk" must be a key AttributeValue']),
    ("segment-last-key-empty", key(SEGMENT),
     value({"pass": 0, "last_key": {}, "done": False, "items": 1, "scanned": 1}), ['"last_key" must be a JSON object holding']),
    ("segment-last-key-map-value", key(SEGMENT),
     value({"pass": 0, "last_key": {"pk": {"M": {}}}, "done": False, "items": 1, "scanned": 1}),
     ['attribute "pk" must be a key AttributeValue']),
    ("segment-last-key-number-not-string", key(SEGMENT),
     value({"pass": 0, "last_key": {"pk": {"N": 1}}, "done": False, "items": 1, "scanned": 1}),
     ['attribute "pk" must be a key AttributeValue']),
    ("export-line-float", key(EXPORT_FILE), value({"line": 1.5, "items": 1, "done": False}), ['"line" must be a whole']),
    ("export-request-arn-empty", key({"export": "request", "table": "orders"}),
     value({"export_arn": "", "requested_ms": 1}), ['"export_arn" must be a non-empty string']),
    ("handoff-t0-string", key({"handoff": "initial", "table": "orders"}), value({"t0_ms": "1700"}), ['"t0_ms"']),
]


@pytest.mark.parametrize(("k", "v", "words"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_bad_record_stops_the_start_with_one_line(k: bytes | None, v: bytes | None, words: list[str]) -> None:
    s = store()
    s._apply(key(SHARD), value({"seq": "1", "ended": False}), (0, 3))
    s._apply(k, v, (2, 17))
    with pytest.raises(CorruptOffsetError) as e:
        s.raise_if_corrupt()
    line = str(e.value)
    assert isinstance(e.value, StartupError), "a corrupt offsets topic is a start-up error (exit 2)"
    assert "\n" not in line
    assert f"offsets topic {TOPIC!r} partition 2 offset 17" in line
    for w in words:
        assert w in line, line
    assert "Fix:" in line
    if k is not None:
        assert "ddb-kafka-bridge offsets reset" in line and "tombstone" in line


def test_ended_no_never_skips_the_shard() -> None:
    """The issue's case: the store must never hand the reader an 'ended' it did not write."""
    s = store()
    s._apply(key(SHARD), value({"seq": "12345", "ended": "no"}), (0, 0))
    assert s.offset(SHARD) is None or s.offset(SHARD).get("ended") is not True
    with pytest.raises(CorruptOffsetError):
        s.raise_if_corrupt()


@pytest.mark.parametrize("fix", ["tombstone", "good value"])
def test_a_later_record_of_the_same_key_repairs_it(fix: str) -> None:
    s = store()
    s._apply(key(SHARD), value({"seq": "12345", "ended": "no"}), (0, 0))
    s._apply(key(SHARD), None if fix == "tombstone" else value({"seq": "12345", "ended": False}), (0, 1))
    s.raise_if_corrupt()
    assert s.offset(SHARD) == (None if fix == "tombstone" else {"seq": "12345", "ended": False})


def test_a_tombstone_for_an_unparseable_key_repairs_it() -> None:
    s = store()
    s._apply(b"\xff\xfe", b"{}", (0, 0))
    s._apply(b"\xff\xfe", None, (0, 1))
    s.raise_if_corrupt()


def test_another_connectors_records_are_not_ours_to_judge() -> None:
    s = store()
    s._apply(key(SHARD, name="other"), b"[1, 2]", (0, 0))
    s._apply(key({"anything": 1}, name="other"), value({"whatever": "x"}), (0, 1))
    s.raise_if_corrupt()
    assert s.partitions() == []


def test_parse_offset_record_reads_connect_layout() -> None:
    assert parse_offset_record(key(SHARD), value({"seq": "1", "ended": True})) == (NAME, SHARD, {"seq": "1", "ended": True})
    assert parse_offset_record(key(SHARD), None) == (NAME, SHARD, None)
