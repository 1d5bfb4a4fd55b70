"""The poll scheduler with real shard readers, the real client and pool, over the Streams double.

What must hold at scale (issue 12): GetRecords in flight never exceed the scheduler's slots
(seen from the server), shards are served in turn when requests are scarce (a busy shard
does not crowd out idle ones), DescribeStream and GetShardIterator get through while every
GetRecords slot is taken, and adaptive idle polling backs off and resets on the first record.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bridge.task import Batch
from connectors.dynamodb.client import AwsJsonClient, make_clients
from connectors.dynamodb.config import StreamConfig
from connectors.dynamodb.http import KeepAlivePool
from connectors.dynamodb.records import StreamContext
from connectors.dynamodb.scheduler import PollScheduler
from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.streams import Shard, ShardReader, list_shards
from tests.doubles.streams_double import StreamsDouble

KEY = (KeyField("pk", "S"),)


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def make_double() -> Any:
    made: list[StreamsDouble] = []

    def make(shards: int) -> StreamsDouble:
        d = StreamsDouble(table="t", key_schema=(("pk", "S"),), shards=shards).start()
        made.append(d)
        return d

    yield make
    for d in made:
        d.faults.clear()
        d.stop()
    assert not [e for d in made for e in d.server_errors]


@contextlib.asynccontextmanager
async def streams_client(d: StreamsDouble, slots: int, pool_size: int = 64) -> AsyncIterator[AwsJsonClient]:
    async with KeepAlivePool(max_connections=pool_size) as pool:
        _, streams = make_clients(region="us-east-1", profile=None, endpoint_url=d.endpoint_url,
                                  streams_endpoint_url=None, http=pool)
        PollScheduler(records_slots=slots).attach(streams)
        yield streams


def reader(streams: AwsJsonClient, d: StreamsDouble, shard_id: str, config: StreamConfig) -> ShardReader:
    ctx = StreamContext("topic", d.table, d.region, KEY, d.stream_arn, shard_id)
    return ShardReader(streams=streams, ctx=ctx, shard=Shard(shard_id, (), None, None),
                       start=("TRIM_HORIZON", None), config=config)


async def drive(r: ShardReader, batches: list[Batch]) -> None:
    """What the worker does with a task: poll it again and again."""
    while True:
        batches.append(await r.poll())


async def until(cond: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    """Wait for a condition, checked as the loop runs; fail naming it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def running(coros: list[Awaitable[None]], body: Callable[[], Awaitable[None]]) -> None:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await body()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]


def test_getrecords_in_flight_never_exceed_the_slots(make_double: Any) -> None:
    d = make_double(12)
    d.faults.add("slow", op="GetRecords", times=None, delay=0.03)

    async def scenario() -> None:
        async with streams_client(d, slots=3) as streams:
            config = StreamConfig(poll_interval_ms=1)
            readers = [reader(streams, d, sid, config) for sid in d.open_shard_ids()]
            out: list[Batch] = []
            await running([drive(r, out) for r in readers],
                          lambda: until(lambda: d.calls["GetRecords"] >= 48, "48 GetRecords"))

    asyncio.run(scenario())
    assert d.max_in_flight["GetRecords"] == 3  # the bound was reached, and never passed
    assert all(d.calls.count("GetRecords", shard=s) >= 1 for s in d.open_shard_ids())


def test_scarce_slots_serve_every_shard_in_turn_and_a_busy_shard_no_more(make_double: Any) -> None:
    d = make_double(12)
    busy = d.open_shard_ids()[0]
    for i in range(3000):
        d.put({"pk": {"S": f"k{i}"}}, shard=busy)
    d.faults.add("slow", op="GetRecords", times=None, delay=0.005)

    async def scenario() -> dict[str, int]:
        async with streams_client(d, slots=2) as streams:
            # 12 shards always due (1 ms interval), 2 slots: demand far above what is served
            config = StreamConfig(poll_interval_ms=1, max_records_per_call=5)
            readers = {sid: reader(streams, d, sid, config) for sid in d.open_shard_ids()}
            out: list[Batch] = []
            await running([drive(r, out) for r in readers.values()],
                          lambda: until(lambda: d.calls["GetRecords"] >= 240, "240 GetRecords"))
            assert sum(len(b.records) for b in out) > 0  # the busy shard moved on
            return {sid: d.calls.count("GetRecords", shard=sid) for sid in readers}

    counts = asyncio.run(scenario())
    assert max(counts.values()) - min(counts.values()) <= 3, counts
    assert counts[busy] <= min(counts.values()) + 3, counts  # data does not buy a shard more turns


def test_discovery_and_iterators_get_through_while_every_getrecords_slot_is_taken(make_double: Any) -> None:
    d = make_double(6)
    stuck = d.faults.add("slow", op="GetRecords", times=None, delay=60)  # answered only when the double stops

    async def scenario() -> None:
        async with streams_client(d, slots=2, pool_size=8) as streams:
            scheduler: PollScheduler = streams.scheduler  # type: ignore[attr-defined]
            config = StreamConfig(poll_interval_ms=1)
            ids = d.open_shard_ids()
            readers = [reader(streams, d, sid, config) for sid in ids[:5]]
            out: list[Batch] = []

            async def while_stuck() -> None:
                await until(lambda: d.in_flight["GetRecords"] == 2 and scheduler.waiting == 3,
                            "2 GetRecords stuck in the server and 3 readers queued")
                shards, _ = await asyncio.wait_for(list_shards(streams, d.stream_arn), 10)
                assert len(shards) == 6
                it = await asyncio.wait_for(streams.call("GetShardIterator", {
                    "StreamArn": d.stream_arn, "ShardId": ids[5], "ShardIteratorType": "TRIM_HORIZON"}), 10)
                assert it["ShardIterator"]
                assert d.in_flight["GetRecords"] == 2 and scheduler.in_flight == 2  # still all taken
                assert d.max_in_flight["GetRecords"] == 2

            await running([drive(r, out) for r in readers], while_stuck)

    asyncio.run(scenario())
    assert stuck.fired >= 2
    assert d.calls["DescribeStream"] >= 1


def test_idle_back_off_doubles_to_the_cap_and_the_first_record_resets_it(make_double: Any) -> None:
    d = make_double(1)
    sid = d.open_shard_ids()[0]

    async def waits(config: StreamConfig, polls: int, write_at: int | None = None) -> list[tuple[int, float]]:
        """(records in the batch, wait the reader scheduled after it) for each poll."""
        async with streams_client(d, slots=4) as streams:
            r = reader(streams, d, sid, config)
            loop = asyncio.get_running_loop()
            out = []
            for i in range(polls):
                if i == write_at:
                    d.put({"pk": {"S": f"k{i}"}})
                batch = await r.poll()
                out.append((len(batch.records), r.due - loop.time()))
            return out

    adaptive = asyncio.run(waits(StreamConfig(poll_interval_ms=20, max_idle_poll_interval_ms=160), 9, write_at=6))
    assert [n for n, _ in adaptive] == [0, 0, 0, 0, 0, 0, 1, 0, 0]
    w = [round(x, 3) for _, x in adaptive]
    assert 0.008 <= w[0] <= 0.020  # an idle spell's first wait: drawn from [interval/2, interval]
    for got, want in zip(w[1:6], (0.040, 0.080, 0.160, 0.160, 0.160), strict=True):
        assert want - 0.003 <= got <= want, w  # doubling up to the cap
    assert w[6] <= 0.001  # records: again at once
    assert 0.008 <= w[7] <= 0.020 and 0.037 <= w[8] <= 0.040, w  # reset to poll_interval_ms, then doubling

    fixed = asyncio.run(waits(StreamConfig(poll_interval_ms=20), 6))
    assert all(x <= 0.020 for _, x in fixed) and fixed[-1][1] >= 0.017  # off: always poll_interval_ms


def test_turns_go_by_due_time_then_arrival_and_a_cancelled_waiter_gives_its_place_on() -> None:
    async def scenario() -> list[str]:
        sched = PollScheduler(records_slots=1)
        loop = asyncio.get_running_loop()
        now = loop.time()
        order: list[str] = []
        await sched.turn(now)  # hold the only slot

        async def ask(name: str, due: float) -> None:
            await sched.turn(due)
            order.append(name)
            sched.done()

        tasks = {n: asyncio.ensure_future(ask(n, now + dt)) for n, dt in
                 (("late", 0.02), ("first", -1.0), ("second", -1.0), ("gone", -2.0), ("soon", 0.01))}
        await until(lambda: sched.waiting == 5, "five waiters")
        tasks["gone"].cancel()  # first in line, cancelled: must not keep the slot
        await asyncio.sleep(0)
        sched.done()
        await asyncio.wait_for(asyncio.gather(*(t for n, t in tasks.items() if n != "gone")), 5)
        assert sched.in_flight == 0
        return order

    assert asyncio.run(scenario()) == ["first", "second", "soon", "late"]
