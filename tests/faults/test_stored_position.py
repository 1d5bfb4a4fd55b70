"""A stored shard position outside its shard (issue 18, bug 4), on the Streams double.

A hand-edited or imported offset can name a sequence number the shard never held. Past the
end, an iterator there reads nothing and the shard's later records never arrive (silent
loss), so the start refuses with one line naming the offset's key and ``offsets reset``:

- a *closed* shard says where it ends (DescribeStream's EndingSequenceNumber): refused
  before any GetShardIterator;
- an *open* shard's end is known only to DynamoDB, which refuses the iterator
  (ValidationException): refused on that answer;
- a position *before* the shard's start is older than anything the shard holds: trimmed
  data, which ``trimmed_policy`` handles as before (skip-and-alert reads from the oldest
  record still there).

moto's side of the open-shard case is in tests/e2e/test_stored_position_moto.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from bridge.kafka import ensure_topics
from bridge.ops.offsets_tool import write_offsets
from connectors.dynamodb.config import parse_config
from tests.faults.support import ChangeLog, double_config, last_line, topic_of, wait_until

pytestmark = pytest.mark.slow


def _store(stack: Any, cfg: dict[str, Any], partition: dict[str, Any], offset: dict[str, Any]) -> None:
    parsed = parse_config(cfg)
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    ensure_topics(admin, {parsed.offsets_topic: {"cleanup.policy": "compact"}}, partitions=1, replication_factor=1)
    write_offsets(parsed, [(partition, offset)])


def _refused(bridge: Any, shard: str, cfg: dict[str, Any]) -> str:
    code = bridge.wait(60)
    line = last_line(bridge.log())
    assert code == 2, f"exit code {code}, last line: {line}"
    assert shard in line and cfg["name"] in line and "ddb-kafka-bridge offsets reset -c <config> --key" in line, line
    return line


def test_a_position_past_the_end_of_a_closed_shard_is_refused_before_any_call(
        stack: Any, make_double: Any, bridges: Any) -> None:
    d = make_double()
    shard = d.open_shard_ids()[0]
    log = ChangeLog(d)
    log.write_many(10, keys=5)
    d.rollover(shard)
    log.write_many(5, keys=5)  # into the child, which waits for its parent
    end = int(d.shard(shard).ending_sequence_number)
    cfg = double_config(stack, d)
    _store(stack, cfg, {"table": d.table, "shard": shard}, {"seq": str(end + 1000), "ended": False})
    bridge = bridges.start(cfg, wait_running=False)
    line = _refused(bridge, shard, cfg)
    assert f"past the end of the shard, whose sequence numbers end at {end}" in line, line
    assert d.calls.count("GetShardIterator", shard) == 0  # refused on DescribeStream's range alone


def test_a_position_past_the_end_of_an_open_shard_is_refused_on_dynamodbs_answer(
        stack: Any, make_double: Any, bridges: Any) -> None:
    d = make_double()
    shard = d.open_shard_ids()[0]
    log = ChangeLog(d)
    written = log.write_many(10, keys=5)
    past = str(int(written[-1].sequence_number) + 1000)
    cfg = double_config(stack, d)
    _store(stack, cfg, {"table": d.table, "shard": shard}, {"seq": past, "ended": False})
    bridge = bridges.start(cfg, wait_running=False)
    line = _refused(bridge, shard, cfg)
    assert f"(sequence number {past}) is not in the shard" in line and "ValidationException" in line, line


def test_a_position_before_the_shards_start_is_trimmed_data(
        stack: Any, make_double: Any, bridges: Any, make_reader: Any) -> None:
    d = make_double()
    shard = d.open_shard_ids()[0]
    log = ChangeLog(d)
    log.write_many(10, keys=5)
    before = str(int(d.shard(shard).starting_sequence_number) - 1)
    cfg = double_config(stack, d, stream={"trimmed_policy": "skip-and-alert"})
    _store(stack, cfg, {"table": d.table, "shard": shard}, {"seq": before, "ended": False})
    bridge = bridges.start(cfg, wait_running=False)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.wait_for_log(log, 60)  # every record the shard holds, from its oldest
    wait_until(lambda: [ln for ln in bridge.log().splitlines() if shard in ln and "trimmed" in ln], 30,
               "a log line naming the shard as trimmed")
    assert bridge.proc.poll() is None, bridge.log()[-3000:]
    assert bridge.stop() == 0, bridge.log()[-3000:]
