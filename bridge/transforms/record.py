"""The record a user's Python transform receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Record"]


@dataclass
class Record:
    """One record as plain Python data: ``value`` and ``key`` as a consumer decodes them
    (dicts, str, int, float, bytes, ``decimal.Decimal`` for decimals: exact), ``headers`` as
    (name, bytes) pairs, ``metadata`` where the source read it (read-only: changing it changes
    nothing), ``topic`` where it goes. Return it changed (``dataclasses.replace`` or in place),
    several, or None to drop it."""

    key: Any
    value: Any
    headers: list[tuple[str, str | bytes | None]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    topic: str = ""
