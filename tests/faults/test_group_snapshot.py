"""A snapshot (``mode: only``) shared by the worker processes of a group, on Apache Kafka.

Every Scan segment is a unit of work owned through the group like a stream shard. Each
process signs its requests with its own access key, so the double's request log says which
process read which segment when: the tests check that no segment is read by two workers at
once beyond the hand-off, that the pass completes exactly once (one committed ``done``
offset per segment, no second pass), and what arrived in the topic.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
import re
import signal
import time
from collections import Counter, defaultdict
from typing import Any

import boto3
import pytest
from confluent_kafka import Consumer

from bridge.group import unit_slot
from bridge.kafka import END_READER_CONFIG, read_to_end
from tests.faults.support import double_config, table_spread_over_slots, topic_of, wait_until
from tests.helpers import Event, TopicReader, normalize, unique

pytestmark = pytest.mark.slow

N_ITEMS = 4_000
SEGMENTS, SPLIT = 12, 2  # 24 fine segments, 12 scanned at a time per process
HELD = range(16, 24)  # segments held back until the added worker is in (~1,300 items)
assert SEGMENTS > len(HELD), "a worker's runners waiting on every held segment must leave room for others"
GROUP_PARTITIONS = 12
PAGE = 20
RATE = PAGE * SEGMENTS  # 240 items a second per process (a full page per runner): ~15 s, long enough to kill and add


def _load(double: Any) -> dict[str, Any]:
    """N_ITEMS items in the double's table (its Scan serves them in hash order, by segment)."""
    items = {}
    for i in range(N_ITEMS):
        pk = f"item#{i:05d}"
        image = {"pk": {"S": pk}, "n": {"N": str(i)}, "body": {"S": "x" * 40}}
        double.put({"pk": {"S": pk}}, image)
        items[pk] = normalize(image)
    return items


def _cfg(stack: Any, double: Any, delivery: str) -> dict[str, Any]:
    cfg = double_config(stack, double, delivery=delivery, offsets={"flush_interval_ms": 200}, metrics=False,
                        shutdown_timeout_s=10)
    cfg["tables"][0]["snapshot"] = {
        "mode": "only", "segments": SEGMENTS, "split_factor": SPLIT, "page_size": PAGE,
        "max_items_per_second": RATE, "progress_interval_s": 1,
    }
    cfg["group"] = {"enabled": True, "partitions": GROUP_PARTITIONS, "session_timeout_ms": 3000}
    return cfg


def _start(bridges: Any, cfg: dict[str, Any], who: str) -> Any:
    return bridges.start(cfg, instance=who, env={"AWS_ACCESS_KEY_ID": who})


def _stop_all(workers: dict[str, Any]) -> dict[str, str]:
    """Stop every worker; each must exit 0. Returns their logs as they were before any of
    them stopped (a stop hands partitions to the others, whose logs go on)."""
    logs = {w: b.log() for w, b in workers.items()}
    for w, b in workers.items():
        assert b.stop() == 0, logs[w][-3000:]
    return logs


def _scans(double: Any) -> dict[int, list[tuple[float, str]]]:
    """Per segment, (time, worker) of every page read, in time order (the start-up check's
    one-item Scan left out)."""
    out: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for t, op, unit, who in list(double.request_log):
        if op == "Scan" and unit is not None and unit.endswith(f"limit {PAGE}"):
            out[int(unit.split()[1].split("/")[0])].append((t, who))
    return out


def _switches(scans: dict[int, list[tuple[float, str]]]) -> tuple[list[tuple[int, str, str, float, float]], list[str]]:
    """Every change of reader (segment, old, new, old's last read, new's first read), and
    every overlap: the old reader reading the segment again after the new one began."""
    switches, overlaps = [], []
    for seg, reads in scans.items():
        for (t0, a), (t1, b) in itertools.pairwise(reads):
            if a != b:
                switches.append((seg, a, b, t0, t1))
                later = [t for t, w in reads if w == a and t > t1]
                if later:
                    overlaps.append(f"segment {seg}: {a} read {later[-1] - t1:.2f}s after {b} took over")
    return switches, overlaps


def _segment_offsets(bootstrap: str, cfg: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """Every committed offset record of every segment, in order (read_committed, as the bridge reads)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("offsets-reader"), **END_READER_CONFIG})
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)

    def apply(msg: Any) -> None:
        name, partition = json.loads(msg.key())
        if name == cfg["name"] and "segment" in partition and msg.value() is not None:
            out[int(partition["segment"])].append(json.loads(msg.value()))

    try:
        read_to_end(c, f"{cfg['name']}-offsets", apply, timeout_s=30)
    finally:
        c.close()
    return out


class _DistinctKeys:
    def __init__(self, n: int) -> None:
        self.n, self.keys, self.seen = n, set(), 0

    def __call__(self, events: list[Event]) -> bool:
        for e in events[self.seen:]:
            self.keys.add(e.key["pk"])
        self.seen = len(events)
        return len(self.keys) >= self.n


def _table_with_work_for_an_added_worker() -> str:
    """A fresh table name whose HELD segments sit in more than half of the group's slots.

    A worker joining a group of one gets half the slots, and which half is the sticky
    assignor's choice; the segments of those slots may all be finished by then (the first
    worker reads the slots it had from the start first). Held back until the added worker is
    in, segments in more than half of the slots leave it work whichever half it gets."""
    while True:
        table = unique("t")
        slots = {unit_slot({"table": table, "segment": i, "total_segments": SEGMENTS * SPLIT}, GROUP_PARTITIONS)
                 for i in HELD}
        if len(slots) > GROUP_PARTITIONS // 2:
            return table


def _run(kafka_stack: Any, make_double: Any, bridges: Any, delivery: str) -> dict[str, Any]:
    """w1 and w2 share the snapshot, w1 is SIGKILLed mid-way, w3 joins; all read to the end."""
    d = make_double(shards=2, seed=11, table=_table_with_work_for_an_added_worker())
    items = _load(d)
    cfg = _cfg(kafka_stack, d, delivery)
    table = cfg["tables"][0]["name"]
    reader = TopicReader(kafka_stack.kafka_bootstrap, kafka_stack.registry_url, topic_of(cfg))
    workers: dict[str, Any] = {}
    t0 = time.monotonic()
    # The HELD segments are throttled until w3 is in: w3 joins with work left in its slots
    # however long the joins take. A worker's runners wait on them meanwhile, so each worker
    # runs more segments at once (SEGMENTS) than are held.
    held = d.faults.add("ProvisionedThroughputExceededException", op="Scan", segments=HELD, times=None)
    # A process start and a group join take seconds, 10-15 on a loaded host, while a worker
    # reads RATE items a second: pages come slowly (2 s each, as a throttled table would serve
    # them) while a worker starts, so each joins with most of its share still to read.
    slow = d.faults.add("slow", op="Scan", times=None, delay=2.0)
    try:
        workers["w1"] = _start(bridges, cfg, "w1")
        workers["w2"] = _start(bridges, cfg, "w2")
        wait_until(lambda: "group: assigned" in workers["w2"].log(), 60, "the second worker's assignment")
        d.faults.remove(slow)
        wait_until(lambda: sum(1 for seg, reads in _scans(d).items() if seg not in HELD
                               for _, w in reads if w == "w2") >= 10, 60, "the second worker's first pages")
        reader.read_until(lambda ev: len(ev) >= N_ITEMS // 4, 120, check=workers["w2"].check)
        workers["w1"].send(signal.SIGKILL)
        workers["w1"].wait(10)
        killed_at = time.monotonic()
        reader.read_until(lambda ev: len(ev) >= N_ITEMS // 2, 120, check=workers["w2"].check)
        workers["w3"] = _start(bridges, cfg, "w3")
        wait_until(lambda: "group: assigned" in workers["w3"].log(), 60, "the added worker's assignment")
        added_at = time.monotonic()
        d.faults.remove(held)
        reader.read_until(_DistinctKeys(N_ITEMS), 240, check=workers["w3"].check)
        took = time.monotonic() - t0
        for w in ("w2", "w3"):
            wait_until(lambda w=w: f"snapshot of {table} complete" in workers[w].log(), 60, f"{w}'s verdict")
        reader.drain(1.5)
    finally:
        reader.close()
    logs = {w: workers[w].log() for w in ("w2", "w3")}
    for w in ("w2", "w3"):
        assert workers[w].stop() == 0, logs[w][-3000:]
    scans = _scans(d)
    switches, overlaps = _switches(scans)
    return {
        "items": items, "events": reader.events, "table": table, "cfg": cfg, "logs": logs, "scans": scans,
        "switches": switches, "overlaps": overlaps, "killed_at": killed_at, "added_at": added_at, "took": took,
        "offsets": _segment_offsets(kafka_stack.kafka_bootstrap, cfg),
    }


def _check_common(r: dict[str, Any]) -> tuple[int, set[int]]:
    """What holds for both delivery modes; returns (duplicates, segments the SIGKILL took from w1)."""
    items, events = r["items"], r["events"]
    got: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        got[e.key["pk"]].append(e)
    assert got.keys() == items.keys(), f"{len(items.keys() - got.keys())} items missing"
    for pk, evs in got.items():
        assert all(e.op == "r" and normalize(e.after) == items[pk] for e in evs), pk
    assert not r["overlaps"], r["overlaps"]
    # The work moved: w1 and w2 shared it, w3 joined while segments were left.
    readers = {w for reads in r["scans"].values() for _, w in reads}
    assert readers == {"w1", "w2", "w3"}, readers
    assert any(t > r["added_at"] for reads in r["scans"].values() for t, w in reads if w == "w3"), "w3 read nothing"
    killed = {seg for seg, a, _, _, t1 in r["switches"] if a == "w1" and t1 > r["killed_at"]}
    assert killed, "the SIGKILL took no segment mid-way"
    # A segment handed over mid-way resumes at the new owner from its committed key.
    assert any("resumes after" in log for log in r["logs"].values())
    # The pass completes exactly once: one committed done offset per segment, no second pass.
    offsets = r["offsets"]
    assert sorted(offsets) == list(range(SEGMENTS * SPLIT)), sorted(offsets)
    done = {seg: sum(1 for o in os if o.get("done")) for seg, os in offsets.items()}
    assert set(done.values()) == {1}, f"done offsets per segment: {done}"
    assert {o["pass"] for os in offsets.values() for o in os} == {0}
    for w, log in r["logs"].items():
        assert log.count(f"snapshot of {r['table']} complete: pass 0") == 1, f"{w}: {log[-2000:]}"
        assert "pass 1" not in log, w
    return len(events) - len(items), killed


def _pauses(r: dict[str, Any]) -> str:
    by: dict[str, list[float]] = defaultdict(list)
    for _, a, b, t0, t1 in r["switches"]:
        cause = "SIGKILL" if a == "w1" and t1 > r["killed_at"] else "add" if b == "w3" else "join"
        by[cause].append(t1 - t0)
    return "; ".join(f"{k}: {len(v)} hand-offs, max pause {max(v):.2f}s" for k, v in sorted(by.items()))


def test_three_workers_share_a_scan_snapshot_at_least_once(kafka_stack, make_double, bridges, measured) -> None:
    """Every item arrives; duplicates come only from the segments the SIGKILLed worker held
    (its uncommitted pages), none from the committed hand-offs when workers join."""
    r = _run(kafka_stack, make_double, bridges, "at-least-once")
    dupes, killed = _check_common(r)
    counts = Counter(e.key["pk"] for e in r["events"])
    dup_segments = {int(e.value["source"]["segment"]) for e in r["events"] if counts[e.key["pk"]] > 1}
    assert dup_segments <= killed, f"duplicates in segments {sorted(dup_segments - killed)} the kill did not touch"
    measured(f"snapshot shared by 3 workers (SIGKILL one, add one), at-least-once: {N_ITEMS} items, 0 lost, "
             f"{dupes} duplicates, all in the {len(killed)} segments the killed worker held; "
             f"{_pauses(r)}; {r['took']:.1f}s in all")


def test_three_workers_share_a_scan_snapshot_exactly_once(kafka_stack, make_double, bridges, measured) -> None:
    """Each segment's pages and offsets go through the transactional lane of the partition
    that owns it: the SIGKILLed worker's open transactions are aborted by the next owners,
    so a read_committed consumer sees every item once."""
    r = _run(kafka_stack, make_double, bridges, "exactly-once")
    dupes, killed = _check_common(r)
    assert dupes == 0, f"{dupes} duplicates for a read_committed consumer"
    measured(f"snapshot shared by 3 workers (SIGKILL one, add one), exactly-once: {N_ITEMS} items, 0 lost, "
             f"0 duplicates; {len(killed)} segments taken over from the killed worker; {_pauses(r)}; "
             f"{r['took']:.1f}s in all")


def _write_export(s3: Any, bucket: str, prefix: str, files: int, per_file: int) -> dict[str, Any]:
    """An export's data files as AWS lays them out (no manifest: the bridge lists them)."""
    items = {}
    for f in range(files):
        lines = []
        for i in range(per_file):
            pk = f"item#{f:02d}-{i:04d}"
            image = {"pk": {"S": pk}, "n": {"N": str(i)}}
            lines.append(json.dumps({"Item": image}))
            items[pk] = normalize(image)
        body = gzip.compress(("\n".join(lines) + "\n").encode())
        s3.put_object(Bucket=bucket, Key=f"{prefix}/AWSDynamoDB/01700000000000-abcdef12/data/f{f:02d}.json.gz", Body=body)
    return items


def test_two_workers_share_an_export(kafka_stack, make_double, bridges, measured) -> None:
    """method: export in a group: every data file is a unit; each is read and finished by one
    worker, and both workers call the snapshot complete only when all files are committed."""
    d = make_double(shards=1, seed=3)  # the table (DescribeTable); the items come from S3
    s3 = boto3.client("s3", endpoint_url=kafka_stack.dynamodb_endpoint, region_name="us-east-1",
                      aws_access_key_id="t", aws_secret_access_key="t")
    bucket, files = unique("export"), 24
    s3.create_bucket(Bucket=bucket)
    items = _write_export(s3, bucket, "exp", files, 250)
    cfg = _cfg(kafka_stack, d, "at-least-once")
    cfg["tables"][0]["snapshot"] = {
        "mode": "only", "method": "export", "progress_interval_s": 1,
        "export": {"s3_bucket": bucket, "s3_prefix": "exp", "parallel_files": 2,
                   "s3_endpoint_url": kafka_stack.dynamodb_endpoint},
    }
    table = cfg["tables"][0]["name"]
    reader = TopicReader(kafka_stack.kafka_bootstrap, kafka_stack.registry_url, topic_of(cfg))
    workers = {w: bridges.start(cfg, instance=w, env={"AWS_ACCESS_KEY_ID": w}, wait_running=False)
               for w in ("w1", "w2")}
    try:
        reader.read_until(_DistinctKeys(len(items)), 180, check=workers["w2"].check)
        for w, b in workers.items():
            wait_until(lambda b=b: f"snapshot of {table} complete" in b.log(), 60, f"{w}'s verdict")
        reader.drain(1.5)
    finally:
        reader.close()
    logs = _stop_all(workers)
    counts = Counter(e.key["pk"] for e in reader.events)
    assert counts.keys() == items.keys() and set(counts.values()) == {1}, "every item exactly once (no kill)"
    finished = {}
    for w, log in logs.items():
        (line,) = [x for x in log.splitlines() if f"snapshot of {table} complete" in x]
        finished[w] = int(line.split("; ")[-1].split(" of ")[0])
    # A file read to its end while its partition moved is committed done by the hand-over,
    # and then counts as finished by neither process: at most all files, and the offsets
    # below show each done exactly once.
    assert 0 < sum(finished.values()) <= files, finished
    c = Consumer({"bootstrap.servers": kafka_stack.kafka_bootstrap, "group.id": unique("offsets-reader"),
                  **END_READER_CONFIG})
    done: Counter[str] = Counter()

    def apply(msg: Any) -> None:
        name, partition = json.loads(msg.key())
        if name == cfg["name"] and "file" in partition and msg.value() and json.loads(msg.value()).get("done"):
            done[partition["file"]] += 1

    try:
        read_to_end(c, f"{cfg['name']}-offsets", apply, timeout_s=30)
    finally:
        c.close()
    assert len(done) == files and set(done.values()) == {1}, done
    measured(f"export shared by 2 workers: {len(items)} items in {files} files, each once; files finished per "
             f"worker: {finished}")


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_initial_snapshot_then_stream_shared_by_two_workers(kafka_stack, make_double, bridges, measured,
                                                            delivery: str) -> None:
    """mode: initial in a group: both workers share the segments and the shards; every
    process's stream readers hold their output until the whole snapshot (all segments,
    whoever read them) is committed, so in every topic partition the snapshot rows come
    before any change; the changes made during the snapshot all follow, the load's own
    stream records (older than t0) are dropped."""
    d = make_double(shards=4, seed=19)
    items = _load(d)  # also INSERT records in the stream, older than t0: the readers drop them
    # Records within clock_skew_ms (1 s) of t0 are kept on purpose (they arrive as a row and
    # a change: never lost); the stream's times have whole seconds. So the load must be more
    # than skew + 1 s older than t0 for "the readers drop all of it" to be the rule to check.
    loaded_at = time.time()
    wait_until(lambda: time.time() > loaded_at + 2.2, 5, "the load older than the skew window")
    cfg = _cfg(kafka_stack, d, delivery)
    cfg["tables"][0]["snapshot"]["mode"] = "initial"
    table = cfg["tables"][0]["name"]
    reader = TopicReader(kafka_stack.kafka_bootstrap, kafka_stack.registry_url, topic_of(cfg))
    workers = {w: _start(bridges, cfg, w) for w in ("w1", "w2")}
    rng = random.Random(19)
    changes: dict[str, list[int]] = defaultdict(list)

    def change(n: int, first: int) -> None:
        for v in range(first, first + n):
            pk = f"item#{rng.randrange(N_ITEMS):05d}"
            image = {"pk": {"S": pk}, "n": {"N": pk[5:].lstrip("0") or "0"}, "body": {"S": "x" * 40}, "v": {"N": str(v)}}
            d.put({"pk": {"S": pk}}, image, event="MODIFY")
            changes[pk].append(v)
            items[pk] = normalize(image)

    def seen(events: list[Event]) -> bool:
        got = {(e.key["pk"], int(e.after["v"]["N"])) for e in events if e.op != "r" and e.after and "v" in e.after}
        return len({e.key["pk"] for e in events if e.op == "r"}) >= N_ITEMS and all(
            (pk, v) in got for pk, vs in changes.items() for v in vs)

    try:
        reader.read_until(lambda ev: len(ev) >= N_ITEMS // 10, 120, check=workers["w2"].check)
        change(200, 0)  # during the snapshot: held by the readers until it is complete
        for w, b in workers.items():
            wait_until(lambda b=b: "streaming from the recorded positions" in b.log(), 120, f"{w}'s gate")
        change(100, 200)  # after it
        reader.read_until(seen, 120, check=workers["w2"].check)
        reader.drain(1.5)
    finally:
        reader.close()
    logs = _stop_all(workers)
    events = reader.events
    rows = Counter(e.key["pk"] for e in events if e.op == "r")
    assert rows.keys() == items.keys() and set(rows.values()) == {1}, "one snapshot row per item"
    assert not [e for e in events if e.op == "c"], "the load's INSERTs are older than t0: the snapshot has them"
    by_partition: dict[int, list[Event]] = defaultdict(list)
    for e in events:
        by_partition[e.partition].append(e)
    for p, evs in by_partition.items():
        first_change = next((i for i, e in enumerate(evs) if e.op != "r"), len(evs))
        assert all(e.op != "r" for e in evs[first_change:]), f"partition {p}: a snapshot row after a change"
    last = {e.key["pk"]: e for e in sorted(events, key=lambda e: (e.partition, e.offset))}
    assert {pk: normalize(e.after) for pk, e in last.items()} == items, "every key ends in its newest state"
    readers = {who for _, op, _, who in d.request_log if op == "Scan"}, {
        who for _, op, _, who in d.request_log if op == "GetRecords"}
    # Both took part. Which worker a unit lands on follows the group's partitions, so "each
    # worker read a shard" alone held by chance (4 shards over 12 partitions all went to one
    # worker in ~6% of runs); over 24 segments and 4 shards together, ~1 run in 10^8.
    assert readers[0] | readers[1] == {"w1", "w2"}, f"segments and shards shared: {readers}"
    assert readers[0] and readers[1], f"segments and shards read: {readers}"
    for w, log in logs.items():
        assert log.count(f"snapshot of {table} complete: pass 0") == 1, w
    measured(f"initial snapshot shared by 2 workers, {delivery}: {N_ITEMS} rows, then {sum(map(len, changes.values()))} "
             f"changes, all rows before any change in every partition")


def test_continuous_passes_start_only_after_every_segment_of_the_last_is_committed(
        kafka_stack, make_double, bridges, measured) -> None:
    """repeat: continuous in a group: a worker begins pass P only once it has seen every
    segment's done offset of pass P-1 committed, whoever read it. In the offsets topic: every
    offset of pass P was written after every done offset of pass P-1 (one machine, one clock)."""
    d = make_double(shards=1, seed=23, table=table_spread_over_slots(8))  # segments=2 × split_factor=4
    _load_n = 800
    for i in range(_load_n):
        d.put({"pk": {"S": f"k{i:04d}"}}, {"pk": {"S": f"k{i:04d}"}, "n": {"N": str(i)}})
    cfg = _cfg(kafka_stack, d, "at-least-once")
    cfg["tables"][0]["snapshot"].update(repeat="continuous", pass_interval_s=0, segments=2, split_factor=4,
                                        page_size=50, max_items_per_second=800)
    table = cfg["tables"][0]["name"]
    workers = {w: _start(bridges, cfg, w) for w in ("w1", "w2")}
    # Passes take about a second; a slow first join can leave w1 alone for several. Judge
    # the passes up to two after both own partitions (and every pass before them too).
    for w, b in workers.items():
        wait_until(lambda b=b: "group: assigned partitions" in b.log(), 120, f"{w} in the group", interval=0.2)
    done_before = max((int(n) for b in workers.values()
                       for n in re.findall(rf"snapshot of {re.escape(table)} complete: pass (\d+)", b.log())),
                      default=0)
    last = max(3, done_before + 3)
    for w, b in workers.items():
        wait_until(lambda b=b: f"snapshot of {table} complete: pass {last}" in b.log(), 120, f"{w}'s pass {last}",
                   interval=0.2)
    _stop_all(workers)
    c = Consumer({"bootstrap.servers": kafka_stack.kafka_bootstrap, "group.id": unique("offsets-reader"),
                  **END_READER_CONFIG})
    written: dict[int, list[tuple[int, bool]]] = defaultdict(list)  # pass -> (write time ms, done)

    def apply(msg: Any) -> None:
        name, partition = json.loads(msg.key())
        if name == cfg["name"] and "segment" in partition and msg.value() is not None:
            o = json.loads(msg.value())
            written[int(o["pass"])].append((msg.timestamp()[1], bool(o.get("done"))))

    try:
        read_to_end(c, f"{cfg['name']}-offsets", apply, timeout_s=30)
    finally:
        c.close()
    gaps = []
    for p in range(1, last + 1):
        dones = [t for t, done in written[p - 1] if done]
        assert len(dones) == 8, f"pass {p - 1}: {len(dones)} done offsets for 8 segments"
        first = min(t for t, _ in written[p])
        assert first >= max(dones), f"pass {p} began {max(dones) - first} ms before pass {p - 1} was complete"
        gaps.append(first - max(dones))
    scanned = {who for _, op, unit, who in d.request_log if op == "Scan" and unit and not unit.endswith("limit 1")}
    assert scanned == {"w1", "w2"}, scanned
    measured(f"continuous Scan shared by 2 workers: passes 1-{last} each began {min(gaps)}-{max(gaps)} ms after the "
             f"previous pass's last done offset (pass_interval_s: 0)")
