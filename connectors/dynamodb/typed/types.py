"""The typed schema's model: what each attribute is, independent of Avro's JSON.

Immutable and hashable, so that a table's whole schema is a value: two equal models give the
same Avro text, and the registered id is cached by it (``evolve.SchemaVersions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Arr", "AVMap", "Dec", "Field", "Prim", "Rec", "TType", "UnionT"]

PrimKind = Literal["string", "boolean", "bytes", "long", "double"]


@dataclass(frozen=True, slots=True)
class Prim:
    kind: PrimKind
    logical: str | None = None  # e.g. timestamp-millis on long, uuid on string (declared only)


@dataclass(frozen=True, slots=True)
class Dec:
    """Avro ``bytes`` with logicalType decimal: exact, never rounded."""

    precision: int
    scale: int


@dataclass(frozen=True, slots=True)
class Arr:
    items: TType | None  # None: only empty lists (or NULLs) seen so far


@dataclass(frozen=True, slots=True)
class AVMap:
    """An M kept as ``map<AttributeValue>`` (``maps: attribute_value``), lossless and schemaless."""


@dataclass(frozen=True, slots=True)
class Rec:
    """An M as a nested record: one optional field per key seen (its keys are attributes too)."""

    fields: tuple[Field, ...] = ()

    def get(self, attribute: str) -> Field | None:
        for f in self.fields:
            if f.attribute == attribute:
                return f
        return None


@dataclass(frozen=True, slots=True)
class UnionT:
    """A field widened by the ``widen`` conflict policy: the types seen, in the order seen."""

    branches: tuple[TType, ...]


TType = Prim | Dec | Arr | AVMap | Rec | UnionT


@dataclass(frozen=True, slots=True)
class Field:
    """One attribute. ``type`` None: seen only as NULL so far (written as null, no Avro branch)."""

    attribute: str
    type: TType | None
    nullable: bool = True
    default: Any = None
    has_default: bool = False  # a declared non-null default (nullable fields default to null)

