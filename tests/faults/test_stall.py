"""A producer that can make no progress is not waited on blind (issue 11, bug 1).

The broker is replaced mid-stream by one that has lost every topic, record and producer
id (tansu keeps everything in memory; on a real cluster an unclean leader election or a
re-created topic does the same to a client). librdkafka then answers every retry with
``UnknownProducerId`` and, with ``message.timeout.ms=0``, would retry forever while the
bridge logs nothing and /health says 200. Now: past ``stall.warn_after_s`` a WARNING
names librdkafka's reason and /health turns DEGRADED; past ``stall.fail_after_s`` the
process exits 1; the restart (a new producer) loses nothing.

Before the fault the broker is frozen for longer than ``stall.warn_after_s`` (issue 18: a
loaded CI host did this now and then, and the stall that followed logged no WARNING, since
repeats were held a minute apart even after the first stall had cleared).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.faults.support import (
    ChangeLog,
    ChangeReader,
    assert_complete_in_order,
    dedupe,
    double_config,
    get_status,
    last_line,
    observed,
    topic_of,
    wait_until,
)

pytestmark = pytest.mark.slow

WARN_S, FAIL_S = 2.0, 12.0


def test_broker_loses_producer_state_mid_stream(stack, make_double, bridges, proxied_tansu, measured) -> None:
    d = make_double(shards=2)
    log = ChangeLog(d)
    cfg = double_config(
        stack, d, kafka={"bootstrap.servers": proxied_tansu.bootstrap},
        stall={"warn_after_s": WARN_S, "fail_after_s": FAIL_S},
    )
    health = f"http://127.0.0.1:{cfg['metrics']['port']}/health"
    bridge = bridges.start(cfg)
    # First a broker slower than WARN_S to acknowledge the first records, which a loaded CI host
    # made now and then (the intermittent failure of issue 18): a stall that clears by itself.
    # It must warn, then say ok again, and must not hide the real stall below (it did: the
    # next WARNING waited a minute after this one, and the test read this one for that).
    # The changes are written while the broker is frozen, so they are in flight when it is
    # (written before, they could be acknowledged before the freeze: seen once in 5 runs).
    # The freeze comes once the bridge reads: every process joins its group through this
    # broker, and a freeze during the join holds the reading, so nothing would be in flight
    # (seen in CI once the group became the default).
    log.write_many(1, keys=1)
    first = ChangeReader(proxied_tansu.bootstrap, stack.registry_url, topic_of(cfg))
    first.wait_for(log.seqs, 60)
    first.close()
    with proxied_tansu.paused():
        log.write_many(60, keys=12)
        wait_until(lambda: "no acknowledgement from Kafka" in bridge.log(), WARN_S + 30, "a stall WARNING")
    reader = ChangeReader(proxied_tansu.bootstrap, stack.registry_url, topic_of(cfg))
    reader.wait_for(log.seqs, 60)
    reader.close()
    # OK once everything is acknowledged: at the stall watch's next look (every WARN_S / 4).
    wait_until(lambda: _health(health) == (200, "OK"), WARN_S + 5, "/health OK before the fault")
    assert "Kafka acknowledges records again" in bridge.log()

    kept_by_old_broker = log.seqs  # acknowledged by the broker that is about to lose them
    # Only what the bridge logs from here on answers for the fault.
    before_fault = len(bridge.log())

    def since_fault() -> str:
        return bridge.log()[before_fault:]

    proxied_tansu.restart()  # a broker without the bridge's topics, records and producer id
    log.write_many(60, keys=12)

    # Within the thresholds: the log says why, /health says DEGRADED, then the process exits 1.
    # tansu answers the lost producer id one of two ways, by timing: UnknownProducerId, which
    # librdkafka retries forever (the stall), or an outright refusal on the first write (a
    # fence, a sequence desynchronization), which stops the bridge at once. Both must end in exit 1 with one line saying why.
    def stalled_or_stopped() -> str | None:
        text = since_fault()
        if bridge.proc.poll() is not None:
            return "stopped"
        return "stalled" if "no acknowledgement from Kafka" in text else None

    outcome = wait_until(stalled_or_stopped, FAIL_S + 30, "the stall WARNING or a stop")
    if outcome == "stalled":
        warning = next(ln for ln in since_fault().splitlines() if "no acknowledgement from Kafka" in ln)
        assert " WARNING " in warning, warning
        assert re.search(r"librdkafka reports: .*unknown producer id", warning, re.IGNORECASE), warning
        # DEGRADED answers 200 (a liveness probe must not restart a bridge that waits out an
        # outage) with the reason in the JSON; ?strict answers 503 for it.
        wait_until(lambda: _health(health) == (200, "DEGRADED"), FAIL_S, "/health DEGRADED")
        body = json.loads(get_status(health)[1])
        assert body["checks"]["worker"]["reason"].startswith("DEGRADED: no acknowledgement from Kafka"), body
        assert get_status(health + "?strict")[0] == 503
    assert bridge.wait(FAIL_S + 30) == 1, bridge.log()[-3000:]
    line = last_line(bridge.log())
    # A fresh broker has lost the group's coordination topic too; the group may notice first.
    group_noticed = "coordination topic" in line and "is gone" in line
    if group_noticed:
        assert line.startswith("ddb-kafka-bridge: error: group: "), line
    elif outcome == "stalled":
        assert line.startswith("ddb-kafka-bridge: error: Kafka acknowledged none"), line
        assert "stall.fail_after_s" in line and re.search("unknown producer id", line, re.IGNORECASE), line
    else:
        # The broker refused outright (a fence, a sequence desynchronization): one line naming
        # it, and in at-least-once never blaming another bridge process (there is no
        # transactional id to share).
        assert line.startswith("ddb-kafka-bridge: error: "), line
        assert "refused this producer for good" in line or "failed" in line, line
        assert "took over" not in line, line
    measured(f"broker lost the producer state: {outcome}; last line: {line}")
    assert "Traceback" not in bridge.log()

    # The restart gets a new producer. The new broker lost the old one's records and offsets,
    # so the bridge reads every shard again from the trim horizon: duplicates, never a loss.
    # Except: on the refusal path the first process may have written its offsets (of records
    # the old broker acknowledged) to the new broker before it stopped; then those records
    # are gone with the old broker, which no source can help. What must hold either way:
    # every change written after the replacement arrives, and each key's first copies are
    # an unbroken, ordered run of its changes up to its newest.
    cfg2 = {**cfg, "stall": {}}
    bridge2 = bridges.start(cfg2)
    loaded = int(re.findall(r"loaded (\d+) stored offsets", bridge2.log())[-1])  # the log holds both runs
    expected = log if loaded == 0 else log.without(kept_by_old_broker)
    reader = ChangeReader(proxied_tansu.bootstrap, stack.registry_url, topic_of(cfg), bridges)
    try:
        reader.wait_for(expected.seqs, 90)
        log.write_many(20, keys=12)
        expected = log if loaded == 0 else log.without(kept_by_old_broker)
        reader.wait_for(expected.seqs, 60)
        assert _health(health) == (200, "OK")
        assert bridge2.stop() == 0
        events = reader.drain(1.0)
    finally:
        reader.close()
    if loaded == 0:
        dupes = assert_complete_in_order(events, log)
    else:
        dupes = _assert_ordered_tails(events, log)
    measured(f"restart after losing the producer state: {loaded} offsets found on the new broker, {dupes} duplicates")


def _assert_ordered_tails(events: list, log: ChangeLog) -> int:
    """Each key's first copies are the newest ``n`` of its changes, in order (``n`` may
    include changes the old broker had, re-read from a shard whose offset did not carry)."""
    got = observed(events)
    problems = []
    for pk, want in log.expected.items():
        first = dedupe(got.get(pk, []))
        if not first or want[-len(first):] != first:
            problems.append(f"key {pk}: got {[c.seq for c in first]}, want a tail of {[c.seq for c in want]}")
    assert not problems, "\n".join(problems[:10])
    return len(events) - sum(len(dedupe(v)) for v in got.values())


def _health(url: str) -> tuple[int | None, str | None]:
    """/health's status code and overall state (OK, DEGRADED, FAILED)."""
    code, body = get_status(url)
    try:
        return code, json.loads(body)["status"]
    except (ValueError, KeyError, TypeError):
        return code, None
