"""Protobuf for the dev registry: parsing (by protoc, from grpcio-tools), canonical form, the
serialized descriptor clients ask for (``?format=serialized``), and compatibility.

Compatibility follows Confluent's rules for Protobuf (its protobuf-provider ``diff``
package; its difference types name the messages), comparing the writer's schema (the
original) with the reader's (the update); FORWARD swaps them. Compatible: a message, enum,
enum value, field or oneof added or removed, a field renamed, an enum value renumbered, a
scalar changed within one group (int32/uint32/int64/uint64/bool/enum, one enum to another;
sint32/sint64; fixed32/sfixed32; fixed64/sfixed64; string/bytes), a field moved into a new
oneof of its own, a field added to a oneof, a string, bytes or message field changed
between labels, an implicit (proto3, no label) field made repeated. Incompatible: the
package changed, a message removed (not a map's synthetic entry), a field's kind changed
(scalar or enum, message) or its message type changed, another scalar change, a numeric
field changed between explicit labels (optional, repeated), a field moved into an existing
oneof, several fields moved into a new oneof, a field removed from a oneof, a required
field added or removed (proto2).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from google.protobuf import descriptor_pb2  # type: ignore[import-untyped]

from devtools.registry.compat import InvalidSchemaError

__all__ = ["can_read", "canonical", "parse", "serialized"]

FDP = descriptor_pb2.FieldDescriptorProto
_GROUPS = [
    {FDP.TYPE_INT32, FDP.TYPE_UINT32, FDP.TYPE_INT64, FDP.TYPE_UINT64, FDP.TYPE_BOOL, FDP.TYPE_ENUM},
    {FDP.TYPE_SINT32, FDP.TYPE_SINT64},
    {FDP.TYPE_FIXED32, FDP.TYPE_SFIXED32},
    {FDP.TYPE_FIXED64, FDP.TYPE_SFIXED64},
    {FDP.TYPE_STRING, FDP.TYPE_BYTES},
]
_NAMED = {FDP.TYPE_MESSAGE, FDP.TYPE_GROUP}  # an enum is a general-number scalar
_LABEL_FREE = {FDP.TYPE_STRING, FDP.TYPE_BYTES, FDP.TYPE_MESSAGE}
FILE_NAME = "schema.proto"


def _include() -> str:
    import grpc_tools  # type: ignore[import-untyped]

    return os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")


@lru_cache(maxsize=1024)
def parse(text: str, references: tuple[tuple[str, str], ...] = ()) -> descriptor_pb2.FileDescriptorProto:
    """The file's descriptor as protoc makes it; InvalidSchemaError with protoc's words otherwise.

    ``references``: (import path, .proto text) of every file it imports, directly or not."""
    with tempfile.TemporaryDirectory() as d:
        for name, ref in references:
            if name.startswith("/") or ".." in Path(name).parts:
                raise InvalidSchemaError(f"Invalid schema: reference name {name!r} is not a relative import path")
            Path(d, name).parent.mkdir(parents=True, exist_ok=True)
            Path(d, name).write_text(ref)
        Path(d, FILE_NAME).write_text(text)
        out = Path(d, "set.pb")
        run = subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{d}", f"-I{_include()}", f"--descriptor_set_out={out}",
             FILE_NAME],
            capture_output=True, text=True, timeout=60,
        )
        if run.returncode != 0:
            why = " ".join((run.stderr or run.stdout).split())[:400]
            raise InvalidSchemaError(f"Invalid schema: protoc: {why}")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return files.file[-1]


def canonical(fd: descriptor_pb2.FileDescriptorProto) -> str:
    """White space and comments do not make another schema."""
    return "PROTOBUF:" + base64.b64encode(fd.SerializeToString(deterministic=True)).decode()


def serialized(text: str, references: tuple[tuple[str, str], ...] = ()) -> str:
    """``?format=serialized``: the base64 of the file's descriptor (what confluent-kafka reads)."""
    return base64.b64encode(parse(text, references).SerializeToString(deterministic=True)).decode()


def _messages(fd: descriptor_pb2.FileDescriptorProto) -> dict[str, descriptor_pb2.DescriptorProto]:
    out: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, msgs: list[descriptor_pb2.DescriptorProto]) -> None:
        for m in msgs:
            name = f"{prefix}.{m.name}" if prefix else m.name
            out[name] = m
            walk(name, list(m.nested_type))

    walk(fd.package, list(fd.message_type))
    return out


def _oneof(m: descriptor_pb2.DescriptorProto, f: descriptor_pb2.FieldDescriptorProto) -> str | None:
    """The real (not proto3-optional) oneof a field is in."""
    if not f.HasField("oneof_index") or f.proto3_optional:
        return None
    return m.oneof_decl[f.oneof_index].name


def can_read(reader: descriptor_pb2.FileDescriptorProto, writer: descriptor_pb2.FileDescriptorProto) -> list[str]:
    problems: list[str] = []
    if reader.package != writer.package:
        problems.append(f"PACKAGE_CHANGED from {writer.package!r} to {reader.package!r}")
    r_msgs, w_msgs = _messages(reader), _messages(writer)
    proto3 = reader.syntax == "proto3" and writer.syntax == "proto3"
    for name, wm in w_msgs.items():
        rm = r_msgs.get(name)
        if rm is None:
            if not wm.options.map_entry:  # a map field's entry goes with the field
                problems.append(f"MESSAGE_REMOVED {name}")
            continue
        r_fields = {f.number: f for f in rm.field}
        w_fields = {f.number: f for f in wm.field}
        for number, wf in w_fields.items():
            rf = r_fields.get(number)
            where = f"{name}.{wf.name} (#{number})"
            if rf is None:
                if wf.label == FDP.LABEL_REQUIRED:
                    problems.append(f"REQUIRED_FIELD_REMOVED {where}")
                w_oneof = _oneof(wm, wf)
                if w_oneof is not None and any(_oneof(rm, g) == w_oneof for g in rm.field):
                    problems.append(f"ONEOF_FIELD_REMOVED {where} from oneof {w_oneof}")
                continue
            problems += _field(rf, wf, where, proto3)
            w_oneof, r_oneof = _oneof(wm, wf), _oneof(rm, rf)
            if r_oneof is not None and w_oneof is None:
                if any(_oneof(wm, g) == r_oneof for g in wm.field):
                    problems.append(f"FIELD_MOVED_TO_EXISTING_ONEOF {where}")
                elif sum(1 for g in rm.field if _oneof(rm, g) == r_oneof and g.number in w_fields) > 1:
                    problems.append(f"MULTIPLE_FIELDS_MOVED_TO_ONEOF {where}")
        for number, rf in r_fields.items():
            if number not in w_fields and rf.label == FDP.LABEL_REQUIRED:
                problems.append(f"REQUIRED_FIELD_ADDED {name}.{rf.name} (#{number})")
    return problems  # enums: added, removed or renumbered, all compatible in Confluent's rules


def _field(r: descriptor_pb2.FieldDescriptorProto, w: descriptor_pb2.FieldDescriptorProto, where: str,
           proto3: bool) -> list[str]:
    if r.type != w.type:
        if r.type in _NAMED or w.type in _NAMED:
            return [f"FIELD_KIND_CHANGED {where} from {_type_text(w)} to {_type_text(r)}"]
        if not any(r.type in g and w.type in g for g in _GROUPS):
            return [f"FIELD_SCALAR_KIND_CHANGED {where}"]
    elif r.type in _NAMED and r.type_name != w.type_name:
        return [f"FIELD_NAMED_TYPE_CHANGED {where} from {w.type_name} to {r.type_name}"]
    labels = (_label(r, proto3), _label(w, proto3))
    if None not in labels and labels[0] != labels[1] and not (r.type in _LABEL_FREE and w.type in _LABEL_FREE):
        return [f"FIELD_NUMERIC_LABEL_CHANGED {where} from {labels[1]} to {labels[0]}"]
    return []


def _label(f: descriptor_pb2.FieldDescriptorProto, proto3: bool) -> str | None:
    """The label as written; None for a proto3 singular field written without one."""
    if f.label == FDP.LABEL_REPEATED:
        return "repeated"
    if f.label == FDP.LABEL_REQUIRED:
        return "required"
    return "optional" if f.proto3_optional or not proto3 else None


def _type_text(f: descriptor_pb2.FieldDescriptorProto) -> str:
    kind = FDP.Type.Name(f.type)[len("TYPE_"):].lower()
    return f"{kind} {f.type_name.lstrip('.')}" if f.type_name else kind
