"""The C typed writer (``_typed.c``) and the Python one give identical bytes wherever the C
one takes an item, and it takes the ordinary ones (it may hand anything unusual back)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import ConversionError
from connectors.dynamodb.typed.encode import encode_record
from connectors.dynamodb.typed.infer import absorb_item
from connectors.dynamodb.typed.plan import AVAILABLE, Plan, spec
from connectors.dynamodb.typed.types import Dec, Field, Prim, Rec
from tests.ddb_strategies import attribute_values, names, numbers

pytestmark = pytest.mark.skipif(Plan is None, reason="the C extension was not built here (no compiler?)")


def python(rec: Rec, item: Any) -> bytes | None:
    out: list[bytes] = []
    try:
        encode_record(rec, item, out)
    except ConversionError:
        return None
    return b"".join(out)


def c(rec: Rec, item: Any) -> bytes | None:
    return Plan(spec(rec)).encode(item)  # type: ignore[misc]


items = st.dictionaries(names, attribute_values, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(items, min_size=1, max_size=4), st.booleans())
def test_c_equals_python_where_it_writes(seen: list[dict[str, Any]], widen: bool) -> None:
    rec = Rec()
    for item in seen[:-1]:
        try:
            rec = absorb_item(rec, item, "record", widen)
        except ConversionError:
            pass
    item = seen[-1]
    got = c(rec, item)
    if got is not None:
        assert got == python(rec, item)


@settings(max_examples=60, deadline=None)
@given(items)
def test_c_writes_what_the_schema_was_grown_from(item: dict[str, Any]) -> None:
    try:
        rec = absorb_item(Rec(), item, "record", True)
    except ConversionError:
        return
    want = python(rec, item)
    if want is not None:
        assert c(rec, item) == want


@given(numbers, st.sampled_from([Prim("long"), Prim("double"), Dec(38, 0), Dec(38, 10), Dec(10, 2), Dec(1, 0)]))
def test_numbers_exactly_as_python(text: str, t: Any) -> None:
    rec = Rec((Field("n", t),))
    got, want = c(rec, {"n": {"N": text}}), python(rec, {"n": {"N": text}})
    assert got is None or got == want
    if want is not None and text.lstrip("-").replace(".", "").isdigit():
        assert got == want  # plain text is never handed back


def test_declared_defaults_and_unknown_attributes() -> None:
    rec = Rec((Field("q", Prim("long"), nullable=False, default=3, has_default=True), Field("s", Prim("string"))))
    assert c(rec, {"s": {"S": "x"}}) == python(rec, {"s": {"S": "x"}})
    assert c(rec, {"s": {"S": "x"}, "new": {"S": "y"}}) is None
    assert AVAILABLE
