"""Records trimmed (24-hour retention) before the bridge read them: detected, reported
and handled by ``tables[].stream.trimmed_policy`` (fail | skip-and-alert | resnapshot).

Three ways to lose unread records, all driven by the Streams double:

- *stale offset*: the bridge is stopped, records after its stored offset age out, and
  on restart GetShardIterator AFTER_SEQUENCE_NUMBER answers TrimmedDataAccessException;
- *lagging reader*: a running reader is held back (its GetRecords fail) while records
  ahead of its iterator age out, so its next GetRecords is refused the same way;
- *aged-out parent*: a shard the bridge had started but not finished leaves
  DescribeStream altogether while its children remain.

A stream older than 24 hours always has records that were trimmed before a *new* bridge
saw them; that is no loss, and no test here expects it to be reported.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.faults.support import (
    ChangeLog,
    assert_exact,
    double_config,
    last_line,
    metric,
    topic_of,
    wait_for_log_count,
    wait_until,
)

pytestmark = pytest.mark.slow

POLICIES = ("fail", "skip-and-alert", "resnapshot")


def _start(stack: Any, d: Any, bridges: Any, policy: str, **stream: Any) -> tuple[dict[str, Any], Any]:
    cfg = double_config(stack, d, stream={"trimmed_policy": policy, **stream}, offsets={"flush_interval_ms": 100})
    return cfg, bridges.start(cfg)


def _reported(bridge: Any, shard: str) -> list[str]:
    """Log lines that name the shard and say its records were trimmed."""
    return [ln for ln in bridge.log().splitlines() if shard in ln and "trimmed" in ln.lower()]


def _assert_failed_on(bridge: Any, shard: str) -> None:
    code = bridge.wait(60)
    line = last_line(bridge.log())
    assert code == 1, f"exit code {code}, last line: {line}"
    assert shard in line and "trimmed" in line.lower(), f"last line does not name the shard and 'trimmed': {line}"


def _stale_offset(
    stack: Any, make_double: Any, bridges: Any, make_reader: Any, policy: str, *, keys: int = 10,
    snapshot: dict[str, Any] | None = None,
):
    """Read max(50, keys) changes, stop; write 50 more; trim the first 25 of those; restart."""
    d = make_double()
    shard = d.open_shard_ids()[0]
    log = ChangeLog(d)
    log.write_many(max(50, keys), keys=keys)
    cfg = double_config(stack, d, stream={"trimmed_policy": policy}, offsets={"flush_interval_ms": 100})
    if snapshot:
        cfg["tables"][0]["snapshot"] = snapshot
    bridge = bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.wait_for_log(log, 60)
    assert bridge.stop(signal.SIGTERM) == 0, bridge.log()[-3000:]

    more = log.write_many(50, keys=keys)
    lost = {r.sequence_number for r in more[:25]}
    d.trim(shard, before=more[25].sequence_number)
    bridge = bridges.start(cfg, wait_running=False)
    return d, shard, log, {r.sequence_number for r in more}, lost, cfg, bridge, reader


@pytest.mark.parametrize("policy", POLICIES)
def test_stale_offset_trimmed(stack, make_double, bridges, make_reader, policy: str) -> None:
    d, shard, log, after_stop, lost, cfg, bridge, reader = _stale_offset(
        stack, make_double, bridges, make_reader, policy
    )
    if policy == "fail":
        _assert_failed_on(bridge, shard)
        reader.poll_for(1.0)
        assert after_stop.isdisjoint(reader.seen), "trimmed_policy=fail still read past the trimmed gap"
        return

    wait_until(lambda: _reported(bridge, shard), 30, f"a log line naming {shard} as trimmed")
    kept = log.without(lost)
    reader.wait_for(kept.seqs, 60)
    log.write_many(20, keys=10)  # and it keeps following the shard
    kept = log.without(lost)
    reader.wait_for(kept.seqs, 60)
    reader.drain(1.0)
    assert (metric(cfg, "bridge_trimmed_shards_total") or 0) >= 1, "bridge_trimmed_shards_total did not count it"
    assert bridge.proc.poll() is None, f"{policy}: the bridge stopped:\n{bridge.log()[-2000:]}"
    assert bridge.stop() == 0, bridge.log()[-3000:]
    # A resnapshot adds op=r rows (checked in test_resnapshot_snapshots_or_says_it_cannot);
    # the stream's changes around them must still be exact.
    assert_exact([e for e in reader.events if e.op != "r"], kept)


@pytest.mark.parametrize("policy", ["fail", "skip-and-alert"])
def test_lagging_reader_trimmed(stack, make_double, bridges, make_reader, policy: str) -> None:
    """A reader held back by failing GetRecords while the records ahead of it age out."""
    d = make_double()
    shard = d.open_shard_ids()[0]
    log = ChangeLog(d)
    log.write_many(60, keys=10)
    cfg, bridge = _start(stack, d, bridges, policy, max_records_per_call=10)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.wait_for_log(log, 60)

    hold = d.faults.add("InternalServerError", op="GetRecords", shard=shard, times=None)
    wait_until(lambda: hold.fired >= 2, 30, "the reader to meet the hold")
    reader.poll_for(0.5)
    more = log.write_many(60, keys=10)
    lost = {r.sequence_number for r in more[:30]}
    d.trim(shard, before=more[30].sequence_number)
    d.faults.clear()

    if policy == "fail":
        _assert_failed_on(bridge, shard)
        return
    wait_until(lambda: _reported(bridge, shard), 30, f"a log line naming {shard} as trimmed")
    kept = log.without(lost)
    reader.wait_for(kept.seqs, 60)
    reader.drain(1.0)
    assert (metric(cfg, "bridge_trimmed_shards_total") or 0) >= 1
    assert bridge.stop() == 0, bridge.log()[-3000:]
    # A resnapshot adds op=r rows (checked in test_resnapshot_snapshots_or_says_it_cannot);
    # the stream's changes around them must still be exact.
    assert_exact([e for e in reader.events if e.op != "r"], kept)


@pytest.mark.parametrize("policy", ["fail", "skip-and-alert"])
def test_parent_aged_out_before_finished(stack, make_double, bridges, make_reader, policy: str) -> None:
    """The bridge had read part of a parent; while it was down the parent split and then
    aged out of DescribeStream. The loss is reported; with skip-and-alert the children
    are read."""
    d = make_double()
    parent = d.open_shard_ids()[0]
    log = ChangeLog(d)
    log.write_many(200, keys=10)
    d.faults.add("slow", op="GetRecords", shard=parent, times=None, delay=0.3)
    cfg, bridge = _start(stack, d, bridges, policy, max_records_per_call=10)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.grow_by(20, 60)
    assert bridge.stop(signal.SIGTERM) == 0, bridge.log()[-3000:]
    d.faults.clear()
    reader.poll_for(1.0)
    read_before = set(reader.seen)
    assert len(read_before) < 200, "the parent was finished before the stop; the test proves nothing"

    d.split(parent)
    children = log.write_many(60, keys=10)
    lost = log.seqs - read_before - {r.sequence_number for r in children}
    d.remove_shard(parent)
    bridge = bridges.start(cfg, wait_running=False)
    if policy == "fail":
        _assert_failed_on(bridge, parent)
        return
    wait_until(lambda: _reported(bridge, parent), 30, f"a log line naming {parent} as trimmed")
    kept = log.without(lost)
    reader.wait_for(kept.seqs, 60)
    reader.drain(1.0)
    assert (metric(cfg, "bridge_trimmed_shards_total") or 0) >= 1
    assert bridge.stop() == 0, bridge.log()[-3000:]
    assert_exact(reader.events, kept)


def test_resnapshot_snapshots_or_says_it_cannot(stack, make_double, bridges, make_reader) -> None:
    """trimmed_policy=resnapshot must not quietly act as skip-and-alert: either the table is
    snapshotted again (op=r rows for the items that exist now; the double serves Scan) or
    the bridge says plainly that it could not resnapshot."""
    d, shard, log, _, lost, cfg, bridge, reader = _stale_offset(stack, make_double, bridges, make_reader, "resnapshot")
    wait_until(lambda: _reported(bridge, shard) or bridge.proc.poll() is not None, 30, "a trimmed report")
    deadline = time.monotonic() + 10
    snapshot_rows: list[Any] = []
    said = ""
    while time.monotonic() < deadline:
        reader.poll_for(0.5)
        snapshot_rows = [e for e in reader.events if e.op == "r"]
        text = bridge.log().lower()
        said = next(
            (w for w in ("not supported", "not yet supported", "not implemented", "cannot resnapshot",
                         "could not resnapshot", "unavailable") if w in text),
            "",
        )
        if len(snapshot_rows) >= len(log.state) or said:
            break
    assert snapshot_rows or said, (
        "trimmed_policy=resnapshot neither produced snapshot rows nor said it cannot resnapshot; "
        f"last lines:\n{bridge.log()[-1500:]}"
    )
    if snapshot_rows:
        assert {e.key["pk"] for e in snapshot_rows} >= set(log.state), "the resnapshot missed live items"
        assert all(e.value["source"]["snapshot"] == "scan" for e in snapshot_rows)



def test_resnapshot_cut_off_by_a_crash_is_finished_after_the_restart(stack, make_double, bridges, make_reader) -> None:
    """The trimming that started a resnapshot does not recur after a restart, so the bridge
    must finish the interrupted pass itself, from its stored segment offsets."""
    snapshot = {"segments": 2, "straggler_split": False, "page_size": 10, "max_items_per_second": 25}
    d, shard, log, _, lost, cfg, bridge, reader = _stale_offset(
        stack, make_double, bridges, make_reader, "resnapshot", keys=150, snapshot=snapshot
    )
    wait_until(lambda: _reported(bridge, shard), 30, f"a log line naming {shard} as trimmed")

    def rows_read() -> int:
        reader.poll_for(0.2)
        return sum(1 for e in reader.events if e.op == "r")

    wait_until(lambda: rows_read() >= 40, 60, "40 resnapshot rows before the kill")
    bridge.proc.kill()
    bridge.proc.wait(10)
    first_run_rows = {e.key["pk"] for e in reader.events if e.op == "r"}
    assert len(first_run_rows) < len(log.state), "the resnapshot finished before the kill; the test needs it cut off"

    log_before = bridge.log().count("resumed from stored offsets")
    bridge = bridges.start(cfg)
    wait_for_log_count(bridge, "resumed from stored offsets", log_before + 1, 60)
    reader.wait_for(log.without(lost).seqs, 60)
    reader.drain(1.0)
    rows = {e.key["pk"] for e in reader.events if e.op == "r"}
    assert rows >= set(log.state), f"items never resnapshotted: {sorted(set(log.state) - rows)[:10]}"
    line = [ln for ln in bridge.log().splitlines() if "resumed from stored offsets" in ln][-1]
    resumed = int(line.split(" resumed from stored offsets")[0].rsplit(", ", 1)[1])
    assert resumed > 0, f"the pass started again instead of resuming: {line}"
    assert bridge.stop() == 0, bridge.log()[-3000:]
