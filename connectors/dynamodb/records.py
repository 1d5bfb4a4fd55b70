"""DynamoDB Streams records → SourceRecords (envelope fields, tombstones, TTL marks)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bridge.errors import ConversionError
from bridge.task import SourceRecord
from schemas import KeyField

__all__ = ["StreamContext", "from_stream_records", "is_ttl_delete"]

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
