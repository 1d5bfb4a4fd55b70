"""The source changes under a running bridge: the table is deleted, its stream disabled;
and ``start_position: at_timestamp``. Through the Streams double, which speaks the AWS
protocol and whose clock the test moves by hand.
"""

from __future__ import annotations

import pytest

from tests.doubles.streams_double import ManualClock
from tests.faults.support import ChangeLog, ChangeReader, assert_exact, double_config, last_line, topic_of

pytestmark = pytest.mark.slow


def test_table_deleted_while_running(stack, make_double, bridges, make_reader) -> None:
    """One line naming the table, exit 1; what was read before is in the topic once."""
    d = make_double()
    log = ChangeLog(d)
    log.write_many(20, keys=5)
    cfg = double_config(stack, d)
    bridge = bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.wait_for(log.seqs, 60)
    d.delete_table()
    assert bridge.wait(60) == 1
    line = last_line(bridge.log())
    assert line.startswith("ddb-kafka-bridge: error:"), line
    assert f"table {d.table!r} was deleted while the bridge was running" in line, line
    assert "Traceback" not in bridge.log()
    assert_exact(reader.drain(1.0), log)


def test_stream_disabled_while_running(stack, make_double, bridges, make_reader) -> None:
    """Every record the old stream holds is read to the end, then one line names the table."""
    d = make_double(shards=2)
    log = ChangeLog(d)
    log.write_many(30, keys=6)
    cfg = double_config(stack, d)
    bridge = bridges.start(cfg)
    # Not tied to the bridge process: it is meant to exit while this reader still reads.
    reader = ChangeReader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.wait_for(log.seqs, 60)
    log.write_many(30, keys=6)  # written just before the stream goes: must still arrive
    d.disable_stream()
    assert bridge.wait(60) == 1, bridge.log()[-3000:]
    line = last_line(bridge.log())
    assert f"table {d.table!r}: its stream" in line and "was disabled" in line, line
    assert "every record of that stream was read" in line, line
    assert "Traceback" not in bridge.log()
    reader.wait_for(log.seqs, 30)
    assert_exact(reader.drain(1.0), log)
    reader.close()


def test_start_at_timestamp_skips_older_records(stack, make_double, bridges, make_reader) -> None:
    """Records created before start_timestamp are skipped (read from the trim horizon), the
    rest arrive once, across a split; a restart does not re-read or re-skip anything."""
    clock = ManualClock(1_700_000_000.0)
    d = make_double(shards=1, clock=clock)
    log = ChangeLog(d)
    log.write_many(15, keys=5)
    older = set(log.seqs)
    clock.advance(600)
    start = int(clock() * 1000)
    log.write_many(10, keys=5)
    cfg = double_config(stack, d)
    cfg["tables"][0] |= {"start_position": "at_timestamp", "start_timestamp": start}
    bridge = bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.wait_for(log.seqs - older, 60)
    d.split(d.open_shard_ids()[0])
    clock.advance(60)
    log.write_many(10, keys=5)
    reader.wait_for(log.seqs - older, 60)
    assert bridge.stop() == 0
    assert "skipped 15 records older than start_timestamp" in bridge.log()
    bridge2 = bridges.start(cfg)
    log.write_many(5, keys=5)
    reader.wait_for(log.seqs - older, 60)
    assert bridge2.stop() == 0
    assert_exact(reader.drain(1.0), log.without(older))
