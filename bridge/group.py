"""Workers of one name share the work through Kafka's consumer group protocol.

Kafka Connect's distributed mode is the model: the group divides the work, not us. Every
worker joins one consumer group on a small coordination topic of P partitions and reads
nothing from it; the group protocol (cooperative-sticky, so unaffected partitions keep
reading through a rebalance) hands each worker a set of partitions. A unit of work (a
table's shard, a snapshot segment) belongs to partition ``crc32(unit) mod P`` and is read
by whoever holds that partition.

Revocation is a hand-over: the worker stops the readers of the revoked partitions, waits
for their records to be acknowledged, commits their offsets, and only then returns from
the callback, so the group gives the partitions to the next owner only after that. The
next owner reads the offsets topic up to its end (``OffsetFollower.catch_up``) before it
starts a reader, so it resumes exactly where the previous owner committed. A worker that
dies (SIGKILL) commits nothing; its partitions move after ``session_timeout_ms`` and the
next owner resumes from the last commit (at-least-once: the tail is replayed).

Exactly-once: each owned partition k has its own transactional producer,
``transactional.id = <name>-p<k>``. The next owner's ``init_transactions`` on that id
aborts the previous owner's open transaction and fences it, before the next owner reads
the offsets: so a zombie (a worker the group presumed dead, still running) can neither
commit records nor offsets for units it no longer owns. Kafka Connect's KIP-618 uses
per-task transactional ids the same way.

At-least-once has no such fence; a worker thawed after a pause past the session timeout
holds its reading and offset writes (``bridge.pause_guard``) until librdkafka reports the
loss, and then drops the lost units' offsets instead of writing them.

Every process is a member, a single one a group of one: so a second process of the same
name takes half the work instead of publishing every change again. A process that must
run alone (``solo``: ``group.enabled: false``, or work only one process can do, which the
source's config names) joins too, with another assignor (eager ``roundrobin``): the
broker then refuses the join of any process of the other kind (INCONSISTENT_GROUP_PROTOCOL),
whichever came second, and a second solo process sees at its first assignment that it does
not hold every partition. Either way the process that would make two stops with one line
before it reads anything, and the running one reads on.

The consumer runs on its own thread, since the group callbacks run inside ``poll``; a
callback hands its work to the event loop and blocks until the loop has done it, and
librdkafka keeps heartbeating meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from bridge.errors import ConfigError, GroupError, ProduceError, StartupError
from bridge.kafka import client_config
from bridge.metrics import METRICS
from bridge.offset_follower import OffsetFollower
from bridge.ownership import DEFAULT_LANE
from bridge.pause_guard import PauseGuard
from bridge.task import partition_key
from bridge.worker import Worker

__all__ = ["GroupMembership", "GroupOwnership", "unit_slot"]

# How often the group thread checks that the coordination topic is still there (and as it
# was); gone at two checks in a row, the process stops (one miss may be a broker restarting).
TOPIC_CHECK_S = 5.0

log = logging.getLogger(__name__)


def unit_slot(partition: Mapping[str, Any], slots: int) -> int:
    """The coordination partition a unit of work belongs to: stable across processes and versions."""
    return zlib.crc32(partition_key(partition).encode()) % slots


class GroupOwnership:
    """A group worker's ``Ownership``: the coordination partitions assigned to this process.

    Made before the worker, which asks it; ``GroupMembership`` keeps it up to date as the
    group assigns and revokes partitions.
    """

    def __init__(self, *, slots: int, session_timeout_ms: int, lane_per_slot: bool, solo: str | None) -> None:
        """``lane_per_slot``: exactly-once in a group, one transactional lane per partition owned.
        ``solo``: why this process must run alone (it then owns every unit once the group confirms it)."""
        self.slots = slots
        self.lane_per_slot = lane_per_slot
        self.solo = solo
        self.owned: set[int] = set()
        # Set on the loop once the first assignment is done (offsets caught up, or alone
        # confirmed): until then this process reads nothing, and is not caught up.
        self.assigned = False
        self.heartbeat_ms = max(100, session_timeout_ms // 4)
        self.guard = PauseGuard(session_timeout_ms / 1000, self.heartbeat_ms / 1000)
        # Exactly-once is fenced by the next owner's init_transactions; a process alone has none.
        self._may_hold = not lane_per_slot and solo is None

    def slot(self, partition: Mapping[str, Any]) -> int:
        return unit_slot(partition, self.slots)

    def owns(self, partition: Mapping[str, Any]) -> bool:
        if self.solo is not None:
            return self.assigned  # alone, once the group confirmed it: every unit
        return self.slot(partition) in self.owned

    def route(self, partition: Mapping[str, Any]) -> str:
        return f"p{self.slot(partition)}" if self.lane_per_slot else DEFAULT_LANE

    def held(self) -> bool:
        return self._may_hold and self.guard.held()

    def ready(self) -> bool:
        return self.assigned


class _ErrorTarget:
    """A producer's error_cb, pointed at its lane once the lane exists."""

    def __init__(self) -> None:
        self.target: Callable[[KafkaError], None] | None = None

    def __call__(self, err: KafkaError) -> None:
        if self.target is not None:
            self.target(err)


class GroupMembership:
    """One worker's membership: which coordination partitions it owns, and the hand-overs."""

    def __init__(
        self,
        *,
        kafka: dict[str, Any],
        name: str,
        topic: str,
        session_timeout_ms: int,
        worker: Worker,
        ownership: GroupOwnership,
        follower: OffsetFollower | None,
        make_producer: Callable[[str | None, Callable[[KafkaError], None]], Producer] | None = None,
        handover_timeout_s: float = 30.0,
        solo_producer: Callable[[], Producer] | None = None,
    ) -> None:
        """``ownership``: the worker's, kept up to date here. ``make_producer(transactional_id,
        error_cb)``: exactly-once only, one producer per owned partition.

        With ``ownership.solo`` (why this process must run alone) it reads every unit through the
        worker's one producer, and only joins so that no second process starts beside it."""
        if ownership.lane_per_slot != (make_producer is not None):
            raise ValueError("a lane per partition needs make_producer, and make_producer a lane per partition")
        self.name = name
        self.ownership = ownership
        self.solo = ownership.solo
        self._solo_producer = solo_producer  # exactly-once alone: the one lane, made once alone
        self.group_id = f"{name}-workers"
        self._first_assignment = True
        self._topic_missed = 0
        self._session_s = session_timeout_ms / 1000
        self.topic = topic
        self.slots = ownership.slots
        self.worker = worker
        self.follower = follower
        self.exactly_once = ownership.lane_per_slot
        self._make_producer = make_producer
        self.pauses: list[tuple[str, float]] = []  # (what, seconds) per rebalance step, for logs and tests
        self._closing = threading.Event()
        self._done = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._held_logged = False
        # A hand-over may take the worker's shutdown timeout; the group must not evict us meanwhile.
        poll_interval_ms = max(300_000, int(handover_timeout_s * 1000) * 3)
        heartbeat_ms = ownership.heartbeat_ms
        self.guard = ownership.guard
        self._consumer = Consumer(client_config(kafka) | {
            "group.id": self.group_id,
            "partition.assignment.strategy": "roundrobin" if self.solo else "cooperative-sticky",
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": heartbeat_ms,
            "max.poll.interval.ms": poll_interval_ms,
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
        })
        METRICS.gauge("bridge_group_partitions_owned", lambda: len(self.owned),
                      "coordination partitions this worker owns")

    # ---- the ownership it keeps up to date --------------------------------------------

    @property
    def owned(self) -> set[int]:
        return self.ownership.owned

    @property
    def ready(self) -> bool:
        return self.ownership.assigned

    @ready.setter
    def ready(self, value: bool) -> None:
        self.ownership.assigned = value

    def slot(self, partition: Mapping[str, Any]) -> int:
        return self.ownership.slot(partition)

    # ---- running ----------------------------------------------------------------------

    async def run(self) -> None:
        """Join the group and serve its callbacks until the worker stops (then ``close``)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._serve, name="group member", daemon=True)
        self._thread.start()
        while not self._done.is_set():
            if self._error is not None:
                raise self._error
            await asyncio.sleep(0.1)
        if self._error is not None:
            raise self._error

    def _serve(self) -> None:
        consumer = self._consumer
        try:
            consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                               on_lost=self._on_lost)
            looked = time.monotonic()
            while not self._closing.is_set():
                self._tick()
                if time.monotonic() - looked >= TOPIC_CHECK_S:
                    self._check_topic()
                    looked = time.monotonic()
                msg = consumer.poll(0.1)
                err = msg.error() if msg is not None else None
                if err is not None:
                    self._check(err)
        except BaseException as e:  # noqa: BLE001 - handed to the loop, which stops the worker
            if not self._closing.is_set():
                self._error = e
        finally:
            self.guard.stop()
            try:
                consumer.close()  # leaves the group: the others take our partitions now
            except KafkaException as e:
                log.warning("group: leaving the group failed: %s", e)
            self._done.set()

    def _check_topic(self) -> None:
        """The coordination topic must stay as it was: deleted (or re-created with another
        partition count), the group no longer says who owns what. librdkafka reports nothing
        itself (this consumer fetches nothing), so look: every topic's metadata (asking for
        this one by name could auto-create it)."""
        try:
            meta = self._consumer.list_topics(timeout=10).topics.get(self.topic)
        except KafkaException:
            return  # the broker is away: the producers' own checks say so
        gone = meta is None or (meta.error is not None and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART)
        self._topic_missed = self._topic_missed + 1 if gone else 0
        if self._topic_missed >= 2:
            raise GroupError(
                f"group: the coordination topic {self.topic!r} is gone (deleted, or the broker lost its data) while "
                f"the bridge ran, so the processes named {self.name!r} can no longer divide the work; this one "
                f"stops (committing what it read). Restart it: the topic is created again at start")
        if meta is None or meta.error is not None:
            return
        if len(meta.partitions) != self.slots:
            raise GroupError(
                f"group: the coordination topic {self.topic!r} now has {len(meta.partitions)} partitions, not "
                f"{self.slots} (deleted and re-created while the bridge ran); this one stops (committing what it "
                f"read). Delete the topic and restart, or set group.partitions: {len(meta.partitions)}")

    def _check(self, err: KafkaError) -> None:
        """An error the consumer reports between callbacks: the refusal of a second kind of
        process, or one that ends the membership (raised: the worker stops with it)."""
        if err.code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL:
            if self.solo is not None:
                raise StartupError(
                    f"group: this process must run alone ({self.solo}), but other processes named {self.name!r} are "
                    f"running (group {self.group_id!r}); it stops before reading anything. Stop them first, or "
                    f"change {self.solo.split(': ')[0] if self.solo.startswith('group.') else 'that setting'} so "
                    f"that this process can share the work")
            raise StartupError(
                f"group: another process named {self.name!r} is running alone (group.enabled: false, or work only "
                f"one process can do; its log names it), so this one would make two; it stops before reading "
                f"anything. Stop that process first, or give this one another name")
        if err.fatal():
            raise KafkaException(err)

    async def close(self, timeout_s: float = 1.0) -> None:
        """Leave the group; call after the worker has committed everything at shutdown.

        Waits ``timeout_s`` at most: with the broker unreachable, librdkafka's close waits
        for a LeaveGroup that never comes back, and the stop must stay within
        ``shutdown_timeout_s`` (the group then expires this member after its session)."""
        self._closing.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout_s)
            if self._thread.is_alive():
                log.warning("group: leaving group %r did not finish within %.0f s (is the broker reachable?); the "
                            "others take over this process's partitions after group.session_timeout_ms",
                            self.group_id, timeout_s)

    def _tick(self) -> None:
        """Between polls (and while a callback waits): tell the pause guard this process runs."""
        gap = self.guard.tick()
        if gap is not None and not self.exactly_once and self.owned:
            self._held_logged = True
            log.warning("group: this process stood still for %.1f s (paused?), past half the session timeout; "
                        "reading and offset writes wait up to %.1f s for the group to say whether it still owns "
                        "partitions %s", gap, self.guard.confirm_s, sorted(self.owned))
        elif self._held_logged and not self.guard.held():
            self._held_logged = False
            if self.owned:
                log.info("group: still a member after the pause; reading resumes")

    def _call(self, coro_fn: Callable[[], Any]) -> None:
        """Run ``coro_fn()`` on the loop and wait for it: the callback returns only when it is done."""
        if self._closing.is_set() or self._loop is None:
            return
        self._tick()  # on_lost right after a thaw: the pause is noticed (and logged) before the hand-over
        fut = asyncio.run_coroutine_threadsafe(coro_fn(), self._loop)
        try:
            while not concurrent.futures.wait([fut], 0.1).done:
                self._tick()  # a long hand-over is no pause
            fut.result()
        except BaseException as e:  # noqa: BLE001 - the loop's worker stops on it
            if isinstance(e, KafkaException):  # never "a bug": say what Kafka said
                e = ProduceError(f"group: a rebalance step failed: {e.args[0].str() if e.args else e}")
            if not isinstance(e, StartupError):  # a refusal is its own one line
                log.error("group: rebalance step failed: %s", e)
            self._loop.call_soon_threadsafe(self.worker._fail, e)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Assigned and paused at once: the group only says who owns what, nothing is read
        # from the topic. A consumer that fetched would meet librdkafka's crash when the
        # topic is deleted (SIGSEGV in rd_kafka_metadata_update_op on a fetch answer for a
        # topic it no longer knows, seen on tansu).
        if self.solo is not None:
            consumer.assign(partitions)
        else:
            consumer.incremental_assign(partitions)
        if partitions:
            consumer.pause(partitions)
        ks = sorted(p.partition for p in partitions)
        first, self._first_assignment = self._first_assignment, False
        if self.solo is not None:
            if first:
                self._call(lambda: self._solo_assigned(ks))
            return  # alone: later rounds (a second process that stops itself) change nothing here
        if ks:
            self._call(lambda: self._assigned(ks))
        elif first:  # a member with no partition (more members than partitions) is ready too
            self._call(self._nothing_assigned)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        ks = sorted(p.partition for p in partitions)
        if self.solo is not None:
            if ks and self.ready and not self._closing.is_set() and not self.worker.stopping():
                log.info("group: another process named %r joined group %r; it stops itself (this one runs alone: %s)",
                         self.name, self.group_id, self.solo)
            return
        if ks:
            self._call(lambda: self._revoked(ks, lost=False))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        ks = sorted(p.partition for p in partitions)
        if ks and self.solo is None:
            self._call(lambda: self._revoked(ks, lost=True))

    async def _nothing_assigned(self) -> None:
        """A first assignment with nothing in it: usually the first of two cooperative rounds
        (the others revoke first, the second round assigns), so this process knows its share
        only after the second. Rarely it is all there is (more processes than partitions):
        then it counts as known once a session timeout passed with nothing assigned."""
        def settle() -> None:
            if not self.ready and not self.owned:
                self.ready = True
                log.info("group: joined with no partition assigned (more processes than group.partitions=%d?)",
                         self.slots)

        asyncio.get_running_loop().call_later(self._session_s, settle)

    async def _solo_assigned(self, ks: list[int]) -> None:
        """The first assignment of a process that must run alone: every partition, or another process is here."""
        if len(ks) < self.slots:
            raise StartupError(
                f"group: this process must run alone ({self.solo}), but another process named {self.name!r} is "
                f"running (group {self.group_id!r} gave this one {len(ks)} of {self.slots} partitions); it stops "
                f"before reading anything. Stop the other process first")
        if self._solo_producer is not None:
            await self.worker.add_lane(DEFAULT_LANE, self._solo_producer())
        self.ready = True
        self.worker.wake_connectors()
        log.info("group: alone in group %r, as this process must be (%s); reading every unit", self.group_id, self.solo)

    async def _assigned(self, ks: list[int]) -> None:
        if self.worker.stopping():
            return
        t0 = time.monotonic()
        if self._make_producer is not None:
            # Fence the previous owner of each lane (and abort its open transaction) before
            # reading offsets: what it had not committed then never becomes visible.
            await asyncio.gather(*(self._add_lane(k) for k in ks))
        assert self.follower is not None
        caught_up = await self.follower.catch_up()
        self.owned.update(ks)
        self.ready = True
        self.worker.wake_connectors()
        took = time.monotonic() - t0
        self.pauses.append(("assign", took))
        METRICS.inc("bridge_group_rebalances_total", help="partitions assigned or revoked", kind="assign")
        log.info("group: assigned partitions %s (owning %d of %d) in %.0f ms (offsets caught up in %.0f ms)",
                 ks, len(self.owned), self.slots, took * 1000, caught_up * 1000)

    async def _add_lane(self, k: int) -> None:
        assert self._make_producer is not None
        errors = _ErrorTarget()
        producer = self._make_producer(f"{self.name}-p{k}", errors)
        lane = await self.worker.add_lane(f"p{k}", producer, errors=errors)
        del lane

    async def _revoked(self, ks: list[int], *, lost: bool) -> None:
        if self.worker.stopping():
            # Shutting down: the worker commits everything itself; the group must not hand
            # these partitions on before that, so wait for it.
            await self.worker.wait_shut_down()
            return
        t0 = time.monotonic()
        gone = set(ks)
        self.owned.difference_update(gone)
        lanes = [f"p{k}" for k in ks] if self.exactly_once else []
        described = next((lane for name in lanes if (lane := self.worker.lanes.get(name)) is not None), None)
        try:
            stopped = await self.worker.hand_over(lambda p: self.slot(p) in gone, lanes=lanes, lost=lost)
        except KafkaException as e:
            # A producer call of a lane being handed over refused (fenced, or its transaction
            # aborted by the broker after a freeze): the lane's one line says which.
            if described is None or not e.args or not isinstance(e.args[0], KafkaError):
                raise ProduceError(f"group: handing over partitions {ks} failed: {e}") from None
            raise ProduceError(described.commits.kafka_error("?", e.args[0])) from None
        if lost:
            self.guard.release()  # the group answered: the held units are gone, and nothing of theirs was written
        took = time.monotonic() - t0
        self.pauses.append(("lost" if lost else "revoke", took))
        METRICS.inc("bridge_group_rebalances_total", help="partitions assigned or revoked",
                    kind="lost" if lost else "revoke")
        log.info("group: %s partitions %s (owning %d of %d): %d readers handed over in %.0f ms",
                 "lost" if lost else "revoked", ks, len(self.owned), self.slots, stopped, took * 1000)


def check_group_topic(admin: Any, topic: str, slots: int) -> None:
    """The coordination topic must have exactly ``slots`` partitions: every worker hashes with it."""
    # All topics, not this one by name: a metadata request for one topic may auto-create it
    # (with the broker's default partition count).
    meta = admin.list_topics(timeout=10).topics.get(topic)
    if meta is not None and meta.error is None and len(meta.partitions) != slots:
        raise ConfigError(
            f"group.partitions: {slots}, but coordination topic {topic!r} has {len(meta.partitions)} partitions; "
            f"set group.partitions: {len(meta.partitions)} (every process of one name must agree)"
        )
