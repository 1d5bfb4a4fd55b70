"""``ddb-kafka-bridge offsets reset --key|--key-hex``: remove one record of the offsets topic with a tombstone.

The way out when the start stops on a record of the offsets topic that is not an offset
the bridge wrote (the error line prints this command with the key filled in), or to make
the bridge read one source again from its ``start_position``. Stop the bridge first: a
running bridge keeps its offsets in memory and writes them again.
"""

from __future__ import annotations

import argparse
from typing import Any

from confluent_kafka import KafkaException, Producer

from bridge.errors import ConfigError, OffsetStoreError
from bridge.kafka import client_config

__all__ = ["reset_key", "write_tombstone"]


def write_tombstone(kafka: dict[str, Any], topic: str, key: bytes, timeout_s: float = 30.0) -> tuple[int, int]:
    """Produce a null value under ``key`` to ``topic``; returns (partition, offset)."""
    producer = Producer(client_config(kafka))
    try:
        meta = producer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    except KafkaException as e:
        raise OffsetStoreError(f"cannot reach Kafka to reset offsets in {topic!r}: {e.args[0].str()}") from None
    if meta is None or meta.error is not None:
        raise ConfigError(f"offsets topic {topic!r} does not exist; check offsets.topic and name in the config")
    result: list[Any] = []

    def done(err: Any, msg: Any) -> None:
        result.append(err if err is not None else (msg.partition(), msg.offset()))

    producer.produce(topic, None, key, on_delivery=done)
    producer.flush(timeout_s)
    if not result:
        raise OffsetStoreError(f"the tombstone for {topic!r} was not acknowledged within {timeout_s:.0f}s")
    if not isinstance(result[0], tuple):
        raise OffsetStoreError(f"writing the tombstone to {topic!r} failed: {result[0].str()}")
    return result[0]


def reset_key(args: argparse.Namespace, cfg: Any) -> int:
    """``offsets reset --key|--key-hex``: one record's key, even one that is not an offset the bridge wrote."""
    if args.key is not None:
        key = args.key.encode("utf-8")
    else:
        try:
            key = bytes.fromhex(args.key_hex)
        except ValueError:
            raise ConfigError("--key-hex: not hexadecimal; copy the value from the error line") from None
    partition, offset = write_tombstone(cfg.kafka, cfg.offsets_topic, key)
    print(f"offsets topic {cfg.offsets_topic!r}: tombstone written for the key (partition {partition}, "
          f"offset {offset}); the next start reads that source from its start_position")
    return 0
