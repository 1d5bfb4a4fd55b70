"""Snapshot rows: a Scan page's ``Items`` or an export file's lines → records, in one pass.

The stream path hands GetRecords bodies to the C transcoder; snapshots are the same DynamoDB
JSON items, so they go through the same writer (``transcode.ItemWriter``): the item's bytes
become the Avro key and the envelope's value without Python objects in between, and the
parsing runs with the GIL released, so pages and files decoded in a thread pool (see
``decode_pool``) use more than one core. Where the C writer refuses a page or a batch of lines
(invalid JSON, a malformed attribute, an item without its key), or is not built, the general
path takes it: orjson, ``snapshot_records``, and the serializer's encoder, which reports each
bad record on its own (dead-letter topic) or stops with one line, as before.

Everything here is blocking CPU work meant for a pool thread; nothing touches the event loop.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from bridge.errors import ConfigError
from bridge.task import SourceRecord
from connectors.dynamodb import transcode
from connectors.dynamodb._transcode_py import read_lines
from connectors.dynamodb.avro import encode_envelope, encode_long
from connectors.dynamodb.envelope import Change, ChangeRecord, EnvelopeSchema, UnreadableChange, envelope_schema
from connectors.dynamodb.table import TableInfo

__all__ = ["SnapshotRows", "decode_pool", "snapshot_records"]

log = logging.getLogger(__name__)


class BadLine:
    """An export line that holds no item (not JSON, not ``{"Item": {...}}``): it becomes an
    unreadable record, so ``errors.tolerance`` decides, as for any record that does not convert."""

    __slots__ = ("reason", "raw")

    def __init__(self, reason: str, raw: str) -> None:
        self.reason, self.raw = reason, raw


def snapshot_records(
    items: list[Any], *, topic: str, table: TableInfo, source: dict[str, Any],
    schema: EnvelopeSchema | None = None, typed: Any = None,
) -> list[SourceRecord]:
    """Snapshot rows: ``op = r``, ``after`` = the item, ``before`` = None (the general path).

    A Scan item without a key attribute is a config error (a projection_expression left the
    key out: every item lacks it); export lines are checked for that where they are read.
    ``typed`` (the table's TypedTable, ``value: {shape: typed}``): each row carries the handle
    of the schema version it needs and its value already written where it fits."""
    ts_ms = int(time.time() * 1000)
    schema = schema or envelope_schema(table.name, table.key_fields)
    names = [f.name for f in table.key_fields]
    if typed is not None:
        return [_typed_row(topic, typed, names, it, source, ts_ms, table.name) for it in items]
    h = names[0]
    r = names[1] if len(names) > 1 else None

    def one(it: Any) -> SourceRecord:
        """The slow path, one item at a time: only the bad ones become unreadable records."""
        if type(it) is dict:
            return ChangeRecord(topic, schema, {n: it[n] for n in names}, Change("r", None, it), source, ts_ms)
        if isinstance(it, BadLine):
            reason, it = it.reason, it.raw
        else:
            reason = f"snapshot item is not an object: {it!r:.60}"
        return UnreadableChange(topic, schema, {}, None, source, ts_ms, reason=reason, raw=it)

    try:
        try:
            if r is None:
                return [ChangeRecord(topic, schema, {h: it[h]}, Change("r", None, it), source, ts_ms) for it in items]
            return [ChangeRecord(topic, schema, {h: it[h], r: it[r]}, Change("r", None, it), source, ts_ms)
                    for it in items]
        except TypeError:  # an item that is not an object (a corrupt export line): it alone does not convert
            return [one(it) for it in items]
    except KeyError as e:
        raise ConfigError(
            f"snapshot of {table.name}: item without key attribute {e.args[0]!r}; "
            "a projection_expression must keep the key attributes"
        ) from None


def _typed_row(topic: str, typed: Any, names: list[str], item: Any, source: dict[str, Any], ts_ms: int,
               table: str) -> SourceRecord:
    if type(item) is not dict:
        return UnreadableChange(topic, typed.handle, {}, None, source, ts_ms,
                                reason=f"snapshot item is not an object: {item!r:.60}", raw=item)
    try:
        key = {n: item[n] for n in names}
    except KeyError as e:
        raise ConfigError(f"snapshot of {table}: item without key attribute {e.args[0]!r}; "
                          "a projection_expression must keep the key attributes") from None
    handle, body = typed.write("r", None, item, source, ts_ms)
    return ChangeRecord(topic, handle, key, Change("r", None, item), source, ts_ms, False, None, body)


def decode_pool(threads: int | None, name: str) -> ThreadPoolExecutor:
    """The small pool a snapshot decodes in (gzip, JSON, Avro): the GIL is released for most of it."""
    return ThreadPoolExecutor(max_workers=threads or _cores(), thread_name_prefix=f"decode-{name}")


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class SnapshotRows:
    """One task's rows (a Scan segment or an export file): its source block, its writer.

    The envelope's value is ``op "r", before null, after = the item, source, ts_ms``; the
    writer is given the bytes before and after the item (from ``encode_envelope`` itself, so
    they cannot drift) and writes the item between them.
    """

    def __init__(
        self, *, topic: str, table: TableInfo, source: dict[str, Any], where: str = "",
        schema: EnvelopeSchema | None = None, typed: Any = None,
    ) -> None:
        self._topic = topic
        self._table = table
        self._schema = schema = schema or envelope_schema(table.name, table.key_fields)
        self._source = source
        self._frame: tuple[bytes, bytes] | None = None  # the envelope around the item, up to ts_ms
        self._where = where
        self._typed = typed
        # The C item writer writes the envelope, and typed rows of Scan pages by the schema's plan.
        w = transcode.ItemWriter
        self._writer = (
            None if w is None
            else w([(f.name, f.type) for f in table.key_fields], topic, table.name,
                   schema if typed is None else typed.handle, source)
        )
        self.general_batches = 0  # pages or batches the C writer refused (or all, without it)

    @property
    def one_pass(self) -> bool:
        return self._writer is not None

    def _around(self, ts_ms: int) -> tuple[bytes, bytes]:
        if self._typed is not None and self._typed.cfg.image == "after":
            return b"", b""  # the item's record alone
        # typed envelope values have the same op, before, source and ts_ms
        if self._frame is None:  # once: encoding the source block per batch showed in profiles
            full = encode_envelope("r", None, {}, self._source, 0)
            assert full[4] == 0, "the envelope's after branch is at byte 3, its empty map at byte 4"
            assert full[-1] == 0, "ts_ms (0: one byte) ends the envelope"
            self._frame = full[:4], full[5:-1]
        head, source = self._frame
        return head, source + encode_long(ts_ms)

    def scan_page(self, body: bytes) -> tuple[list[SourceRecord], dict[str, Any]]:
        """A Scan response body → (its items as records, the response without ``Items``)."""
        ts_ms = int(time.time() * 1000)
        typed = self._typed
        handle = None if typed is None else typed.handle
        if self._writer is not None and (handle is None or handle.stream_plan is not None):
            head, tail = self._around(ts_ms)
            try:
                if handle is None:
                    records, rest = self._writer.scan_page(body, head, tail, ts_ms)
                else:
                    records, rest, misses = self._writer.scan_page(body, head, tail, ts_ms, handle.stream_plan, handle)
                    if misses:  # items not plainly in the plan: the Python writer (the schema grows there)
                        names = [f.name for f in self._table.key_fields]
                        records = list(records)
                        for i in misses:
                            records[i] = _typed_row(self._topic, typed, names, orjson.loads(records[i]), self._source,
                                                    ts_ms, self._table.name)
                return records, {k: orjson.loads(v) for k, v in rest.items()}
            except ValueError as e:
                log.debug("snapshot of %s: Scan page takes the general path: %s", self._table.name, e)
        self.general_batches += 1
        resp = orjson.loads(body) if body else {}
        items = resp.pop("Items", None) or []
        return snapshot_records(items, topic=self._topic, table=self._table, schema=self._schema, source=self._source,
                                typed=self._typed), resp

    def lines(self, data: bytes, pos: int, want: int, final: bool, first_line: int) -> tuple[list[SourceRecord], int, int]:
        """Export lines from byte ``pos`` → (up to ``want`` records, byte position after the last
        line read, lines read, blank ones included). A last line without a newline is read only
        when ``final``. ``first_line`` (the number of the line at ``pos``) is for messages."""
        if self._writer is not None and self._typed is None:  # (exports do not take shape: typed)
            ts_ms = int(time.time() * 1000)
            head, tail = self._around(ts_ms)
            try:
                return self._writer.lines(data, pos, want, final, head, tail, ts_ms)
            except ValueError as e:
                log.debug("snapshot of %s: export lines take the general path: %s", self._table.name, e)
        self.general_batches += 1

        def item(line: bytes, n: int) -> Any:
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                return BadLine(f"{self._where} line {first_line + n}: not JSON ({e})", line.decode("utf-8", "replace"))
            it = doc.get("Item") if type(doc) is dict else None
            if type(it) is not dict:
                return BadLine(f"{self._where} line {first_line + n}: not a DYNAMODB_JSON line "
                               '(an object {"Item": {...}})', line.decode("utf-8", "replace"))
            missing = [k for k in key_names if k not in it]
            if missing:  # a corrupt line: an export has no projection that could drop a key
                return BadLine(f"{self._where} line {first_line + n}: item without key attribute {missing[0]!r}",
                               line.decode("utf-8", "replace"))
            return it

        key_names = [f.name for f in self._table.key_fields]
        items, pos, n = read_lines(data, pos, want, final, item)
        return snapshot_records(items, topic=self._topic, table=self._table, schema=self._schema, source=self._source,
                                typed=self._typed), pos, n
