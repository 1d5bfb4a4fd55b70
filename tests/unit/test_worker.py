"""The worker's produce path against an in-memory producer: order, offsets after acks,
queue-full waits that do not hold the event loop, refused records to the dead-letter topic,
and half-produced batches that never have their offset committed."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from bridge.errors import ProduceError
from bridge.offsets import OffsetStore
from bridge.ownership import Ownership
from bridge.serde.serializer import RecordSerializer
from bridge.task import Batch, SourceConnector, SourceRecord, SourceTask, TaskRuntime, partition_key
from bridge.worker import Worker, WorkerSettings
from connectors.dynamodb.envelope import change_record, envelope_schema
from connectors.dynamodb.schemas import KeyField

TOPIC = "t.data"
KEY_FIELDS = (KeyField("pk", "S"),)
PARTITION = {"shard": "s-1"}

Delivery = Callable[[KafkaError | None, Any], None]


class _Registry:
    def register(self, subject: str, schema_str: str) -> int:
        return 7

    def lookup(self, subject: str, schema_str: str) -> Any:
        return None


class _Msg:
    def __init__(self, topic: str, key: bytes | None, value: bytes | None, headers: Any) -> None:
        self._topic, self._key, self._value, self._headers = topic, key, value, headers

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Any:
        return self._headers


class FakeProducer:
    """librdkafka's local queue in miniature: ``capacity`` messages, delivered on poll in order.

    ``refuse(msg)`` makes the broker refuse a message (MSG_SIZE_TOO_LARGE) on delivery;
    ``hold`` keeps everything queued (a paused broker).
    """

    def __init__(self, capacity: int = 1_000_000, refuse: Callable[[_Msg], bool] | None = None) -> None:
        self.capacity = capacity
        self.refuse = refuse or (lambda m: False)
        self.hold = False
        self.queue: deque[tuple[_Msg, Delivery | None]] = deque()
        self.produced: list[_Msg] = []
        self.delivered: list[_Msg] = []
        self.queue_full = 0
        self.commits: list[list[_Msg]] = []  # exactly-once: what each commit covered

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                on_delivery: Delivery | None = None, headers: Any = None) -> None:
        if len(self.queue) >= self.capacity:
            self.queue_full += 1
            raise BufferError("queue full")
        msg = _Msg(topic, key, value, headers)
        self.produced.append(msg)
        self.queue.append((msg, on_delivery))

    def __len__(self) -> int:
        """librdkafka's outq_len: messages queued or in flight (delivery reports not yet served)."""
        return len(self.queue)

    def poll(self, timeout: float = 0) -> int:
        if self.hold:
            return 0
        served = 0
        while self.queue:
            msg, cb = self.queue.popleft()
            self.delivered.append(msg)
            served += 1
            if cb is not None:
                err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if self.refuse(msg) else None
                cb(err, msg)
        return served

    def flush(self, timeout: float = 0) -> int:
        self.hold = False
        self.poll()
        return 0

    def purge(self) -> None:
        """As librdkafka: queued messages fail with _PURGE_QUEUE on the next poll."""
        purged, self.queue = self.queue, deque()
        for msg, cb in purged:
            if cb is not None:
                cb(KafkaError(KafkaError._PURGE_QUEUE), msg)

    def list_topics(self, *a: Any, **kw: Any) -> None:
        return None

    # exactly-once
    def init_transactions(self, timeout: float = 0) -> None:
        pass

    def begin_transaction(self) -> None:
        self._txn_start = len(self.produced)

    def commit_transaction(self, timeout: float = 0) -> None:
        self.flush()
        self.commits.append(self.produced[getattr(self, "_txn_start", 0):])

    def abort_transaction(self, timeout: float = 0) -> None:
        self.commits.append([])


class ListTask(SourceTask):
    def __init__(self, batches: list[Batch], gate: asyncio.Event | None = None) -> None:
        self.partition = dict(PARTITION)
        self._batches = deque(batches)
        self._gate = gate

    async def poll(self) -> Batch:
        if not self._batches and self._gate is not None:
            await self._gate.wait()
        return self._batches.popleft()


class OneTask(SourceConnector):
    def __init__(self, task: SourceTask) -> None:
        self.name = "test"
        self.task = task
        self.worker: Worker | None = None

    async def validate(self) -> None:
        return None

    async def run(self, runtime: TaskRuntime) -> None:
        runtime.start_task(self.task)
        await asyncio.Event().wait()

    def task_finished(self, task: SourceTask, batch: Batch) -> None:
        assert self.worker is not None
        self.worker.stop()


def record(seq: int, pk: str = "", *, tombstone: bool = False) -> SourceRecord:
    key = {"pk": {"S": pk or f"k{seq}"}}
    return change_record(TOPIC, envelope_schema("tbl", KEY_FIELDS), key, "d" if tombstone else "u", None, None, {"seq": seq}, 0,
                        tombstone=tombstone, encoded_key=(pk or f"k{seq}").encode(),
                        encoded_value=None if tombstone else f"v{seq}".encode())


def batches(n: int, size: int, *, final: bool = True) -> list[Batch]:
    out = [Batch([record(b * size + i) for i in range(size)], {"seq": (b + 1) * size - 1}) for b in range(n)]
    if final:
        out.append(Batch([], {"seq": n * size - 1}, final=True, reason="shard-end"))
    return out


def make_worker(producer: FakeProducer, task: SourceTask, *, ownership: Ownership | None = None,
                **settings: Any) -> tuple[Worker, OffsetStore]:
    connector = OneTask(task)
    offsets = OffsetStore({"bootstrap.servers": "unused:9"}, "t.offsets", "test")
    defaults: dict[str, Any] = {"connector_name": "test", "flush_interval_s": 0.01, "shutdown_timeout_s": 0.5}
    worker = Worker(WorkerSettings(**(defaults | settings)), [connector], producer,  # type: ignore[arg-type]
                    offsets, RecordSerializer(_Registry()), ownership)
    connector.worker = worker
    return worker, offsets


def data(producer: FakeProducer, attr: str = "produced") -> list[_Msg]:
    return [m for m in getattr(producer, attr) if m.topic() == TOPIC]


def test_queue_full_waits_without_holding_the_loop_and_keeps_order() -> None:
    producer = FakeProducer(capacity=7)
    worker, offsets = make_worker(producer, ListTask(batches(5, 20)))
    ticks = 0

    async def main() -> None:
        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        beat = asyncio.create_task(heartbeat())
        await asyncio.wait_for(worker.run(), 20)
        beat.cancel()

    asyncio.run(main())
    assert producer.queue_full > 0, "the test did not fill the queue"
    assert [m.key() for m in data(producer)] == [b"\x00\x00\x00\x00\x07" + f"k{i}".encode() for i in range(100)]
    assert ticks > producer.queue_full // 2, "the event loop was held while the queue was full"
    assert offsets.offset(PARTITION) == {"seq": 99}
    assert worker.records_produced == 100
    assert worker.in_flight() == 0 and worker._buffered_bytes == 0 and worker._records_in_flight == 0


def test_refused_records_go_to_the_dead_letter_topic_with_their_own_source() -> None:
    # k1 refused; a delete of k2 with its tombstone, then a second delete of k2 with its
    # tombstone: both tombstones are refused and are identical messages.
    records = [record(0), record(1), record(2, "k2"), record(2, "k2", tombstone=True), record(3),
               record(4, "k2"), record(4, "k2", tombstone=True)]
    refused = {b"\x00\x00\x00\x00\x07k1"}
    producer = FakeProducer(refuse=lambda m: m.topic() == TOPIC and (m.key() in refused or m.value() is None))
    task = ListTask([Batch(records, {"seq": 4}), Batch([], {"seq": 4}, final=True)])
    worker, offsets = make_worker(producer, task, dead_letter_topic="t.dlq")
    asyncio.run(worker.run())
    letters = [m for m in producer.delivered if m.topic() == "t.dlq"]
    positions = sorted((m.key(), m.value(), json.loads(dict(m.headers())["__bridge.source.position"])["seq"])
                       for m in letters)
    assert positions == [(b"\x00\x00\x00\x00\x07k1", b"\x00\x00\x00\x00\x07v1", 1),
                         (b"\x00\x00\x00\x00\x07k2", None, 2), (b"\x00\x00\x00\x00\x07k2", None, 4)]
    assert worker.records_dead_lettered == 3
    assert offsets.offset(PARTITION) == {"seq": 4}
    assert worker.in_flight() == 0 and worker._buffered_bytes == 0


def test_dead_letters_wait_for_room_in_a_full_queue() -> None:
    """A dead-letter message met by a full queue waits (in order) instead of stopping the worker,
    and the batch's offset waits for it."""
    bad = [change_record(TOPIC, envelope_schema("tbl", KEY_FIELDS), {"pk": {"N": "not a string"}}, "u", None, {"x": {"S": "1"}},
                        {"seq": seq}, 0) for seq in (3, 5)]
    records = [record(0), record(1), record(2), bad[0], record(4), bad[1], record(6)]
    producer = FakeProducer(capacity=3)
    dlq_full = 0
    produce = producer.produce

    def counting_produce(topic: str, *args: Any, **kw: Any) -> None:
        nonlocal dlq_full
        try:
            produce(topic, *args, **kw)
        except BufferError:
            dlq_full += topic == "t.dlq"
            raise

    producer.produce = counting_produce  # type: ignore[method-assign]
    task = ListTask([Batch(records, {"seq": 6}), Batch([], {"seq": 6}, final=True)])
    worker, offsets = make_worker(producer, task, dead_letter_topic="t.dlq")
    asyncio.run(asyncio.wait_for(worker.run(), 20))
    assert dlq_full > 0, "the test did not meet a full queue on the dead-letter path"
    letters = [m for m in producer.delivered if m.topic() == "t.dlq"]
    assert [json.loads(dict(m.headers())["__bridge.source.position"])["seq"] for m in letters] == [3, 5]
    assert [m.key() for m in data(producer, "delivered")] == [b"\x00\x00\x00\x00\x07k" + str(i).encode()
                                                              for i in (0, 1, 2, 4, 6)]
    assert worker.records_dead_lettered == 2 and offsets.offset(PARTITION) == {"seq": 6}
    assert worker.in_flight() == 0 and worker._buffered_bytes == 0


def test_refused_record_with_tolerance_none_stops_and_keeps_the_offset() -> None:
    producer = FakeProducer(refuse=lambda m: m.key() == b"\x00\x00\x00\x00\x07k3")
    worker, offsets = make_worker(producer, ListTask(batches(3, 2)))
    try:
        asyncio.run(worker.run())
    except Exception as e:  # noqa: BLE001
        assert "cannot be written" in str(e)
    else:
        raise AssertionError("the worker did not stop")
    assert offsets.offset(PARTITION) in (None, {"seq": 1})


def test_half_produced_batch_never_has_its_offset_committed() -> None:
    producer = FakeProducer(capacity=5)
    gate = asyncio.Event()  # the task never ends on its own: the worker is stopped mid-batch
    task = ListTask([Batch([record(i) for i in range(3)], {"seq": 2}),
                     Batch([record(i) for i in range(3, 15)], {"seq": 14})], gate)
    worker, offsets = make_worker(producer, task)

    async def main() -> None:
        run = asyncio.create_task(worker.run())
        while len(data(producer)) < 3:
            await asyncio.sleep(0.001)
        producer.hold = True  # the broker stops answering: the second batch stays half produced
        while not producer.queue_full:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)  # flush intervals pass while the batch is half produced
        producer.hold = False
        worker.stop()
        await asyncio.wait_for(run, 20)

    asyncio.run(main())
    assert 3 < len(data(producer)) < 15
    assert offsets.offset(PARTITION) == {"seq": 2}


def test_exactly_once_commits_whole_batches_only() -> None:
    producer = FakeProducer(capacity=9)
    worker, offsets = make_worker(producer, ListTask(batches(6, 10)), exactly_once=True, flush_interval_s=0.001)

    async def main() -> None:
        async def throttle() -> None:  # deliver slowly, so batches wait half produced
            while True:
                producer.hold = not producer.hold
                await asyncio.sleep(0.002)

        t = asyncio.create_task(throttle())
        await asyncio.wait_for(worker.run(), 20)
        t.cancel()

    asyncio.run(main())
    assert producer.queue_full > 0
    seen = 0
    for commit in producer.commits:
        n = len([m for m in commit if m.topic() == TOPIC])
        seen += n
        assert seen % 10 == 0, f"a transaction ended inside a batch ({seen} records committed)"
        for m in commit:
            if m.topic() == "t.offsets":
                assert json.loads(m.value()) == {"seq": seen - 1}
    assert seen == 60
    assert offsets.offset(PARTITION) == {"seq": 59}


def test_exactly_once_fenced_while_writing_offsets_stops_the_worker() -> None:
    """librdkafka reports fencing on produce() as a fatal error; met while the commit writes
    the offsets, it must stop the worker with the 'fenced' line, not end the flush loop."""

    class Fenced(FakeProducer):
        def produce(self, topic: str, *a: Any, **kw: Any) -> None:
            if topic == "t.offsets":
                raise KafkaException(KafkaError(KafkaError._FATAL))
            super().produce(topic, *a, **kw)

    gate = asyncio.Event()
    worker, _ = make_worker(Fenced(), ListTask(batches(2, 5, final=False), gate), exactly_once=True)
    with pytest.raises(Exception, match="fenced"):
        asyncio.run(asyncio.wait_for(worker.run(), 20))


def test_exactly_once_fenced_at_the_next_begin_transaction_stops_with_one_line() -> None:
    """A fence (or a broker-side abort) can surface first at begin_transaction after a commit;
    that KafkaException must stop the worker as a ProduceError naming it, never escape raw
    (the CLI would call a raw KafkaException a bug)."""

    class FencedAtBegin(FakeProducer):
        begins = 0

        def begin_transaction(self) -> None:
            self.begins += 1
            if self.begins > 1:  # the first begins the first transaction; the next follows its commit
                raise KafkaException(KafkaError(KafkaError._FENCED, "Failed to add partitions to transaction",
                                                fatal=True))
            super().begin_transaction()

    gate = asyncio.Event()
    worker, _ = make_worker(FencedAtBegin(), ListTask(batches(2, 5, final=False), gate), exactly_once=True)
    with pytest.raises(ProduceError, match="fenced"):
        asyncio.run(asyncio.wait_for(worker.run(), 20))


def test_a_producer_poll_loop_that_dies_of_a_bug_stops_the_worker() -> None:
    """Without the stop, nothing would serve acknowledgements again and the bridge would only
    stall (found: a wrapped producer without __len__ broke the idle check of the poll loop)."""

    class Broken(FakeProducer):
        def __len__(self) -> int:
            raise TypeError("object has no len()")

    worker, _ = make_worker(Broken(), ListTask(batches(2, 5, final=False), asyncio.Event()))
    with pytest.raises(ProduceError, match="producer poll .* failed: TypeError"):
        asyncio.run(asyncio.wait_for(worker.run(), 20))


def test_unconvertible_record_with_tolerance_none_keeps_the_offset_before_it() -> None:
    """errors.tolerance = none: the worker stops, and however fast the rest of the batch is
    acknowledged, the offset covering the bad record is never written."""
    bad = change_record(TOPIC, envelope_schema("tbl", KEY_FIELDS), {"pk": {"N": "not a string key"}}, "u", None, {"x": {"S": "1"}},
                       {"seq": 3}, 0)
    first = Batch([record(0), record(1)], {"seq": 1})
    second = Batch([record(2), bad, record(4)], {"seq": 4})
    producer = FakeProducer()
    worker, offsets = make_worker(producer, ListTask([first, second, Batch([], {"seq": 4}, final=True)]))
    with pytest.raises(Exception, match="cannot be written"):
        asyncio.run(asyncio.wait_for(worker.run(), 20))
    assert offsets.offset(PARTITION) in (None, {"seq": 1})


class CountingProducer(FakeProducer):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.polls = 0

    def poll(self, timeout: float = 0) -> int:
        self.polls += 1
        return super().poll(timeout)


def test_idle_poll_loop_waits_for_work_instead_of_spinning() -> None:
    """Issue 11: with nothing in flight the loop woke 500 times a second (sleep(0.002)).
    Now it waits for the next produce; a record produced later is still acknowledged."""
    producer = CountingProducer()
    gate = asyncio.Event()
    worker, offsets = make_worker(producer, ListTask([], gate))

    async def main() -> None:
        run = asyncio.create_task(worker.run())
        await asyncio.sleep(1.0)  # the span being measured: an idle second
        idle_polls = producer.polls
        assert idle_polls <= 5, f"{idle_polls} polls in an idle second"
        task = worker.connectors[0].task  # type: ignore[attr-defined]
        task._batches.extend(batches(1, 3))
        gate.set()
        await asyncio.wait_for(run, 5)

    asyncio.run(main())
    assert len(data(producer, "delivered")) == 3
    assert offsets.offset(PARTITION) == {"seq": 2}


def test_stalled_producer_warns_turns_degraded_then_fails(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 11, bug 1: records that get no acknowledgement are not waited on blind."""
    from bridge.errors import ProducerStalledError
    from bridge.kafka import LIBRDKAFKA_TROUBLE

    producer = FakeProducer()
    producer.hold = True  # the broker answers nothing
    gate = asyncio.Event()
    worker, offsets = make_worker(producer, ListTask(batches(1, 5, final=False), gate),
                                  stall_warn_s=0.3, stall_fail_s=1.5)
    seen: list[tuple[bool, str]] = []

    async def main() -> None:
        run = asyncio.create_task(worker.run())
        assert worker.health() == (True, "ok")
        reported = False
        while not run.done():
            if worker.in_flight() and not reported:  # what librdkafka says after the send
                LIBRDKAFKA_TROUBLE.report("MSGSET [rdkafka#producer-1] [thrd:b/1]: b/1: t [0]: encountered "
                                          "error: Broker: Unknown Producer Id")
                reported = True
            seen.append(worker.health())
            await asyncio.sleep(0.05)
        await run

    with caplog.at_level("WARNING"), pytest.raises(ProducerStalledError, match="Unknown Producer Id"):
        asyncio.run(asyncio.wait_for(main(), 10))
    assert any(not ok and text.startswith("DEGRADED: no acknowledgement from Kafka") for ok, text in seen), seen
    warnings = [r.getMessage() for r in caplog.records if "no acknowledgement from Kafka" in r.getMessage()]
    assert warnings and "librdkafka reports: b/1: t [0]: encountered error: Broker: Unknown Producer Id" in warnings[0]
    assert offsets.offset(PARTITION) is None, "nothing acknowledged, so no offset"


def test_a_task_cancelled_before_it_first_ran_leaves_no_trace() -> None:
    """Found by the REST fuzz test (test_rest_openapi): a connector restart cancelled tasks that
    the restart before it had just created and that had not run yet; their entries stayed, and
    the next start stopped the worker with 'task ... is already running'."""

    async def main() -> None:
        worker, _ = make_worker(FakeProducer(), ListTask(batches(1, 2, final=False), asyncio.Event()))
        run = asyncio.create_task(worker.run())
        while not worker._tasks:
            await asyncio.sleep(0.01)
        connector = worker.connectors[0]
        closed: list[bool] = []

        class Closing(ListTask):
            async def close(self) -> None:
                closed.append(True)

        other = Closing(batches(1, 2, final=False), asyncio.Event())
        other.partition = {"table": "t", "shard": "other"}
        pkey = partition_key(other.partition)
        worker._start_task(connector, other)
        handle = worker._tasks[pkey]
        handle.cancel()  # before its first step
        await asyncio.gather(handle, return_exceptions=True)
        assert pkey not in worker._tasks and pkey not in worker._running
        await asyncio.sleep(0)
        assert closed == [True], "the task was not closed"
        worker._start_task(connector, other)  # a start after it: no "already running"
        worker.stop()
        await asyncio.wait_for(run, 20)

    asyncio.run(main())


class QueueTask(SourceTask):
    """Hands out batches as the test puts them in (a shard that gets new changes later)."""

    def __init__(self) -> None:
        self.partition = dict(PARTITION)
        self.queue: asyncio.Queue[Batch] = asyncio.Queue()

    async def poll(self) -> Batch:
        return await self.queue.get()


def test_a_second_stall_warns_again(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 18 (test_stall's intermittent failure): a stall that cleared, then another within
    a minute, logged no WARNING for the second (the repeat timer was never reset), so a
    slow first acknowledgement on a loaded host hid the real stall that followed until the
    process exited. Each stall warns once when it begins; repeats stay a minute apart."""
    producer = FakeProducer()
    task = QueueTask()
    worker, _ = make_worker(producer, task, stall_warn_s=0.2, stall_fail_s=None)
    stalls = lambda: [r for r in caplog.records if "no acknowledgement from Kafka" in r.getMessage()]  # noqa: E731

    async def until(cond: Callable[[], bool], what: str) -> None:
        for _ in range(200):
            if cond():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    async def main() -> None:
        run = asyncio.create_task(worker.run())
        for n in (1, 2):
            producer.hold = True  # the broker answers nothing
            task.queue.put_nowait(batches(1, 3, final=False)[0])
            await until(lambda n=n: len(stalls()) == n, f"stall WARNING {n}")
            assert worker.health()[1].startswith("DEGRADED"), worker.health()
            producer.hold = False  # acknowledged again
            await until(lambda: worker.health() == (True, "ok"), f"ok after stall {n}")
        worker.stop()
        await run

    with caplog.at_level("INFO"):
        asyncio.run(asyncio.wait_for(main(), 10))
    assert len(stalls()) == 2 and all(r.levelname == "WARNING" for r in stalls())


@pytest.mark.parametrize("code", [KafkaError.PRODUCER_FENCED, KafkaError._FENCED, KafkaError.INVALID_PRODUCER_EPOCH])
def test_at_least_once_fence_never_blames_a_transactional_id(code: int) -> None:
    """At-least-once producers have no transactional id: a fence (the producer's error_cb with
    PRODUCER_FENCED) is the broker losing this producer's state, and the one line must not say
    (nor quote the broker saying) that another process with the same transactional id took over."""

    class FencedOnProduce(FakeProducer):
        def produce(self, topic: str, *a: Any, **kw: Any) -> None:
            if topic == TOPIC:
                worker.on_kafka_error(KafkaError(code, fatal=True))
            super().produce(topic, *a, **kw)

    gate = asyncio.Event()
    worker, _ = make_worker(FencedOnProduce(), ListTask(batches(2, 5, final=False), gate))
    with pytest.raises(ProduceError) as failed:
        asyncio.run(asyncio.wait_for(worker.run(), 20))
    line = str(failed.value)
    assert "refused this producer for good" in line, line
    assert "same transactional" not in line.lower(), line
    assert "newer producer" not in line and "took over" not in line, line
    assert "\n" not in line
