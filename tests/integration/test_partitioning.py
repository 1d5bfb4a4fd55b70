"""The bridge's producer puts a key where Java's default partitioner would (murmur2)."""

from __future__ import annotations

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from bridge.kafka import admin_client, producer_config
from tests.helpers import unique
from tests.murmur2 import java_partition


def test_partition_matches_java_default_partitioner(stack) -> None:
    topic = unique("murmur")
    kafka = {"bootstrap.servers": stack.kafka_bootstrap}
    admin = admin_client(kafka)
    admin.create_topics([NewTopic(topic, num_partitions=7, replication_factor=1)])[topic].result(30)
    producer = Producer(producer_config(kafka))
    placed: dict[bytes, int] = {}
    keys = [b"\x00\x00\x00\x00\x01" + f"key-{i}".encode() for i in range(200)]
    for key in keys:
        producer.produce(topic, b"v", key, on_delivery=lambda err, msg: placed.__setitem__(msg.key(), msg.partition()))
    assert producer.flush(30) == 0
    assert placed == {k: java_partition(k, 7) for k in keys}
    assert len(set(placed.values())) == 7  # the check would be vacuous on one partition
