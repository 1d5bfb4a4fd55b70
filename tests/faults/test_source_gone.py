"""The source changes under a running bridge: the table is deleted, its stream disabled;
and ``start_position: at_timestamp``. Through the Streams double, which speaks the AWS
protocol and whose clock the test moves by hand.
"""

from __future__ import annotations

import pytest

from tests.doubles.streams_double import ManualClock
from tests.faults.support import (
    ChangeLog,
    ChangeReader,
    assert_exact,
    double_config,
    last_line,
    metric,
    topic_of,
    wait_until,
)
from tests.helpers import unique

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


def test_stream_disabled_and_table_deleted_beside_other_tables_stop_those_tables_alone(
    stack, make_double, bridges
) -> None:
    """Three tables on one endpoint: one's stream is disabled, one is deleted, while the
    bridge runs. Each stops alone with a WARNING naming it and the stop counter goes up; the
    disabled stream is still read to its end; the third table carries on; the bridge stops
    cleanly (exit 0) when asked."""
    keep = make_double(shards=2)
    disabled = keep.add_table(unique("t"), shards=2)
    deleted = keep.add_table(unique("t"), shards=1)
    logs = {d.table: ChangeLog(d) for d in (keep, disabled, deleted)}
    for log in logs.values():
        log.write_many(20, keys=5)
    cfg = double_config(stack, keep)
    cfg["tables"] = [{"name": d.table, "stream": dict(cfg["tables"][0]["stream"])} for d in (keep, disabled, deleted)]
    bridge = bridges.start(cfg)
    readers = {
        name: ChangeReader(stack.kafka_bootstrap, stack.registry_url, f"ddb.{name}", bridges) for name in logs
    }
    try:
        for name, log in logs.items():
            readers[name].wait_for(log.seqs, 60)
        logs[disabled.table].write_many(20, keys=5)  # written just before the stream goes: must still arrive
        disabled.disable_stream()
        deleted.delete_table()
        for d in (disabled, deleted):
            wait_until(lambda d=d: f"table {d.table!r}" in bridge.log() and "the other tables carry on" in
                       _line_naming(bridge.log(), d.table), 60, f"the WARNING for {d.table}")
        warning = _line_naming(bridge.log(), disabled.table)
        assert " WARNING " in warning and "was disabled" in warning, warning
        assert " WARNING " in _line_naming(bridge.log(), deleted.table)
        wait_until(lambda: metric(cfg, "bridge_tables_stopped_total") == 2, 30, "bridge_tables_stopped_total == 2")
        logs[keep.table].write_many(30, keys=5)  # the remaining table carries on
        for name, log in logs.items():
            readers[name].wait_for(log.seqs, 60)
        assert bridge.stop() == 0, bridge.log()[-3000:]
        assert "Traceback" not in bridge.log()
        for name, log in logs.items():
            assert_exact(readers[name].drain(1.0), log)
    finally:
        for r in readers.values():
            r.close()


def _line_naming(log: str, table: str) -> str:
    """The last log line that says a table stopped alone, for ``table``."""
    lines = [ln for ln in log.splitlines() if f"table {table!r}" in ln and "the other tables carry on" in ln]
    return lines[-1] if lines else ""
