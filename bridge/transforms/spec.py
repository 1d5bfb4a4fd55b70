"""The ``transforms`` list of a source's config: parsed and checked for form at load time.

Each entry is a mapping with one key, the transform's name (docs/transforms.md). What a path
points at is checked later, against the source's schema (``bridge.transforms.chain``); what
can be checked from the text alone (an unknown transform, an option it does not take, a
name that is not an Avro name, a Python function that does not import) is checked here, so
``validate`` and the start refuse it with one line.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from bridge.transforms.schema import AVRO_NAME

__all__ = ["Spec", "parse_transforms", "load_callable", "split_path", "TEMPLATE"]

NAMES = ("select", "rename", "drop", "filter", "flatten", "mask", "insert_header", "insert_field", "route", "python")
OPS = ("c", "u", "d", "r")
COMPARE = ("eq", "ne", "gt", "gte", "lt", "lte", "present")
# {path}: single braces (${...} is the config file's environment interpolation)
TEMPLATE = re.compile(r"\{([^{}]*)\}")
_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")


@dataclass(frozen=True)
class Spec:
    """One transform: its name and options in a normal form (tuples, so a chain is hashable)."""

    name: str
    options: Any


def split_path(text: str, where: str) -> tuple[str, ...]:
    text = text.strip()
    if not _PATH.match(text):
        raise ValueError(f"{where}: {text!r} is not a path; write field names joined by dots, e.g. after.orderId")
    return tuple(text.split("."))


def _names(v: Any, where: str) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise ValueError(f"{where}: write a list of paths, e.g. [after.orderId, after.status]")
    return v


def _avro_name(name: str, where: str) -> str:
    if not AVRO_NAME.match(name):
        raise ValueError(f"{where}: {name!r} is not an Avro field name (letters, digits, _; not starting with a digit)")
    return name


def _template(v: Any, where: str) -> Any:
    """A static value, or text with ``{path}`` placeholders (paths checked for form here)."""
    if isinstance(v, str):
        for p in TEMPLATE.findall(v):
            split_path(p, where)
    elif not isinstance(v, (bool, int, float)) and v is not None:
        raise ValueError(f"{where}: write a string, number, boolean or '{{path}}', not {v!r:.40}")
    return v


def _number(v: Any, where: str) -> Decimal | None:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return None
    try:
        return Decimal(str(v))
    except InvalidOperation:
        return None


def _select(v: Any, where: str) -> tuple[tuple[str, tuple[str, ...], str], ...]:
    out = []
    for entry in _names(v, where):
        path, _, alias = (s.strip() for s in entry.partition(" as "))
        parts = split_path(path, where)
        out.append((path, parts, _avro_name(alias or parts[-1], where)))
    names = [n for _, _, n in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{where}: two fields would be named {dup[0]!r}; give one another name with 'as'")
    return tuple(out)


def _filter(v: Any, where: str) -> Any:
    if not isinstance(v, dict):
        raise ValueError(f"{where}: write a mapping with op and/or where")
    unknown = sorted(set(v) - {"op", "where"})
    if unknown:
        raise ValueError(f"{where}: unknown option {unknown[0]!r}; filter takes op, where")
    ops = v.get("op")
    if ops is not None:
        ops = [ops] if isinstance(ops, str) else ops
        bad = [o for o in ops if o not in OPS] if isinstance(ops, list) else [ops]
        if bad or not ops:
            raise ValueError(f"{where}.op: {bad[0] if bad else ops!r} is not an operation; write a list of c, u, d, r")
        ops = tuple(ops)
    conds = []
    where_ = v.get("where") or {}
    if not isinstance(where_, dict):
        raise ValueError(f"{where}.where: write a mapping of path to a test, e.g. after.status: {{eq: shipped}}")
    for path, test in where_.items():
        parts = split_path(str(path), f"{where}.where")
        if not isinstance(test, dict):
            test = {"eq": test}
        for op, value in test.items():
            if op not in COMPARE:
                raise ValueError(f"{where}.where.{path}: unknown test {op!r}; one of {', '.join(COMPARE)}")
            if op == "present":
                if not isinstance(value, bool):
                    raise ValueError(f"{where}.where.{path}.present: write true or false")
            elif op in ("gt", "gte", "lt", "lte"):
                value = _number(value, where)
                if value is None:
                    raise ValueError(f"{where}.where.{path}.{op}: {test[op]!r} is not a number")
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                value = _number(value, where)  # 0.1 means the decimal 0.1 (as the YAML reads)
            conds.append((str(path), parts, op, value))
    return (ops, tuple(conds))


def load_callable(ref: str, where: str) -> Callable[..., Any]:
    """``package.module:function``, imported now (a failure is one line at start)."""
    mod, sep, attr = ref.partition(":")
    if not sep or not mod or not attr:
        raise ValueError(f"{where}: {ref!r} is not a dotted path; write package.module:function")
    try:
        obj: Any = importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ImportError as e:
        raise ValueError(f"{where}: cannot import {mod!r} ({e}); is it installed or on PYTHONPATH?") from None
    except AttributeError:
        raise ValueError(f"{where}: module {mod!r} has no {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"{where}: {ref!r} is not callable")
    return obj  # type: ignore[no-any-return]


def _one(name: str, v: Any, where: str) -> Any:
    if name == "select":
        return _select(v, where)
    if name == "drop":
        return tuple((p, split_path(p, where)) for p in _names(v, where))
    if name == "rename":
        if not isinstance(v, dict) or not v:
            raise ValueError(f"{where}: write a mapping of path to new name, e.g. {{after.orderId: order_id}}")
        return tuple((str(p), split_path(str(p), where), _avro_name(str(n), where)) for p, n in v.items())
    if name == "filter":
        return _filter(v, where)
    if name == "flatten":
        v = {} if v is None or v is True else v
        if not isinstance(v, dict) or set(v) - {"deletes"}:
            raise ValueError(f"{where}: flatten takes deletes: tombstone or rewrite")
        deletes = v.get("deletes", "tombstone")
        if deletes not in ("tombstone", "rewrite"):
            raise ValueError(f"{where}.deletes: write tombstone or rewrite, not {deletes!r}")
        return deletes
    if name == "mask":
        if isinstance(v, list):
            v = {"fields": v}
        if not isinstance(v, dict) or set(v) - {"fields", "with"}:
            raise ValueError(f"{where}: mask takes fields (a list of paths) and with (hash or blank)")
        how = v.get("with", "hash")
        if how not in ("hash", "blank"):
            raise ValueError(f"{where}.with: write hash or blank, not {how!r}")
        return (tuple((p, split_path(p, where)) for p in _names(v.get("fields"), f"{where}.fields")), how)
    if name in ("insert_header", "insert_field"):
        if not isinstance(v, dict) or not v:
            raise ValueError(f"{where}: write a mapping of name to value, e.g. {{source: bridge}} or "
                             "{{table: '{{metadata.table}}'}}")
        if name == "insert_field":
            for n in v:
                _avro_name(str(n), where)
        return tuple((str(n), _template(x, f"{where}.{n}")) for n, x in v.items())
    if name == "route":
        topic = v.get("topic") if isinstance(v, dict) else v
        if not isinstance(topic, str) or not topic or (isinstance(v, dict) and set(v) - {"topic"}):
            raise ValueError(f"{where}: write route: {{topic: 'orders.{{after.status}}'}}")
        return _template(topic, where)
    assert name == "python"
    ref = v.get("function") if isinstance(v, dict) else v
    if callable(ref):  # a function registered in code (the Python API)
        return ref
    if not isinstance(ref, str):
        raise ValueError(f"{where}: write python: package.module:function")
    load_callable(ref, where)
    return ref


def parse_transforms(value: Any, where: str = "transforms") -> tuple[Spec, ...]:
    """The chain's specs; ValueError with one line naming the entry otherwise."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"{where}: write a list of transforms, e.g. - select: [after.orderId as order_id]")
    out = []
    for i, entry in enumerate(value):
        here = f"{where}[{i}]"
        if isinstance(entry, Spec):
            out.append(entry)
            continue
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ValueError(f"{here}: write one transform per entry, e.g. - select: [...]")
        (name, options), = entry.items()
        if name not in NAMES:
            raise ValueError(f"{here}: unknown transform {name!r}; one of {', '.join(NAMES)}")
        out.append(Spec(name, _one(name, options, f"{here}.{name}")))
    return tuple(out)
