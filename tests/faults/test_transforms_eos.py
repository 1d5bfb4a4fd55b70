"""Filter + flatten + route in exactly-once mode on Apache Kafka: SIGKILLs while changes
stream in, then a restart; a ``read_committed`` consumer of the routed topics sees each
surviving change exactly once (and none that the filter drops).

The table is the Streams double's (typed values, no sample Scan); the chain keeps inserts and
updates whose ``v`` is at most 6, flattens them, and routes them by operation to
``<base>.c`` and ``<base>.u``. A change is named by (pk, v): ``v`` counts writes to a key
across deletes, so each is unique.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.faults.support import ChangeLog, Writer, double_config
from tests.helpers import unique

pytestmark = pytest.mark.slow

MAX_V = 6


class RoutedReader:
    """A read_committed consumer of the routed topics, counting (op, pk, v) as they come."""

    def __init__(self, bootstrap: str, registry_url: str, topics: list[str]) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("eos-routed"),
                                  "isolation.level": "read_committed", "enable.auto.commit": False,
                                  "auto.offset.reset": "earliest"})
        self.topics = topics
        self.assigned: set[str] = set()
        self.deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
        self.seen: Counter[tuple[str, str, int]] = Counter()
        self.other: list[Any] = []

    def poll_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            missing = [t for t in self.topics if t not in self.assigned]
            if missing:
                # Only the topics found now are added, from their start: assign() of every topic
                # would read the ones already read from offset 0 again (counted as duplicates).
                md = self.consumer.list_topics(timeout=5).topics
                found = [t for t in missing if t in md and md[t].partitions and md[t].error is None]
                if found:
                    self.assigned.update(found)
                    self.consumer.incremental_assign([TopicPartition(t, p, 0) for t in found for p in md[t].partitions])
            msg = self.consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                if msg.value() is None:
                    self.other.append(("tombstone", msg.topic()))
                else:
                    v = self.deserialize(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
                    self.seen[(v["__op"], v["pk"], int(v["v"]))] += 1
            if time.monotonic() >= deadline:
                return

    def wait_for(self, want: set[tuple[str, str, int]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not want <= set(self.seen):
            assert time.monotonic() < deadline, f"missing {sorted(want - set(self.seen))[:5]} of {len(want)}"
            self.poll_for(0.5)

    def close(self) -> None:
        self.consumer.close()


def _surviving(log: ChangeLog) -> set[tuple[str, str, int]]:
    """The changes written so far that the chain keeps, as the reader counts them."""
    return {(c.op, c.after["pk"][1], int(c.after["v"][1])) for changes in list(log.expected.values())
            for c in list(changes) if c.op in ("c", "u") and int(c.after["v"][1]) <= MAX_V}


def test_filter_flatten_route_exactly_once_through_sigkills(kafka_stack: Any, make_double: Any, bridges: Any,
                                                           measured: Any) -> None:
    stack = kafka_stack
    rng = random.Random(21)
    d = make_double(shards=2, seed=5)
    log = ChangeLog(d)
    total, kills = 1500, 4
    writer = Writer(log, total, keys=60, rng=rng, reshapes={total // 2: "split"})
    base = unique("routed")
    cfg = double_config(stack, d, delivery="exactly-once", offsets={"flush_interval_ms": 200}, metrics=False)
    cfg["tables"][0].update({
        "topic": f"{base}.unused",
        "value": {"shape": "typed", "sample_items": 0, "attributes": [{"name": "v", "type": "long"}]},
        "transforms": [
            {"filter": {"op": ["c", "u"], "where": {"after.v": {"lte": MAX_V}}}},
            {"flatten": {}},
            {"drop": ["body"]},
            {"route": {"topic": base + ".{__op}"}},
        ],
    })
    reader = RoutedReader(stack.kafka_bootstrap, stack.registry_url, [f"{base}.c", f"{base}.u"])
    writer.start()
    try:
        for k in range(kills):
            writer.quota = (k + 1) * total // (kills + 1)
            bridge = bridges.start(cfg, wait_running=False)
            before = sum(reader.seen.values())
            deadline = time.monotonic() + 60
            want = rng.randint(1, 120)
            while sum(reader.seen.values()) < before + want and time.monotonic() < deadline:
                bridges.started[-1].check()
                reader.poll_for(0.2)
                # Once every key is past MAX_V no surviving change comes: kill without waiting.
                if log.writes >= writer.quota and _surviving(log) <= set(reader.seen):
                    break
            time.sleep(rng.uniform(0, 0.3))  # a random moment after the topic grew: not a synchronisation
            bridge.stop(signal.SIGKILL)
        writer.quota = total
        writer.join(120)
        assert writer.error is None and log.writes == total
        bridge = bridges.start(cfg)
        surviving = _surviving(log)
        reader.wait_for(surviving, 180)
        reader.poll_for(1.5)  # anything more would be a duplicate or a change the filter drops
        assert bridge.stop() == 0, bridge.log()[-3000:]
    finally:
        writer.stop()
        reader.close()
    dupes = {k: n for k, n in reader.seen.items() if n > 1}
    extra = set(reader.seen) - surviving
    measured(f"\napache-kafka: filter+flatten+route, exactly-once, {kills} SIGKILLs: {log.writes} changes, "
             f"{len(surviving)} surviving, {len(dupes)} duplicated, {len(extra)} unexpected")
    assert not reader.other, reader.other[:3]  # deletes were filtered: so were their tombstones
    assert not extra, sorted(extra)[:5]
    assert not dupes, sorted(dupes.items())[:5]
