"""``value: {shape: typed, ...}``: declarations, inference and conflict policy, checked at start."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field as PField
from pydantic import model_validator

from bridge.config import Model
from bridge.errors import ConversionError
from connectors.dynamodb.typed.names import check_distinct
from connectors.dynamodb.typed.numbers import MAX_PRECISION
from connectors.dynamodb.typed.types import Arr, Dec, Field, Prim, Rec, TType

__all__ = ["AttributeDecl", "TYPED_KEYS", "TypedOptions", "TypedValueConfig"]

_LOGICAL = {"timestamp-millis": "long", "timestamp-micros": "long", "uuid": "string"}
_SCALARS = ("string", "boolean", "bytes", "long", "double", "decimal")


class AttributeDecl(Model):
    """One declared attribute; undeclared ones are inferred."""

    name: str = PField(min_length=1, description="the attribute's DynamoDB name (any text)")
    type: Literal["string", "boolean", "bytes", "long", "double", "decimal", "array"]
    items: Literal["string", "boolean", "bytes", "long", "double", "decimal"] | None = PField(
        None, description="type: array: its items' type (sets and lists)")
    logical_type: Literal["timestamp-millis", "timestamp-micros", "uuid"] | None = None
    precision: int | None = PField(None, ge=1, le=MAX_PRECISION, description="decimal: total digits (at most 38)")
    scale: int = PField(0, ge=0, le=MAX_PRECISION, description="decimal: digits after the point")
    nullable: bool = True
    default: str | bool | int | float | None = PField(
        None, description="nullable: false: written when the item lacks the attribute (string, boolean, long, double)")

    @model_validator(mode="after")
    def _consistent(self) -> AttributeDecl:
        scalar = self.items if self.type == "array" else self.type
        problems = []
        if self.type == "array" and self.items is None:
            problems.append("type: array needs items (e.g. items: string)")
        if self.type != "array" and self.items is not None:
            problems.append("items is only read with type: array")
        if scalar == "decimal" and self.precision is None:
            problems.append("type decimal needs precision (1-38) and scale, e.g. precision: 38, scale: 0")
        if scalar == "decimal" and self.precision is not None and self.scale > self.precision:
            problems.append(f"scale ({self.scale}) must not exceed precision ({self.precision})")
        if scalar != "decimal" and (self.precision is not None or self.scale):
            problems.append("precision and scale are only read with decimal")
        if self.logical_type is not None and _LOGICAL[self.logical_type] != scalar:
            problems.append(f"logical_type {self.logical_type} needs type {_LOGICAL[self.logical_type]}")
        if self.default is not None:
            if self.nullable:
                problems.append("default is only read with nullable: false (an optional field defaults to null)")
            elif self.type not in ("string", "boolean", "long", "double") or not _default_fits(self.type, self.default):
                problems.append(f"default {self.default!r} must be a {self.type}; defaults exist for string, boolean, "
                                f"long and double")
        if problems:
            raise ValueError(f"attribute {self.name!r}: " + "; ".join(problems))
        return self

    def type_model(self) -> TType:
        scalar = self.items if self.type == "array" else self.type
        t: TType = Dec(self.precision or MAX_PRECISION, self.scale) if scalar == "decimal" else Prim(
            scalar, self.logical_type)  # type: ignore[arg-type]
        return Arr(t) if self.type == "array" else t

    def field(self) -> Field:
        return Field(self.name, self.type_model(), self.nullable, self.default, self.default is not None)


def _default_fits(t: str, v: Any) -> bool:
    if t == "string":
        return type(v) is str
    if t == "boolean":
        return type(v) is bool
    if t == "long":
        return type(v) is int and -(2**63) <= v < 2**63
    return type(v) in (int, float)


class TypedOptions(Model):
    """The keys of ``value`` that ``shape: typed`` reads (docs/schemas.md, "Typed values")."""

    attributes: list[AttributeDecl] = PField(default_factory=list, description="declared attributes, in field order")
    sample_items: int = PField(1000, ge=0, le=1_000_000, description="items read by a Scan at start to infer the "
                               "first schema (0: none; the stream and snapshot infer as they flow)")
    maps: Literal["record", "attribute_value"] = PField(
        "record", description="M as nested records (a field per key) or as map<AttributeValue>")
    on_conflict: Literal["dead-letter", "widen", "stop"] = PField(
        "dead-letter", description="a value that does not fit its field: dead-letter the record with the reason, "
        "widen the field to a union, or stop with one line")
    image: Literal["envelope", "after"] = PField(
        "envelope", description="envelope: op, before, after, source, ts_ms as in the envelope shape; after: the "
        "after image alone (a delete is its tombstone only)")

    @model_validator(mode="after")
    def _distinct(self) -> TypedOptions:
        try:
            check_distinct([a.name for a in self.attributes], "attributes")
        except ConversionError as e:
            raise ValueError(str(e)) from None
        names = [a.name for a in self.attributes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"attribute {dup[0]!r} is declared twice; declare each once")
        return self

    def declared(self) -> Rec:
        return Rec(tuple(a.field() for a in self.attributes))


class TypedValueConfig(TypedOptions):
    """Values as Avro records whose fields are the item's attributes."""

    shape: Literal["typed"] = "typed"


TYPED_KEYS = tuple(TypedOptions.model_fields)
