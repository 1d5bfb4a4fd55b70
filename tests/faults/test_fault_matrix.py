"""The fault matrix: one bridge process, one fault, and the final topic judged change by change.

Each case writes changes to a Streams double (DescribeTable and the Streams API both
served by it), runs the real ``ddb-kafka-bridge run`` process against the session's
broker and registry, injects its fault, and asserts that the topic holds every change
exactly as written, once, in write order per key (:func:`assert_exact`). Only the crash
case may repeat changes, and then the first occurrences must still be complete and in
order (:func:`assert_complete_in_order`).

Where lineage is under test, the parent shard is made slow to read (a scripted ``slow``
fault on its GetRecords) while its children already hold later changes to the same keys:
a reader that started a child before its parent finished would overtake the parent, and
the per-key order check would catch it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import pytest

from tests.doubles.streams_double import ManualClock
from tests.faults.support import (
    ChangeLog,
    assert_complete_in_order,
    assert_exact,
    double_config,
    metric,
    read_dead_letters,
    read_offsets,
    topic_of,
    wait_until,
)

pytestmark = pytest.mark.slow


def _finish(bridge: Any, reader: Any, log: ChangeLog, timeout: float = 60) -> None:
    """Wait for every change, make sure nothing more trickles in, stop cleanly."""
    reader.wait_for_log(log, timeout)
    reader.drain(1.0)
    code = bridge.stop(signal.SIGTERM)
    assert code == 0, f"bridge exit code {code}:\n{bridge.log()[-3000:]}"


def _iterator_types(double: Any, shard: str) -> list[str]:
    return [r["type"] for r in double.iterator_requests if r["shard"] == shard]


# --------------------------------------------------------------------------- lineage


def test_split(stack, make_double, bridges, make_reader) -> None:
    """A split before start and another one while running: children wait for their parent."""
    d = make_double()
    log = ChangeLog(d)
    root = d.open_shard_ids()[0]
    log.write_many(200, keys=24)
    a, b = d.split(root)
    log.write_many(120, keys=24)  # the same keys, now in the children
    d.faults.add("slow", op="GetRecords", shard=root, times=None, delay=0.3)
    cfg = double_config(stack, d, stream={"max_records_per_call": 25})
    bridge = bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))

    reader.wait_for(log.seqs, 60)
    d.faults.clear()
    a1, a2 = d.split(a)  # a live split of a shard the bridge is reading
    d.faults.add("slow", op="GetRecords", shard=a, times=3, delay=0.3)
    log.write_many(120, keys=24)
    _finish(bridge, reader, log)

    assert_exact(reader.events, log)
    shards_with_data = {c.shard for changes in log.expected.values() for c in changes}
    assert {root, a, b, a1, a2} <= shards_with_data, "the test did not put data where it meant to"


def test_merge_waits_for_both_parents(stack, make_double, bridges, make_reader) -> None:
    """A merge child names ParentShardId and AdjacentParentShardId: it is read only after
    both parents end, even when the adjacent parent is the slow one."""
    d = make_double(shards=2)
    log = ChangeLog(d)
    left, right = d.open_shard_ids()
    log.write_many(240, keys=30)
    child = d.merge(left, right)
    assert d.shard(child).adjacent_parent_shard_id == right
    log.write_many(120, keys=30)  # every key now lands in the merge child
    d.faults.add("slow", op="GetRecords", shard=right, times=None, delay=0.3)
    cfg = double_config(stack, d, stream={"max_records_per_call": 20})
    bridge = bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.wait_for(log.seqs, 60)
    d.faults.clear()
    log.write_many(60, keys=30)
    _finish(bridge, reader, log)
    assert_exact(reader.events, log)


def test_split_during_a_crash(stack, make_double, bridges, make_reader) -> None:
    """SIGKILL while the parent is half read; the shard splits while the bridge is down;
    after the restart the parent is finished from its stored offset before any child."""
    d = make_double()
    log = ChangeLog(d)
    root = d.open_shard_ids()[0]
    log.write_many(300, keys=20)
    d.faults.add("slow", op="GetRecords", shard=root, times=None, delay=0.2)
    cfg = double_config(stack, d, stream={"max_records_per_call": 20}, offsets={"flush_interval_ms": 100})
    bridge = bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.grow_by(100, 60)
    bridge.stop(signal.SIGKILL)
    on_topic = len(reader.events)
    assert on_topic < 300, "the parent was read to its end before the kill; the test proves nothing"

    a, b = d.split(root)
    log.write_many(150, keys=20)
    stored = read_offsets(stack.kafka_bootstrap, cfg).get(root)
    bridge = bridges.start(cfg)
    reader.wait_for(log.seqs, 60)
    d.faults.clear()
    log.write_many(60, keys=20)
    reader.wait_for_log(log, 60)
    reader.drain(1.0)
    assert bridge.stop() == 0, bridge.log()[-3000:]

    dupes = assert_complete_in_order(reader.events, log)
    print(f"\nsplit during a crash: {log.count} records expected, {dupes} duplicates (offset at kill: {stored})")
    resumed = [r for r in d.iterator_requests if r["shard"] == root and r["type"] == "AFTER_SEQUENCE_NUMBER"]
    if stored and stored.get("seq"):
        assert resumed and resumed[0]["seq"] == stored["seq"], "the restart did not resume the parent after its offset"


def test_three_generations_of_rollovers(stack, make_double, bridges, make_reader) -> None:
    """Two chains of rollovers, two generations before start and one while running; each
    generation's reader waits for the one before, slow first generation included."""
    d = make_double(shards=2)
    log = ChangeLog(d)
    gen0 = d.open_shard_ids()
    log.write_many(150, keys=16)
    gen1 = [d.rollover(s) for s in gen0]
    log.write_many(100, keys=16)
    gen2 = [d.rollover(s) for s in gen1]
    log.write_many(100, keys=16)
    for s in gen0:
        d.faults.add("slow", op="GetRecords", shard=s, times=None, delay=0.25)
    cfg = double_config(stack, d, stream={"max_records_per_call": 20})
    bridge = bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.wait_for(log.seqs, 60)
    d.faults.clear()
    gen3 = [d.rollover(s) for s in gen2]
    log.write_many(100, keys=16)
    _finish(bridge, reader, log)

    assert_exact(reader.events, log)
    for chain in zip(gen0, gen1, gen2, gen3):
        for parent, child in zip(chain, chain[1:]):
            assert d.shard(child).parent_shard_id == parent


# --------------------------------------------------------------------------- AWS faults


def test_throttling_storm(stack, make_double, bridges, make_reader) -> None:
    """Every Streams call throttled for three seconds, on every shard: the bridge backs off
    (exponentially, with jitter: a handful of calls per shard, not a busy loop) and then
    delivers everything once."""
    d = make_double(shards=3)
    log = ChangeLog(d)
    log.write_many(150, keys=30)
    cfg = double_config(stack, d, stream={"max_records_per_call": 25})
    bridge = bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.wait_for(log.seqs, 60)

    storm = [
        d.faults.add("ProvisionedThroughputExceededException", op="GetRecords", times=None),
        d.faults.add("LimitExceededException", op="DescribeStream", times=None),
        d.faults.add("ThrottlingException", op="GetShardIterator", times=None),
    ]
    before = d.calls.count("GetRecords")
    log.write_many(150, keys=30)
    for s in d.open_shard_ids():
        d.split(s)  # new shards must be discovered and started through the storm
    log.write_many(150, keys=30)
    time.sleep(3.0)  # the storm's length is the point of this case
    during = d.calls.count("GetRecords") - before
    d.faults.clear()
    _finish(bridge, reader, log)

    assert_exact(reader.events, log)
    assert storm[0].fired > 0, "no GetRecords call met the storm"
    # 3 readers x 3 s: with full-jitter backoff from 50 ms that is ~10 calls each; a
    # reader retrying every poll interval (50 ms) would make ~180.
    assert during <= 3 * 40, f"{during} GetRecords calls during a 3 s storm on 3 shards: no backoff"


def test_expired_iterators(stack, make_double, bridges, make_reader) -> None:
    """Iterators expire mid-read (both ways: a new generation and the 15-minute clock):
    each is re-acquired AFTER_SEQUENCE_NUMBER of the last record handed on, so nothing
    is read twice and nothing skipped."""
    clock = ManualClock()
    d = make_double(shards=2, clock=clock)
    log = ChangeLog(d)
    log.write_many(400, keys=20)
    d.faults.add("slow", op="GetRecords", times=None, delay=0.05)
    cfg = double_config(stack, d, stream={"max_records_per_call": 10})
    bridge = bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))

    stop = threading.Event()
    expiries = 0

    def expire() -> None:
        nonlocal expiries
        while not stop.wait(0.25):
            if expiries % 2:
                clock.advance(16 * 60)  # older than the 15-minute iterator lifetime
            else:
                d.expire_iterators()
            expiries += 1

    t = threading.Thread(target=expire, daemon=True)
    t.start()
    try:
        reader.wait_for(log.seqs, 90)
        log.write_many(100, keys=20)
        reader.wait_for(log.seqs, 60)
    finally:
        stop.set()
        t.join()
    _finish(bridge, reader, log)

    assert_exact(reader.events, log)
    after = [r for r in d.iterator_requests if r["type"] == "AFTER_SEQUENCE_NUMBER"]
    assert expiries >= 4 and len(after) >= 2, f"{expiries} expiries, {len(after)} re-acquisitions"
    written = set(log.seqs)
    assert all(r["seq"] in written for r in after), "re-acquired after a sequence number never written"


def test_5xx_bursts(stack, make_double, bridges, make_reader) -> None:
    """Bursts of InternalServerError, bare 500/503 pages, dropped and reset connections on
    every Streams call (and on DescribeTable at start-up): retried, nothing lost or doubled."""
    d = make_double(shards=2)
    log = ChangeLog(d)
    log.write_many(200, keys=20)
    rules = [
        d.faults.add("InternalServerError", op="DescribeTable", times=2),
        d.faults.add("http503", op="DescribeStream", times=3),
        d.faults.add("http500", op="GetShardIterator", times=3),
        d.faults.add("InternalServerError", op="GetRecords", times=5, skip=2),
        d.faults.add("drop", op="GetRecords", times=3, skip=10),
        d.faults.add("reset", op="GetRecords", times=3, skip=20),
        d.faults.add("http503", op="GetRecords", times=6, skip=30),
    ]
    cfg = double_config(stack, d, stream={"max_records_per_call": 10})
    bridge = bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.wait_for(log.seqs, 60)
    rules += [
        d.faults.add("InternalServerError", op="GetRecords", times=8),
        d.faults.add("reset", op="DescribeStream", times=2),
        d.faults.add("drop", op="GetShardIterator", times=2),
    ]
    for s in d.open_shard_ids():
        d.split(s)
    log.write_many(200, keys=20)
    _finish(bridge, reader, log)

    assert_exact(reader.events, log)
    unfired = [(r.error, r.op, r.fired, r.times) for r in rules if r.fired < (r.times or 1)]
    assert not unfired, f"scripted faults the bridge never met: {unfired}"


# --------------------------------------------------------------------------- poison records


def test_poison_records_go_to_the_dead_letter_topic(stack, make_double, bridges, make_reader) -> None:
    """errors.tolerance=all: a record larger than message.max.bytes and one that cannot be
    serialized go to the DLQ with the reason and source position in headers; every other
    change arrives once, in order, and the bridge keeps running."""
    d = make_double()
    log = ChangeLog(d)
    log.write_many(40, keys=8)
    # Keys of their own, written once: a later change to the same key would carry the
    # poison in its OldImage and be poison too.
    big = log.write("big", blob={"S": os.urandom(15000).hex()})  # ~30 KB, incompressible
    log.write_many(20, keys=8)
    bad = log.write("bad", broken={"B": "not*base64!"})  # the Avro encoder refuses it
    log.write_many(40, keys=8)
    poison = {big.sequence_number, bad.sequence_number}
    healthy = log.without(poison)

    cfg = double_config(
        stack,
        d,
        kafka={"bootstrap.servers": stack.kafka_bootstrap, "message.max.bytes": 20000},
        errors={"tolerance": "all"},
    )
    dlq_topic = f"{cfg['name']}-dlq"
    bridge = bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.wait_for(healthy.seqs, 60)
    letters = read_dead_letters(stack.kafka_bootstrap, dlq_topic, 2, 30, bridge)
    reader.drain(1.0)
    assert bridge.proc.poll() is None, f"bridge stopped on a poison record:\n{bridge.log()[-3000:]}"

    # The poison records are on the DLQ only, and did not hold up the changes after them.
    assert poison.isdisjoint(reader.seen), "a poison record reached the data topic"
    got_by_seq: dict[str, dict[str, str]] = {}
    for letter in letters:
        h = letter.headers
        for name in (
            "__connect.errors.topic",
            "__connect.errors.exception.class.name",
            "__connect.errors.exception.message",
            "__bridge.source.partition",
            "__bridge.source.position",
        ):
            assert h.get(name), f"dead letter lacks header {name}: {h}"
        assert h["__connect.errors.topic"] == topic_of(cfg)
        position = json.loads(h["__bridge.source.position"])
        partition = json.loads(h["__bridge.source.partition"])
        got_by_seq[position["sequence_number"]] = h
        assert partition["shard"] == big.shard_id and position["shard_id"] == big.shard_id
    assert set(got_by_seq) == poison, f"dead letters for {set(got_by_seq)}, expected {poison}"
    too_big = got_by_seq[big.sequence_number]["__connect.errors.exception.message"].lower()
    assert "size" in too_big or "large" in too_big, too_big
    # Nothing of the oversized record is lost: its chunks join into the full framed Avro value.
    big_letter = next(x for x in letters if json.loads(x.headers["__bridge.source.position"])["sequence_number"]
                      == big.sequence_number)
    assert int(big_letter.headers["__bridge.chunks"]) >= 2
    assert big_letter.value[0] == 0 and big.record["dynamodb"]["NewImage"]["blob"]["S"].encode() in big_letter.value
    unserializable = got_by_seq[bad.sequence_number]["__connect.errors.exception.message"].lower()
    assert "base64" in unserializable, unserializable

    log.write_many(20, keys=8)
    healthy = log.without(poison)
    reader.wait_for(healthy.seqs, 60)
    code = bridge.stop()
    assert code == 0, bridge.log()[-3000:]
    assert_exact([e for e in reader.events], healthy)
    dead = metric(cfg, "bridge_records_dead_lettered_total")  # scraped after stop: may be gone
    assert dead in (None, 2.0), f"bridge_records_dead_lettered_total = {dead}"


def test_poison_record_with_tolerance_none_stops_before_it(stack, make_double, bridges, make_reader) -> None:
    """errors.tolerance=none: the bridge stops with exit code 1 naming the record, and the
    stored offset never moves past it, so a fixed config resumes there."""
    d = make_double()
    log = ChangeLog(d)
    log.write_many(30, keys=6)
    bad = log.write("bad", broken={"B": "not*base64!"})
    log.write_many(30, keys=6)
    cfg = double_config(stack, d, errors={"tolerance": "none"})
    bridge = bridges.start(cfg)
    code = bridge.wait(60)
    assert code == 1, f"exit code {code}:\n{bridge.log()[-3000:]}"
    lines = [ln for ln in bridge.log().splitlines() if ln.strip()]
    assert bad.sequence_number in lines[-1] or any(bad.sequence_number in ln for ln in lines[-5:]), lines[-5:]

    stored = read_offsets(stack.kafka_bootstrap, cfg).get(bad.shard_id)
    if stored is not None and stored.get("seq"):
        assert int(stored["seq"]) < int(bad.sequence_number), f"offset {stored} moved past the poison record"

    # Restarted with tolerance=all, the bridge resumes at (not after) the poison record.
    cfg = {**cfg, "errors": {"tolerance": "all"}}
    bridge = bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    healthy = log.without({bad.sequence_number})
    reader.wait_for(healthy.seqs, 60)
    letters = read_dead_letters(stack.kafka_bootstrap, f"{cfg['name']}-dlq", 1, 30, bridge)
    reader.drain(1.0)
    assert bridge.stop() == 0, bridge.log()[-3000:]
    assert json.loads(letters[0].headers["__bridge.source.position"])["sequence_number"] == (
        bad.sequence_number
    )
    dupes = assert_complete_in_order(reader.events, healthy)
    print(f"\ntolerance none then all: {dupes} duplicates (records produced before the stop, replayed)")


# --------------------------------------------------------------------------- Kafka side


def test_broker_down_10s(stack, kafka_behind_proxy, make_double, bridges, make_reader) -> None:
    """The broker unreachable for 10 s (connections reset, new ones refused) while changes
    keep coming: reading pauses at the in-flight bound, and everything arrives once after."""
    broker, proxy = kafka_behind_proxy
    d = make_double(shards=2)
    log = ChangeLog(d)
    log.write_many(100, keys=20)
    cfg = double_config(
        stack,
        d,
        kafka={"bootstrap.servers": broker},
        stream={"max_records_per_call": 10},
        max_in_flight_records=30,
        # Every process is a group member: an outage longer than the session makes the group
        # expire it, and at-least-once then replays its uncommitted tail (docs/fault-model.md).
        # "Once" holds for outages shorter than the session, as with the default 10 s.
        group={"session_timeout_ms": 20000},
    )
    bridge = bridges.start(cfg)
    reader = make_reader(broker, stack.registry_url, topic_of(cfg))
    reader.wait_for(log.seqs, 60)

    proxy.cut("refuse")
    cut_at = time.monotonic()
    log.write_many(600, keys=20)
    time.sleep(5.0)
    served_mid = sum(d.records_served.values())
    in_flight = metric(cfg, "bridge_records_in_flight")
    time.sleep(max(0.0, 10.0 - (time.monotonic() - cut_at)))  # the outage's length is the point
    served_end = sum(d.records_served.values())
    print(f"\nbroker down: {served_end - 100} of 600 read during the outage, {in_flight} records in flight")
    assert bridge.proc.poll() is None, f"bridge died while the broker was down:\n{bridge.log()[-3000:]}"
    proxy.restore()
    _finish(bridge, reader, log, timeout=120)

    assert_exact(reader.events, log)
    # Bounded memory: with 600 changes waiting and 30 allowed in flight per shard, reading
    # stopped during the outage instead of pulling the backlog into memory.
    assert served_end - served_mid <= 2 * 10, f"{served_end - served_mid} records read in the outage's 2nd half"
    assert served_end < 100 + 600, "the whole backlog was read while the broker was down"
    # 2 shards x (30 allowed + at most one 10-record page taken just under the bound)
    assert in_flight is None or in_flight <= 2 * (30 + 10), f"{in_flight} records in flight"


def test_registry_down_10s(stack, local_stack_factory, make_double, bridges, make_reader) -> None:
    """The bridge starts on an empty table, so no schema is registered yet; the registry goes
    down, changes arrive, and after 10 s it comes back: the bridge waited, then delivered
    everything once (schema ids are the registry's, kept in Kafka across its restart)."""
    private = local_stack_factory()
    endpoints = private.start()
    d = make_double()
    log = ChangeLog(d)
    cfg = double_config(endpoints, d)
    bridge = bridges.start(cfg)
    wait_until(lambda: d.calls.count("GetRecords") > 0, 30, "the bridge to poll the empty shard")

    private.stop_one("registry")
    down_at = time.monotonic()
    log.write_many(200, keys=20)
    wait_until(lambda: sum(d.records_served.values()) > 0, 30, "the bridge to read the first page")
    time.sleep(max(0.0, 10.0 - (time.monotonic() - down_at)))  # the outage's length is the point
    assert bridge.proc.poll() is None, f"bridge died while the registry was down:\n{bridge.log()[-3000:]}"
    private.start_one("registry")

    reader = make_reader(endpoints.kafka_bootstrap, endpoints.registry_url, topic_of(cfg))
    reader.wait_for_log(log, 90)
    log.write_many(50, keys=20)
    _finish(bridge, reader, log)
    assert_exact(reader.events, log)
