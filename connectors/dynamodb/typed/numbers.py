"""DynamoDB numbers (exact decimal text, up to 38 digits) → long, double or decimal, exactly.

Inference from the text alone (docs/schemas.md): an integer that fits a signed 64-bit long →
``long``; a larger integer → ``decimal(38, 0)``; a fraction whose text a double reproduces
exactly (``19.99``) → ``double``; any other fraction → ``decimal(38, its scale)``. A value
that does not fit its field's type (a fraction in a long, 39 significant digits in a
decimal(38, 0), a scale beyond the declared one, a text a double would round) is a type
conflict, handled by the table's conflict policy: never a rounding.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from connectors.dynamodb.typed.binary import decimal_bytes, double_bytes, long_bytes, unscaled
from connectors.dynamodb.typed.types import Dec, Prim, TType

__all__ = ["infer_number", "encode_number", "MAX_PRECISION"]

MAX_PRECISION = 38
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


def _integer(text: str) -> int | None:
    """The int of plain integer text (ASCII digits, optional '-'), else None: ``int()`` alone
    would take ``" 5"``, ``"+5"`` and ``"1_000"``, which the C writer does not."""
    body = text[1:] if text[:1] == "-" else text
    if body and body.isascii() and body.isdigit():
        return int(text)
    return None


def _decimal(text: str) -> Decimal | None:
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def _double_exact(d: Decimal) -> float | None:
    f = float(d)
    return f if f not in (float("inf"), float("-inf")) and Decimal(repr(f)) == d else None


def _scale(d: Decimal) -> int:
    exp = d.as_tuple().exponent
    assert isinstance(exp, int)
    return max(0, -exp)


def _digits(n: int) -> int:
    return len(str(abs(n))) if n else 1


def infer_number(text: str) -> TType | None:
    """The type the text alone calls for (rule above); None when it is not a number or no
    type holds it exactly (more than 38 significant digits that a double would round)."""
    n = _integer(text)
    if n is not None and _LONG_MIN <= n <= _LONG_MAX:
        return Prim("long")
    d = _decimal(text)
    if d is None:
        return None
    if d == d.to_integral_value():
        n = int(d)
        if _LONG_MIN <= n <= _LONG_MAX:
            return Prim("long")
        if _digits(n) <= MAX_PRECISION:
            return Dec(MAX_PRECISION, 0)
        return Prim("double") if _double_exact(d) is not None else None
    if _double_exact(d) is not None:
        return Prim("double")
    scale = _scale(d)
    u = unscaled(d, scale)
    return Dec(MAX_PRECISION, scale) if scale <= MAX_PRECISION and u is not None and _digits(u) <= MAX_PRECISION \
        else None


def encode_number(t: Prim | Dec, text: str) -> bytes | None:
    """The Avro body of ``text`` as type ``t``, or None when it does not fit exactly."""
    if isinstance(t, Prim):
        if t.kind == "long":
            n = _integer(text)
            if n is None:
                d = _decimal(text)
                if d is None or d != d.to_integral_value():
                    return None
                n = int(d)
            return long_bytes(n) if _LONG_MIN <= n <= _LONG_MAX else None
        if t.kind == "double":
            d = _decimal(text)
            f = None if d is None else _double_exact(d)
            return None if f is None else double_bytes(f)
        return None
    d = _decimal(text)
    if d is None:
        return None
    u = unscaled(d, t.scale)
    if u is None or _digits(u) > t.precision:
        return None
    return decimal_bytes(u)
