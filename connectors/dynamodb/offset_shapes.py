"""The exact shape of every offset the DynamoDB connectors store, checked at start.

The offsets topic is plain JSON that anyone with write access can edit, and the readers
act on what they find: ``"ended": "no"`` was once read as true (a non-empty string) and
the open shard was never read again. So every stored offset is checked here, field by
field, before the bridge acts on it; anything else stops the start (``OffsetStore``
names the record and the fix). One shape per source partition:

====================================  ==================================================
source partition                      offset (``?``: may be absent)
====================================  ==================================================
``{table, shard}``                    ``{seq: digits|null, ended: bool, trimmed?: bool,
                                      at?: digits|null, at_ms?: int|null}``
``{table, segment, total_segments}``  ``{pass: int, last_key: key|null, done: bool,
                                      items: int, scanned: int, finished_ms?: int}``
``{table, export, file}``             ``{line: int, items: int, done: bool}``
``{table, export: "request"}``        ``{export_arn: str, requested_ms: int}``
``{table, handoff}``                  ``{t0_ms: int}``
====================================  ==================================================

Integers are JSON integers (never ``true``/``false``, never strings) and not negative.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["check_offset", "check_partition"]

_SEQ = re.compile(r"^[0-9]{1,64}$")

Check = Callable[[Any], str | None]


def _int(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int):
        return f"must be a whole number, not {_show(v)}"
    return None if v >= 0 else f"must not be negative, not {v}"


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, not {_show(v)}"


def _text(v: Any) -> str | None:
    return None if isinstance(v, str) and v else f"must be a non-empty string, not {_show(v)}"


def _seq(v: Any) -> str | None:
    if v is None or (isinstance(v, str) and _SEQ.match(v)):
        return None
    return f"must be a sequence number (a string of digits) or null, not {_show(v)}"


def _key_or_null(v: Any) -> str | None:
    """A Scan's ``LastEvaluatedKey``: the table's key, one or two attributes, each an
    AttributeValue of a key type (``{"S"|"N"|"B": string}``). Anything else was sent as the
    next ``ExclusiveStartKey`` and refused by DynamoDB on every retry (moto: HTTP 500)."""
    if v is None:
        return None
    if not isinstance(v, dict) or not 1 <= len(v) <= 2:
        return f"must be a JSON object holding the table's key (one or two attributes such as {{\"pk\": {{\"S\": \"a\"}}}}) or null, not {_show(v)}"
    for name, av in v.items():
        if not (isinstance(av, dict) and len(av) == 1 and next(iter(av)) in ("S", "N", "B")
                and isinstance(next(iter(av.values())), str)):
            return f'attribute {_show(name)} must be a key AttributeValue ({{"S"|"N"|"B": "..."}}), not {_show(av)}'
    return None


def _int_or_null(v: Any) -> str | None:
    return None if v is None else _int(v)


def _show(v: Any) -> str:
    import json

    text = json.dumps(v) if not isinstance(v, (bytes, bytearray)) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


# (required fields, optional fields) per kind of source partition.
_SHAPES: dict[str, tuple[dict[str, Check], dict[str, Check]]] = {
    "shard": ({"seq": _seq, "ended": _bool}, {"trimmed": _bool, "at": _seq, "at_ms": _int_or_null}),
    "segment": (
        {"pass": _int, "last_key": _key_or_null, "done": _bool, "items": _int, "scanned": _int},
        {"finished_ms": _int},
    ),
    "export file": ({"line": _int, "items": _int, "done": _bool}, {}),
    "export request": ({"export_arn": _text, "requested_ms": _int}, {}),
    "handoff": ({"t0_ms": _int}, {}),
}


def _kind(partition: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Which kind of source partition this is, or why it is none the bridge writes."""
    if _text(partition.get("table")) is not None:
        return None, f'the source partition\'s "table" {_text(partition.get("table"))}'
    fields = set(partition) - {"table"}
    if fields == {"shard"}:
        why = _text(partition["shard"])
        return ("shard", None) if why is None else (None, f'"shard" {why}')
    if fields == {"segment", "total_segments"}:
        for name in ("segment", "total_segments"):
            why = _int(partition[name])
            if why is not None:
                return None, f'"{name}" {why}'
        if not partition["segment"] < partition["total_segments"]:
            return None, '"segment" must be smaller than "total_segments"'
        return "segment", None
    if fields == {"export", "file"}:
        for name in ("export", "file"):
            why = _text(partition[name])
            if why is not None:
                return None, f'"{name}" {why}'
        return "export file", None
    if fields == {"export"}:
        if partition["export"] != "request":
            return None, f'"export" without "file" must be "request", not {_show(partition["export"])}'
        return "export request", None
    if fields == {"handoff"}:
        why = _text(partition["handoff"])
        return ("handoff", None) if why is None else (None, f'"handoff" {why}')
    return None, (
        f"source partition with fields {sorted(partition)} is none this bridge writes "
        "(shard, scan segment, export file, export request, handoff)"
    )


def check_partition(partition: Mapping[str, Any]) -> str | None:
    """Why ``partition`` is no source partition the DynamoDB connectors write, or None
    (what a tombstone's key must be: ``offsets import`` checks it for null offsets)."""
    return _kind(partition)[1]


def check_offset(partition: Mapping[str, Any], offset: Any) -> str | None:
    """Why ``offset`` under ``partition`` is not an offset the DynamoDB connectors wrote, or None."""
    kind, why = _kind(partition)
    if kind is None:
        return why
    if not isinstance(offset, dict):
        return f"the {kind} offset must be a JSON object, not {_show(offset)}"
    required, optional = _SHAPES[kind]
    for name, check in required.items():
        if name not in offset:
            return f'the {kind} offset lacks "{name}"'
        why = check(offset[name])
        if why is not None:
            return f'"{name}" {why}'
    for name, value in offset.items():
        if name in required:
            continue
        check_optional = optional.get(name)
        if check_optional is None:
            return f'the {kind} offset has an unknown field "{name}" (fields: {", ".join(sorted({**required, **optional}))})'
        why = check_optional(value)
        if why is not None:
            return f'"{name}" {why}'
    return None
