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
from typing import Literal, get_args

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


# Headers that copy one field of the position (the envelope's source block) as text.
_COPIED = {"table": "table", "shard": "shard_id", "snapshot": "snapshot", "seq": "sequence_number",
           "created_ms": "approximate_creation_ms"}


def header_maker(names: tuple[str, ...]) -> Callable[[SourceRecord], KafkaHeaders]:
    """The headers function of a table that asked for ``names`` (validated by the config), in
    the order of ``names``; one pass over them per record, no per-header function calls."""
    plan = [(PREFIX + n, _COPIED.get(n), n) for n in names]

    def headers(record: SourceRecord) -> KafkaHeaders:
        p = record.position or {}
        out: KafkaHeaders = []
        for header, field, name in plan:
            if field is not None:
                v = p.get(field)
                if v is not None:
                    out.append((header, str(v).encode()))
            elif name == "op":
                # The connector's records (ChangeRecord, the C writers' records) all have ``op``;
                # the C ones give it without copying the encoded value, which op_of would read.
                out.append((header, record.op.encode()))  # type: ignore[attr-defined]
            else:  # segment
                s = p.get("segment")
                if s is not None:
                    out.append((header, f"{s}/{p.get('total_segments')}".encode()))
        return out

    return headers
