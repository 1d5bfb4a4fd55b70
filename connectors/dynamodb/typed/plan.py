"""A typed record's field plan for the C writer (``_typed.c``), compiled from the model.

``compile_plan(rec)`` is the C ``Plan`` of a record, or None where the C writer is not built
(or ``BRIDGE_PURE_PYTHON=1``) or the record holds what it does not write (an M kept as
AttributeValues). ``Plan.encode(item)`` returns the record's Avro body, equal to
``encode.encode_record``'s, or None when the Python writer must decide (an attribute with no
field yet, a value that does not fit, anything unusual).

``compile_stream_plan(rec)`` is the same plan for the C transcoder (``_transcode.TypedPlan``):
the Streams reader's one pass from GetRecords JSON to typed Avro, with no dicts in between.
"""

from __future__ import annotations

import os
from typing import Any

from connectors.dynamodb.typed.encode import encode_default
from connectors.dynamodb.typed.infer import branches
from connectors.dynamodb.typed.types import Arr, AVMap, Dec, Prim, Rec, TType

__all__ = ["AVAILABLE", "STREAM_AVAILABLE", "compile_plan", "compile_stream_plan", "spec"]

try:
    from connectors.dynamodb.typed._typed import Plan
except ImportError:  # not compiled here
    Plan = None

try:  # the C transcoder's typed plans (a build of an older _transcode.c has none)
    from connectors.dynamodb._transcode import TypedPlan  # type: ignore[attr-defined]
except ImportError:
    TypedPlan = None

AVAILABLE = Plan is not None and os.environ.get("BRIDGE_PURE_PYTHON") != "1"
STREAM_AVAILABLE = TypedPlan is not None and os.environ.get("BRIDGE_PURE_PYTHON") != "1"


class _NoPlan(Exception):
    pass


def _node(t: TType) -> tuple[Any, ...]:
    if type(t) is Prim:
        return (t.kind,)
    if type(t) is Dec:
        return ("decimal", t.precision, t.scale)
    if type(t) is Arr:
        return ("array", tuple(_node(b) for b in branches(t.items)))
    if type(t) is Rec:
        return spec(t)
    assert type(t) is AVMap
    raise _NoPlan


def spec(rec: Rec) -> tuple[Any, ...]:
    """The plan's nested-tuple form (what ``Plan`` compiles)."""
    return ("record", tuple(
        (f.attribute, f.nullable, tuple(_node(b) for b in branches(f.type)), encode_default(f) if f.has_default else None)
        for f in rec.fields))


def _compile(make: Any, rec: Rec, **kw: Any) -> Any:
    if make is None:
        return None
    try:
        return make(spec(rec), **kw)
    except _NoPlan:
        return None


def compile_plan(rec: Rec) -> Any:
    return _compile(Plan if AVAILABLE else None, rec)


def compile_stream_plan(rec: Rec, image: str) -> Any:
    """The C transcoder's plan of ``rec`` for values of ``image`` (``envelope`` or ``after``), or
    None (no transcoder, or an M kept as AttributeValues)."""
    return _compile(TypedPlan if STREAM_AVAILABLE else None, rec, after=image == "after")
