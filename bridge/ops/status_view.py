"""``ddb-kafka-bridge status``: the cluster's state from the offsets and status topics alone.

No bridge needs to run: positions come from the offsets topic (what is committed), states,
owners and lag from the status topic (as of each record's ``time_ms``, shown as its age).
"""

from __future__ import annotations

import json
import time
from typing import Any

from bridge.config import BridgeConfig
from bridge.errors import OffsetStoreError
from bridge.ops.offsets_tool import read_offsets
from bridge.ops.runtime import task_id
from bridge.ops.status_topic import parse_status_key
from bridge.ops.topicstate import CompactedView

__all__ = ["cluster_status", "read_status", "status_lines"]


def read_status(cfg: BridgeConfig, timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
    """kind → id → latest value, for this connector name (tombstones applied)."""
    out: dict[str, dict[str, Any]] = {"connector": {}, "task": {}, "worker": {}, "graph": {}}

    def apply(key: bytes | None, value: bytes | None) -> None:
        parsed = parse_status_key(cfg.name, (key or b"").decode("utf-8", "replace"))
        if parsed is None:
            return
        kind, ident = parsed
        if value is None:
            out[kind].pop(ident, None)
            return
        try:
            v = json.loads(value)
        except ValueError:
            return
        if kind != "worker" and v.get("name") != cfg.name:
            return
        out[kind][ident] = v

    view = CompactedView(cfg.kafka, cfg.status_topic, apply)
    try:
        view.read_to_end(timeout_s)
    except OffsetStoreError as e:
        if "does not exist" not in str(e):
            raise
    finally:
        view.close()
    return out


def cluster_status(cfg: BridgeConfig) -> dict[str, Any]:
    status = read_status(cfg)
    offsets = read_offsets(cfg)
    now = int(time.time() * 1000)
    tasks: dict[str, dict[str, Any]] = {}
    for _pkey, (partition, offset) in offsets.items():
        tid = task_id(partition)
        tasks[tid] = {"id": tid, "partition": partition, "offset": offset, "state": "FINISHED" if offset.get("ended")
                      or offset.get("done") else "UNASSIGNED"}
    for tid, t in status["task"].items():
        row = tasks.setdefault(tid, {"id": tid, "partition": t.get("partition"), "offset": None})
        row |= {"state": t.get("state"), "worker_id": t.get("worker_id"), "trace": t.get("trace"),
                "millis_behind_latest": t.get("millis_behind_latest"), "iterator_age_ms": t.get("iterator_age_ms"),
                "status_age_ms": now - int(t.get("time_ms", now))}
    connector = status["connector"].get(cfg.name)
    return {
        "name": cfg.name,
        "connector": connector,
        "workers": list(status["worker"].values()),
        "tasks": sorted(tasks.values(), key=lambda r: r["id"]),
        "graphs": list(status["graph"].values()),
    }


def _ms(v: Any) -> str:
    return "-" if v is None else f"{int(v)}ms"


def status_lines(view: dict[str, Any]) -> list[str]:
    c = view["connector"]
    head = (f"connector {view['name']}: {c['state']} on {c.get('worker_id')} (as of {_age(c)})" if c
            else f"connector {view['name']}: no status recorded (never run with the status topic?)")
    out = [head]
    if c and c.get("trace"):
        out.append(f"  error: {c['trace']}")
    out.append(f"{'task':58} {'state':10} {'lag':>10} {'position'}")
    for t in view["tasks"]:
        pos = json.dumps(t.get("offset"), sort_keys=True) if t.get("offset") is not None else "-"
        out.append(f"{t['id'][:58]:58} {str(t.get('state')):10} {_ms(t.get('millis_behind_latest')):>10} {pos}")
        if t.get("trace"):
            out.append(f"  error: {t['trace']}")
    return out


def _age(v: dict[str, Any]) -> str:
    return f"{(time.time() * 1000 - v.get('time_ms', 0)) / 1000:.0f}s ago"
