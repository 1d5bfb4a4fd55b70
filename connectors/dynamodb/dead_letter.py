"""What the dead-letter topic keeps of a change that never serialized, for both value shapes."""

from __future__ import annotations

from typing import Any

from bridge.task import SourceRecord

__all__ = ["change_dead_letter_value"]


def change_dead_letter_value(record: SourceRecord) -> Any:
    """The change as JSON-able data: its op, key and images as the source gave them."""
    v = record.value
    if v is None:
        return {"key": record.key}
    return {"op": v.op, "key": record.key, "before": v.before, "after": v.after}
