"""``offsets show|reset|export|import``: the offsets topic without a running bridge.

Offsets are Kafka Connect's layout (key ``["<name>", {partition}]``, JSON value, null to
delete), so these are plain reads and writes of that topic. Changing offsets under a
running bridge is refused by the REST API (``DELETE /connectors/{name}/offsets`` needs a
STOPPED connector); from the command line the writing commands refuse while a bridge of
the name runs (``bridge/ops/liveness.py``), since a running one keeps its offsets in memory
and writes them again.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaException, Producer

from bridge.config import BridgeConfig
from bridge.errors import ConfigError, OffsetStoreError
from bridge.kafka import client_config
from bridge.offsets import encode_offset_key
from bridge.ops.topicstate import CompactedView
from bridge.task import partition_id, partition_key

__all__ = ["export_lines", "import_lines", "read_offsets", "write_offsets"]


def read_offsets(cfg: BridgeConfig, timeout_s: float = 30.0) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """This connector's stored offsets: partition key → (partition, offset), tombstones applied."""
    out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    def apply(key: bytes | None, value: bytes | None) -> None:
        try:
            name, partition = json.loads(key or b"null")
        except (ValueError, TypeError):
            return
        if name != cfg.name or not isinstance(partition, dict):
            return
        pkey = partition_key(partition)
        if value is None:
            out.pop(pkey, None)
            return
        try:
            offset = json.loads(value)
        except ValueError:
            return
        if isinstance(offset, dict):
            out[pkey] = (partition, offset)

    view = CompactedView(cfg.kafka, cfg.offsets_topic, apply)
    try:
        view.read_to_end(timeout_s)
    finally:
        view.close()
    return out


def write_offsets(cfg: BridgeConfig, entries: Sequence[tuple[Mapping[str, Any], Mapping[str, Any] | None]],
                  timeout_s: float = 120.0) -> int:
    """Produce offset records (None: a tombstone), all of them or none.

    One transaction holds them all: a failure half-way (a broker gone, a timeout) aborts it,
    and the bridge's start reads the offsets topic ``read_committed``, so it sees every
    record of an import or none. Producing waits for room when librdkafka's queue is full
    (200,000 lines are more than its default 100,000 messages), instead of failing there.
    """
    producer = Producer(client_config(cfg.kafka) | {
        "transactional.id": f"{cfg.name}-offsets-tool", "enable.idempotence": True, "acks": "all",
        # The bridge's partitioner (bridge/kafka.py): on an offsets topic of several partitions
        # librdkafka's default (CRC32) put a key in another partition than the bridge's record
        # of it, and which one a start read last decided whether a reset or import counted.
        "partitioner": "murmur2_random",
        "transaction.timeout.ms": int(timeout_s * 1000) + 60_000,
    })
    errors: list[str] = []

    def done(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err.str())

    def fail(what: str) -> OffsetStoreError:
        with contextlib.suppress(KafkaException):
            producer.abort_transaction(10)
        return OffsetStoreError(f"writing offsets to {cfg.offsets_topic!r}: {what}; nothing was written "
                                "(the transaction was aborted), run the command again once Kafka is reachable")

    deadline = time.monotonic() + timeout_s
    try:
        producer.init_transactions(timeout_s)
        producer.begin_transaction()
    except KafkaException as e:
        raise OffsetStoreError(f"writing offsets to {cfg.offsets_topic!r}: {e.args[0].str()}; nothing was written"
                               ) from None
    try:
        for partition, offset in entries:
            value = None if offset is None else json.dumps(dict(offset), sort_keys=True,
                                                           separators=(",", ":")).encode()
            key = encode_offset_key(cfg.name, partition)
            while True:
                try:
                    producer.produce(cfg.offsets_topic, value, key, on_delivery=done)
                    break
                except BufferError:  # the local queue is full: let deliveries make room
                    if time.monotonic() > deadline:
                        raise fail(f"not acknowledged within {timeout_s:.0f} s") from None
                    producer.poll(0.1)
            if errors:
                raise fail(errors[0])
        left = producer.flush(max(1.0, deadline - time.monotonic()))
        if left:
            raise fail(f"{left} offset records not acknowledged within {timeout_s:.0f} s")
        if errors:
            raise fail(errors[0])
        producer.commit_transaction(max(1.0, deadline - time.monotonic()))
    except KafkaException as e:
        raise fail(e.args[0].str()) from None
    return len(entries)


def select(stored: dict[str, tuple[dict[str, Any], dict[str, Any]]], table: str | None,
           partition: str | None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The stored offsets of one table, or one partition (JSON text or its id), or all."""
    wanted = None
    if partition is not None:
        try:
            wanted = partition_key(json.loads(partition))
        except ValueError:
            wanted = None
    out = []
    for pkey, (p, o) in sorted(stored.items()):
        if table is not None and p.get("table") != table:
            continue
        if partition is not None and pkey != wanted and partition not in (partition_id(p), p.get("file")):
            continue
        out.append((p, o))
    return out


def export_lines(entries: Iterable[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    """One JSON object per line: ``{"partition": {...}, "offset": {...}}`` (import reads it back)."""
    return [json.dumps({"partition": p, "offset": o}, sort_keys=True) for p, o in entries]


ImportCheck = Callable[[dict[str, Any], "dict[str, Any] | None"], "str | None"]


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A key given twice in one object: json keeps the last silently, so which offset the user
    meant is unknown (the config's YAML refuses the same)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(f"key {k!r} given twice in one object; keep one")
        out[k] = v
    return out


def import_lines(lines: Iterable[bytes], check: ImportCheck | None = None,
                 ) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Parse ``export`` output (bytes: a file that is not UTF-8 is a problem of its lines, not
    a traceback) and check every entry as the start would (``check``: the connector's shapes,
    the config's tables). Every problem of the whole file is collected before anything is
    written; the error names the first few, each with its line number."""
    out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(lines, 1):
        if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a UTF-8 byte-order mark, as some Windows editors save: not part of the JSON
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(f"line {n}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})")
            continue
        if not line.strip():
            continue
        try:
            rec = json.loads(line, object_pairs_hook=_refuse_duplicate_keys)
        except _DuplicateKey as e:
            problems.append(f"line {n}: {e}")
            continue
        except ValueError:
            problems.append(f"line {n}: not JSON")
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("partition"), dict) or (
                rec.get("offset") is not None and not isinstance(rec.get("offset"), dict)) or (
                set(rec) - {"partition", "offset"}):
            problems.append(f'line {n}: expected {{"partition": {{...}}, "offset": {{...}} or null}}')
            continue
        partition, offset = rec["partition"], rec.get("offset")
        if "table" not in partition:
            problems.append(f"line {n}: the partition names no table")
            continue
        why = check(partition, offset) if check is not None else None
        if why is not None:
            problems.append(f"line {n}: {why}")
            continue
        pkey = partition_key(partition)
        if pkey in seen:
            problems.append(f"line {n}: the same partition as line {seen[pkey]}; keep one")
            continue
        seen[pkey] = n
        out.append((partition, offset))
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ConfigError("offsets import: nothing written: " + "; ".join(problems[:5]) + more
                          + "; fix the file and import it again")
    return out
