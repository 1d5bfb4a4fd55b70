"""A DynamoDB table's transform chain: where its records keep the operation, the images and
the metadata (``bridge.transforms.Layout``), and one stage per table shared by its readers."""

from __future__ import annotations

import json
import operator
import struct
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bridge.transforms import DROP, Layout, Spec, TransformStage, matches, parse_transforms
from bridge.transforms.chain import FLAT_FIELDS
from connectors.dynamodb.envelope import Change
from connectors.dynamodb.typed.binary import long_bytes, string_bytes
from connectors.dynamodb.typed.encode import encode_record
from connectors.dynamodb.typed.handle import TypedSchema
from connectors.dynamodb.typed.names import field_name
from connectors.dynamodb.typed.plan import compile_plan
from connectors.dynamodb.typed.types import Dec, Prim, Rec

try:
    from connectors.dynamodb.typed._typed import image_offsets as _image_offsets
except ImportError:  # not built: the structured path reads those records
    _image_offsets = None

__all__ = ["expand", "fast_plan", "layout", "table_stage"]

_STAGES: dict[int, tuple[Any, TransformStage]] = {}


def layout(typed: bool) -> Layout:
    """``metadata`` is the envelope's ``source`` block; a typed image grows as attributes come
    (a path to one not seen yet is null until it is), an envelope image is a map."""
    return Layout(op="op", before="before", after="after", table="source.table",
                  source_ts_ms="source.approximate_creation_ms",
                  aliases=(("metadata", "source"),), open=("before", "after") if typed else (),
                  name_property="attribute", record_hint=" (value: {shape: typed})")


def expand(transforms: Any) -> Any:
    """The DynamoDB words of the chain in the runtime's: ``filter: {ttl_deletes: drop|only|keep}``
    is a test of the source block's ``ttl_delete`` (DynamoDB's TTL process deleted the item)."""
    if not isinstance(transforms, list):
        return transforms
    out = []
    for entry in transforms:
        options = entry.get("filter") if isinstance(entry, dict) and len(entry) == 1 else None
        if isinstance(options, dict) and "ttl_deletes" in options:
            options = dict(options)
            ttl = options.pop("ttl_deletes")
            if ttl not in ("keep", "drop", "only"):
                raise ValueError(f"filter.ttl_deletes: write keep, drop or only, not {ttl!r}")
            if ttl != "keep":
                where = dict(options.get("where") or {})
                where["metadata.ttl_delete"] = {"eq": ttl == "only"}
                options["where"] = where
            entry = {"filter": options}
        out.append(entry)
    return out


def table_stage(t: Any) -> TransformStage | None:
    """The stage of a table's config (one per config object: the stream and snapshot readers of
    a table share its compiled chains), or None without transforms."""
    if not t.transforms:
        return None
    found = _STAGES.get(id(t))
    if found is None or found[0] is not t:
        where = f"tables[{t.name}].transforms" if getattr(t, "name", None) else "transforms"
        stage = TransformStage(parse_transforms(expand(t.transforms), where), layout(t.value.shape == "typed"),
                               where=where, fast=fast_plan)
        found = _STAGES[id(t)] = (t, stage)
    return found[1]


# ---- the typed fast path -------------------------------------------------------------------
# A chain of op filters, one select of op / image attributes / metadata / ts_ms, and renames
# or drops of its output fields writes each value straight from the record's DynamoDB JSON
# images with the typed writer (the C plan where built): no Avro decode and re-encode. The
# bytes equal the structured path's (tests/unit/test_transforms.py holds them to it).

_SOURCE_TYPES = {"connector": "s", "table": "s", "region": "os", "stream_arn": "os", "shard_id": "os",
                 "sequence_number": "os", "event_id": "os", "snapshot": "os", "segment": "ol",
                 "total_segments": "ol", "approximate_creation_ms": "ol", "ttl_delete": "b"}


def _source_field(name: str) -> Callable[[Any], bytes]:
    kind = _SOURCE_TYPES[name]
    if kind == "s":
        return lambda r: string_bytes(r.position[name])
    if kind == "b":
        return lambda r: b"\x01" if r.position.get(name) else b"\x00"
    one = string_bytes if kind == "os" else long_bytes

    def optional(r: Any) -> bytes:
        v = r.position.get(name)
        return b"\x00" if v is None else b"\x02" + one(v)
    return optional


def _image_run(rec: Rec, attributes: list[str], which: str) -> Callable[[Any], bytes] | None:
    """The fields ``attributes`` of the before or after image, in order (None: not all nullable)."""
    fields = {f.attribute: f for f in rec.fields}
    present = [fields[a] for a in attributes if a in fields]  # an attribute not seen yet is "null": no bytes
    if any(not f.nullable for f in present):
        return None
    sub = Rec(tuple(present))
    plan = compile_plan(sub)
    names = [f.attribute for f in present]
    nulls = b"\x00" * len(present)

    def write(r: Any) -> bytes:
        image = getattr(r.value, which)
        if image is None:
            return nulls
        item = {a: image[a] for a in names if a in image}
        if plan is not None:
            body = plan.encode(item)
            if body is not None:
                return body  # type: ignore[no-any-return]
        out: list[bytes] = []
        encode_record(sub, item, out)
        return b"".join(out)
    return write


def fast_plan(specs: tuple[Spec, ...], handle: Any) -> Callable[[Any], bytes | None] | None:
    """A writer of the chain's value for records of the typed ``handle`` (None: the chain or the
    handle is not of the form above). It returns DROP for a record an op filter drops."""
    if not isinstance(handle, TypedSchema) or handle.image != "envelope":
        return None
    ops: set[str] | None = None
    tests: list[tuple[Callable[[Any], Any], str, Any]] = []  # (value getter, test, wanted)
    out: list[tuple[str, tuple[str, ...]]] | None = None
    flat: str | None = None  # flatten's deletes: tombstone or rewrite
    for spec in specs:
        if flat is not None:
            if spec.name != "drop" or any(len(p) != 1 for _, p in spec.options):
                return None
            gone = {p[0] for _, p in spec.options}
            out = [(name, src) for name, src in out or () if name not in gone]
            continue
        if spec.name == "flatten" and out is None:
            flat = spec.options
            out = [("*", ("image",)), ("__op", ("op",)), ("__table", ("source", "table")),
                   ("__source_ts_ms", ("source", "approximate_creation_ms")), ("__deleted", ("deleted",))]
            continue
        if spec.name == "filter" and out is None:
            allowed, conds = spec.options
            if allowed is not None:
                ops = set(allowed) if ops is None else ops & set(allowed)
            for _, cond_path, test, want in conds:
                get = _getter(handle.rec, tuple(p if i else {"metadata": "source"}.get(p, p)
                                                for i, p in enumerate(cond_path)))
                if get is None:
                    return None
                tests.append((get, test, want))
        elif spec.name == "select" and out is None:
            out = [(name, tuple(p if i else {"metadata": "source"}.get(p, p) for i, p in enumerate(parts)))
                   for _, parts, name in spec.options]
        elif spec.name == "rename" and out is not None and all(len(p) == 1 for _, p, _ in spec.options):
            new = {p[0]: n for _, p, n in spec.options}
            out = [(new.get(name, name), src) for name, src in out if name in new or name not in new.values()]
        elif spec.name == "drop" and out is not None and all(len(p) == 1 for _, p in spec.options):
            gone = {p[0] for _, p in spec.options}
            out = [(name, src) for name, src in out if name not in gone]
        else:
            return None
    if out is None:
        return None
    if flat is not None:
        return _flat_writer(handle, ops, tests, flat, out, {p[0] for spec in specs if spec.name == "drop"
                                                            for _, p in spec.options})
    parts: list[Callable[[Any], bytes]] = []
    run: list[str] = []
    run_of = ""

    def close_run() -> bool:
        if run:
            w = _image_run(handle.rec, list(run), run_of)
            if w is None:
                return False
            parts.append(w)
            run.clear()
        return True

    for _, src in out:
        if src[0] in ("before", "after") and len(src) == 2:
            if run and run_of != src[0] and not close_run():
                return None
            run_of = src[0]
            run.append(src[1])
            continue
        if not close_run():
            return None
        if src == ("op",):
            parts.append(lambda r: string_bytes(r.value.op))
        elif src == ("ts_ms",):
            parts.append(lambda r: long_bytes(r.ts_ms))
        elif src[0] == "source" and len(src) == 2 and src[1] in _SOURCE_TYPES:
            parts.append(_source_field(src[1]))
        else:
            return None
    if not close_run():
        return None

    kept = [True]  # the filters' decision on the last change: its tombstone's (asked right after it)
    # Records the one-pass writer wrote (no images as data, the typed body only): the same
    # value from the body's fields, found without decoding it.
    sliced = _sliced_writer(handle, ops, specs, out)

    def write(r: Any) -> Any:
        value = r.value
        if r.tombstone:
            return b"" if kept[0] else DROP
        if type(value) is not Change:
            if value is not None or sliced is None or r.encoded_value is None:
                return None
            got = sliced(r)
            if got is not None:
                kept[0] = got is not DROP
            return got
        kept[0] = _kept(r, ops, tests)
        if not kept[0]:
            return DROP
        return b"".join([p(r) for p in parts])
    return write


# ---- the same from a typed body: its fields' bytes, found by _typed.image_offsets -------------

_PRIM = {"null": 0, "boolean": 1, "int": 2, "long": 2, "float": 3, "double": 4, "string": 5, "bytes": 5}


def _program(schema: Any) -> tuple[Any, dict[str, list[Any]], dict[str, Any]]:
    """The value schema as ``_typed.image_offsets`` reads it, its named types' programs and its record
    definitions, by full name."""
    named: dict[str, list[Any]] = {}
    records: dict[str, Any] = {}

    def full(name: str, ns: str | None) -> str:
        return name if "." in name or not ns else f"{ns}.{name}"

    def prog(t: Any, ns: str | None) -> Any:
        if isinstance(t, str):
            if t in _PRIM:
                return _PRIM[t]
            return named[full(t, ns)]
        if isinstance(t, list):
            return (11, tuple(prog(b, ns) for b in t))
        kind = t["type"]
        if isinstance(kind, (dict, list)) or kind in _PRIM:  # a logical type: its underlying type's bytes
            return prog(kind, ns)
        if kind == "array":
            return (8, prog(t["items"], ns))
        if kind == "map":
            return (9, prog(t["values"], ns))
        inner = t.get("namespace", ns)
        name = full(t["name"], inner)
        cell: list[Any] = [None]
        named[name] = cell
        if kind == "fixed":
            cell[0] = (6, int(t["size"]))
        elif kind == "enum":
            cell[0] = 2
        else:
            records[name] = t
            cell[0] = (10, tuple(prog(f["type"], name.rpartition(".")[0] or None) for f in t["fields"]))
        return cell

    return prog(schema, None), named, records


def _reader(t: list[Any]) -> Callable[[bytes], Any]:
    """How a ``["null", T]`` field's bytes read as the decoded value holds them (T a scalar,
    ``_scalar``); the bytes start at the union's branch (0: null)."""
    kind = t[1]
    if kind == "boolean":
        return lambda data: None if data[0] == 0 else data[1] == 1
    if kind == "string":
        return lambda data: None if data[0] == 0 else _string(data, 1)
    if kind in ("long", "int"):
        return lambda data: None if data[0] == 0 else _varint(data, 1)[0]
    if kind == "double":
        return lambda data: None if data[0] == 0 else struct.unpack("<d", data[1:9])[0]
    scale = -int(kind.get("scale", 0))  # a decimal over bytes: the unscaled value, big-endian

    def decimal(data: bytes) -> Any:
        if data[0] == 0:
            return None
        n, at = _varint(data, 1)
        return Decimal(int.from_bytes(data[at:at + n], "big", signed=True)).scaleb(scale)
    return decimal


def _varint(data: bytes, at: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        c = data[at]
        at += 1
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return (v >> 1) ^ -(v & 1), at
        shift += 7


def _string(data: bytes, at: int) -> str:
    n, at = _varint(data, at)
    return data[at:at + n].decode()


def _scalar(t: Any) -> bool:
    """A union of null and a scalar the filters compare (as ``_getter`` takes them)."""
    if not (isinstance(t, list) and len(t) == 2 and t[0] == "null"):
        return False
    b = t[1]
    if isinstance(b, dict):
        return b.get("type") == "bytes" and b.get("logicalType") == "decimal"
    return b in ("boolean", "string", "long", "int", "double")


def _sliced_writer(handle: TypedSchema, ops: set[str] | None, specs: tuple[Spec, ...],
                   out: list[tuple[str, tuple[str, ...]]]) -> Callable[[Any], Any] | None:
    """The select chain's value from the typed body's fields (None where the chain or the schema
    is not of the form this reads: filters of op, metadata and top-level scalar attributes)."""
    if _image_offsets is None:
        return None
    schema = json.loads(handle.value_schema)
    try:
        top_prog, named, records = _program(schema)
    except (KeyError, TypeError, ValueError):  # a schema this does not read: the structured path
        return None
    if [f["name"] for f in schema["fields"]][:3] != ["op", "before", "after"]:
        return None
    before_t, after_t = schema["fields"][1]["type"], schema["fields"][2]["type"]
    if not (isinstance(before_t, list) and len(before_t) == 2 and isinstance(before_t[1], dict)):
        return None
    item = before_t[1]
    ns = item.get("namespace", schema.get("namespace"))
    item_name = item["name"] if "." in item["name"] or not ns else f"{ns}.{item['name']}"
    if after_t not in (["null", item_name], ["null", item["name"]]) or item_name not in records:
        return None  # both images one record type, as the typed writer writes them
    item_fields = named[item_name][0][1]
    index: dict[str, int] = {}
    for n, f in enumerate(item["fields"]):
        index[f["name"]] = n
        index.setdefault(f.get("attribute", f["name"]), n)
    top_fields = top_prog[0][1]

    # filters
    conds: list[tuple[str, Any, str, Any]] = []  # (kind, how, test, wanted)
    for spec in specs:
        if spec.name != "filter":
            continue
        for _, path, test, want in spec.options[1]:
            path = tuple(p if i else {"metadata": "source"}.get(p, p) for i, p in enumerate(path))
            if path == ("op",):
                conds.append(("op", None, test, want))
            elif len(path) == 2 and path[0] == "source" and path[1] in _SOURCE_TYPES:
                conds.append(("source", path[1], test, want))
            elif len(path) == 2 and path[0] in ("before", "after"):
                i = index.get(path[1])
                if i is None:
                    conds.append(("none", None, test, want))
                elif _scalar(item["fields"][i]["type"]):
                    conds.append((path[0], (i, item["fields"][i]["type"]), test, want))
                else:
                    return None
            else:
                return None
    # output
    parts: list[tuple[str, Any]] = []
    for _, src in out:
        if src[0] in ("before", "after") and len(src) == 2:
            i = index.get(src[1])
            if i is None:
                continue  # an attribute not seen yet: null, no bytes
            t = item["fields"][i]["type"]
            if not (isinstance(t, list) and t[0] == "null"):
                return None
            parts.append((src[0], i))
        elif src == ("op",):
            parts.append(("op", None))
        elif src == ("ts_ms",):
            parts.append(("ts_ms", None))
        elif src[0] == "source" and len(src) == 2 and src[1] in _SOURCE_TYPES:
            parts.append(("source", _source_field(src[1])))
        else:
            return None
    # the image fields read (the first ones only); a delete's filter of the after image reads
    # the before image's ("instead", read only when the after image is null)
    used: dict[str, list[int]] = {"before": [-1], "after": [-1], "instead": [-1]}
    for kind, i in parts:
        if kind in used:
            used[kind].append(i)
    for kind, how, _, _ in conds:
        if kind in used:
            used[kind].append(how[0])
            used["instead"].append(how[0])
    need = {w: 1 + max(v) for w, v in used.items()}
    image = _image_offsets
    n_before, n_after, n_instead = need["before"], need["after"], max(need["before"], need["instead"])
    preds = [_predicate(*c) for c in conds]
    op_bytes = {o: string_bytes(o) for o in ("c", "u", "d", "r")}

    def write(r: Any) -> Any:
        op = r.op
        if ops is not None and op not in ops:
            return DROP
        body = r.encoded_value
        before = after = None
        if n_after:
            after = image(body, top_fields, 2, item_fields, n_after)
            if after is None:
                return None
            after = after or None  # (): the after image is null
        if n_before or after is None and n_instead:
            before = image(body, top_fields, 1, item_fields, n_instead)
            if before is None:
                return None
            before = before or None
        try:
            for pred in preds:
                if not pred(r, op, body, before, after):
                    return DROP
        except (IndexError, ValueError, struct.error):  # bytes that do not read: the structured path says why
            return None
        chunks = []
        for kind, how in parts:
            if kind == "after" or kind == "before":
                img = after if kind == "after" else before
                chunks.append(b"\x00" if img is None else body[img[how]:img[how + 1]])
            elif kind == "op":
                chunks.append(op_bytes.get(op) or string_bytes(op))
            elif kind == "ts_ms":
                chunks.append(long_bytes(r.ts_ms))
            else:
                chunks.append(how(r))
        return b"".join(chunks)
    return write


_COMPARE = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt,
            "lte": operator.le}


def _predicate(kind: str, how: Any, test: str, want: Any) -> Callable[..., bool]:
    """One filter test of a sliced record (``r, op, body, before, after`` offsets), as ``matches``
    decides it; a test of a long or decimal field against a finite number compares directly (an
    int or a Decimal against a Decimal is exact in Python)."""
    if kind == "op":
        return lambda r, op, body, b, a: matches(test, want, op)
    if kind == "none":
        return lambda r, op, body, b, a: matches(test, want, None)
    if kind == "source":
        as_bool = _SOURCE_TYPES[how] == "b"
        return lambda r, op, body, b, a: matches(test, want, bool(r.position.get(how)) if as_bool
                                                  else r.position.get(how))
    i, t = how
    read = _reader(t)
    j = i + 1

    if kind == "after":
        def get(body: bytes, b: Any, a: Any) -> Any:
            img = b if a is None else a  # a delete: the item it deleted
            return None if img is None else read(body[img[i]:img[j]])
    else:
        def get(body: bytes, b: Any, a: Any) -> Any:
            return None if b is None else read(body[b[i]:b[j]])

    direct = (test in _COMPARE and isinstance(want, Decimal) and want.is_finite()
              and (t[1] in ("long", "int") or isinstance(t[1], dict)))
    if direct:
        cmp = _COMPARE[test]
        return lambda r, op, body, b, a: (v := get(body, b, a)) is not None and cmp(v, want) or \
            (v is None and test == "ne")
    return lambda r, op, body, b, a: matches(test, want, get(body, b, a))


def _kept(r: Any, ops: set[str] | None, tests: list[tuple[Callable[[Any], Any], str, Any]]) -> bool:
    """The filters' decision on a change, as ``bridge.transforms`` decides on its decoded value."""
    if ops is not None and r.value.op not in ops:
        return False
    return all(matches(test, want, get(r)) for get, test, want in tests)


def _getter(rec: Rec, path: tuple[str, ...]) -> Callable[[Any], Any] | None:
    """What a filter's path reads, as the decoded value would hold it, from the record's own
    data: op, a metadata field, or a top-level attribute of a scalar type (a number as the
    decoded value holds it: a double as a float, else a decimal; ``matches`` turns both into
    the same exact decimal); None for anything else."""
    if path == ("op",):
        return lambda r: r.value.op
    if len(path) != 2:
        return None
    root, name = path
    if root == "source" and name in _SOURCE_TYPES:
        if _SOURCE_TYPES[name] == "b":
            return lambda r: bool(r.position.get(name))
        return lambda r: r.position.get(name)
    if root not in ("before", "after"):
        return None
    found = next((f for f in rec.fields if name in (f.attribute, field_name(f.attribute))), None)
    if found is None:
        return lambda r: None  # an attribute not seen yet: null, as its field is
    t = found.type
    if not (isinstance(t, Dec) or isinstance(t, Prim) and t.kind in ("string", "boolean", "long", "double")):
        return None
    attribute = found.attribute
    number = float if isinstance(t, Prim) and t.kind == "double" else Decimal  # as the value decodes

    def get(r: Any) -> Any:
        image = getattr(r.value, root)
        if image is None and root == "after":
            image = r.value.before  # a delete: filtered by the item it deleted, as bridge.transforms reads it
        av = None if image is None else image.get(attribute)
        if av is None or "NULL" in av:
            return None
        if "N" in av:
            return number(av["N"])
        return av.get("S", av.get("BOOL"))
    return get


def _flat_writer(handle: TypedSchema, ops: set[str] | None, tests: list[tuple[Callable[[Any], Any], str, Any]],
                 deletes: str, out: list[tuple[str, tuple[str, ...]]], dropped: set[str]) -> Callable[[Any], Any] | None:
    """``flatten`` (and drops after it): the item record as the typed writer writes it, minus
    dropped attributes, then ``__op``, ``__table``, ``__source_ts_ms`` and ``__deleted``."""
    keep = tuple(f for f in handle.rec.fields
                 if not ({f.attribute, field_name(f.attribute)} & dropped) and field_name(f.attribute) not in FLAT_FIELDS)
    sub = Rec(keep) if len(keep) != len(handle.rec.fields) else handle.rec
    plan = compile_plan(sub) if sub is not handle.rec else handle.plan
    attributes = [f.attribute for f in keep]
    extras = [name for name, _ in out if name != "*"]
    ts = _source_field("approximate_creation_ms")
    has_image = any(name == "*" for name, _ in out)

    kept = [True]  # the filters' decision on the last change: its tombstone's (asked right after it)

    def write(r: Any) -> Any:
        value = r.value
        if r.tombstone:
            return b"" if kept[0] and deletes == "tombstone" else DROP
        if type(value) is not Change:
            return None
        op = value.op
        kept[0] = _kept(r, ops, tests)
        if not kept[0]:
            return DROP
        deleted = op == "d"
        if deleted and deletes == "tombstone":
            return DROP
        image = value.before if deleted else value.after
        if image is None:
            return None
        body = b""
        if has_image:
            item = image if sub is handle.rec else {a: image[a] for a in attributes if a in image}
            written = plan.encode(item) if plan is not None else None
            if written is None:
                parts: list[bytes] = []
                encode_record(sub, item, parts)
                written = b"".join(parts)
            body = written
        tail = {"__op": string_bytes(op), "__table": string_bytes(r.position["table"]), "__source_ts_ms": ts(r),
                "__deleted": b"\x01" if deleted else b"\x00"}
        return body + b"".join(tail[n] for n in extras)
    return write
