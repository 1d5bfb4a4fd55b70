"""The guarantees core over SASL_SSL with SCRAM-SHA-512 on Apache Kafka.

The same helpers as tests/faults/test_crash.py (a Streams double, a change log, random
SIGKILLs), smaller: the bridge talks only to the SASL_SSL listener; the test's reader and
offset checks use the PLAINTEXT one (the data is the same, the proof is about the bridge).
"""

from __future__ import annotations

import random
import signal
from typing import Any

import pytest

from tests.faults.support import (
    ChangeLog,
    Writer,
    assert_complete_in_order,
    broker_hides_aborted,
    double_config,
    read_offsets,
    topic_of,
    wait_until,
)
from tests.faults.test_crash import _kill_at_random
from tests.secure.conftest import SecureKafka


def _offsets_cover_only_present_data(stack: Any, cfg: dict[str, Any], reader: Any) -> dict[str, Any]:
    """Every stored offset names a record that reaches a read_committed reader.

    Waits on the condition (each named record arrives), not a clock: after a kill that
    followed a burst, a reader polling for a fixed second may simply be behind.
    """
    offsets = read_offsets(stack.kafka_bootstrap, cfg)
    named = {v["seq"] for v in offsets.values() if v and v.get("seq")}
    try:
        reader.wait_for(named, 60)
    except AssertionError as e:
        raise AssertionError(f"an offset was committed without its data: {e}") from None
    return offsets

pytestmark = pytest.mark.slow


def test_exactly_once_with_sigkills_over_sasl_ssl(secure_kafka: SecureKafka, make_double, bridges, make_reader,
                                                  measured) -> None:
    sk = secure_kafka
    stack = sk.endpoints
    rng = random.Random(1919)
    d = make_double(shards=2, seed=19)
    log = ChangeLog(d)
    total, kills = 3_000, 4
    writer = Writer(log, total, keys=100, rng=rng, reshapes={total // 2: "split"})
    cfg = double_config(stack, d, delivery="exactly-once", offsets={"flush_interval_ms": 200}, metrics=False)
    cfg["kafka"] = sk.scram()
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    writer.start()
    history = []
    try:
        for k in range(kills):
            writer.quota = (k + 1) * total // kills
            bridge = bridges.start(cfg, wait_running=False)
            how = _kill_at_random(bridge, reader, log, rng, writer.quota)
            _offsets_cover_only_present_data(stack, cfg, reader)
            dupes = assert_complete_in_order(reader.events, log, prefix_only=True)
            history.append(f"kill {k + 1}: {how}; {len(reader.events)} records, {dupes} duplicates")
        writer.quota = total
        writer.join(60)
        assert writer.error is None and log.writes == total
        bridge = bridges.start(cfg, timeout=90)
        reader.wait_for_log(log, 120)
        reader.drain(1.5)
        assert bridge.stop() == 0, bridge.log()[-3000:]
    finally:
        writer.stop()
        print("\n" + "\n".join(history))
    assert _offsets_cover_only_present_data(stack, cfg, reader), "exactly-once wrote no offsets"
    dupes = assert_complete_in_order(reader.events, log)
    assert broker_hides_aborted(stack.kafka_bootstrap)
    measured(f"apache-kafka SASL_SSL/SCRAM: exactly-once, {kills} SIGKILLs: {log.writes} changes, "
             f"{log.count} records, {dupes} duplicates, 0 lost (read_committed)")
    assert dupes == 0, f"{dupes} duplicates in exactly-once mode over SASL_SSL"


def test_at_least_once_restart_over_sasl_ssl(secure_kafka: SecureKafka, make_double, bridges, make_reader,
                                             measured) -> None:
    """SIGKILL mid-stream, restart: every change there, first occurrences in order."""
    sk = secure_kafka
    stack = sk.endpoints
    d = make_double(shards=2, seed=23)
    log = ChangeLog(d)
    cfg = double_config(stack, d, offsets={"flush_interval_ms": 200}, metrics=False)
    cfg["kafka"] = sk.scram()
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    log.write_many(500, keys=50)
    bridge = bridges.start(cfg, timeout=90)
    reader.grow_by(200, 60)
    # Killed once offsets are stored, so the restart resumes from them (not from the start).
    wait_until(lambda: any(read_offsets(stack.kafka_bootstrap, cfg).values()), 30, "an offset stored")
    bridge.stop(signal.SIGKILL)
    log.write_many(500, keys=50)
    bridge = bridges.start(cfg, timeout=90)
    reader.wait_for_log(log, 120)
    reader.drain(1.5)
    assert bridge.stop() == 0, bridge.log()[-3000:]
    dupes = assert_complete_in_order(reader.events, log)
    assert dupes < 500, "the restart replayed everything: offsets over SASL_SSL were not used"
    measured(f"apache-kafka SASL_SSL/SCRAM: at-least-once, SIGKILL + restart: {log.count} records, {dupes} duplicates")
