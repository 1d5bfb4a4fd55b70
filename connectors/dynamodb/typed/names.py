"""Attribute names → Avro field names, by one rule that depends on the name alone.

The rule (docs/schemas.md, "Typed values"):

1. A name that is a valid Avro name (``[A-Za-z_][A-Za-z0-9_]*``) is kept as it is.
2. Any other name: each character outside ``[A-Za-z0-9_]`` becomes ``_``, a leading digit
   (or an empty result) gets ``_`` in front, and ``_`` plus the first 8 hex digits of the
   SHA-256 of the original UTF-8 name are appended: ``order-id`` → ``order_id_e3f2b5e8``.

Every field carries its attribute's original name in the field property ``attribute``
(keys as values), so a consumer in any language maps a field back without this rule.

Why not ``schemas.avro_field_names`` (which adds the hash only on a clash): its result
depends on the other names in the record, so a typed schema gaining ``order_id`` would
rename an existing ``order-id`` field and break every reader. Here a field's name never
changes once chosen. Two attributes that still meet on one name (an attribute literally
called ``order_id_e3f2b5e8`` beside ``order-id``) are refused with an error naming both.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from bridge.errors import ConversionError

__all__ = ["ATTRIBUTE_PROPERTY", "check_distinct", "field_name", "namespace"]

ATTRIBUTE_PROPERTY = "attribute"
_VALID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INVALID = re.compile(r"[^A-Za-z0-9_]")


@lru_cache(maxsize=65536)
def field_name(attribute: str) -> str:
    """The Avro field name of ``attribute`` (rule above)."""
    if _VALID.fullmatch(attribute):
        return attribute
    base = _INVALID.sub("_", attribute)
    if not base or base[0].isdigit():
        base = "_" + base
    tag = hashlib.sha256(attribute.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{base}_{tag}"


def check_distinct(attributes: list[str], where: str) -> None:
    """ConversionError when two attributes of one record get the same field name."""
    seen: dict[str, str] = {}
    for a in attributes:
        name = field_name(a)
        other = seen.setdefault(name, a)
        if other != a:
            raise ConversionError(f"{where}: attributes {other!r} and {a!r} both become Avro field {name!r}; "
                              f"rename one of them or declare the table with shape: envelope")


def namespace(table: str) -> str:
    """The Avro namespace of a table's typed schemas: ``ddbkafka.<table>.typed``, the table
    name with every character outside ``[A-Za-z0-9_]`` as ``_`` (a leading digit gets ``_``)."""
    part = _INVALID.sub("_", table)
    if not part or part[0].isdigit():
        part = "_" + part
    return f"ddbkafka.{part}.typed"
