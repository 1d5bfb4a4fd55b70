"""A transform chain compiled against one input value schema: the output schema and the
per-record steps.

Compiling resolves every path once (field names, types, nullability), so a record only
follows dictionary keys; the output schema is derived from the input schema and the chain
alone, so records of one input schema share one output schema (registered once).

The source's ``Layout`` names where its records keep the operation, the images and the
metadata (a connector's vocabulary; the runtime knows none).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from bridge.errors import ConfigError
from bridge.task import KafkaHeaders
from bridge.transforms.schema import OPEN, Names, Resolved, finish, new_field, nullable, optional, resolve, strip_null
from bridge.transforms.spec import TEMPLATE, Spec, load_callable, split_path

__all__ = ["FLAT_FIELDS", "NO_KEY", "Compiled", "StepError", "Item", "Layout", "compile_chain", "matches"]


@dataclass(frozen=True)
class Layout:
    """Where a source's values keep their parts, as paths into the value (None: not there).

    ``aliases`` rename a path's first part (``metadata`` → ``source``); ``open`` are the
    records whose fields grow as the source runs (a path to a field not there yet is null
    until it comes, not an error).
    """

    op: str | None = None
    before: str | None = None
    after: str | None = None
    table: str | None = None
    source_ts_ms: str | None = None
    aliases: tuple[tuple[str, str], ...] = ()
    open: tuple[str, ...] = ()
    # A field property holding the source's own name of a field (paths may use either name),
    # and what to tell a user whose after image is no record (how to get one).
    name_property: str | None = None
    record_hint: str = ""


NO_KEY = object()
FLAT_FIELDS = ("__op", "__table", "__source_ts_ms", "__deleted")  # flatten's own fields, after the image's


@dataclass(slots=True)
class Item:
    """A record inside the chain: its value (plain data), topic and headers; ``tombstone``
    items carry their delete's value so that filters and routes decide alike for both."""

    value: Any
    topic: str
    headers: KafkaHeaders
    tombstone: bool = False
    context: Any = None  # the stage's: what a Python transform is shown besides the value
    key: Any = NO_KEY  # a new key (a Python transform changed it), else the record's own




class StepError(Exception):
    """A step that failed on one record (a record error: dead letter or stop, as errors.tolerance says)."""


class _Ctx:
    """The schema as the chain goes: the top record (a dict), the named types, the layout."""

    def __init__(self, names: Names, top: dict[str, Any], layout: Layout) -> None:
        self.names, self.top, self.layout = names, top, layout
        self.made = 0
        self.alt, self.hint = layout.name_property, layout.record_hint  # the source's, whatever the layout becomes

    def named(self, f: dict[str, Any], name: str) -> bool:
        """The field's name, or the source's own name of it, is ``name``."""
        return f["name"] == name or (self.alt is not None and f.get(self.alt) == name)

    def parts(self, parts: tuple[str, ...]) -> tuple[str, ...]:
        for alias, real in self.layout.aliases:
            if parts[0] == alias:
                return (*split_path(real, "layout"), *parts[1:])
        return parts

    def resolve(self, parts: tuple[str, ...], text: str) -> Resolved:
        return resolve(self.names, self.top, self.parts(parts), text, self.alt)

    def read(self, parts: tuple[str, ...], text: str) -> Resolved:
        """A path a filter or template reads: one into the after image reads the before image
        where the after image is null (a delete routes and filters by the item it deleted)."""
        r = self.resolve(parts, text)
        after, before = self.layout.after, self.layout.before
        if after is None or before is None:
            return r
        a, b = split_path(after, "layout"), split_path(before, "layout")
        full = self.parts(parts)
        if full[:len(a)] != a:
            return r
        try:
            instead = resolve(self.names, self.top, (*b, *full[len(a):]), text, self.alt)
        except ConfigError:
            return r
        return replace(r, image=resolve(self.names, self.top, a, after, self.alt).keys, instead=instead)

    def role(self, name: str, transform: str) -> Resolved:
        path = getattr(self.layout, name)
        if path is None:
            raise ConfigError(f"{transform}: the records here have no {name.replace('_', ' ')} (after flatten or "
                              f"select, use the fields that are left)")
        return self.resolve(split_path(path, "layout"), path)

    def edit(self, parts: tuple[str, ...], text: str, fn: Callable[[list[dict[str, Any]], str], list[dict[str, Any]]]
             ) -> tuple[str, ...]:
        """Change the fields of the record holding the last part (copied, under a new name
        when nested, since a named type may be used elsewhere too); returns the data keys."""
        parts = self.parts(parts)
        keys: list[str] = []

        def go(t: Any, i: int) -> Any:
            wrapped = isinstance(t, list)
            rec = self.names.deref(strip_null(t)) if wrapped else self.names.deref(t)
            if not isinstance(rec, dict) or rec.get("type") != "record":
                raise ConfigError(f"path {text!r}: {'.'.join(parts[:i]) or 'the value'} is not a record")
            fields = [dict(f) for f in rec["fields"]]
            if i == len(parts) - 1:
                found = next((f for f in fields if self.named(f, parts[i])), None)
                if found is None and not rec.get(OPEN):
                    raise ConfigError(f"path {text!r}: no field {parts[i]!r} in {'.'.join(parts[:i]) or 'the value'}")
                keys.append(parts[i] if found is None else found["name"])
                fields = fn(fields, keys[-1]) if found is not None else fields
            else:
                found = next((f for f in fields if self.named(f, parts[i])), None)
                if found is None:
                    raise ConfigError(f"path {text!r}: no field {parts[i]!r} in {'.'.join(parts[:i]) or 'the value'}")
                keys.append(found["name"])
                found["type"] = go(found["type"], i + 1)
            new = dict(rec, fields=fields)
            if i == 0:
                return new
            self.made += 1
            new["name"] = f"{rec['name']}_t{self.made}"
            ref = self.names.define(new)
            return ["null", ref] if wrapped else ref

        self.top = go(self.top, 0)
        return tuple(keys)


def _set(data: Any, keys: tuple[str, ...], fn: Callable[[dict[str, Any], str], None]) -> Any:
    """A copy of ``data`` along ``keys`` with ``fn`` applied to the innermost dict."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    if len(keys) == 1:
        fn(out, keys[0])
    else:
        out[keys[0]] = _set(out.get(keys[0]), keys[1:], fn)
    return out


def _exact(v: Any) -> Decimal | None:
    """A number as an exact decimal, the one conversion both paths compare with (None: not a
    number). A double counts as the shortest text that reads back as it (``repr``): a typed
    double is one only where that text reproduces the source's number, and a limit written as
    19.99 means the decimal 19.99, not the binary double nearest it."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, Decimal)):
        return Decimal(v)
    if isinstance(v, float):
        return Decimal(repr(v))
    if isinstance(v, str):
        try:
            return Decimal(v)
        except ArithmeticError:
            return None
    return None


def matches(op: str, want: Any, got: Any) -> bool:
    """A filter's test (``eq``, ``gt``, ``present``...) of a value; numbers compared exactly as
    decimals; NaN is equal to nothing and neither above nor below anything (a test on it is false,
    ``ne`` true); a boolean is no number (``eq: 1`` does not match true)."""
    if op == "present":
        return (got is not None) is want
    if got is None:
        return op == "ne" and want is not None
    if isinstance(got, bool) or isinstance(want, bool):
        same = isinstance(got, bool) and isinstance(want, bool) and got is want
        return same if op == "eq" else not same if op == "ne" else False
    a, b = _exact(got), _exact(want)
    numeric = a is not None and b is not None and (not isinstance(got, str) or not isinstance(want, str))
    if op in ("eq", "ne"):
        if numeric:
            same = not a.is_nan() and not b.is_nan() and a == b  # type: ignore[union-attr]
        else:
            same = got == want
        return same if op == "eq" else not same
    if a is None or b is None or a.is_nan() or b.is_nan():
        return False
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


def _avro_type(v: Any) -> Any:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "long"
    if isinstance(v, float):
        return "double"
    return "string" if v is not None else "null"


class _Template:
    """A static value, ``{path}`` alone (the value as it is, typed), or text around placeholders."""

    def __init__(self, ctx: _Ctx, v: Any, where: str) -> None:
        self.static = v
        self.whole: Resolved | None = None
        self.pieces: list[tuple[str, Resolved | None]] = []
        if not isinstance(v, str) or not TEMPLATE.search(v):
            return
        m = TEMPLATE.fullmatch(v)
        if m is not None:
            self.whole = ctx.read(split_path(m.group(1), where), m.group(1))
            return
        last = 0
        for m in TEMPLATE.finditer(v):
            self.pieces.append((v[last:m.start()], ctx.read(split_path(m.group(1), where), m.group(1))))
            last = m.end()
        self.pieces.append((v[last:], None))

    @property
    def type(self) -> Any:
        if self.whole is not None:
            return self.whole.out_type
        return "string" if self.pieces else _avro_type(self.static)

    def value(self, data: Any) -> Any:
        if self.whole is not None:
            return self.whole.get(data)
        if not self.pieces:
            return self.static
        return "".join(text + ("" if r is None else _text(r.get(data))) for text, r in self.pieces)


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


Step = Callable[[Item], "Item | list[Item] | None"]


def _step(spec: Spec, ctx: _Ctx, where: str, call: Callable[[Callable[..., Any], str, Item], Any]) -> Step:
    """Derive the schema after ``spec`` (in ``ctx``) and return what it does to an item."""
    o = spec.options
    name = spec.name
    if name == "select":
        picked = [(out, ctx.resolve(parts, text)) for text, parts, out in o]
        fields = [new_field(out, copy.deepcopy(r.out_type)) for out, r in picked]
        ctx.top = {"type": "record", "name": ctx.top["name"], "fields": fields}
        ctx.layout = Layout()

        def select(item: Item) -> Item:
            v = item.value
            item.value = {out: r.get(v) for out, r in picked}
            return item
        return select
    if name in ("drop", "rename", "mask"):
        edits: list[tuple[tuple[str, ...], Callable[[dict[str, Any], str], None]]] = []
        entries = o[0] if name == "mask" else o
        how = o[1] if name == "mask" else None
        for entry in entries:
            text, parts = entry[0], entry[1]
            if name == "drop":
                keys = ctx.edit(parts, text, lambda fs, k: [f for f in fs if f["name"] != k])
                edits.append((keys, lambda d, k: d.pop(k, None)))
            elif name == "rename":
                new = entry[2]

                # The new name wins over a field of that name (one the source's records gained
                # later, say): that field is left out, as a record gains attributes at any time.
                def rename_fields(fs: list[dict[str, Any]], k: str, new: str = new) -> list[dict[str, Any]]:
                    return [dict(f, name=new) if f["name"] == k else f for f in fs if f["name"] != new or new == k]

                keys = ctx.edit(parts, text, rename_fields)

                def rename_data(d: dict[str, Any], k: str, new: str = new) -> None:
                    if k != new:
                        d.pop(new, None)
                    if k in d:
                        d[new] = d.pop(k)
                edits.append((keys, rename_data))
            else:

                def mask_fields(fs: list[dict[str, Any]], k: str) -> list[dict[str, Any]]:
                    out = []
                    for f in fs:
                        if f["name"] == k:
                            was = f["type"]
                            t = ("string" if not nullable(was) else ["null", "string"]) if how == "hash" else \
                                optional(was)
                            f = {**{kk: vv for kk, vv in f.items() if kk not in ("type", "default")},
                                 **new_field(k, t)}
                        out.append(f)
                    return out

                keys = ctx.edit(parts, text, mask_fields)

                def mask_data(d: dict[str, Any], k: str) -> None:
                    if k in d:
                        v = d[k]
                        d[k] = None if how == "blank" or v is None else _hash(v)
                edits.append((keys, mask_data))
        for role in ("op", "before", "after", "table", "source_ts_ms"):
            path = getattr(ctx.layout, role)
            if path is not None:
                try:
                    ctx.resolve(split_path(path, "layout"), path)
                except ConfigError:
                    gone: dict[str, Any] = {role: None}
                    ctx.layout = replace(ctx.layout, **gone)

        def edit(item: Item) -> Item:
            v = item.value
            for keys, fn in edits:
                v = _set(v, keys, fn)
            item.value = v
            return item
        return edit
    if name == "filter":
        ops, conds = o
        op_of = ctx.role("op", where) if ops is not None else None
        tests = [(ctx.read(parts, text), test, value) for text, parts, test, value in conds]

        def keep(item: Item) -> Item | None:
            v = item.value
            if v is None:
                return item  # a tombstone without its delete: nothing to decide on
            if op_of is not None and op_of.get(v) not in ops:
                return None
            for r, test, want in tests:
                if not matches(test, want, r.get(v)):
                    return None
            return item
        return keep
    if name == "flatten":
        op_of, after, before = ctx.role("op", where), ctx.role("after", where), ctx.role("before", where)
        table = ctx.role("table", where) if ctx.layout.table else None
        ts = ctx.role("source_ts_ms", where) if ctx.layout.source_ts_ms else None
        image = ctx.names.deref(strip_null(after.type))
        if not isinstance(image, dict) or image.get("type") != "record":
            raise ConfigError(f"{where}: flatten needs the after image as a record{ctx.hint}; "
                              f"here it is {image if isinstance(image, str) else image.get('type')}")
        extra = [("__op", "string"), ("__table", "string" if table is not None and not table.may_be_null else
                                      ["null", "string"]), ("__source_ts_ms", ["null", "long"]), ("__deleted", "boolean")]
        # flatten's own fields win over an image's attributes of those names (left out)
        fields = [dict(f) for f in image["fields"] if f["name"] not in FLAT_FIELDS]
        for n, t in extra:
            fields.append(new_field(n, t))
        fields[-1]["default"] = False  # __deleted
        names = [f["name"] for f in fields[: len(fields) - 4]]
        deletes = o
        ctx.top = {"type": "record", "name": ctx.top["name"], "fields": fields}
        if image.get(OPEN):  # the image's attributes grow: so do the flat record's fields
            ctx.top[OPEN] = True
        ctx.layout = Layout(op="__op", table="__table", source_ts_ms="__source_ts_ms")

        def flatten(item: Item) -> Item | None:
            v = item.value
            if v is None:
                return item
            op = op_of.get(v)
            deleted = op == "d"
            if deleted and (deletes == "tombstone") != item.tombstone:
                return None  # tombstone: the delete is its tombstone only; rewrite: the record only
            img = (before if deleted else after).get(v)
            if img is None and deleted and item.context is not None:
                img = item.context[1]()  # no before image (a NEW_IMAGE stream): the key is what is known
            img = img or {}
            out = {n: img.get(n) for n in names}
            out["__op"] = op
            out["__table"] = None if table is None else table.get(v)
            out["__source_ts_ms"] = None if ts is None else ts.get(v)
            out["__deleted"] = deleted
            item.value = out
            return item
        return flatten
    if name == "insert_field":
        adds = [(n, _Template(ctx, v, where)) for n, v in o]
        fields = list(ctx.top["fields"])
        for n, tpl in adds:  # the inserted field wins over one of its name (left out)
            fields = [f for f in fields if f["name"] != n]
            fields.append(new_field(n, tpl.type))
        ctx.top = dict(ctx.top, fields=fields)

        def insert(item: Item) -> Item:
            v = item.value
            if v is not None:
                v = dict(v)
                for n, tpl in adds:
                    v[n] = tpl.value(item.value)
                item.value = v
            return item
        return insert
    if name == "insert_header":
        headers = [(n, _Template(ctx, v, where)) for n, v in o]

        def header(item: Item) -> Item:
            for n, tpl in headers:
                x = tpl.value(item.value)
                item.headers.append((n, None if x is None else _text(x).encode()))
            return item
        return header
    if name == "route":
        topic = _Template(ctx, o, where)

        def route(item: Item) -> Item:
            item.topic = _topic(_text(topic.value(item.value)))
            return item
        return route
    assert name == "python"
    fn = o if callable(o) else load_callable(o, where)
    ref = o if isinstance(o, str) else f"{fn.__module__}:{fn.__qualname__}"

    def python(item: Item) -> Any:
        return call(fn, ref, item)
    return python


def _hash(v: Any) -> str:
    raw = v if isinstance(v, bytes) else _text(v).encode()
    return hashlib.sha256(raw).hexdigest()


def _topic(text: str) -> str:
    """A computed topic name made valid for Kafka (other characters become ``_``)."""
    out = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in text)[:249]
    return out if out not in ("", ".", "..") else "_"


@dataclass
class Compiled:
    """A chain against one input schema: the output schema text and the steps."""

    schema: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    headers: bool = False  # a step may add Kafka headers
    # No step changes the value's shape (filter, route, insert_header, python): the output
    # schema is the input's, and a value no step changed keeps the bytes it came with.
    same_shape: bool = False
    # Some step reads the value (else it is not decoded at all: a static route or header).
    reads: bool = True
    python: bool = False
    names: list[str] = field(default_factory=list)  # each step's place in the config, for errors

    def run(self, item: Item) -> list[Item]:
        """The items out of the chain; StepError (a record error) where a step fails on this item."""
        items = [item]
        for step, name in zip(self.steps, self.names):
            nxt: list[Item] = []
            for it in items:
                try:
                    out = step(it)
                except StepError:
                    raise
                except Exception as e:  # noqa: BLE001 - one record's failure, not the bridge's
                    raise StepError(f"{name} failed on this record: {type(e).__name__}: {e}") from e
                if out is None:
                    continue
                if isinstance(out, list):
                    nxt.extend(out)
                else:
                    nxt.append(out)
            items = nxt
            if not items:
                break
        return items


def compile_chain(specs: tuple[Spec, ...], value_schema: Any, layout: Layout,
                  call: Callable[[Callable[..., Any], str, Item], Any] | None = None, *, where: str = "transforms"
                  ) -> Compiled:
    """The output schema and steps of ``specs`` on values of ``value_schema``; ConfigError
    with one line naming the transform where a path goes nowhere."""
    names = Names()
    top_name = names.normalize(value_schema)
    top = copy.deepcopy(names.deref(top_name))
    if not isinstance(top, dict) or top.get("type") != "record":
        raise ConfigError(f"{where}: transforms need record values")
    ctx = _Ctx(names, top, layout)
    for path in layout.open:
        t = ctx.resolve(split_path(path, "layout"), path).type
        rec = names.deref(strip_null(t))
        if isinstance(rec, dict) and rec.get("type") == "record":
            rec[OPEN] = True
    steps: list[Step] = []
    step_names: list[str] = []

    def no_call(fn: Callable[..., Any], ref: str, item: Item) -> Any:
        return fn(item)

    for i, spec in enumerate(specs):
        here = f"{where}[{i}].{spec.name}"
        try:
            steps.append(_step(spec, ctx, here, call or no_call))
            step_names.append(here)
        except ConfigError as e:
            msg = str(e)
            raise ConfigError(msg if msg.startswith(here) else f"{here}: {msg}") from None
    top = ctx.top
    top_name = str(top["name"])
    top = dict(top, name=top_name)
    names.types[top_name] = top
    schema = finish(top_name, names)
    def static(s: Spec) -> bool:
        """A route or header that reads nothing from the value."""
        texts = [x for _, x in s.options] if s.name == "insert_header" else [s.options]
        return all(not isinstance(t, str) or not TEMPLATE.search(t) for t in texts)

    return Compiled(schema, steps, names=step_names, headers=any(s.name in ("insert_header", "python") for s in specs),
                    same_shape=all(s.name in ("filter", "route", "insert_header", "python") for s in specs),
                    reads=not all(s.name in ("route", "insert_header") and static(s) for s in specs),
                    python=any(s.name == "python" for s in specs))
