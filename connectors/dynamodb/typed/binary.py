"""Avro binary primitives for typed values: the reference the C writer is held to."""

from __future__ import annotations

import struct
from decimal import Decimal

from connectors.dynamodb.avro import encode_long

__all__ = ["long_bytes", "string_bytes", "bytes_bytes", "double_bytes", "decimal_bytes"]

_DOUBLE = struct.Struct("<d")

long_bytes = encode_long  # the envelope's zig-zag varint: one implementation for both shapes


def string_bytes(s: str) -> bytes:
    b = s.encode("utf-8")
    return long_bytes(len(b)) + b


def bytes_bytes(b: bytes) -> bytes:
    return long_bytes(len(b)) + b


def double_bytes(x: float) -> bytes:
    return _DOUBLE.pack(x)


def decimal_bytes(unscaled: int) -> bytes:
    """Two's-complement big-endian in the fewest bytes, as Java's BigInteger.toByteArray (and fastavro)."""
    n = (unscaled.bit_length() + 8) // 8
    return bytes_bytes(unscaled.to_bytes(n, "big", signed=True))


def unscaled(d: Decimal, scale: int) -> int | None:
    """``d`` × 10^scale as an int, or None when that would drop digits (never rounds)."""
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    n = int("".join(map(str, digits)) or "0")
    shift = exp + scale
    if shift >= 0:
        n *= 10**shift
    else:
        q, r = divmod(n, 10**-shift)
        if r:
            return None
        n = q
    return -n if sign else n
