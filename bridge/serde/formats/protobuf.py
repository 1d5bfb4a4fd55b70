"""``format: protobuf``: a ``.proto`` (proto3) generated from the Avro schema, registered with
``schemaType: PROTOBUF``, and messages in Confluent wire format with message indexes, as
confluent-kafka's ``ProtobufSerializer`` writes them (the root message is the file's first,
so its index list is the single byte 0).

Generation, one rule each:

- records become top-level messages, the root first, named by their Avro full name less the
  root's namespace (dots become ``_``); the package is the root's namespace;
- **field numbers are Avro field positions + 1**. A source whose schemas evolve by
  appending fields gets new numbers for new fields and never a renumbering; a field that is
  null-only so far keeps its number unused until it gets a type;
- ``["null", T]`` is ``optional T`` for scalars (presence kept), the message itself for
  records, and an empty ``repeated``/``map`` for arrays and maps; a union of several types
  (a field widened to several types) is a wrapper message with a ``oneof`` whose branches are
  **numbered by their Avro kind** (long 1, double 2, string 3, ...), not their place, so a
  union that gains a branch anywhere keeps its numbers;
- a union holds at most one branch per decoded value type (int/long, float/double,
  string/enum, bytes/fixed, map/record each count once): the branch is told from the value,
  as the Avro union index is not kept; other unions are refused when the schema is built;
- a field with one type that becomes a union changes from a scalar (or a message) to the
  wrapper message, which protobuf's compatibility rules refuse (``FIELD_KIND_CHANGED``): the
  schema alone does not say which branch was the field's first type, so it cannot keep
  that one at its number;
- long → int64, int → int32, double/float as such, bytes → bytes, **decimal → string of its
  exact text** (protobuf has no decimal), enum → enum (values prefixed with the enum's name);
- an array or map where protobuf takes neither (a ``oneof`` branch, an array item, a map
  value: a list of lists) is a message ``<name>_box`` whose field 1, ``value``, holds it;
- a ``repeated`` cannot hold null: a list with a NULL item does not convert (the record goes
  to the dead-letter topic with the reason); nor can a field seen only as NULL hold a value.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from bridge.errors import ConfigError, ConversionError
from bridge.serde.formats.model import (
    ArrayT,
    DecimalT,
    EnumT,
    MapT,
    Node,
    PrimT,
    RecordT,
    UnionT,
    avro_model,
    decimal_text,
)

__all__ = ["ProtobufConverter", "proto_file"]

_SCALARS = {"boolean": "bool", "int": "int32", "long": "int64", "float": "float", "double": "double",
            "string": "string", "bytes": "bytes", "fixed": "bytes"}
# wire types: 0 varint, 1 64-bit, 2 length-delimited, 5 32-bit
_WIRE = {"bool": 0, "int32": 0, "int64": 0, "enum": 0, "double": 1, "float": 5, "string": 2, "bytes": 2,
         "message": 2}


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class _Field:
    """One generated field and how to write a value of it."""

    __slots__ = ("name", "number", "kind", "label", "type_name", "message", "enum", "union_branches", "boxed")

    def __init__(self, name: str, number: int) -> None:
        self.name, self.number = name, number
        self.kind = ""  # a scalar type, "enum" or "message"
        self.label = ""  # "", "optional", "repeated" or "map"
        self.type_name = ""
        self.message: _Message | None = None
        self.enum: EnumT | None = None
        self.union_branches: list[tuple[Node, _Field]] | None = None
        self.boxed = False  # a message whose field 1 ("value") holds this field's array or map


class _Message:
    __slots__ = ("name", "fields", "oneof", "node", "omitted")

    def __init__(self, name: str, node: Node | None) -> None:
        self.name = name
        self.fields: list[_Field] = []
        self.omitted: list[str] = []  # fields with no protobuf type yet (null-only): must stay empty
        self.oneof = False  # a union wrapper: its fields are one oneof
        self.node = node


class _Generator:
    def __init__(self, root: Node) -> None:
        if not isinstance(root, RecordT):
            raise ConfigError("format protobuf needs a record schema at the top")
        self.package = root.namespace or ""
        self.messages: list[_Message] = []
        self.by_node: dict[int, _Message] = {}
        self.enums: dict[int, tuple[str, EnumT]] = {}
        self.names: set[str] = set()
        self.root = self.record(root)

    def _name(self, full: str) -> str:
        prefix = f"{self.package}." if self.package else ""
        name = (full[len(prefix):] if full.startswith(prefix) else full).replace(".", "_")
        if name in self.names:
            raise ConfigError(f"format protobuf: two types would both be message {name!r}")
        self.names.add(name)
        return name

    def record(self, node: RecordT) -> _Message:
        found = self.by_node.get(id(node))
        if found is not None:
            return found
        msg = _Message(self._name(node.full_name), node)
        self.by_node[id(node)] = msg
        self.messages.append(msg)
        for i, (name, t) in enumerate(node.fields):
            f = self.field(name, i + 1, t, msg.name)
            if f is None:
                msg.omitted.append(name)
            else:
                msg.fields.append(f)
        return msg

    def boxed(self, inner: _Field, parent: str, name: str) -> _Field:
        """An array or map where protobuf takes neither (a oneof branch, an array item, a map
        value) as a message whose field 1, ``value``, holds it."""
        box = _Message(self._name(f"{parent}.{name}_box"), None)
        self.messages.append(box)
        inner.name, inner.number = "value", 1
        box.fields.append(inner)
        f = _Field(name, 0)
        f.kind, f.type_name, f.message, f.boxed = "message", box.name, box, True
        return f

    def field(self, name: str, number: int, t: Node, parent: str, in_union: bool = False) -> _Field | None:
        f = _Field(name, number)
        if isinstance(t, UnionT):
            others = t.others
            if not others:
                return None  # null only so far: the number waits for a type
            if len(others) == 1:
                inner = self.field(name, number, others[0], parent, in_union)
                if inner is not None and inner.kind != "message" and inner.label == "" and not in_union:
                    inner.label = "optional"
                return inner
            _one_per_value_type(name, others)
            wrapper = _Message(self._name(f"{parent}.{name}_union"), t)
            wrapper.oneof = True
            self.messages.append(wrapper)
            branches = []
            for b in others:
                number = _BRANCH_NUMBERS[_kind(b)]
                bf = self.field(f"{_branch(b)}_value", number, b, wrapper.name, in_union=True)
                if bf is None:
                    continue
                if bf.label in ("repeated", "map"):
                    bf = self.boxed(bf, wrapper.name, f"{_branch(b)}_value")
                bf.name, bf.number = f"{_branch(b)}_value", number
                wrapper.fields.append(bf)
                branches.append((b, bf))
            f.kind, f.type_name, f.message, f.union_branches = "message", wrapper.name, wrapper, branches
            return f
        if isinstance(t, ArrayT):
            items = t.items
            if isinstance(items, UnionT) and len(items.others) == 1:
                items = items.others[0]
            inner = self.field(name, number, items, parent, in_union=True)
            if inner is None:
                return None  # items null-only so far
            if inner.label in ("repeated", "map"):
                inner = self.boxed(inner, parent, name)
                inner.number = number
            inner.label = "repeated"
            return inner
        if isinstance(t, MapT):
            values = t.values
            if isinstance(values, UnionT) and len(values.others) == 1:
                values = values.others[0]
            inner = self.field("value", 2, values, parent, in_union=True)
            if inner is None:
                return None
            if inner.label in ("repeated", "map"):
                inner = self.boxed(inner, parent, name)
            f.label, f.kind, f.message = "map", "message", None
            f.type_name = f"map<string, {inner.type_name}>"
            f.union_branches = [(values, inner)]
            return f
        if isinstance(t, RecordT):
            msg = self.record(t)
            f.kind, f.type_name, f.message = "message", msg.name, msg
            return f
        if isinstance(t, EnumT):
            if id(t) not in self.enums:
                self.enums[id(t)] = (self._name(f"{t.namespace}.{t.name}" if t.namespace else t.name), t)
            f.kind, f.type_name, f.enum = "enum", self.enums[id(t)][0], t
            return f
        if isinstance(t, DecimalT):
            f.kind = f.type_name = "string"
            return f
        assert isinstance(t, PrimT)
        if t.kind == "null":
            return None
        f.kind = f.type_name = _SCALARS[t.kind]
        return f

    def text(self) -> str:
        lines = ['syntax = "proto3";']
        if self.package:
            lines.append(f"package {self.package};")
        lines.append("")
        for m in self.messages:
            lines.append(f"message {m.name} {{")
            indent = "  "
            if m.oneof:
                lines.append("  oneof value {")
                indent = "    "
            for f in m.fields:
                label = f"{f.label} " if f.label in ("optional", "repeated") else ""
                lines.append(f"{indent}{label}{f.type_name} {f.name} = {f.number};")
            if m.oneof:
                lines.append("  }")
            lines.append("}")
        for name, e in self.enums.values():
            lines.append(f"enum {name} {{")
            lines += [f"  {name}_{s} = {i};" for i, s in enumerate(e.symbols)]
            lines.append("}")
        return "\n".join(lines) + "\n"


# A oneof branch's number is its Avro kind's, whatever its place in the union: a union that
# gains a branch anywhere (a long is put before a double) keeps the numbers it had.
_BRANCH_NUMBERS = {"long": 1, "double": 2, "string": 3, "bytes": 4, "boolean": 5, "decimal": 6, "array": 7,
                   "map": 8, "record": 9, "int": 10, "float": 11, "fixed": 12, "enum": 13}


# The Python type each Avro kind decodes to: a value's branch is found by its type (the Avro
# union index is not kept), so a union may hold one branch of each.
_VALUE_TYPES = {"long": "int", "int": "int", "double": "float", "float": "float", "string": "str", "enum": "str",
                "bytes": "bytes", "fixed": "bytes", "map": "dict", "record": "dict"}


def _one_per_value_type(name: str, others: list[Node]) -> None:
    seen: dict[str, str] = {}
    for b in others:
        kind = _kind(b)
        group = _VALUE_TYPES.get(kind, kind)
        if group in seen:
            raise ConfigError(f"format protobuf: the union of field {name!r} has branches {seen[group]} and {kind}, "
                              "which a value does not tell apart; keep one of them or use format avro or json_schema")
        seen[group] = kind


def _kind(node: Node) -> str:
    if isinstance(node, RecordT):
        return "record"
    if isinstance(node, EnumT):
        return "enum"
    return _branch(node)


def _branch(node: Node) -> str:
    if isinstance(node, RecordT | EnumT):
        return node.name
    if isinstance(node, DecimalT):
        return "decimal"
    if isinstance(node, PrimT):
        return node.kind
    return "array" if isinstance(node, ArrayT) else "map"


def _scalar(kind: str, v: Any, f: _Field) -> bytes:
    """A scalar's payload (without tag)."""
    if kind in ("int64", "int32"):
        return _varint(v)
    if kind == "bool":
        return b"\x01" if v else b"\x00"
    if kind == "double":
        return struct.pack("<d", v)
    if kind == "float":
        return struct.pack("<f", v)
    if kind == "enum":
        assert f.enum is not None
        return _varint(f.enum.symbols.index(v))
    if kind == "string":
        b = (decimal_text(v) if not isinstance(v, str) else v).encode("utf-8")
    else:
        b = v
    return _varint(len(b)) + b


def _is_default(kind: str, v: Any) -> bool:
    if kind in ("double", "float"):  # -0.0 == 0 but is not the default: its sign bit is data
        return v == 0 and math.copysign(1.0, v) > 0
    return v in (0, False, "", b"") if kind not in ("enum", "message") else kind == "enum" and v is None


def _encode_message(msg: _Message, v: dict[str, Any], out: bytearray) -> None:
    for name in msg.omitted:
        if v.get(name):
            raise ConversionError(f"protobuf: field {name!r} has no protobuf type yet (only nulls were seen) and "
                                  "holds a value")
    for f in msg.fields:
        x = v.get(f.name)
        if x is None:
            continue
        _encode_field(f, x, out)


def _encode_value(f: _Field, x: Any) -> bytes:
    """A singular value's payload (with its length for length-delimited kinds)."""
    if f.kind != "message":
        return _scalar(f.kind, x, f)
    body = bytearray()
    if f.boxed:
        assert f.message is not None
        _encode_field(f.message.fields[0], x, body, force=True)
    elif f.union_branches is not None:  # a oneof wrapper: the branch the value is in
        assert f.message is not None
        branch_node = f.message.node
        assert isinstance(branch_node, UnionT)
        chosen = branch_node.branch_of(x)
        for node, bf in f.union_branches:
            if node is chosen:
                _encode_field(bf, x, body, force=True)
    else:
        assert f.message is not None
        _encode_message(f.message, x, body)
    return _varint(len(body)) + bytes(body)


def _encode_field(f: _Field, x: Any, out: bytearray, force: bool = False) -> None:
    if f.label == "map":
        assert f.union_branches is not None
        _, vf = f.union_branches[0]
        tag = _varint(f.number << 3 | 2)
        for k, item in x.items():
            if item is None:
                raise ConversionError(f"protobuf: map field {f.name!r} key {k!r} is null; a protobuf map value "
                                      "cannot be null")
            kb = k.encode("utf-8")
            entry = b"\x0a" + _varint(len(kb)) + kb + _varint(2 << 3 | _WIRE[vf.kind]) + _encode_value(vf, item)
            out += tag + _varint(len(entry)) + entry
        return
    wire = _WIRE[f.kind]
    if f.label == "repeated":
        if any(i is None for i in x):
            raise ConversionError(f"protobuf: repeated field {f.name!r} holds a null, which protobuf cannot write")
        if wire != 2:  # packed
            body = b"".join(_scalar(f.kind, i, f) for i in x)
            if body:
                out += _varint(f.number << 3 | 2) + _varint(len(body)) + body
            return
        tag = _varint(f.number << 3 | 2)
        for i in x:
            out += tag + _encode_value(f, i)
        return
    if not force and f.label == "" and f.kind != "message" and _is_default(f.kind, x):
        return  # proto3: an implicit-presence field at its default is not written
    out += _varint(f.number << 3 | wire) + _encode_value(f, x)


def proto_file(avro_schema: str) -> str:
    """The ``.proto`` text of an Avro schema."""
    return _Generator(avro_model(avro_schema).root).text()


class ProtobufConverter:
    schema_type = "PROTOBUF"

    def __init__(self, avro_schema: str) -> None:
        self._model = avro_model(avro_schema)
        gen = _Generator(self._model.root)
        self.schema = gen.text()
        self._root = gen.root

    def convert(self, body: bytes) -> bytes:
        out = bytearray(b"\x00")  # message indexes [0]: the file's first message
        _encode_message(self._root, self._model.decode(body), out)
        return bytes(out)
