"""``offsets show|reset|export|import``: the offsets topic without a running bridge.

Offsets are Kafka Connect's layout (key ``["<name>", {partition}]``, JSON value, null to
delete), so these are plain reads and writes of that topic. Changing offsets under a
running bridge is refused by the REST API (``DELETE /connectors/{name}/offsets`` needs a
STOPPED connector); from the command line the operator is told to stop the bridge first,
since a running one keeps its offsets in memory and writes them again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaException, Producer

from bridge.config import BridgeConfig
from bridge.errors import ConfigError, OffsetStoreError
from bridge.kafka import client_config
from bridge.offsets import encode_offset_key
from bridge.ops.topicstate import CompactedView
from bridge.task import partition_key

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


def write_offsets(cfg: BridgeConfig, entries: Iterable[tuple[Mapping[str, Any], Mapping[str, Any] | None]],
                  timeout_s: float = 30.0) -> int:
    """Produce offset records (None: a tombstone) and wait for every acknowledgement."""
    producer = Producer(client_config(cfg.kafka) | {"enable.idempotence": True, "acks": "all"})
    errors: list[str] = []
    count = 0

    def done(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err.str())

    try:
        for partition, offset in entries:
            value = None if offset is None else json.dumps(dict(offset), sort_keys=True,
                                                           separators=(",", ":")).encode()
            producer.produce(cfg.offsets_topic, value, encode_offset_key(cfg.name, partition), on_delivery=done)
            count += 1
        left = producer.flush(timeout_s)
    except KafkaException as e:
        raise OffsetStoreError(f"writing offsets to {cfg.offsets_topic!r}: {e.args[0].str()}") from None
    if left:
        raise OffsetStoreError(f"{left} offset records to {cfg.offsets_topic!r} not acknowledged within {timeout_s:.0f} s")
    if errors:
        raise OffsetStoreError(f"writing offsets to {cfg.offsets_topic!r}: {errors[0]}")
    return count


def select(stored: dict[str, tuple[dict[str, Any], dict[str, Any]]], table: str | None,
           partition: str | None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The stored offsets of one table, or one partition (JSON text or a shard id), or all."""
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
        if partition is not None and pkey != wanted and partition not in (p.get("shard"), p.get("file")):
            continue
        out.append((p, o))
    return out


def export_lines(entries: Iterable[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    """One JSON object per line: ``{"partition": {...}, "offset": {...}}`` (import reads it back)."""
    return [json.dumps({"partition": p, "offset": o}, sort_keys=True) for p, o in entries]


def import_lines(lines: Iterable[str]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Parse ``export`` output; every bad line is reported at once, each with its number."""
    out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    problems: list[str] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            problems.append(f"line {n}: not JSON")
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("partition"), dict) or (
                rec.get("offset") is not None and not isinstance(rec.get("offset"), dict)):
            problems.append(f'line {n}: expected {{"partition": {{...}}, "offset": {{...}} or null}}')
            continue
        if "table" not in rec["partition"]:
            problems.append(f"line {n}: the partition names no table")
            continue
        out.append((rec["partition"], rec.get("offset")))
    if problems:
        raise ConfigError("offsets import: " + "; ".join(problems[:20]))
    return out
