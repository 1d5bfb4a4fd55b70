"""DynamoDB Streams records → SourceRecords (envelope fields, tombstones, TTL marks)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from typing import Any, cast

import orjson

from bridge.errors import ConversionError
from connectors.dynamodb.transcode import RECORD_FIELDS, Transcoder
from bridge.task import SourceRecord
from schemas import KeyField

__all__ = ["PageReader", "StreamContext", "from_stream_records", "is_ttl_delete"]

log = logging.getLogger(__name__)

OPS = {"INSERT": "c", "MODIFY": "u", "REMOVE": "d"}


@dataclass(frozen=True, slots=True)
class StreamContext:
    topic: str
    table: str
    region: str
    key_fields: tuple[KeyField, ...]
    stream_arn: str
    shard_id: str


def is_ttl_delete(record: dict[str, Any]) -> bool:
    """The TTL docs spell the keys ``type``/``principalId``, the SDK model ``Type``/``PrincipalId``."""
    ident = record.get("userIdentity") or {}
    kind = ident.get("type", ident.get("Type"))
    principal = ident.get("principalId", ident.get("PrincipalId"))
    return kind == "Service" and principal == "dynamodb.amazonaws.com"


def _ms(value: Any) -> int | None:
    """ApproximateCreationDateTime: epoch seconds on the wire (boto3 turns it into datetime)."""
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    return int(float(value) * 1000)


def from_stream_records(raw: list[dict[str, Any]], ctx: StreamContext) -> list[SourceRecord]:
    """Convert one GetRecords page; a REMOVE yields the delete and then its tombstone."""
    ts_ms = int(time.time() * 1000)
    out: list[SourceRecord] = []
    for r in raw:
        d = r["dynamodb"]
        op = OPS.get(r.get("eventName", ""))
        if op is None:
            raise ConversionError(f"unknown eventName {r.get('eventName')!r} at sequence {d.get('SequenceNumber')}")
        source = {
            "connector": "dynamodb",
            "table": ctx.table,
            "region": r.get("awsRegion") or ctx.region,
            "stream_arn": ctx.stream_arn,
            "shard_id": ctx.shard_id,
            "sequence_number": d["SequenceNumber"],
            "event_id": r.get("eventID"),
            "approximate_creation_ms": _ms(d.get("ApproximateCreationDateTime")),
            "ttl_delete": op == "d" and is_ttl_delete(r),
        }
        key = d["Keys"]
        rec = SourceRecord(
            topic=ctx.topic,
            table=ctx.table,
            key_fields=ctx.key_fields,
            key=key,
            op=op,  # type: ignore[arg-type]
            before=d.get("OldImage"),
            after=d.get("NewImage"),
            source=source,
            ts_ms=ts_ms,
        )
        out.append(rec)
        if op == "d":
            out.append(
                SourceRecord(ctx.topic, ctx.table, ctx.key_fields, key, "d", None, None, source, ts_ms, tombstone=True)
            )
    return out


# The C transcoder's records stand in for SourceRecords: only while they have the same fields
# (tests/unit/test_transcode.py fails if this turns false, so the fast way is not lost silently).
RECORDS_IN_ONE_PASS = tuple(f.name for f in fields(SourceRecord)) == RECORD_FIELDS


class PageReader:
    """One shard's GetRecords response bodies → (records, last sequence, next iterator).

    The fast way is one pass from the body's bytes to each record's Avro key and value
    (the C transcoder, ``connectors.dynamodb.transcode``), which also builds the records: its
    StreamRecords, with SourceRecord's fields (``encoded_key``/``encoded_value`` set, no
    decoded images, ``key`` and ``source`` built when read). A page the transcoder does
    not take (it raises ValueError on anything unusual), and every page where it was not
    built, goes the general way: orjson, then ``from_stream_records``, where a bad record
    becomes a ConversionError for the dead-letter topic as always.
    """

    def __init__(self, ctx: StreamContext) -> None:
        self._ctx = ctx
        self._transcoder = None if Transcoder is None else Transcoder(
            tuple((k.name, k.type) for k in ctx.key_fields), ctx.table, ctx.region, ctx.stream_arn, ctx.shard_id,
            records=(ctx.topic, ctx.key_fields) if RECORDS_IN_ONE_PASS else None,
        )

    def read(self, body: bytes) -> tuple[list[SourceRecord], str | None, str | None]:
        if self._transcoder is None:
            return self._general(body)
        ts_ms = int(time.time() * 1000)
        try:
            page, last_seq, next_iterator = self._transcoder.page(body, ts_ms)
        except ValueError as e:
            log.info("%s %s: page takes the general path: %s", self._ctx.table, self._ctx.shard_id, e)
            return self._general(body)
        if RECORDS_IN_ONE_PASS:
            return cast(list[SourceRecord], page), last_seq, next_iterator
        ctx = self._ctx
        out = []
        for op, key, source, key_avro, value_avro in page:
            out.append(SourceRecord(ctx.topic, ctx.table, ctx.key_fields, key, op, None, None, source, ts_ms,
                                    encoded_key=key_avro, encoded_value=value_avro))
            if op == "d":
                out.append(SourceRecord(ctx.topic, ctx.table, ctx.key_fields, key, op, None, None, source, ts_ms,
                                        tombstone=True, encoded_key=key_avro))
        return out, last_seq, next_iterator

    def _general(self, body: bytes) -> tuple[list[SourceRecord], str | None, str | None]:
        resp = orjson.loads(body) if body else {}
        raw = resp.get("Records") or []
        last = raw[-1]["dynamodb"]["SequenceNumber"] if raw else None
        return from_stream_records(raw, self._ctx), last, resp.get("NextShardIterator")
