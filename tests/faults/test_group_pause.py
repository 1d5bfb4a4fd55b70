"""A group worker paused past the session timeout, at-least-once, on Apache Kafka.

In at-least-once mode nothing fences a worker the group presumed dead: thawed, it goes on
reading the shards it lost until librdkafka tells it (``on_lost``, at its next poll). The
test freezes one of two workers (SIGSTOP) until the other reads its shards, keeps writing,
thaws it, keeps writing, and judges the topic, the Streams double's request log (which
worker read which shard when) and the offsets a restart resumes from.
"""

from __future__ import annotations

import json
import random
import signal
import time
from typing import Any

import pytest
from confluent_kafka import Consumer

from bridge.kafka import END_READER_CONFIG, read_to_end
from tests.faults.support import (
    ChangeLog,
    Writer,
    assert_complete_in_order,
    assert_exact,
    read_offsets,
    topic_of,
    wait_for_log_count,
    wait_until,
)
from tests.faults.test_group import _group_cfg, _readers, _start
from tests.helpers import unique

pytestmark = pytest.mark.slow

LOST = "group: lost partitions"
ASSIGNED = "group: assigned"
STOOD_STILL = "group: this process stood still for"
STILL_A_MEMBER = "group: still a member after the pause"


def _last_reader(double: Any) -> dict[str, tuple[float, str]]:
    """Per shard, (time, worker) of its latest GetRecords."""
    return {s: reads[-1] for s, reads in _readers(double).items() if reads}


def _shared(double: Any, workers: tuple[str, str], shards: int) -> bool:
    """Every shard is read now (within the last second), each by one worker, and both read some."""
    now = time.monotonic()
    last = _last_reader(double)
    if len(last) < shards or any(now - t > 1.0 for t, _ in last.values()):
        return False
    recent = {s: {w for t, w in reads if now - t < 1.0} for s, reads in _readers(double).items()}
    return all(len(ws) == 1 for ws in recent.values()) and {w for _, w in last.values()} == set(workers)


def _zombie_reads(double: Any, shards: set[str], victim: str, survivor: str, since: float) -> list[float]:
    """The victim's GetRecords of ``shards`` after ``since`` while the survivor still read them:
    each is followed by a survivor read of the same shard (reads after the victim got a shard
    back through the group come after the survivor's last read of it)."""
    out = []
    for s in shards:
        reads = _readers(double)[s]
        last_survivor = max((t for t, w in reads if w == survivor), default=0.0)
        out += [t for t, w in reads if w == victim and since < t < last_survivor]
    return sorted(out)


def _moved_back(bootstrap: str, cfg: dict[str, Any]) -> list[str]:
    """Offset records that moved a shard's offset back: a smaller sequence number than an
    earlier record of the same shard (the topic keeps each write until it is compacted)."""
    topic = f"{cfg['name']}-offsets"
    newest: dict[str, int] = {}
    out: list[str] = []

    def apply(msg: Any) -> None:
        name, partition = json.loads(msg.key())
        if name != cfg["name"] or "shard" not in partition or msg.value() is None:
            return
        seq = json.loads(msg.value()).get("seq")
        if seq is None:
            return
        shard = partition["shard"]
        if int(seq) < newest.get(shard, 0):
            out.append(f"{shard[-8:]}: {seq[-6:]} after {str(newest[shard])[-6:]} (offset {msg.offset()})")
        newest[shard] = max(newest.get(shard, 0), int(seq))

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("offsets-history"), **END_READER_CONFIG})
    try:
        read_to_end(c, topic, apply, timeout_s=30)
    finally:
        c.close()
    return out


def _copies_produced_after(events: list[Any], wall_ms: int) -> int:
    """Second and later copies of a change that a producer was handed at or after ``wall_ms``."""
    seen: set[tuple[str, str | None]] = set()
    late = 0
    for e in sorted(events, key=lambda e: (e.partition, e.offset)):
        if e.value is None:
            continue
        ident = (e.value["source"]["sequence_number"], e.op)
        if ident in seen and e.timestamp_ms >= wall_ms:
            late += 1
        seen.add(ident)
    return late


def _newest(log: ChangeLog) -> dict[str, int]:
    """Per shard, the sequence number of the newest change written to it so far."""
    newest: dict[str, int] = {}
    for change in list(log.by_seq.values()):
        newest[change.shard] = max(newest.get(change.shard, 0), int(change.seq))
    return newest


def _committed_past(offsets: dict[str, dict[str, Any] | None], newest: dict[str, int], shards: set[str]) -> bool:
    return all(int((offsets.get(s) or {}).get("seq") or 0) >= newest.get(s, 0) for s in shards)


def _behind(offsets: dict[str, dict[str, Any] | None], log: ChangeLog) -> list[str]:
    """Shards whose stored offset lies before the newest change written to them: a restart
    replays from there. After a clean stop with everything delivered, none should be."""
    out = []
    for shard, seq in _newest(log).items():
        stored = (offsets.get(shard) or {}).get("seq")
        if stored is None or int(stored) < seq:
            out.append(f"{shard[-8:]}: stored {stored and stored[-6:]} < newest {str(seq)[-6:]}")
    return out


def _two_workers_writing(bridges: Any, cfg: dict[str, Any], d: Any, log: ChangeLog, reader: Any) -> tuple[Any, Any, Writer]:
    """worker-a and worker-b sharing the shards, a writer writing about 100 changes a second."""
    a = _start(bridges, cfg, "worker-a")
    b = _start(bridges, cfg, "worker-b")
    writer = Writer(log, 1_000_000, keys=200, rng=random.Random(29), reshapes={}, per_tick=10)
    writer.quota = writer.total
    writer.start()
    try:
        shards = len(d.open_shard_ids())
        wait_until(lambda: _shared(d, ("worker-a", "worker-b"), shards), 90, "both workers reading their shards")
        reader.grow_by(200, 60)
        wait_until(lambda: _shared(d, ("worker-a", "worker-b"), shards), 30, "both workers reading their shards")
    except BaseException:
        writer.stop()
        raise
    return a, b, writer


def test_worker_paused_past_the_session_timeout_at_least_once(kafka_stack, make_double, bridges, make_reader,
                                                               measured) -> None:
    """SIGSTOP one of two workers until the other reads its shards, write on, SIGCONT it:
    nothing is lost, per-key order of first copies holds, the thawed worker logs that it
    lost its partitions and stops reading them, and a restart of both resumes with no loss."""
    shards = 12
    d = make_double(shards=shards, seed=29)
    log = ChangeLog(d)
    cfg = _group_cfg(kafka_stack, d)
    # A long flush interval: the frozen worker surely holds acknowledged records whose offsets
    # it has not written yet, and its flush is overdue when it thaws (the write that would
    # move an offset back).
    cfg["offsets"] = {**cfg.get("offsets", {}), "flush_interval_ms": 2000}
    session_s = cfg["group"]["session_timeout_ms"] / 1000
    reader = make_reader(kafka_stack.kafka_bootstrap, kafka_stack.registry_url, topic_of(cfg))
    victim, survivor = "worker-a", "worker-b"
    a, b, writer = _two_workers_writing(bridges, cfg, d, log, reader)
    try:
        lost_shards = {s for s, (_, w) in _last_reader(d).items() if w == victim}

        t_stop = time.monotonic()
        a.send(signal.SIGSTOP)
        newest_at_stop = _newest(log)
        # The condition, not a clock: the survivor reads every shard the frozen worker read.
        wait_until(lambda: all(any(w == survivor and t > t_stop for t, w in _readers(d)[s]) for s in lost_shards),
                   60, "the survivor reading the frozen worker's shards")
        taken_s = time.monotonic() - t_stop
        # The session runs from the last heartbeat (every session/4) before the freeze.
        assert taken_s > session_s * 0.6, f"the shards moved after {taken_s:.1f}s, before the session timed out"
        # The survivor delivers and commits past anything the frozen worker could have read.
        reader.wait_for(log.seqs, 60)
        wait_until(lambda: _committed_past(read_offsets(kafka_stack.kafka_bootstrap, cfg), newest_at_stop,
                                           lost_shards), 60, "the survivor's offsets past the frozen worker's", 0.3)

        t_cont, t_cont_ms = time.monotonic(), int(time.time() * 1000)
        a.send(signal.SIGCONT)
        a.wait_for_log(LOST, 60)
        lost_seen_s = time.monotonic() - t_cont
        wait_for_log_count(a, ASSIGNED, 2, 60)  # it rejoined and got partitions again
        reader.grow_by(200, 60)
    finally:
        writer.stop()
        writer.join(10)
    assert writer.error is None, writer.error
    reader.wait_for_log(log, 90)
    reader.drain(1.5)
    zombie = _zombie_reads(d, lost_shards, victim, survivor, t_cont)
    kept_reading_s = zombie[-1] - t_cont if zombie else 0.0
    assert b.stop() == 0, b.log()[-3000:]
    assert a.stop() == 0, a.log()[-3000:]
    dupes = assert_complete_in_order(reader.events, log)
    # The survivor replayed the frozen worker's uncommitted tail before the thaw; a copy
    # produced after it can only come from the thawed worker handing on what it read.
    late = _copies_produced_after(reader.events, t_cont_ms)
    assert late == 0, f"{late} duplicates were produced after the thaw"
    # Reads end with the hand-over the lost callback does, which logs the line afterwards.
    assert kept_reading_s <= lost_seen_s + 0.5, (kept_reading_s, lost_seen_s)
    assert lost_seen_s < session_s + 10, f"the thawed worker noticed its loss only after {lost_seen_s:.1f}s"
    assert STOOD_STILL in a.log(), "the thawed worker did not notice its pause"
    behind = _behind(read_offsets(kafka_stack.kafka_bootstrap, cfg), log)
    moved_back = _moved_back(kafka_stack.kafka_bootstrap, cfg)
    # The thawed worker wrote no offset of the units it lost (held, then forgotten with them).
    assert not moved_back, moved_back

    # A restart of both resumes where the offsets say: nothing lost, and what they replay.
    before, writes_before = len(reader.events), log.writes
    a = _start(bridges, cfg, victim)
    b = _start(bridges, cfg, survivor)
    log.write_many(200, keys=200)
    reader.wait_for_log(log, 90)
    reader.drain(1.5)
    assert b.stop() == 0 and a.stop() == 0
    all_dupes = assert_complete_in_order(reader.events, log)
    replayed = all_dupes - dupes
    assert replayed == 0, f"the restart after clean stops replayed {replayed} changes"
    assert len(reader.events) - before >= log.writes - writes_before
    measured(
        f"paused worker, at-least-once: {log.writes} changes over {shards} shards, 0 lost; survivor read the "
        f"frozen worker's {len(lost_shards)} shards {taken_s:.1f}s after SIGSTOP (session {session_s:.0f}s); "
        f"thawed, it read them for {kept_reading_s:.2f}s more ({len(zombie)} GetRecords) and logged the loss "
        f"{lost_seen_s:.2f}s after SIGCONT; {dupes} duplicates ({late} produced after the thaw); offsets behind after the clean stop: "
        f"{len(behind)}; offset writes that moved back: {len(moved_back)}; the restart replayed {replayed}"
    )


def test_worker_paused_under_the_session_timeout_holds_then_reads_on(kafka_stack, make_double, bridges, make_reader,
                                                                     measured) -> None:
    """A pause past half the session timeout but short of it: the group keeps the worker, so
    its hold ends by itself after one heartbeat interval and 2 s; nothing moved, every change
    arrives exactly once (what was read just before the pause was held, then handed on)."""
    d = make_double(shards=12, seed=31)
    log = ChangeLog(d)
    cfg = _group_cfg(kafka_stack, d)
    cfg["group"]["session_timeout_ms"] = 8000  # hold after 4 s still; the group expires it after >= 6 s
    reader = make_reader(kafka_stack.kafka_bootstrap, kafka_stack.registry_url, topic_of(cfg))
    a, b, writer = _two_workers_writing(bridges, cfg, d, log, reader)
    try:
        assigned = (a.log().count(ASSIGNED), b.log().count(ASSIGNED))
        a.send(signal.SIGSTOP)
        time.sleep(4.5)  # the fault itself: a pause of this length, not a wait for a condition
        t_cont = time.monotonic()
        a.send(signal.SIGCONT)
        a.wait_for_log(STILL_A_MEMBER, 30)
        resumed_s = time.monotonic() - t_cont
        reader.grow_by(200, 60)
    finally:
        writer.stop()
        writer.join(10)
    assert writer.error is None, writer.error
    reader.wait_for_log(log, 90)
    reader.drain(1.5)
    # Judged before the stops: when b stops, a takes b's partitions.
    assert STOOD_STILL in a.log()
    assert LOST not in a.log(), "the group expired the worker after a short pause"
    assert (a.log().count(ASSIGNED), b.log().count(ASSIGNED)) == assigned, "partitions moved after a short pause"
    assert b.stop() == 0, b.log()[-3000:]
    assert a.stop() == 0, a.log()[-3000:]
    assert_exact(reader.events, log)
    measured(f"pause of 4.5 s under an 8 s session: held, then read on {resumed_s:.1f}s after SIGCONT; "
             f"{log.writes} changes, each once")
