"""The worker's side of the pause guard (bridge/pause_guard.py) and of a lost hand-over,
against the in-memory producer of test_worker: while ``held()`` nothing read is handed to the
producer and no offset is written; a unit lost to another worker has its offset forgotten."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bridge.ownership import OwnEverything
from bridge.task import Batch, SourceTask
from tests.unit.test_worker import PARTITION, FakeProducer, data, make_worker, record

OFFSETS = "t.offsets"


def offset_writes(producer: FakeProducer) -> list[bytes | None]:
    return [m.value() for m in producer.produced if m.topic() == OFFSETS]


class PausedMidRead(SourceTask):
    """Hands out one batch, and the process "freezes" while it was being read (``on_read``)."""

    def __init__(self, on_read: Callable[[], None]) -> None:
        self.partition = dict(PARTITION)
        self._on_read = on_read
        self._done = False

    async def poll(self) -> Batch:
        if self._done:
            await asyncio.Event().wait()
        self._done = True
        self._on_read()
        return Batch([record(i) for i in range(3)], {"seq": 2})


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.005)


class HeldWhile(OwnEverything):
    """A group worker's ownership, held while ``held()`` says (a pause past its session)."""

    def __init__(self, held: Callable[[], bool]) -> None:
        self._held = held

    def held(self) -> bool:
        return self._held()


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 20))


def test_a_batch_read_before_a_pause_waits_while_held_and_goes_on_after() -> None:
    held = False

    def freeze() -> None:
        nonlocal held
        held = True

    producer = FakeProducer()
    worker, offsets = make_worker(producer, PausedMidRead(freeze), ownership=HeldWhile(lambda: held))

    async def main() -> None:
        nonlocal held
        task = asyncio.create_task(worker.run())
        await until(lambda: held)
        await asyncio.sleep(0.1)  # many flush intervals (10 ms) pass while held
        assert data(producer) == [] and offset_writes(producer) == []
        held = False
        await until(lambda: offsets.offset(PARTITION) == {"seq": 2})
        worker.stop()
        await task

    run(main)
    assert len(data(producer)) == 3


def test_offsets_wait_while_held() -> None:
    """Acknowledged records whose offset is due: the flush writes nothing until the hold ends."""
    held = False
    producer = FakeProducer()
    producer.hold = True  # acknowledgements come only when the test says
    worker, offsets = make_worker(producer, PausedMidRead(lambda: None), ownership=HeldWhile(lambda: held))

    async def main() -> None:
        nonlocal held
        task = asyncio.create_task(worker.run())
        await until(lambda: len(data(producer)) == 3)
        held = True
        producer.hold = False  # acknowledged while held
        await asyncio.sleep(0.1)
        assert offset_writes(producer) == [] and offsets.offset(PARTITION) is None
        held = False
        await until(lambda: offsets.offset(PARTITION) == {"seq": 2})
        worker.stop()
        await task

    run(main)


def _handed_over(lost: bool) -> tuple[FakeProducer, object]:
    producer = FakeProducer()
    # A flush interval longer than the test: the offset is still unwritten at the hand-over.
    worker, offsets = make_worker(producer, PausedMidRead(lambda: None), flush_interval_s=60)

    async def main() -> None:
        task = asyncio.create_task(worker.run())
        await until(lambda: len(data(producer, "delivered")) == 3)
        await worker.hand_over(lambda p: True, lost=lost)
        worker.stop()
        await task

    run(main)
    return producer, offsets.offset(PARTITION)


def test_a_lost_unit_has_its_offset_forgotten_not_written() -> None:
    """The next owner may be past it: writing it (then, or at shutdown) would move its offset back."""
    producer, stored = _handed_over(lost=True)
    assert offset_writes(producer) == [] and stored is None
    producer, stored = _handed_over(lost=False)  # a revocation commits it
    assert offset_writes(producer) == [b'{"seq":2}'] and stored == {"seq": 2}
