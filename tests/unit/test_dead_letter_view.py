"""The dead-letter view of a change that carries only its Avro body (the one-pass transcoder's
records have no images as Python data): its images are read back, not lost."""

from __future__ import annotations

from connectors.dynamodb.avro import encode_envelope
from connectors.dynamodb.dead_letter import change_dead_letter_value
from connectors.dynamodb.envelope import ChangeRecord, envelope_schema
from connectors.dynamodb.schemas import KeyField

KEY = (KeyField("pk", "S"),)
SOURCE = {"connector": "dynamodb", "table": "t", "region": "eu-north-1", "stream_arn": None, "shard_id": None,
          "sequence_number": "1", "event_id": None, "approximate_creation_ms": 1700000000000, "ttl_delete": False}


def test_an_encoded_envelope_change_shows_its_images_as_dynamodb_json() -> None:
    before = {"pk": {"S": "a"}, "n": {"N": "12345678901234567890123456789012345678"}}
    after = {"pk": {"S": "a"}, "tags": {"SS": ["x", "y"]}, "m": {"M": {"b": {"BOOL": True}}}}
    body = encode_envelope("u", before, after, SOURCE, 7)
    record = ChangeRecord("t", envelope_schema("t", KEY), {"pk": "a"}, None, SOURCE, 7, encoded_value=body)
    assert change_dead_letter_value(record) == {"op": "u", "key": {"pk": "a"}, "before": before, "after": after}


def test_a_record_without_value_or_body_shows_its_key() -> None:
    record = ChangeRecord("t", envelope_schema("t", KEY), {"pk": "a"}, None, SOURCE, 7, tombstone=True)
    assert change_dead_letter_value(record) == {"key": {"pk": "a"}}
