"""Stream records → SourceRecords: ops, images per view type, TTL marks, tombstones."""

from __future__ import annotations

import pytest

from bridge.errors import ConversionError
from bridge.serde.serializer import RecordSerializer
from bridge.task import UnreadableRecord
from connectors.dynamodb.records import StreamContext, from_stream_records
from connectors.dynamodb.schemas import KeyField

CTX = StreamContext("ddb.t", "t", "us-east-1", (KeyField("pk", "S"),), "arn:stream", "shardId-1")
KEY = {"pk": {"S": "a"}}


def raw(event: str, seq: str, new=None, old=None, identity=None) -> dict:
    d = {"Keys": KEY, "SequenceNumber": seq, "ApproximateCreationDateTime": 1700000000.5, "SizeBytes": 10}
    if new is not None:
        d["NewImage"] = new
    if old is not None:
        d["OldImage"] = old
    r = {"eventID": f"e{seq}", "eventName": event, "awsRegion": "eu-west-1", "dynamodb": d}
    if identity is not None:
        r["userIdentity"] = identity
    return r


def test_ops_images_and_source() -> None:
    recs = from_stream_records(
        [raw("INSERT", "1", new={**KEY, "v": {"N": "1"}}), raw("MODIFY", "2", new={**KEY, "v": {"N": "2"}},
                                                                old={**KEY, "v": {"N": "1"}})],
        CTX,
    )
    assert [r.op for r in recs] == ["c", "u"]
    assert recs[0].before is None and recs[0].after["v"] == {"N": "1"}
    assert recs[1].before["v"] == {"N": "1"} and recs[1].after["v"] == {"N": "2"}
    src = recs[1].source
    assert src["sequence_number"] == "2" and src["shard_id"] == "shardId-1" and src["region"] == "eu-west-1"
    assert src["approximate_creation_ms"] == 1700000000500 and src["event_id"] == "e2"
    assert src["ttl_delete"] is False


def test_remove_is_followed_by_a_tombstone_with_the_same_key() -> None:
    recs = from_stream_records([raw("REMOVE", "3", old={**KEY, "v": {"N": "1"}})], CTX)
    assert [(r.op, r.tombstone) for r in recs] == [("d", False), ("d", True)]
    assert recs[0].key == recs[1].key == KEY
    assert recs[0].before["v"] == {"N": "1"} and recs[0].after is None


@pytest.mark.parametrize(
    "identity",
    [
        {"type": "Service", "principalId": "dynamodb.amazonaws.com"},  # as the TTL docs spell it
        {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"},  # as the SDK model spells it
    ],
)
def test_ttl_deletes_are_marked(identity) -> None:
    recs = from_stream_records([raw("REMOVE", "4", old=KEY, identity=identity)], CTX)
    assert recs[0].source["ttl_delete"] is True


def test_user_delete_is_not_a_ttl_delete() -> None:
    recs = from_stream_records([raw("REMOVE", "5", old=KEY, identity={"type": "User", "principalId": "x"})], CTX)
    assert recs[0].source["ttl_delete"] is False


def test_keys_only_view_has_no_images() -> None:
    (rec,) = from_stream_records([raw("MODIFY", "6")], CTX)
    assert rec.op == "u" and rec.before is None and rec.after is None and rec.key == KEY


def test_unknown_event_name_is_a_conversion_error_of_that_record_alone() -> None:
    bad, good = from_stream_records([raw("UPSERT", "7"), raw("INSERT", "8")], CTX)
    assert isinstance(bad, UnreadableRecord) and "unknown eventName 'UPSERT'" in bad.reason
    assert bad.source["sequence_number"] == "7" and bad.source["shard_id"] == "shardId-1"
    assert good.op == "c" and good.source["sequence_number"] == "8"
    serializer = RecordSerializer(_Registry())
    serializer.prepare(bad)
    with pytest.raises(ConversionError, match="unknown eventName"):
        serializer.serialize(bad)


class _Registry:
    def register(self, subject: str, schema_str: str) -> int:
        return 1

    def lookup(self, subject: str, schema_str: str) -> None:
        return None
