"""Graceful shutdown and health: on SIGTERM the bridge stops reading, drains what is in
flight, commits the offsets that cover it and exits within ``shutdown_timeout_s`` even
when the broker or the source hangs; ``/health`` and ``/metrics`` tell an operator it runs."""

from __future__ import annotations

import signal
import time

import pytest

from tests.faults.support import (
    ChangeLog,
    assert_complete_in_order,
    assert_exact,
    double_config,
    get_status,
    last_line,
    read_offsets,
    scrape,
    topic_of,
    wait_until,
)

pytestmark = pytest.mark.slow


def test_health_and_metrics(stack, make_double, bridges) -> None:
    d = make_double()
    ChangeLog(d).write_many(10, keys=3)
    cfg = double_config(stack, d)
    bridge = bridges.start(cfg)
    port = cfg["metrics"]["port"]
    wait_until(lambda: ((scrape(cfg) or {}).get("bridge_records_produced_total") or 0) >= 10, 30, "10 records")
    status, body = get_status(f"http://127.0.0.1:{port}/health")
    assert status == 200, (status, body)
    names = set(scrape(cfg) or {})
    for name in ("bridge_records_produced_total", "bridge_records_dead_lettered_total"):
        assert name in names, f"/metrics lacks {name}: {sorted(names)}"
    assert bridge.stop() == 0
    assert get_status(f"http://127.0.0.1:{port}/health")[0] is None, "/health still answers after exit"
    assert "bridge_tasks_running" in names, f"/metrics lacks bridge_tasks_running: {sorted(names)}"


def test_sigterm_drains_and_commits(stack, make_double, bridges, make_reader) -> None:
    """SIGTERM mid-stream: exit 0 within the timeout, and the committed offsets cover
    exactly what reached the topic, so the restart repeats nothing."""
    d = make_double(shards=2)
    log = ChangeLog(d)
    log.write_many(3000, keys=50)
    d.faults.add("slow", op="GetRecords", times=None, delay=0.1)  # so SIGTERM lands mid-stream
    cfg = double_config(stack, d, stream={"max_records_per_call": 100}, shutdown_timeout_s=10)
    bridge = bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.grow_by(300, 60)
    t0 = time.monotonic()
    code = bridge.stop(signal.SIGTERM)
    took = time.monotonic() - t0
    assert code == 0 and took < 10 + 3, f"exit {code} after {took:.1f}s:\n{bridge.log()[-2000:]}"
    reader.drain(1.0)
    stopped_at = len(reader.events)
    offsets = read_offsets(stack.kafka_bootstrap, cfg)
    assert offsets, "nothing committed on SIGTERM"

    assert stopped_at < 3000, "everything was read before SIGTERM; the test proves nothing"
    d.faults.clear()
    bridge = bridges.start(cfg)
    reader.wait_for_log(log, 90)
    reader.drain(1.0)
    assert bridge.stop() == 0, bridge.log()[-3000:]
    assert_exact(reader.events, log)
    print(f"\nSIGTERM after {stopped_at} records, exit in {took:.2f}s; restart repeated nothing")


def test_sigterm_while_reads_hang(stack, make_double, bridges) -> None:
    """A GetRecords that hangs (20 s) does not hold the shutdown past its timeout."""
    d = make_double()
    ChangeLog(d).write_many(20, keys=4)
    cfg = double_config(stack, d, shutdown_timeout_s=3)
    bridge = bridges.start(cfg)
    wait_until(lambda: d.calls.count("GetRecords") > 0, 30, "a first GetRecords")
    rule = d.faults.add("slow", op="GetRecords", times=None, delay=20)
    d.faults.add("slow", op="DescribeStream", times=None, delay=20)
    wait_until(lambda: rule.fired > 0, 30, "a GetRecords to hang")
    t0 = time.monotonic()
    code = bridge.stop(signal.SIGTERM, timeout=30)
    took = time.monotonic() - t0
    assert took < 3 + 3, f"shutdown took {took:.1f}s with shutdown_timeout_s=3"
    assert code == 0, f"exit {code}: {last_line(bridge.log())}"


def test_sigterm_with_broker_down_exits_within_timeout(
    stack, kafka_behind_proxy, make_double, bridges, make_reader
) -> None:
    """Records stuck in the producer (broker cut) cannot be drained: the bridge still exits
    within shutdown_timeout_s, without committing offsets it has no acknowledgement for,
    so a restart after the broker is back loses nothing."""
    broker, proxy = kafka_behind_proxy
    d = make_double()
    log = ChangeLog(d)
    log.write_many(50, keys=10)
    cfg = double_config(stack, d, kafka={"bootstrap.servers": broker}, shutdown_timeout_s=3)
    bridge = bridges.start(cfg)
    reader = make_reader(broker, stack.registry_url, topic_of(cfg))
    reader.wait_for_log(log, 60)
    proxy.cut("blackhole")
    log.write_many(100, keys=10)
    wait_until(lambda: sum(d.records_served.values()) >= 150, 30, "the bridge to read the new changes")
    t0 = time.monotonic()
    code = bridge.stop(signal.SIGTERM, timeout=30)
    took = time.monotonic() - t0
    print(f"\nSIGTERM with the broker cut: exit {code} after {took:.1f}s; last line: {last_line(bridge.log())}")
    assert took < 3 + 4, f"shutdown took {took:.1f}s with shutdown_timeout_s=3"
    proxy.restore()

    bridge = bridges.start(cfg)
    reader.wait_for_log(log, 90)
    reader.drain(1.0)
    assert bridge.stop() == 0, bridge.log()[-3000:]
    dupes = assert_complete_in_order(reader.events, log)
    print(f"after the restart: {dupes} duplicates")
