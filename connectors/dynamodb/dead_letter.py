"""What the dead-letter topic keeps of a change that never serialized, for both value shapes."""

from __future__ import annotations

import base64
import io
import json
from decimal import Decimal
from functools import lru_cache
from typing import Any

import fastavro

from bridge.task import SourceRecord

__all__ = ["change_dead_letter_value"]


def change_dead_letter_value(record: SourceRecord) -> Any:
    """The change as JSON-able data: its op, key and images as the source gave them."""
    v = record.value
    if v is None:
        body = getattr(record, "encoded_value", None)
        if body is not None and not record.tombstone:  # the typed one-pass writer's: only the body
            return _from_typed_body(record, body)
        return {"key": record.key}
    return {"op": v.op, "key": record.key, "before": v.before, "after": v.after}


@lru_cache(maxsize=64)
def _parsed(schema_text: str) -> Any:
    return fastavro.parse_schema(json.loads(schema_text))


def _from_typed_body(record: SourceRecord, body: bytes) -> Any:
    """A typed value read back, its images as DynamoDB JSON again (sets as lists: a picture of
    the change for the dead-letter topic, not a lossless copy)."""
    try:
        v: Any = fastavro.schemaless_reader(io.BytesIO(body), _parsed(record.schema.value_schema), None)
    except Exception:  # noqa: BLE001 - a body that does not read: the key is what is left
        return {"key": record.key}
    return {"op": v.get("op"), "key": record.key, "before": _item(v.get("before")), "after": _item(v.get("after"))}


def _item(image: Any) -> Any:
    if image is None:
        return None
    return {k: _attribute(x) for k, x in image.items() if x is not None}


def _attribute(x: Any) -> Any:
    if isinstance(x, bool):
        return {"BOOL": x}
    if isinstance(x, (int, Decimal)):
        return {"N": str(x)}
    if isinstance(x, float):
        return {"N": repr(x)}
    if isinstance(x, str):
        return {"S": x}
    if isinstance(x, bytes):
        return {"B": base64.b64encode(x).decode()}
    if isinstance(x, dict):
        return {"M": {k: _attribute(y) for k, y in x.items() if y is not None}}
    if isinstance(x, list):
        return {"L": [_attribute(y) for y in x]}
    return {"NULL": True}
