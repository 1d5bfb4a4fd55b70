"""Kafka headers with a record's source metadata (``tables[].headers``), so consumers can
filter without decoding the value.

Names (values are UTF-8 text; a header whose field the record does not have is left out):

=======================  ====================================================================
``ddb.op``               ``c`` insert, ``u`` modify, ``d`` remove (also on its tombstone), ``r`` snapshot row
``ddb.table``            the DynamoDB table's name
``ddb.shard``            the stream shard id (stream records)
``ddb.segment``          ``<segment>/<total segments>`` (Scan snapshot rows)
``ddb.snapshot``         ``scan`` or ``export`` (snapshot rows)
``ddb.seq``              the stream record's sequence number
``ddb.created_ms``       the stream record's ApproximateCreationDateTime, epoch milliseconds
=======================  ====================================================================

``headers: true`` writes all of them; a list (``[op, table]``) writes those named (the names
without the ``ddb.`` prefix).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

from bridge.serde.converter import KafkaHeaders
from bridge.task import SourceRecord

__all__ = ["HEADER_NAMES", "HeaderName", "header_maker", "op_of"]

PREFIX = "ddb."
HeaderName = Literal["op", "table", "shard", "segment", "snapshot", "seq", "created_ms"]
HEADER_NAMES: tuple[str, ...] = get_args(HeaderName)


def op_of(record: SourceRecord) -> str:
    """A record's operation, also where only the encoded envelope holds it (the one-pass writers')."""
    if record.tombstone:
        return "d"
    value = record.value
    if value is not None:
        return str(value.op)
    body = record.encoded_value
    # The envelope's first field is op, a one-letter Avro string: its length (0x02), the letter.
    return body[1:2].decode() if body else ""


def _segment(p: dict[str, Any]) -> str | None:
    s = p.get("segment")
    return None if s is None else f"{s}/{p.get('total_segments')}"


def _text(v: Any) -> str | None:
    return None if v is None else str(v)


_FIELDS: dict[str, Callable[[SourceRecord, dict[str, Any]], str | None]] = {
    "op": lambda r, p: op_of(r),
    "table": lambda r, p: _text(p.get("table")),
    "shard": lambda r, p: _text(p.get("shard_id")),
    "segment": lambda r, p: _segment(p),
    "snapshot": lambda r, p: _text(p.get("snapshot")),
    "seq": lambda r, p: _text(p.get("sequence_number")),
    "created_ms": lambda r, p: _text(p.get("approximate_creation_ms")),
}


def header_maker(names: tuple[str, ...]) -> Callable[[SourceRecord], KafkaHeaders]:
    """The headers function of a table that asked for ``names`` (validated by the config)."""
    wanted = [(PREFIX + n, _FIELDS[n]) for n in names]

    def headers(record: SourceRecord) -> KafkaHeaders:
        p = record.position or {}
        out: KafkaHeaders = []
        for name, get in wanted:
            v = get(record, p)
            if v is not None:
                out.append((name, v.encode()))
        return out

    return headers
