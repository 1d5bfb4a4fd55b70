"""DynamoDB items as ``tail`` and ``verify`` read them back from the topics: the DynamoDB
JSON of a decoded ``map<AttributeValue>``, and a comparable form of an item (numbers exact)."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

from connectors.dynamodb.avro import item_from_avro

__all__ = ["avro_item", "canonical_item", "canonical_number", "tail_view"]


def canonical_number(text: str) -> str:
    """One spelling per DynamoDB number, exact to all 38 digits.

    ``Decimal.normalize()`` rounds to the context's precision (28 digits by default), which
    would make two 38-digit numbers that differ in their last digits compare equal; this
    strips trailing zeros from the exact value instead.
    """
    try:
        sign, digits, exp = Decimal(text).as_tuple()
    except ArithmeticError:
        return text
    if not isinstance(exp, int):
        return text
    ds = list(digits)
    while len(ds) > 1 and ds[-1] == 0:
        ds.pop()
        exp += 1
    if ds == [0]:
        return "0"
    return f"{'-' if sign else ''}{''.join(map(str, ds))}E{exp}"


def _bytes(v: Any) -> bytes:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    return base64.b64decode(v)


def _canonical_av(av: dict[str, Any]) -> Any:
    ((t, v),) = av.items()
    if t == "N":
        return ("N", canonical_number(str(v)))
    if t == "B":
        return ("B", _bytes(v))
    if t == "SS":
        return ("SS", frozenset(v))
    if t == "NS":
        return ("NS", frozenset(canonical_number(str(x)) for x in v))
    if t == "BS":
        return ("BS", frozenset(_bytes(x) for x in v))
    if t == "M":
        return ("M", canonical_item(v))
    if t == "L":
        return ("L", tuple(_canonical_av(x) for x in v))
    return (t, v)


def canonical_item(item: dict[str, Any] | None) -> Any:
    """A comparable form of a DynamoDB JSON item (B as bytes or base64, sets unordered,
    numbers exact), so an item from Scan and one decoded from the topic compare by value."""
    if item is None:
        return None
    return {k: _canonical_av(v) for k, v in item.items()}


def avro_item(value: Any) -> dict[str, Any] | None:
    """The DynamoDB JSON of an Avro ``map<AttributeValue>``."""
    return item_from_avro(value)


_ENVELOPE = frozenset(("op", "before", "after", "source", "ts_ms"))
_AV_FIELDS = frozenset(("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"))


def _image(image: Any) -> Any:
    """An envelope's image as DynamoDB JSON; a typed image (fields, not AttributeValues) as is."""
    if isinstance(image, dict) and all(isinstance(v, dict) and v.keys() == _AV_FIELDS for v in image.values()):
        return avro_item(image)
    return image


def tail_view(value: dict[str, Any]) -> dict[str, Any]:
    """A decoded value as ``tail`` prints it: an envelope with its images as DynamoDB JSON (or
    typed, as they are); a typed after image published alone (``image: after``) as ``value``."""
    if not (isinstance(value, dict) and _ENVELOPE <= value.keys()):
        return {"value": value}
    return {"op": value["op"], "before": _image(value["before"]), "after": _image(value["after"]),
            "source": value["source"], "ts_ms": value["ts_ms"]}
