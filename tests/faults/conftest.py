"""Fixtures for the fault tests: Streams doubles, bridge processes, readers, all torn down."""

from __future__ import annotations

import contextlib
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

from devtools.devstack import _tansu_binary
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


class ProxiedTansu:
    """A private tansu broker that every client reaches through a :class:`TcpProxy`.

    The broker listens on its own port but advertises the proxy's, so bootstrap and every
    broker connection learnt from metadata go through the proxy: ``proxy.cut()`` takes
    Kafka off the network while its in-memory data stays, and ``restart()`` replaces the
    broker by a fresh one on the same port, which has lost every topic, record and
    producer id (what an unclean failover or a re-created cluster does to a client).
    """

    def __init__(self, tmp_path: Path) -> None:
        self.proxy = TcpProxy().start()
        self.real = free_port()
        self.proxy.upstream = ("127.0.0.1", self.real)
        self.log_path = tmp_path / "tansu-behind-proxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return self.proxy.address

    def start(self) -> ProxiedTansu:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    _tansu_binary(),
                    "broker",
                    "--listener-url",
                    f"tcp://127.0.0.1:{self.real}",
                    "--advertised-listener-url",
                    f"tcp://{self.proxy.address}",
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        admin = AdminClient({"bootstrap.servers": self.proxy.address, "socket.timeout.ms": 2000})
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"tansu exited ({self.proc.returncode}): {self.log_path.read_text()[-2000:]}")
            try:
                md = admin.list_topics(timeout=2)
                if all(b.port == self.proxy.port for b in md.brokers.values()):
                    return self
            except KafkaException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"tansu behind the proxy did not answer: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The broker frozen (SIGSTOP) inside the block, with its data and connections: what a
        broker that stops answering for a while looks like (a GC pause, a loaded host)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self) -> None:
        """SIGKILL the broker and start an empty one in its place (same port, same proxy)."""
        self.kill()
        self.start()

    def stop(self) -> None:
        self.proxy.restore()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proxy.stop()


@pytest.fixture
def proxied_tansu(tmp_path: Path) -> Iterator[ProxiedTansu]:
    """A started :class:`ProxiedTansu`, stopped at teardown."""
    broker = ProxiedTansu(tmp_path)
    try:
        yield broker.start()
    finally:
        broker.stop()


@pytest.fixture
def kafka_behind_proxy(proxied_tansu: ProxiedTansu) -> Iterator[tuple[str, TcpProxy]]:
    """A private tansu broker every client reaches through a :class:`TcpProxy`; yields
    (bootstrap, proxy). See :class:`ProxiedTansu`."""
    yield proxied_tansu.bootstrap, proxied_tansu.proxy
