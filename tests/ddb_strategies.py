"""Hypothesis strategies for DynamoDB items in the Streams wire format (B as base64 text)."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import strategies as st

__all__ = ["attribute_values", "expected_item", "items", "names", "numbers"]

# Any text DynamoDB allows as a name or string: control characters, quotes, backslashes,
# non-ASCII and astral characters (surrogate pairs once \u-escaped) included.
names = st.text(min_size=1, max_size=8)
strings = st.text(max_size=24)
# N is exact decimal text of up to 38 digits; the bridge never parses it.
numbers = st.from_regex(r"-?(0|[1-9][0-9]{0,37})(\.[0-9]{1,10})?(E[+-]?[0-9]{1,3})?", fullmatch=True)
binaries = st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode())

scalars = st.one_of(
    strings.map(lambda v: {"S": v}),
    numbers.map(lambda v: {"N": v}),
    binaries.map(lambda v: {"B": v}),
    st.booleans().map(lambda v: {"BOOL": v}),
    st.just({"NULL": True}),
    st.lists(strings, min_size=1, max_size=4, unique=True).map(lambda v: {"SS": v}),
    st.lists(numbers, min_size=1, max_size=4, unique=True).map(lambda v: {"NS": v}),
    st.lists(binaries, min_size=1, max_size=4, unique=True).map(lambda v: {"BS": v}),
)

attribute_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda v: {"L": v}),
        st.dictionaries(names, children, max_size=4).map(lambda v: {"M": v}),
    ),
    max_leaves=12,
)

items = st.dictionaries(names, attribute_values, max_size=6)


def _expected(av: dict[str, Any]) -> dict[str, Any]:
    ((t, v),) = av.items()
    if t == "B":
        return {t: base64.b64decode(v)}
    if t == "BS":
        return {t: [base64.b64decode(x) for x in v]}
    if t == "M":
        return {t: expected_item(v)}
    if t == "L":
        return {t: [_expected(x) for x in v]}
    return {t: v}


def expected_item(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """The item as ``connectors.dynamodb.avro.item_from_avro`` gives it back: B and BS as bytes."""
    return None if item is None else {k: _expected(v) for k, v in item.items()}
