"""``run --until-caught-up`` must never call an empty start "caught up" (issue 18, bug 11).

Caught up means: the worker started its connectors and knows its share (in a group, its
first assignment is done), every connector listed its source at least once, and every task
it runs read to its end. On Apache Kafka over SASL_SSL the old check ran 200 ms after start,
before the worker had created a single connector (its exactly-once lane was still in
``init_transactions``), found nothing unfinished and stopped: 0 of 40 changes, exit 0.
Each case below slows one of those steps well past the check's 200 ms interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import pytest

from bridge.ownership import OwnEverything
from bridge.task import Batch, SourceConnector, SourceTask, TaskRuntime
from bridge_app.wiring import until_caught_up_hook
from tests.unit.test_worker import TOPIC, FakeProducer, make_worker, record

RECORDS = 40


class ShardTask(SourceTask):
    """A shard with RECORDS changes in 4 pages, then its current end (the stream is open)."""

    def __init__(self) -> None:
        self.partition = {"shard": "s-1"}
        self.pages = [Batch([record(p * 10 + i) for i in range(10)], {"seq": p * 10 + 9}) for p in range(4)]

    async def poll(self) -> Batch:
        if self.pages:
            return self.pages.pop(0)
        await asyncio.sleep(0.02)
        return Batch([], {"seq": RECORDS - 1}, extra={"caught_up": True})


class SlowlyListedStream(SourceConnector):
    """Lists its shards after ``listing_s`` (a slow DescribeStream), then starts the reader."""

    def __init__(self, listing_s: float) -> None:
        self.name = "streams:t"
        self.listing_s = listing_s
        self.listed = False

    async def validate(self) -> None:
        return None

    async def run(self, runtime: TaskRuntime) -> None:
        self.runtime = runtime
        await asyncio.sleep(self.listing_s)
        self.listed = True
        while not runtime.owns({"shard": "s-1"}):  # in a group: until the assignment gives it here
            await asyncio.sleep(0.05)
        runtime.start_task(ShardTask())
        await asyncio.Event().wait()

    def pending(self) -> bool:
        """As the Streams connector: unlisted, or a shard of its own not started; a shard this
        process does not own is another process's business."""
        return not self.listed or (self.runtime.owns({"shard": "s-1"}) and not self.runtime.running({"shard": "s-1"}))

    def task_finished(self, task: SourceTask, batch: Batch) -> None:
        pass


class SlowInit(FakeProducer):
    """``init_transactions`` as on a broker that creates its transaction log first."""

    def init_transactions(self, timeout: float = 0) -> None:
        time.sleep(1.0)


class AssignedAfter(OwnEverything):
    """A group of one: every unit, once its first assignment is done ``after_s`` from now."""

    def __init__(self, after_s: float) -> None:
        self.t0 = time.monotonic()
        self.after_s = after_s

    def ready(self) -> bool:
        return time.monotonic() - self.t0 >= self.after_s

    def owns(self, partition: Mapping[str, Any]) -> bool:
        return self.ready()


def _run(producer: FakeProducer, connector: SourceConnector, *, ready_after_s: float | None = None,
         **settings: Any) -> int:
    ownership = AssignedAfter(ready_after_s) if ready_after_s is not None else None
    worker, _ = make_worker(producer, ShardTask(), ownership=ownership, **settings)  # its connector is replaced below
    worker.connectors[:] = [connector]

    async def main() -> None:
        until_caught_up_hook(worker)
        await asyncio.wait_for(worker.run(), 30)

    asyncio.run(main())
    return sum(1 for m in producer.produced if m.topic() == TOPIC)


@pytest.mark.parametrize("case", ["slow exactly-once start", "slow shard listing", "group assignment pending"])
def test_until_caught_up_reads_everything_before_it_stops(case: str) -> None:
    if case == "slow exactly-once start":
        produced = _run(SlowInit(), SlowlyListedStream(0.0), exactly_once=True)
    elif case == "slow shard listing":
        produced = _run(FakeProducer(), SlowlyListedStream(1.0))
    else:
        # The group's first assignment (a join takes seconds): until then nothing is owned, so
        # nothing runs and nothing is pending; only the worker knows it is not ready.
        produced = _run(FakeProducer(), SlowlyListedStream(0.0), ready_after_s=1.0)
    assert produced == RECORDS, f"{case}: stopped as caught up after {produced} of {RECORDS} changes"
