"""The transform stage: a source's records through its chain, between the task and the converter.

A record's value is taken as plain data by decoding its Avro body (what the source wrote,
or what its handle writes) with the handle's value schema: the chain sees what a consumer
would, decimals exact. The chain's output is written with the derived schema, and the
record leaves with a derived handle (one per input handle, so the serializer registers
each derived schema once and frames records by identity as before).

Errors are record errors: a value that does not encode, a Python transform that raises,
a result that does not fit the derived schema; the record leaves as an ``UnreadableRecord``
with the reason, so it takes the dead-letter path (``errors.tolerance: all``) or stops
the task with one line, as any record that does not convert.
"""

from __future__ import annotations

import copy
import io
import json
import re
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import fastavro

from bridge.errors import ConversionError
from bridge.task import KafkaHeaders, RecordSchema, SourceRecord, UnreadableRecord
from bridge.transforms.chain import NO_KEY, Compiled, Item, Layout, StepError, compile_chain
from bridge.transforms.record import Record
from bridge.transforms.spec import Spec

__all__ = ["DROP", "TransformFailure", "TransformStage", "TransformedSchema"]


@dataclass(slots=True)
class TransformedRecord(SourceRecord):
    """A record out of the chain: key and value already written, its own Kafka headers."""

    kafka_headers: KafkaHeaders | None = None


def _record_headers(record: SourceRecord) -> KafkaHeaders:
    return getattr(record, "kafka_headers", None) or []


@dataclass(frozen=True, eq=False)
class TransformedSchema:
    """The handle of a chain's output for one input handle (the seam's ``RecordSchema``)."""

    key_schema: str
    value_schema: str
    strategy: Any
    headers: Callable[[SourceRecord], KafkaHeaders] | None

    def encode_key(self, record: SourceRecord) -> bytes:
        if record.encoded_key is None:
            raise ConversionError("a transformed record has no key")
        return record.encoded_key

    def encode_value(self, record: SourceRecord) -> bytes:
        if record.encoded_value is None:
            raise ConversionError("a transformed record has no value")
        return record.encoded_value

    def dead_letter_value(self, record: SourceRecord) -> Any:
        return getattr(record, "raw", None)


@dataclass(slots=True)
class TransformFailure(UnreadableRecord):
    """A record the chain could not carry; ``error_headers`` go with it to the dead-letter topic
    (a user's transform: its exception's class, message and traceback)."""

    error_headers: KafkaHeaders = field(default_factory=list)


DROP = object()  # a fast writer's answer for a record the chain drops
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


class _UserError(StepError):
    def __init__(self, text: str, headers: KafkaHeaders) -> None:
        super().__init__(text)
        self.headers = headers


@dataclass
class _Plan:
    """What one input handle's records need: the chain compiled against its schema, the
    readers and writers, and the output handle."""

    source: RecordSchema
    compiled: Compiled
    reader: Any
    key_schema: Any
    writer: Any
    handle: TransformedSchema
    fast: Callable[[SourceRecord], Any] | None = None  # the connector's writer of this chain's values


def _parse(text: str) -> Any:
    return fastavro.parse_schema(json.loads(text))


class TransformStage:
    """One source's chain; ``apply`` a batch's records (``SourceConnector.transforms``)."""

    def __init__(self, specs: tuple[Spec, ...], layout: Layout, *, where: str = "transforms",
                 create_topic: Callable[[str], Awaitable[None]] | None = None,
                 fast: Callable[[tuple[Spec, ...], RecordSchema], Callable[[SourceRecord], Any] | None] | None = None
                 ) -> None:
        """``fast(specs, handle)``: a connector's writer of the chain's value bytes for records of
        ``handle`` straight from its own data (returning ``DROP`` for a record the chain drops,
        None for one it leaves to the structured path; for a tombstone, ``DROP`` or anything
        else to keep it), or None where it has none; its results must equal the structured path's."""
        self.specs, self.layout, self.where, self.fast = specs, layout, where, fast
        self.create_topic = create_topic
        self._by_schema: dict[tuple[str, str, str], tuple[Compiled, Any, Any, str]] = {}
        self._plans: dict[int, _Plan] = {}
        self._last: _Plan | None = None
        self.topics: set[str] = set()  # every topic this chain has written to (routes' too)
        # What each user function made of the last change it saw, by function: that change's key
        # and the (topic, key, headers) it returned; its tombstone, right after it, goes alike.
        self._user_out: dict[str, tuple[bytes, list[tuple[str, Any, KafkaHeaders, Any]]]] = {}

    def check(self, schema: RecordSchema) -> None:
        """Compile against a handle now: a bad path is a ConfigError at start."""
        self._plan(schema)

    def handle(self, schema: RecordSchema) -> RecordSchema:
        """The output handle of records of ``schema`` (for the start-up subject check)."""
        return self._plan(schema).handle

    def _plan(self, schema: RecordSchema) -> _Plan:
        last = self._last
        if last is not None and last.source is schema:
            return last
        plan = self._plans.get(id(schema))
        if plan is None or plan.source is not schema:
            k = (schema.value_schema, schema.key_schema, str(schema.strategy))
            made = self._by_schema.get(k)
            if made is None:
                compiled = compile_chain(self.specs, json.loads(schema.value_schema), self.layout, self._call,
                                         where=self.where)
                # The same shape: the input's own text, so that bodies no step changed are kept as they are.
                text = schema.value_schema if compiled.same_shape else json.dumps(compiled.schema,
                                                                                  separators=(",", ":"))
                made = self._by_schema[k] = (compiled, _parse(text), _parse(schema.key_schema), text)
            compiled, writer, key_schema, text = made
            headers = _record_headers if (compiled.headers or schema.headers is not None) else None
            # The same output text gives the same handle content: the serializer registers it once.
            handle = TransformedSchema(schema.key_schema, text, schema.strategy, headers)
            plan = self._plans[id(schema)] = _Plan(schema, compiled, _parse(schema.value_schema), key_schema,
                                                   writer, handle, None if self.fast is None else
                                                   self.fast(self.specs, schema))
        self._last = plan
        return plan

    def _call(self, fn: Callable[..., Any], ref: str, item: Item) -> Any:
        """A user's function on one item: a Record in, a Record, a list of them or None out."""
        source, key, key_body = item.context
        if item.tombstone:  # as the function did with its delete: dropped, routed, re-keyed
            done = self._user_out.get(ref)
            if done is None or done[0] != key_body:
                return item
            return [Item(value, topic, list(headers), True, item.context, new_key)
                    for topic, new_key, headers, value in done[1]]
        original_key = copy.deepcopy(key())
        rec = Record(key=key(), value=item.value, headers=list(item.headers), metadata=dict(source.position),
                     topic=item.topic)
        try:
            out = fn(rec)
        except Exception as e:  # noqa: BLE001 - the user's error, as the record's reason
            kind = f"{type(e).__module__}.{type(e).__qualname__}"
            raise _UserError(f"transform {ref} raised {type(e).__name__}: {e}", [
                ("__bridge.transform", ref),
                ("__bridge.transform.exception.class.name", kind),
                ("__bridge.transform.exception.message", str(e)[:2000]),
                ("__connect.errors.exception.stacktrace", "".join(traceback.format_exception(e))[-8000:]),
            ]) from e
        results = [] if out is None else out if isinstance(out, list) else [out]
        items = []
        for r in results:
            if not isinstance(r, Record):
                raise _UserError(f"transform {ref} returned {type(r).__name__}; return a Record, a list of them or "
                                 "None", [("__bridge.transform", ref)])
            if not isinstance(r.topic, str) or not _TOPIC.fullmatch(r.topic) or r.topic in (".", ".."):
                raise _UserError(f"transform {ref} returned topic {r.topic!r:.80}, not a Kafka topic name; write 1 to "
                                 "249 of a-z, A-Z, 0-9, '.', '_', '-'", [("__bridge.transform", ref)])
            items.append(Item(r.value, r.topic, list(r.headers), False, item.context,
                              NO_KEY if r.key == original_key else r.key))
        self._user_out[ref] = (key_body, [(it.topic, it.key, it.headers, it.value) for it in items])
        return items

    async def apply(self, records: list[SourceRecord]) -> list[SourceRecord]:
        out: list[SourceRecord] = []
        prev: tuple[SourceRecord, bytes | None, Any] | None = None
        last_fast: tuple[bytes, bool] | None = None  # (key, dropped) of the last change the fast path wrote
        # The key of the last change that failed (a record error): its tombstone, right after it,
        # follows it (dropped; the change is the dead letter), never routed or kept on its own.
        failed: Any = None
        i, n = 0, len(records)
        while i < n:
            record = records[i]
            plan = self._plan(record.schema)
            if plan.fast is not None and not record.tombstone and failed is None:
                i, done = self._fast_run(records, i, plan, out)
                if done is not None:
                    last_fast, prev = done, None
                    continue
            i += 1
            if record.tombstone and failed is not None and record.key == failed:
                failed = None
                continue
            failed = None
            if isinstance(record, UnreadableRecord):
                out.append(UnreadableRecord(record.topic, plan.handle, record.key, None, record.position,
                                            record.ts_ms, reason=record.reason, raw=record.raw))
                prev, failed = None, record.key
                continue
            try:
                key_body = record.encoded_key if record.encoded_key is not None else record.schema.encode_key(record)
                fast = plan.fast
                if fast is not None and (record.tombstone or record.encoded_value is not None):
                    done = self._fast(record, plan, fast, key_body, last_fast, out)
                    if done is not None:
                        last_fast, prev = done, None
                        continue
                last_fast = None
                body = None
                if record.tombstone:
                    value = prev[2] if prev is not None and prev[1] == key_body else None
                else:
                    body = record.encoded_value
                    if body is None:
                        body = record.schema.encode_value(record)
                    value = fastavro.schemaless_reader(io.BytesIO(body), plan.reader, None) \
                        if plan.compiled.reads else None
            except ConversionError as e:
                out.append(self._failed(record, plan, str(e)))
                prev, failed = None, record.key
                continue
            prev = None if record.tombstone else (record, key_body, value)
            base = record.schema.headers
            headers = list(base(record) or ()) if base is not None else []
            decoded: list[Any] = []

            def key(record: SourceRecord = record, key_body: bytes = key_body, plan: _Plan = plan,
                    decoded: list[Any] = decoded) -> Any:
                if not decoded:
                    decoded.append(fastavro.schemaless_reader(io.BytesIO(key_body), plan.key_schema, None))
                return decoded[0]

            item = Item(value, record.topic, headers, record.tombstone, (record, key, key_body))
            try:
                items = plan.compiled.run(item)
            except StepError as e:
                out.append(self._failed(record, plan, str(e), getattr(e, "headers", None)))
                failed = record.key
                continue
            same = plan.compiled.same_shape and body is not None
            if same and plan.compiled.python:  # a user's function may have changed the value in place
                pristine = fastavro.schemaless_reader(io.BytesIO(body), plan.reader, None)  # type: ignore[arg-type]
            for it in items:
                keep = same and (not plan.compiled.python or it.value == pristine)
                try:
                    out.append(self._emit(record, plan, it, key_body, body if keep else None))
                except (ValueError, TypeError, AttributeError, KeyError, OverflowError, ArithmeticError) as e:
                    out.append(self._failed(record, plan, f"the transformed value does not fit its schema: "
                                                          f"{type(e).__name__}: {e}"))
                    failed = record.key
        for r in out:
            if r.topic not in self.topics:
                if self.create_topic is not None:
                    await self.create_topic(r.topic)
                self.topics.add(r.topic)
        return out

    def _fast_run(self, records: list[SourceRecord], i: int, plan: _Plan, out: list[SourceRecord]
                  ) -> tuple[int, tuple[bytes, bool] | None]:
        """``_fast`` for the run of records from ``i`` of ``plan``'s handle that the connector's
        writer takes (changes with their bodies, each delete's tombstone right after it), in one
        loop; returns where the run stopped and the (key, dropped) of its last change."""
        fast, handle, schema = plan.fast, plan.handle, plan.source
        assert fast is not None
        base = schema.headers
        add = out.append
        last: tuple[bytes, bool] | None = None
        n = len(records)
        while i < n:
            record = records[i]
            if record.schema is not schema or isinstance(record, UnreadableRecord):
                break
            key_body = record.encoded_key
            if key_body is None:
                break
            if record.tombstone:
                if last is None or last[0] != key_body:
                    break
                body = fast(record)
                dropped = body is DROP
                body = None
            else:
                if record.encoded_value is None:
                    break
                body = fast(record)
                if body is None:
                    break
                dropped = body is DROP
            if not dropped:
                headers = list(base(record) or ()) if base is not None else None
                add(TransformedRecord(record.topic, handle, None, None, record.position, record.ts_ms,
                                      record.tombstone, key_body, body, headers or None))
            last = (key_body, dropped)
            i += 1
        return i, last

    def _fast(self, record: SourceRecord, plan: _Plan, fast: Callable[[SourceRecord], Any], key_body: bytes,
              last: tuple[bytes, bool] | None, out: list[SourceRecord]) -> tuple[bytes, bool] | None:
        """The connector's writer of the chain's value (``fast``); None where the record takes the
        structured path. A tombstone is decided by the writer too (``DROP`` or not), when the
        change before it, its delete, went this way."""
        if record.tombstone:
            if last is None or last[0] != key_body:
                return None
            dropped = fast(record) is DROP  # as its delete's chain decides for it
            body = None
        else:
            body = fast(record)
            if body is None:
                return None
            dropped = body is DROP
        if not dropped:
            base = record.schema.headers
            headers = list(base(record) or ()) if base is not None else None
            out.append(TransformedRecord(record.topic, plan.handle, None, None, record.position, record.ts_ms,
                                         record.tombstone, key_body, body, headers or None))
        return key_body, dropped

    def _emit(self, record: SourceRecord, plan: _Plan, it: Item, key_body: bytes, body: bytes | None
              ) -> SourceRecord:
        """The item as a record; ``body``: its value's bytes where they are the input's."""
        key = key_body
        if it.key is not NO_KEY:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, plan.key_schema, it.key)
            key = buf.getvalue()
        value: bytes | None = body
        if plan.compiled.python:  # fastavro leaves out what the schema does not have: refuse it
            if it.key is not NO_KEY:
                _refuse_unknown(it.key, plan.key_schema, "key")
            if not it.tombstone and value is None:
                _refuse_unknown(it.value, plan.writer, "value")
        if not it.tombstone and value is None:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, plan.writer, it.value)
            value = buf.getvalue()
        return TransformedRecord(it.topic, plan.handle, None, None, record.position, record.ts_ms, it.tombstone,
                                 key, value, it.headers or None)

    def _failed(self, record: SourceRecord, plan: _Plan, reason: str, headers: KafkaHeaders | None = None
                ) -> UnreadableRecord:
        reason = " | ".join(line.strip() for line in reason.splitlines() if line.strip())  # one line
        try:
            raw = record.schema.dead_letter_value(record)
        except Exception:  # noqa: BLE001 - the dead-letter value is a picture; the reason matters
            raw = None
        return TransformFailure(record.topic, plan.handle, record.key, None, record.position, record.ts_ms,
                                reason=reason, raw=raw, error_headers=headers or [])


def _refuse_unknown(datum: Any, schema: Any, where: str) -> None:
    """ValueError naming the first field of ``datum`` its (parsed) schema does not have."""
    found = _unknown(datum, schema, schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}, where)
    if found is not None:
        raise ValueError(f"{found} is not in the {where}'s schema; a transform may change values, not fields "
                         "(add it with insert_field or select before the Python transform)")


def _unknown(datum: Any, t: Any, names: dict[str, Any], path: str) -> str | None:
    if isinstance(t, str):
        t = names.get(t)
        if t is None:
            return None
    if isinstance(t, list):  # a union: fine if some branch has every field
        branches = [_unknown(datum, b, names, path) for b in t if b != "null"] if datum is not None else [None]
        return None if not branches or None in branches else branches[0]
    if not isinstance(t, dict) or datum is None:
        return None
    kind = t.get("type")
    if kind == "record":
        if not isinstance(datum, dict):
            return None
        fields = {f["name"]: f["type"] for f in t["fields"]}
        for k, v in datum.items():
            if k not in fields:
                return f"{path}.{k}"
            found = _unknown(v, fields[k], names, f"{path}.{k}")
            if found is not None:
                return found
    elif kind == "map" and isinstance(datum, dict):
        for k, v in datum.items():
            found = _unknown(v, t["values"], names, f"{path}.{k}")
            if found is not None:
                return found
    elif kind == "array" and isinstance(datum, list):
        for i, v in enumerate(datum):
            found = _unknown(v, t["items"], names, f"{path}[{i}]")
            if found is not None:
                return found
    return None
