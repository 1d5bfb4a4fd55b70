"""Reading a topic to its end, on both brokers: the offsets loader and the registry's
restore stop where the broker says the partition ends, with no time margin.

Apache Kafka reports the high watermark exactly, so the end-of-partition event comes at
the watermark itself; tansu reports it short of a multi-record batch's end, so there the
event comes past it, and everything written is still read. For a ``read_committed``
reader the end is the last stable offset: a writer's open transaction neither holds the
read up nor shows its records.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.kafka import END_READER_CONFIG, read_to_end
from bridge.offsets import OffsetStore
from devtools.devstack import LocalStack, StackEndpoints
from tests.helpers import unique


@pytest.fixture(scope="module")
def tansu(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """tansu's bootstrap: the session stack's broker when that is tansu, else a private one."""
    if request.config.getoption("--broker") == "tansu" and request.config.getoption("--stack") == "local":
        yield request.getfixturevalue("stack").kafka_bootstrap
        return
    local = LocalStack(Path(tmp_path_factory.mktemp("tansu")), broker="tansu")
    try:
        yield local.start().kafka_bootstrap
    finally:
        local.stop()


@pytest.fixture(params=["tansu", "apache-kafka"])
def broker(request: pytest.FixtureRequest) -> tuple[str, str]:
    if request.param == "tansu":
        return "tansu", request.getfixturevalue("tansu")
    stack: StackEndpoints = request.getfixturevalue("kafka_stack")
    return "apache-kafka", stack.kafka_bootstrap


def _topic(bootstrap: str) -> str:
    topic = unique("end")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, config={"cleanup.policy": "compact"})])[topic].result(30)
    return topic


def _write_batches(bootstrap: str, topic: str, sizes: list[int], *, start: int = 0) -> list[bytes]:
    """Records in multi-record batches (one flush per batch, a long linger within it)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 200})
    keys = []
    n = start
    for size in sizes:
        for _ in range(size):
            keys.append(f"k{n}".encode())
            p.produce(topic, key=keys[-1], value=b"v")
            n += 1
        assert p.flush(30) == 0
    return keys


def _read(bootstrap: str, topic: str, isolation: str = "read_committed") -> tuple[list[bytes], Any]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"), "isolation.level": isolation, **END_READER_CONFIG})
    got: list[bytes] = []
    try:
        end = read_to_end(c, topic, lambda m: got.append(m.key()), timeout_s=20)
    finally:
        c.close()
    return got, end


def test_reads_every_batch_and_stops_at_the_brokers_end(broker: tuple[str, str], measured) -> None:
    name, bootstrap = broker
    topic = _topic(bootstrap)
    written = _write_batches(bootstrap, topic, [4, 2, 5, 3])
    got, end = _read(bootstrap, topic)
    assert got == written, f"{name}: read {len(got)} of {len(written)} records"
    watermark, eof = end.watermarks[0], end.eof_offsets[0]
    measured(f"{name}: high watermark {watermark}, end of partition at {eof}, {len(written)} records")
    if name == "apache-kafka":
        # The watermark is exact: nothing needs reading past it.
        assert eof == watermark == len(written)
    else:
        assert eof >= watermark and eof == len(written)


def test_transaction_markers_and_an_open_transaction_do_not_hold_the_read(kafka_stack: StackEndpoints) -> None:
    """Committed transactions end in markers, and a crashed exactly-once writer can leave
    one open: the read ends at the last stable offset at once, without its records."""
    bootstrap = kafka_stack.kafka_bootstrap
    topic = _topic(bootstrap)
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("txn")})
    p.init_transactions(30)
    for i in range(3):
        p.begin_transaction()
        for j in range(3):
            p.produce(topic, key=f"c{i}{j}".encode(), value=b"v")
        p.commit_transaction(30)
    p.begin_transaction()
    p.produce(topic, key=b"open", value=b"v")
    assert p.flush(30) == 0  # on the broker, inside a transaction that never ends here
    try:
        started = time.monotonic()
        got, end = _read(bootstrap, topic)
        took = time.monotonic() - started
        uncommitted, dirty_end = _read(bootstrap, topic, "read_uncommitted")
    finally:
        p.abort_transaction(30)
    committed = [f"c{i}{j}".encode() for i in range(3) for j in range(3)]
    assert got == committed
    # 9 records and 3 commit markers are stable; the open record at offset 12 is not.
    assert end.watermarks[0] == end.eof_offsets[0] == 12
    assert took < 10, f"the read waited {took:.1f}s on the open transaction"
    assert uncommitted == [*committed, b"open"]
    assert dirty_end.watermarks[0] == dirty_end.eof_offsets[0] == 13


def test_offsets_load_on_both_brokers(broker: tuple[str, str]) -> None:
    """The loader sees the newest offset of every partition, written in batches of several
    records, with deletions, by two connectors sharing the topic."""
    name, bootstrap = broker
    topic = _topic(bootstrap)
    mine = OffsetStore({"bootstrap.servers": bootstrap}, topic, "mine")
    other = OffsetStore({"bootstrap.servers": bootstrap}, topic, "other")
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 200})
    expected: dict[str, dict[str, Any]] = {}
    for round_ in range(3):
        for shard in range(5):
            part = {"table": "t", "shard": f"shardId-{shard}"}
            value = {"seq": str(100 * round_ + shard), "ended": round_ == 2 and shard == 0}
            for store in (mine, other):
                k, v = store.encode(part, value)
                p.produce(topic, key=k, value=v)
            expected[f"shardId-{shard}"] = value
        assert p.flush(30) == 0
    k, v = mine.encode({"table": "t", "shard": "shardId-4"}, None)  # a deleted offset
    p.produce(topic, key=k, value=v)
    assert p.flush(30) == 0
    expected.pop("shardId-4")
    assert mine.load(timeout_s=20) == len(expected), name
    for shard, value in expected.items():
        assert mine.offset({"table": "t", "shard": shard}) == value, (name, shard)
    assert other.load(timeout_s=20) == 5
