"""Broker faults that only a real Apache Kafka can show: a broker killed (SIGKILL) and
restarted with its data, the partition leader of a 3-node cluster killed mid-stream, and
a transaction that outlives ``transaction.timeout.ms`` because its process froze.

Each runs the bridge against a private Apache Kafka stack (the tests break the broker)
while changes keep coming, and then judges the topic against every change written: none
lost, per-key order kept; in exactly-once mode none repeated for a ``read_committed`` reader.
"""

from __future__ import annotations

import random
import signal
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.faults.support import (
    ChangeLog,
    Writer,
    assert_complete_in_order,
    double_config,
    last_line,
    topic_of,
    wait_until,
)
from tests.helpers import unique

pytestmark = pytest.mark.slow

DELIVERIES = ["at-least-once", "exactly-once"]


def _stream(make_double: Any, total: int, seed: int) -> tuple[ChangeLog, Writer]:
    d = make_double(shards=4, seed=seed)
    log = ChangeLog(d)
    writer = Writer(log, total, keys=200, rng=random.Random(seed), reshapes={total // 2: "split"})
    return log, writer


def _finish(bridge: Any, reader: Any, writer: Writer, log: ChangeLog, delivery: str) -> int:
    writer.join(120)
    assert writer.error is None and log.writes == writer.total, (writer.error, log.writes)
    reader.wait_for_log(log, 180)
    reader.drain(1.5)
    assert bridge.stop() == 0, bridge.log()[-3000:]
    dupes = assert_complete_in_order(reader.events, log)
    if delivery == "exactly-once":
        assert dupes == 0, f"{dupes} duplicates for a read_committed consumer in exactly-once mode"
    return dupes


@pytest.mark.parametrize("delivery", DELIVERIES)
def test_broker_sigkill_and_restart_keeps_everything(
    delivery, local_stack_factory, make_double, bridges, make_reader, measured) -> None:
    """The only broker is killed mid-stream and comes back 5 s later with its data: the
    bridge waits (idempotent producer, unbounded retries) and then delivers everything."""
    stack = local_stack_factory(broker="kafka")
    endpoints = stack.start()
    log, writer = _stream(make_double, 3_000, seed=31)
    cfg = double_config(endpoints, d := log.double, delivery=delivery, offsets={"flush_interval_ms": 200}, metrics=False)
    bridge = bridges.start(cfg)
    reader = make_reader(endpoints.kafka_bootstrap, endpoints.registry_url, topic_of(cfg))
    writer.quota = writer.total
    writer.start()
    try:
        reader.grow_by(500, 60)
        stack.stop_one("kafka", signal.SIGKILL)
        killed_at = log.writes
        # Changes keep coming while the broker is gone; the outage's length is the point.
        wait_until(lambda: log.writes >= killed_at + 1_000 or log.writes == writer.total, 60, "writes during the outage")
        time.sleep(3.0)  # and a little longer: the outage's length is the point
        assert bridge.proc.poll() is None, f"the bridge died while the broker was down:\n{bridge.log()[-3000:]}"
        stack.start_one("kafka")
        dupes = _finish(bridge, reader, writer, log, delivery)
    finally:
        writer.stop()
    measured(
        f"\nbroker SIGKILL + restart ({delivery}): {log.writes} changes over {len(d.shards)} shards, "
        f"{log.writes - killed_at} written while the broker was down or after; 0 lost, {dupes} duplicates"
    )


def _leader_of(bootstrap: str, topic: str, partition: int = 0) -> int:
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return int(meta.topics[topic].partitions[partition].leader)


@pytest.mark.parametrize("delivery", DELIVERIES)
def test_leader_failover_in_a_three_node_cluster(delivery, local_stack_factory, make_double, bridges, make_reader, measured) -> None:
    """Replication factor 3, min.insync.replicas 2: killing the leader of the data topic's
    partitions mid-stream moves leadership to a follower that has every acknowledged
    record, and the bridge carries on against the new leader."""
    stack = local_stack_factory(broker="kafka", kafka_nodes=3)
    endpoints = stack.start()
    log, writer = _stream(make_double, 3_000, seed=47)
    cfg = double_config(endpoints, log.double, delivery=delivery, offsets={"flush_interval_ms": 200}, metrics=False)
    bridge = bridges.start(cfg)
    topic = topic_of(cfg)
    reader = make_reader(endpoints.kafka_bootstrap, endpoints.registry_url, topic)
    meta = AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap}).list_topics(topic, timeout=10).topics[topic]
    assert all(len(p.replicas) == 3 for p in meta.partitions.values()), "the bridge's topic is not replicated 3 times"
    writer.quota = writer.total
    writer.start()
    try:
        reader.grow_by(500, 60)
        leader = _leader_of(endpoints.kafka_bootstrap, topic)
        stack.stop_one(stack.kafka_part(leader), signal.SIGKILL)
        wait_until(
            lambda: _leader_of(endpoints.kafka_bootstrap, topic) not in (leader, -1), 30, "a new partition leader"
        )
        new_leader = _leader_of(endpoints.kafka_bootstrap, topic)
        dupes = _finish(bridge, reader, writer, log, delivery)
    finally:
        writer.stop()
    measured(
        f"\nleader failover ({delivery}): node {leader} killed, node {new_leader} took over; "
        f"{log.writes} changes, 0 lost, {dupes} duplicates"
    )


def _stable(bootstrap: str, topic: str) -> bool:
    """No open transaction on ``topic``: the last stable offset has reached the high watermark."""
    committed = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("lso"), "isolation.level": "read_committed"})
    dirty = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("hw"), "isolation.level": "read_uncommitted"})
    try:
        parts = committed.list_topics(topic, timeout=10).topics[topic].partitions
        for p in parts:
            tp = TopicPartition(topic, p)
            if committed.get_watermark_offsets(tp, 10, cached=False)[1] != dirty.get_watermark_offsets(tp, 10, cached=False)[1]:
                return False
        return True
    finally:
        committed.close()
        dirty.close()


def test_transaction_timeout_aborts_a_frozen_process(kafka_stack, make_double, bridges, make_reader, measured) -> None:
    """An exactly-once bridge frozen (SIGSTOP) with a transaction open past
    ``transaction.timeout.ms`` has that transaction aborted by the broker. Thawed, it must
    not carry on as if its records were committed: it stops with one line, and a restart
    delivers every change once."""
    log, writer = _stream(make_double, 2_000, seed=59)
    cfg = double_config(
        kafka_stack, log.double, delivery="exactly-once", offsets={"flush_interval_ms": 2000}, metrics=False
    )
    cfg["kafka"] = dict(cfg["kafka"], **{"transaction.timeout.ms": 4000})
    topic = topic_of(cfg)
    bridge = bridges.start(cfg)
    reader = make_reader(kafka_stack.kafka_bootstrap, kafka_stack.registry_url, topic)
    writer.quota = writer.total
    writer.start()
    try:
        reader.grow_by(200, 60)
        wait_until(lambda: not _stable(kafka_stack.kafka_bootstrap, topic), 30, "a transaction with records open")
        bridge.send(signal.SIGSTOP)
        frozen_at = time.monotonic()
        wait_until(lambda: _stable(kafka_stack.kafka_bootstrap, topic), 60, "the broker to abort the timed-out transaction")
        aborted_after = time.monotonic() - frozen_at
        bridge.send(signal.SIGCONT)
        code = bridge.wait(60)
        line = last_line(bridge.log())
        assert code == 1, f"the thawed bridge exited {code}:\n{bridge.log()[-3000:]}"
        assert "transaction.timeout.ms" in line and "aborted by the broker" in line, line
        bridge = bridges.start(cfg)
        dupes = _finish(bridge, reader, writer, log, "exactly-once")
    finally:
        writer.stop()
    measured(
        f"\ntransaction timeout: aborted by the broker {aborted_after:.1f}s after the freeze; the thawed process "
        f"said: {line!r}; after a restart {log.writes} changes, 0 lost, {dupes} duplicates"
    )
