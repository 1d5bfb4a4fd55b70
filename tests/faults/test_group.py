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
    spread_over_slots,
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
                                                                    make_reader, measured) -> None:
    """At-least-once, no crash: the second worker takes half the shards through a committed
    hand-over, so nothing is read twice and every change arrives exactly once."""
    d = make_double(shards=8, seed=5)
    spread_over_slots(d)
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
    # Judged before the stops: when b stops, a takes b's shards back, a hand-over, not an overlap.
    pauses, overlaps = _handoffs(d)
    assert b.stop() == 0 and a.stop() == 0
    assert_exact(reader.events, log)
    assert not overlaps, overlaps
    measured(f"two workers, at-least-once: {log.writes} changes, each once; {_summary(pauses)}")


def _stints(double: Any) -> dict[str, list[tuple[str, float, float, int]]]:
    """Per shard, the runs of consecutive GetRecords by one worker: (worker, first, last, reads)."""
    out: dict[str, list[tuple[str, float, float, int]]] = {}
    for shard, reads in _readers(double).items():
        runs: list[tuple[str, float, float, int]] = []
        for t, who in reads:
            if runs and runs[-1][0] == who:
                w, first, _, n = runs[-1]
                runs[-1] = (w, first, t, n + 1)
            else:
                runs.append((who, t, t, 1))
        out[shard] = runs
    return out


def _overlaps(double: Any) -> list[str]:
    """Two workers reading one shard at once show as reads that alternate between them
    (A, B, A with a short B in between); a hand-over shows as one switch."""
    bad = []
    for shard, runs in _stints(double).items():
        for (a, _, _, _), (b, b_first, b_last, _), (c, c_first, _, _) in zip(runs, runs[1:], runs[2:]):
            if a == c and b_last - b_first < 1.0:
                bad.append(f"{shard[-8:]}: {a} and {b} alternate at {b_first:.2f}-{c_first:.2f}")
    return bad


def _pauses_after(double: Any, events: list[tuple[float, str]]) -> dict[str, list[float]]:
    """Each reader switch (old worker's last read → new worker's first read), attributed to
    the membership event before it."""
    out: dict[str, list[float]] = defaultdict(list)
    for runs in _stints(double).values():
        for (_, _, a_end, _), (_, b_first, _, _) in zip(runs, runs[1:]):
            cause = [what for t, what in events if t <= b_first]
            out[cause[-1] if cause else "start"].append(b_first - a_end)
    return out


def _run_three_workers(kafka_stack: Any, make_double: Any, bridges: Any, make_reader: Any, delivery: str,
                       seed: int) -> tuple[ChangeLog, Any, dict[str, list[float]], list[str]]:
    d = make_double(shards=16, seed=seed)
    log = ChangeLog(d)
    total = 4_000
    writer = Writer(log, total, keys=400, rng=random.Random(seed),
                    reshapes={500: "split", 1_100: "merge", 1_800: "split", 2_600: "merge", 3_300: "rollover"})
    cfg = _group_cfg(kafka_stack, d, delivery=delivery)
    reader = make_reader(kafka_stack.kafka_bootstrap, kafka_stack.registry_url, topic_of(cfg))
    events: list[tuple[float, str]] = []
    workers = {w: _start(bridges, cfg, w) for w in ("w1", "w2", "w3")}
    events.append((time.monotonic(), "start"))
    writer.quota = total
    writer.start()
    try:
        reader.grow_by(600, 90)
        workers["w1"].send(signal.SIGKILL)
        workers["w1"].wait(10)
        events.append((time.monotonic(), "SIGKILL"))
        reader.grow_by(600, 90)
        workers["w4"] = _start(bridges, cfg, "w4")
        events.append((time.monotonic(), "add"))
        wait_until(lambda: "group: assigned" in workers["w4"].log(), 60, "the new worker's assignment")
        reader.grow_by(600, 90)
        events.append((time.monotonic(), "SIGTERM"))
        assert workers["w2"].stop(signal.SIGTERM) == 0, workers["w2"].log()[-3000:]
        writer.join(180)
        assert writer.error is None and log.writes == total, (writer.error, log.writes)
        reader.wait_for_log(log, 180)
        reader.drain(1.5)
    finally:
        writer.stop()
    for w in ("w3", "w4"):
        assert workers[w].stop() == 0, workers[w].log()[-3000:]
    return log, reader, _pauses_after(d, events), _overlaps(d)


def _pause_text(pauses: dict[str, list[float]]) -> str:
    return "; ".join(f"{k}: {_summary(v)}" for k, v in pauses.items())


def test_three_workers_sigkill_add_sigterm_at_least_once(kafka_stack, make_double, bridges, make_reader, measured) -> None:
    """16 shards with splits, merges and a rollover while 3 workers share them; one is
    SIGKILLed, one added, one stopped: every change arrives, per-key order holds, and no
    shard is read by two workers at once."""
    log, reader, pauses, overlaps = _run_three_workers(kafka_stack, make_double, bridges, make_reader,
                                                       "at-least-once", seed=71)
    dupes = assert_complete_in_order(reader.events, log)
    assert not overlaps, overlaps
    measured(f"three workers, at-least-once: {log.writes} changes over {len(log.double.shards)} shards, 0 lost, "
          f"{dupes} duplicates (the SIGKILLed worker's uncommitted tail); rebalance pauses: {_pause_text(pauses)}")


def test_three_workers_exactly_once_with_sigkills(kafka_stack, make_double, bridges, make_reader, measured) -> None:
    """Exactly-once with per-partition transactional ids: a SIGKILLed worker's open
    transactions are aborted by the next owners, so a read_committed consumer sees 0 duplicates."""
    log, reader, pauses, overlaps = _run_three_workers(kafka_stack, make_double, bridges, make_reader,
                                                       "exactly-once", seed=83)
    dupes = assert_complete_in_order(reader.events, log)
    assert dupes == 0, f"{dupes} duplicates for a read_committed consumer"
    assert not overlaps, overlaps
    measured(f"three workers, exactly-once: {log.writes} changes, 0 lost, 0 duplicates; "
          f"rebalance pauses: {_pause_text(pauses)}")
