"""Watermark items of a concurrent snapshot: keys in a range no real item uses, written to
the table so that the stream marks a moment (docs/snapshots.md). The snapshot filters them
out of the topic; the typed schema must never learn from them."""

from __future__ import annotations

import base64
import random
from typing import Any, Protocol

from connectors.dynamodb.schemas import KeyField

__all__ = ["WATERMARK_PREFIX", "is_watermark", "watermark_item", "watermark_marker"]

WATERMARK_PREFIX = "__ddb_kafka_bridge_watermark__"
_WATERMARK_B = WATERMARK_PREFIX.encode()
# N hash keys: watermarks use numbers below -9.99...E+125 (the N type's lower end).
_WATERMARK_N = "-9.9999999999999999999999"


class _Keyed(Protocol):
    @property
    def key_fields(self) -> tuple[KeyField, ...]: ...


def watermark_item(table: _Keyed, marker: str) -> dict[str, Any]:
    """A key in the watermark range of the table's key schema (random, so it hashes anywhere)."""
    item: dict[str, Any] = {}
    for i, kf in enumerate(table.key_fields):
        if kf.type == "S":
            item[kf.name] = {"S": f"{WATERMARK_PREFIX}#{marker}" if i == 0 else "#"}
        elif kf.type == "B":
            item[kf.name] = {"B": base64.b64encode(_WATERMARK_B + marker.encode() if i == 0 else b"\x00").decode()}
        else:
            digits = "".join(random.choices("0123456789", k=12)) + "1"
            item[kf.name] = {"N": f"{_WATERMARK_N}{digits}E+125" if i == 0 else "0"}
    return item


def watermark_marker(key: dict[str, Any], table: _Keyed) -> str | None:
    """The marker id of a watermark key, or None for an ordinary key."""
    h = table.key_fields[0]
    av = key.get(h.name) or {}
    if h.type == "S":
        s = av.get("S", "")
        return s.split("#", 1)[1] if s.startswith(WATERMARK_PREFIX + "#") else None
    if h.type == "B":
        raw = av.get("B", b"")
        b = raw if isinstance(raw, (bytes, bytearray)) else base64.b64decode(raw)
        return bytes(b[len(_WATERMARK_B) :]).decode(errors="replace") if bytes(b).startswith(_WATERMARK_B) else None
    n = av.get("N", "")
    return n if n.startswith(_WATERMARK_N) else None


def is_watermark(key: dict[str, Any], table: _Keyed) -> bool:
    return watermark_marker(key, table) is not None
