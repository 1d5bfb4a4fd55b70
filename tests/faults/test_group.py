"""Workers of one name sharing a stream through Kafka's group protocol, on Apache Kafka.

Each worker process signs its Streams requests with its own access key, so the double's
request log says which process read which shard when: the tests check that no shard is
read by two workers at overlapping times beyond the hand-over, besides the topic's content.
"""

from __future__ import annotations

import random
import signal
import time
from collections import defaultdict
from typing import Any

import pytest

from tests.faults.support import (
    ChangeLog,
    Writer,
    assert_complete_in_order,
    assert_exact,
    double_config,
    topic_of,
    wait_until,
)

pytestmark = pytest.mark.slow


def _group_cfg(stack: Any, double: Any, *, delivery: str = "at-least-once", **extra: Any) -> dict[str, Any]:
    cfg = double_config(stack, double, delivery=delivery, offsets={"flush_interval_ms": 200}, metrics=False,
                        shutdown_timeout_s=10, **extra)
    cfg["group"] = {"enabled": True, "partitions": 12, "session_timeout_ms": 3000}
    return cfg


def _start(bridges: Any, cfg: dict[str, Any], who: str) -> Any:
    return bridges.start(cfg, instance=who, env={"AWS_ACCESS_KEY_ID": who})


def _readers(double: Any) -> dict[str, list[tuple[float, str]]]:
    """Per shard, (time, worker) of every GetRecords, in time order."""
    out: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for t, op, shard, who in list(double.request_log):
        if op == "GetRecords" and shard is not None:
            out[shard].append((t, who))
    return out


def _handoffs(double: Any, stops: dict[str, float] | None = None) -> tuple[list[float], list[str]]:
    """The pauses where a shard changed reader (last read by the old, first by the new), and
    any overlap: the old reader reading again after the new one began. ``stops``: when a
    worker was killed (its reads end there; its socket may still answer for a moment)."""
    pauses: list[float] = []
    overlaps: list[str] = []
    for shard, reads in _readers(double).items():
        for (t0, a), (t1, b) in zip(reads, reads[1:]):
            if a != b:
                pauses.append(t1 - t0)
                later = [t for t, w in reads if w == a and t > t1]
                if later:
                    overlaps.append(f"{shard[-8:]}: {a} read {later[-1] - t1:.2f}s after {b} took over")
    return pauses, overlaps


def _summary(pauses: list[float]) -> str:
    if not pauses:
        return "no hand-overs"
    p = sorted(pauses)
    return f"{len(p)} hand-overs, pause median {p[len(p) // 2]:.2f}s, max {p[-1]:.2f}s"


def test_two_workers_share_the_shards_and_deliver_each_change_once(kafka_stack, make_double, bridges,
                                                                    make_reader) -> None:
    """At-least-once, no crash: the second worker takes half the shards through a committed
    hand-over, so nothing is read twice and every change arrives exactly once."""
    d = make_double(shards=8, seed=5)
    log = ChangeLog(d)
    cfg = _group_cfg(kafka_stack, d)
    reader = make_reader(kafka_stack.kafka_bootstrap, kafka_stack.registry_url, topic_of(cfg))
    a = _start(bridges, cfg, "worker-a")
    log.write_many(300, keys=50)
    reader.wait_for_log(log, 60)
    b = _start(bridges, cfg, "worker-b")
    wait_until(lambda: "group: assigned" in b.log(), 60, "the second worker's assignment")
    log.write_many(600, keys=50)
    reader.wait_for_log(log, 90)
    readers_by_shard = {s: {w for _, w in reads[-3:]} for s, reads in _readers(d).items()}
    both = {w for ws in readers_by_shard.values() for w in ws}
    assert both == {"worker-a", "worker-b"}, f"the shards were not shared: {readers_by_shard}"
    reader.drain(1.5)
    assert b.stop() == 0 and a.stop() == 0
    assert_exact(reader.events, log)
    pauses, overlaps = _handoffs(d)
    assert not overlaps, overlaps
    print(f"\ntwo workers, at-least-once: {log.writes} changes, each once; {_summary(pauses)}")
