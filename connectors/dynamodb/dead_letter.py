"""What the dead-letter topic keeps of a change that never serialized, for both value shapes."""

from __future__ import annotations

import io
import json
from functools import lru_cache
from typing import Any

import fastavro

from bridge.task import SourceRecord

__all__ = ["change_dead_letter_value"]


@lru_cache(maxsize=64)
def _reader(value_schema: str) -> Any:
    return fastavro.parse_schema(json.loads(value_schema))


def _plain(v: Any) -> Any:
    """An envelope image's AttributeValue records without their null members: DynamoDB JSON again."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def change_dead_letter_value(record: SourceRecord) -> Any:
    """The change as JSON-able data: its op, key and images as the source gave them.

    A record of the one-pass transcoder carries only its Avro body: its images are read back
    from it (typed images as their typed values, envelope images as DynamoDB JSON), so a
    record a transform refused still shows what it held."""
    v = record.value
    if v is not None:
        return {"op": v.op, "key": record.key, "before": v.before, "after": v.after}
    body = record.encoded_value
    if body is None:
        return {"key": record.key}
    try:
        decoded = fastavro.schemaless_reader(io.BytesIO(body), _reader(record.schema.value_schema), None)
    except Exception:  # noqa: BLE001 - a body that does not read: the key is what is left
        return {"key": record.key}
    if isinstance(decoded, dict) and "op" in decoded:
        return {"op": decoded["op"], "key": record.key, "before": _plain(decoded.get("before")),
                "after": _plain(decoded.get("after"))}
    return {"key": record.key, "after": _plain(decoded)}  # the after image alone (typed, image: after)
