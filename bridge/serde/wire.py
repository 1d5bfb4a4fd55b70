"""Confluent wire format: magic byte 0, 4-byte big-endian schema id, then the Avro body."""

from __future__ import annotations

import struct

from bridge.errors import ConversionError

__all__ = ["frame", "unframe"]

_HEADER = struct.Struct(">bI")


def frame(schema_id: int, payload: bytes) -> bytes:
    return _HEADER.pack(0, schema_id) + payload


def unframe(data: bytes) -> tuple[int, bytes]:
    """Split a framed message into (schema id, Avro body)."""
    if len(data) < 5 or data[0] != 0:
        raise ConversionError("not Confluent wire format: expected magic byte 0 and a 4-byte schema id")
    return _HEADER.unpack_from(data)[1], data[5:]
