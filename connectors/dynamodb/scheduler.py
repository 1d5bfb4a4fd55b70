"""Which shard calls GetRecords next: one scheduler per Streams client (and its connection pool).

Why: with a free-running loop per shard every reader asks as soon as its own timer fires,
so thousands of shards put thousands of requests into the HTTP pool at once; the pool then
holds a long queue, and DescribeStream and GetShardIterator wait behind it (measured: at
3,000 idle shards a full listing took ~30 minutes). Here readers ask for a *turn*:

- due readers wait in a heap ordered by (due time, arrival), so the one waiting longest
  goes first; idle shards are served in turn, none starves, and a reader whose page had
  records (due "now") goes behind those already due, so busy shards cannot crowd out idle
  ones either;
- at most ``records_slots`` GetRecords are in flight, fewer than the pool's connections per
  endpoint, so the pool never queues;
- GetShardIterator and DescribeStream have their own lanes (``iterator_slots``,
  ``discovery_slots``), bounded per attempt by the client, so they never wait behind
  GetRecords and GetRecords never waits behind them.

The scheduler decides only who goes next. Per-shard state (iterator, position, idle
back-off, retry count) stays in the reader, and a reader the worker holds back
(backpressure: too many of its records in flight) simply does not ask for a turn. One
timer is armed for the earliest due reader instead of one sleeping task per shard.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

from bridge.metrics import METRICS

__all__ = ["DISCOVERY_SLOTS", "ITERATOR_SLOTS", "PollScheduler", "RECORDS_SLOTS", "scheduler_for"]

# Sized together with the connection pool (``KeepAlivePool(max_connections=256)`` per endpoint):
# all lanes full is 148 requests, so the pool never queues. 128 GetRecords in flight at ~20-40 ms
# per call on AWS is 3,000-6,000 calls/s, more than one process's CPU serves.
RECORDS_SLOTS = 128
ITERATOR_SLOTS = 16
DISCOVERY_SLOTS = 4
_EARLY = 0.0005  # a reader due within this is served now rather than by another timer


class PollScheduler:
    """A time-ordered queue of readers waiting for a GetRecords slot, and the control lanes."""

    def __init__(self, *, records_slots: int = RECORDS_SLOTS, iterator_slots: int = ITERATOR_SLOTS,
                 discovery_slots: int = DISCOVERY_SLOTS) -> None:
        if records_slots < 1:
            raise ValueError("records_slots must be >= 1")
        self.records_slots = records_slots
        self._free = records_slots
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self.iterators = asyncio.Semaphore(iterator_slots)
        self.discovery = asyncio.Semaphore(discovery_slots)
        self.granted = 0  # turns given, for tests and metrics

    @property
    def in_flight(self) -> int:
        return self.records_slots - self._free

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._heap if not f.done())

    def overdue(self) -> int:
        """Readers past their due time still waiting for a slot: above zero for long, the
        process asks for more GetRecords than it serves (CPU or the endpoint's latency)."""
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:  # asked from another thread (the metrics server): the loop's clock is monotonic
            import time

            now = time.monotonic()
        return sum(1 for due, _, f in list(self._heap) if due <= now and not f.done())

    async def turn(self, due: float) -> None:
        """Wait until ``due`` (event-loop time) and a free slot; the caller then holds the slot
        and must call ``done()`` once its GetRecords is answered (or failed)."""
        loop = asyncio.get_running_loop()
        if self._free and not self._heap and due <= loop.time():
            self._free -= 1  # nobody waits ahead: no heap entry, no future
            self.granted += 1
            return
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._heap, (due, next(self._order), fut))
        self._dispatch()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.done()  # granted as we were cancelled: hand the slot on
            raise

    def done(self) -> None:
        """Give back a slot taken by ``turn``."""
        self._free += 1
        if self._heap:
            self._dispatch()

    def _dispatch(self) -> None:
        heap = self._heap
        if not heap:
            return
        now = asyncio.get_running_loop().time() + _EARLY
        while heap and self._free:
            due, _, fut = heap[0]
            if fut.done():  # cancelled while waiting
                heapq.heappop(heap)
                continue
            if due > now:
                break
            heapq.heappop(heap)
            self._free -= 1
            self.granted += 1
            fut.set_result(None)
        while heap and heap[0][2].done():
            heapq.heappop(heap)
        if heap and self._free:
            self._arm(heap[0][0])

    def _arm(self, at: float) -> None:
        """One timer, for the earliest due reader (the only one that can be next)."""
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_at(at, self._fire)

    def attach(self, streams: Any) -> PollScheduler:
        """Make this the scheduler of a Streams client, and its DescribeStream / GetShardIterator
        lanes the client's (``AwsJsonClient.lanes``, taken per attempt)."""
        streams.scheduler = self
        lanes = getattr(streams, "lanes", None)
        if isinstance(lanes, dict):
            lanes["GetShardIterator"] = self.iterators
            lanes["DescribeStream"] = self.discovery
        return self

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        self._dispatch()


def scheduler_for(streams: Any) -> PollScheduler:
    """The scheduler of a Streams client, made on first use; readers sharing a client share it.

    It also installs the control lanes on the client (``AwsJsonClient.lanes``), so every
    DescribeStream and GetShardIterator attempt takes a place in its own lane.
    """
    sched = getattr(streams, "scheduler", None)
    if sched is None:
        sched = PollScheduler().attach(streams)
        METRICS.gauge("bridge_getrecords_in_flight", lambda: sched.in_flight, "GetRecords calls in flight")
        METRICS.gauge("bridge_shards_overdue", sched.overdue,
                      "shard readers past their due time waiting for a GetRecords slot")
    return sched
