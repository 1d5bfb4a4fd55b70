"""Fixtures for the fault tests: Streams doubles, bridge processes, readers, all torn down."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from bridge.devstack import _tansu_binary
from tests.doubles.streams_double import StreamsDouble
from tests.doubles.tcp_proxy import TcpProxy
from tests.faults.support import Bridges, ChangeReader, free_port
from tests.helpers import unique


@pytest.fixture
def make_double() -> Iterator[Callable[..., StreamsDouble]]:
    """Started Streams doubles (a fresh table name each), stopped at teardown."""
    made: list[StreamsDouble] = []

    def make(**kwargs: Any) -> StreamsDouble:
        kwargs.setdefault("table", unique("t"))
        kwargs.setdefault("key_schema", (("pk", "S"),))
        d = StreamsDouble(**kwargs).start()
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
    errors = [e for d in made for e in d.server_errors]
    assert not errors, f"the Streams double itself failed while serving: {errors[:3]}"


@pytest.fixture
def bridges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bridges]:
    """Bridge processes for one test, killed at teardown. They run with
    PYTHONFAULTHANDLER, so a stuck one can be made to print its stacks (SIGABRT)."""
    monkeypatch.setenv("PYTHONFAULTHANDLER", "1")
    b = Bridges(tmp_path / "bridges")
    yield b
    b.cleanup()


@pytest.fixture
def make_reader(bridges: Bridges) -> Iterator[Callable[[str, str, str], ChangeReader]]:
    """Avro readers of a topic; their waits fail fast if this test's newest bridge errs out."""
    made: list[ChangeReader] = []

    def make(bootstrap: str, registry_url: str, topic: str) -> ChangeReader:
        r = ChangeReader(bootstrap, registry_url, topic, bridges)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def kafka_behind_proxy(tmp_path: Path) -> Iterator[tuple[str, TcpProxy]]:
    """A private tansu broker every client reaches through a :class:`TcpProxy`.

    The broker listens on its own port but advertises the proxy's, so bootstrap and every
    broker connection learnt from metadata go through the proxy, and ``proxy.cut()`` takes
    Kafka off the network while its in-memory data stays. Yields (bootstrap, proxy).
    """
    proxy = TcpProxy().start()
    real = free_port()
    proxy.upstream = ("127.0.0.1", real)
    log_path = tmp_path / "tansu-behind-proxy.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                _tansu_binary(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{real}",
                "--advertised-listener-url",
                f"tcp://{proxy.address}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        admin = AdminClient({"bootstrap.servers": proxy.address, "socket.timeout.ms": 2000})
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"tansu exited ({proc.returncode}): {log_path.read_text()[-2000:]}")
            try:
                md = admin.list_topics(timeout=2)
                if all(b.port == proxy.port for b in md.brokers.values()):
                    break
            except KafkaException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"tansu behind the proxy did not answer: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield proxy.address, proxy
    finally:
        proxy.restore()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        proxy.stop()
