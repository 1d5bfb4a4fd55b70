"""An M kept as ``map<AttributeValue>`` (``maps: attribute_value``): the envelope's encoding."""

from __future__ import annotations

from typing import Any

from bridge.errors import ConversionError
from connectors.dynamodb.avro import encode_item
from connectors.dynamodb.schemas import load_avsc

__all__ = ["attribute_value_schema", "encode_av_map"]


def attribute_value_schema() -> dict[str, Any]:
    return load_avsc("attribute_value")


def encode_av_map(m: Any, path: str) -> bytes:
    try:
        return encode_item(m)
    except ConversionError as e:
        raise ConversionError(f"attribute {path}: {e}") from None
