"""Follow the offsets topic while running, so that work can move between workers of one name.

A worker that shares its connector's work with others (``bridge.group``) must see what the
others commit: a child shard it owns may start only once the parent's ``ended`` offset is
committed, whoever read the parent; and a unit it is given must resume where its previous
owner committed. One consumer thread per worker reads the offsets topic from the start and
keeps reading; ``catch_up`` waits until everything the broker holds *now* is applied.

A worker's own writes are authoritative for the units it owns (the store learns them when
they are acknowledged), so the follower skips those units: reading its own older records
back must not move an offset backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from bridge.errors import OffsetStoreError
from bridge.kafka import client_config
from bridge.offsets import OffsetStore

__all__ = ["OffsetFollower"]

log = logging.getLogger(__name__)


class OffsetFollower:
    """Applies other workers' committed offsets to an ``OffsetStore`` as they arrive."""

    def __init__(
        self,
        store: OffsetStore,
        kafka: dict[str, Any],
        *,
        group_id: str,
        skip: Callable[[Mapping[str, Any]], bool],
        on_change: Callable[[], object] | None = None,
    ) -> None:
        self._store = store
        self._skip = skip
        self._on_change = on_change
        # read_committed: an exactly-once writer's aborted offsets never count, and its open
        # transaction holds the read back only until it commits or is fenced.
        conf = client_config(kafka) | {
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 50,
        }
        self._consumer = Consumer(conf)
        # Watermark queries from the loop's side: a call on the consumer that consume() is
        # blocked in on the follower thread waits for it, so they get their own client.
        self._ends_client = Consumer(conf)
        self._positions: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._partitions: list[int] = []

    def start(self) -> None:
        topic = self._store.topic
        meta = self._consumer.list_topics(topic, timeout=30).topics.get(topic)
        if meta is None or meta.error is not None:
            raise OffsetStoreError(f"offsets topic {topic!r} is missing; it should have been created at start")
        self._partitions = sorted(meta.partitions)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self._partitions])
        self._thread = threading.Thread(target=self._run, name="offset follower", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        consumer, store, topic = self._consumer, self._store, self._store.topic
        while not self._stop.is_set():
            try:
                msgs = consumer.consume(num_messages=1000, timeout=0.1)
            except KafkaException as e:
                self._error = e
                return
            changed = False
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF and not err.retriable():
                        log.warning("offset follower: %s", err.str())
                    continue
                partition = self._partition_of(msg.key())
                if partition is None or self._skip(partition):
                    continue
                store._apply(msg.key(), msg.value())
                changed = True
            # The fetch position counts transaction markers and aborted records too, which
            # no message shows: it is what says "read up to here".
            try:
                done = consumer.position([TopicPartition(topic, p) for p in self._partitions])
            except KafkaException:
                continue
            with self._lock:
                for tp in done:
                    if tp.offset >= 0:
                        self._positions[tp.partition] = tp.offset
            if changed and self._on_change is not None:
                self._on_change()

    @staticmethod
    def _partition_of(key: bytes | None) -> dict[str, Any] | None:
        import json

        try:
            _name, partition = json.loads(key or b"null")
        except (ValueError, TypeError):
            return None
        return partition if isinstance(partition, dict) else None

    def _ends(self, timeout_s: float) -> dict[int, int]:
        """Each partition's high watermark. Asked again every few seconds until ``timeout_s``:
        in a leader failover the first answers time out (the old leader is gone) until the
        client's metadata names the new one, and one long wait would not ask again."""
        topic = self._store.topic
        deadline = time.monotonic() + timeout_s
        ends: dict[int, int] = {}
        for p in self._partitions:
            while True:
                left = deadline - time.monotonic()
                try:
                    ends[p] = int(self._ends_client.get_watermark_offsets(
                        TopicPartition(topic, p), timeout=max(0.1, min(5.0, left)), cached=False)[1])
                    break
                except KafkaException as e:
                    if left <= 5.0:
                        raise OffsetStoreError(
                            f"offsets topic {topic!r}: its end could not be read within {timeout_s:.0f} s "
                            f"({e.args[0].str() if e.args else e}); is the broker reachable?") from None
                    with contextlib.suppress(KafkaException):
                        self._ends_client.list_topics(timeout=5)  # fresh metadata: where the leader is now
                    time.sleep(0.5)
        return ends

    async def catch_up(self, timeout_s: float = 60.0) -> float:
        """Wait until every offset in the topic now is applied; returns the seconds it took.

        The target is the high watermark now; with ``read_committed`` the position passes
        it once every transaction below it is committed or aborted (a crashed writer's is
        aborted when the next owner of its lane starts), so a committed hand-over by the
        previous owner is always seen.
        """
        t0 = time.monotonic()
        ends = await asyncio.to_thread(self._ends, timeout_s)
        deadline = t0 + timeout_s
        while True:
            if self._error is not None:
                raise OffsetStoreError(f"following offsets topic {self._store.topic!r}: {self._error}")
            with self._lock:
                if all(end <= 0 or self._positions.get(p, -1) >= end for p, end in ends.items()):
                    return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise OffsetStoreError(
                    f"offsets topic {self._store.topic!r} not read to its end within {timeout_s:.0f} s "
                    f"(an open transaction of another worker?)"
                )
            await asyncio.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._consumer.close()
        self._ends_client.close()
