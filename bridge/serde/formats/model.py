"""An Avro schema as a walkable graph, and Avro bodies decoded into data of that graph.

The other formats (JSON, JSON Schema, Protobuf) are written *from* the Avro the connector
gives: the Avro schema is the neutral schema (Kafka Connect's ``Schema`` plays this part
there), and an Avro body, however it was written (the C transcoder's one pass or a
handle's ``encode_value``), decodes to the same data. So every connector and value shape
gets every format, and the Avro path stays the byte-for-byte reference.

Logical types other than decimal are read as their underlying type (a timestamp-millis
stays its epoch-millisecond long), so no format ever sees a value a clock or a locale
changed; decimals are read as :class:`decimal.Decimal`, exact.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from io import BytesIO
from typing import Any

from fastavro import parse_schema

try:  # fastavro's compiled reader, without the Python wrapper's checks per call (~30% of a wide record)
    from fastavro._read import schemaless_reader as _schemaless_reader
except ImportError:  # pragma: no cover - a fastavro without its extension
    from fastavro import schemaless_reader as _schemaless_reader

from bridge.errors import ConversionError

__all__ = ["ArrayT", "AvroModel", "DecimalT", "EnumT", "MapT", "Node", "PrimT", "RecordT", "UnionT", "avro_model",
           "b64", "decimal_text", "unscaled_of"]


@dataclass(eq=False)
class PrimT:
    kind: str  # null boolean int long float double bytes string, and "fixed"
    size: int = 0  # fixed: its size


@dataclass(eq=False)
class DecimalT:
    precision: int
    scale: int
    size: int = 0  # 0: on bytes; else on a fixed of this size


@dataclass(eq=False)
class EnumT:
    name: str
    namespace: str | None
    symbols: list[str]


@dataclass(eq=False)
class ArrayT:
    items: Node = field(repr=False)


@dataclass(eq=False)
class MapT:
    values: Node = field(repr=False)


@dataclass(eq=False)
class UnionT:
    branches: list[Node] = field(repr=False)

    @property
    def nullable(self) -> bool:
        return any(isinstance(b, PrimT) and b.kind == "null" for b in self.branches)

    @property
    def others(self) -> list[Node]:
        """The branches but null."""
        return [b for b in self.branches if not (isinstance(b, PrimT) and b.kind == "null")]

    def branch_of(self, value: Any) -> Node:
        """The branch a decoded value is in, told from its Python type (the decoder does not
        keep the Avro union index): exact only for a union with one branch per decoded type
        (int/long, float/double, string/enum, bytes/fixed, map/record each count once), which
        is why protobuf refuses other unions when it builds its schema."""
        for b in self.branches:
            if _fits(b, value):
                return b
        raise ConversionError(f"value {value!r:.60} fits no branch of its union")


@dataclass(eq=False)
class RecordT:
    name: str
    namespace: str | None
    fields: list[tuple[str, Node]] = field(default_factory=list, repr=False)
    doc: str | None = None
    # Fields whose default is null: plain JSON leaves them out when null (absent means null).
    optional: frozenset[str] = frozenset()

    @property
    def full_name(self) -> str:
        return self.name if not self.namespace else f"{self.namespace}.{self.name}"


Node = PrimT | DecimalT | EnumT | ArrayT | MapT | UnionT | RecordT


def _fits(node: Node, v: Any) -> bool:
    if isinstance(node, PrimT):
        k = node.kind
        if k == "null":
            return v is None
        if k == "boolean":
            return type(v) is bool
        if k in ("int", "long"):
            return type(v) is int
        if k in ("float", "double"):
            return type(v) is float
        if k == "string":
            return type(v) is str
        return type(v) is bytes  # bytes, fixed
    if isinstance(node, DecimalT):
        return isinstance(v, Decimal)
    if isinstance(node, EnumT):
        return type(v) is str and v in node.symbols
    if isinstance(node, ArrayT):
        return type(v) is list
    if isinstance(node, MapT | RecordT):
        return type(v) is dict
    return False


def _strip_logical(schema: Any) -> Any:
    """The schema with every logical type but decimal removed (read as the underlying type)."""
    if isinstance(schema, list):
        return [_strip_logical(s) for s in schema]
    if isinstance(schema, dict):
        out = {k: _strip_logical(v) for k, v in schema.items()}
        if out.get("logicalType") not in (None, "decimal"):
            del out["logicalType"]
        return out
    return schema


class _Builder:
    def __init__(self) -> None:
        self.named: dict[str, Node] = {}

    def node(self, s: Any, ns: str | None) -> Node:
        if isinstance(s, str):
            if s in ("null", "boolean", "int", "long", "float", "double", "bytes", "string"):
                return PrimT(s)
            full = s if "." in s or not ns else f"{ns}.{s}"
            found = self.named.get(full) or self.named.get(s)
            if found is None:
                raise ValueError(f"unknown Avro type {s!r}")
            return found
        if isinstance(s, list):
            return UnionT([self.node(b, ns) for b in s])
        t = s["type"]
        if s.get("logicalType") == "decimal" and t in ("bytes", "fixed"):
            node: Node = DecimalT(int(s["precision"]), int(s.get("scale", 0)), int(s.get("size", 0)))
            if t == "fixed":
                self._name(s, ns, node)
            return node
        if t == "record" or t == "error":
            name, namespace = _split(s, ns)
            rec = RecordT(name, namespace, doc=s.get("doc"))
            self._name(s, ns, rec)
            rec.fields = [(f["name"], self.node(f["type"], namespace)) for f in s["fields"]]
            rec.optional = frozenset(f["name"] for f in s["fields"] if "default" in f and f["default"] is None)
            return rec
        if t == "enum":
            name, namespace = _split(s, ns)
            node = EnumT(name, namespace, list(s["symbols"]))
            self._name(s, ns, node)
            return node
        if t == "fixed":
            node = PrimT("fixed", int(s["size"]))
            self._name(s, ns, node)
            return node
        if t == "array":
            return ArrayT(self.node(s["items"], ns))
        if t == "map":
            return MapT(self.node(s["values"], ns))
        return self.node(t, ns)

    def _name(self, s: dict[str, Any], ns: str | None, node: Node) -> None:
        name, namespace = _split(s, ns)
        self.named[name if not namespace else f"{namespace}.{name}"] = node


def _split(s: dict[str, Any], ns: str | None) -> tuple[str, str | None]:
    name = str(s["name"])
    if "." in name:
        namespace, _, short = name.rpartition(".")
        return short, namespace
    return name, s.get("namespace", ns)


@dataclass(eq=False)
class AvroModel:
    """One Avro schema: its graph (``root``) and the reader of its bodies."""

    text: str
    root: Node
    _parsed: Any = field(repr=False)

    def decode(self, body: bytes) -> Any:
        """The data of an Avro body of this schema (dicts, lists, Decimals, bytes)."""
        fo = BytesIO(body)
        try:
            data = _schemaless_reader(fo, self._parsed, None)
        except Exception as e:  # fastavro raises what the bytes make it raise
            raise ConversionError(f"the Avro body does not decode with its schema: {e}") from None
        if fo.tell() != len(body):
            raise ConversionError(f"the Avro body does not decode with its schema: {len(body) - fo.tell()} bytes "
                                  "left over")
        return data


@lru_cache(maxsize=256)
def avro_model(text: str) -> AvroModel:
    """The model of an Avro schema text (cached: a source's handles share their texts)."""
    schema = _strip_logical(json.loads(text))
    return AvroModel(text, _Builder().node(schema, None), parse_schema(schema))


def decimal_text(d: Decimal) -> str:
    """A decimal's exact text, never in exponent form (``1E+3`` is ``1000``)."""
    return format(d, "f")


def unscaled_of(d: Decimal, scale: int) -> int:
    """``d`` times ``10**scale`` as an int, exactly (``Decimal.scaleb`` rounds to 28 digits)."""
    sign, digits, exponent = d.as_tuple()
    n = int("".join(map(str, digits)) or "0")
    shift = int(exponent) + scale
    n = n * 10**shift if shift >= 0 else n // 10**-shift
    return -n if sign else n


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")
