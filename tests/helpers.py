"""Shared test tooling: a bridge process, a real Avro consumer, table helpers.

The consumer is confluent-kafka's own DeserializingConsumer with AvroDeserializer and
SchemaRegistryClient, talking to the registry over HTTP: what a user would run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import boto3
import pytest
import yaml
from confluent_kafka import DeserializingConsumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer

from connectors.dynamodb.avro import item_from_avro

ROOT = Path(__file__).resolve().parents[1]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def dynamodb_client(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def create_table(
    ddb: Any,
    name: str,
    *,
    hash_key: tuple[str, str] = ("pk", "S"),
    range_key: tuple[str, str] | None = ("sk", "N"),
    view_type: str | None = "NEW_AND_OLD_IMAGES",
) -> None:
    keys = [{"AttributeName": hash_key[0], "KeyType": "HASH"}]
    attrs = [{"AttributeName": hash_key[0], "AttributeType": hash_key[1]}]
    if range_key:
        keys.append({"AttributeName": range_key[0], "KeyType": "RANGE"})
        attrs.append({"AttributeName": range_key[0], "AttributeType": range_key[1]})
    kwargs: dict[str, Any] = {}
    if view_type:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view_type}
    ddb.create_table(
        TableName=name, KeySchema=keys, AttributeDefinitions=attrs, BillingMode="PAY_PER_REQUEST", **kwargs
    )


def bridge_config(stack: Any, tables: Iterable[str | dict[str, Any]], name: str | None = None, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name or unique("bridge"),
        "kafka": {"bootstrap.servers": stack.kafka_bootstrap},
        "schema_registry": {"url": stack.registry_url},
        "aws": {"region": "us-east-1", "endpoint_url": stack.dynamodb_endpoint},
        "topic_prefix": "ddb",
        "tables": [t if isinstance(t, dict) else {"name": t, "stream": {"poll_interval_ms": 100, "discovery_interval_ms": 1000}} for t in tables],
        "offsets": {"flush_interval_ms": 200},
        "shutdown_timeout_s": 20,
        # Every bridge is a group member: tansu answers a group's first join after half the
        # session timeout (5 s at the default 10 s), and a restart after a SIGKILL waits until
        # the dead member's session expires. 3 s keeps both short, as the group tests do.
        "group": {"session_timeout_ms": 3000},
    }
    cfg.update(extra)
    return cfg


def bridge_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class BridgeProcess:
    """The bridge as users run it: ``ddb-kafka-bridge run -c FILE`` in its own process."""

    config_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None  # added to bridge_env(), e.g. a per-process AWS access key

    @classmethod
    def write(cls, tmp: Path, cfg: dict[str, Any]) -> BridgeProcess:
        tmp.mkdir(parents=True, exist_ok=True)
        path = tmp / f"{cfg['name']}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return cls(path, tmp / f"{cfg['name']}.log")

    def start(self) -> BridgeProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge_app.cli", "run", "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=bridge_env() | (self.env or {}),
            cwd=ROOT,
        )
        return self

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        """The exit code; a bridge still running after ``timeout`` is made to dump every
        thread's stack (faulthandler on SIGABRT, when PYTHONFAULTHANDLER is set) into its log,
        which the failure shows: a hang is then diagnosable from one CI run."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            raise AssertionError(f"the bridge did not exit within {timeout:.0f} s; its stacks and log:\n"
                                 f"{self.log()[-8000:]}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.send(sig)
        return self.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check(self) -> None:
        """Raise if the bridge has exited, so a reader does not wait out its timeout."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"bridge exited with {self.proc.returncode}:\n{self.log()[-3000:]}")

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"bridge exited ({self.proc.returncode}) before logging {text!r}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"bridge did not log {text!r} in {timeout}s:\n{self.log()[-3000:]}")
            time.sleep(0.05)


class InProcessBridge:
    """The bridge on its own event loop in a thread; leaving the block stops it like SIGTERM.

    For integration tests that need no process boundary; AWS credentials come from
    ``bridge_env()`` as for the process.
    """

    def __init__(self, cfg: dict[str, Any]) -> None:
        from connectors.dynamodb.config import parse_config

        self.cfg = parse_config(cfg)
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self.worker: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from bridge_app.app import run_bridge

        def started(worker: Any) -> None:
            self.worker = worker

        try:
            self.loop.run_until_complete(run_bridge(self.cfg, install_signal_handlers=False, on_start=started))
        except BaseException as e:  # noqa: BLE001 - re-raised by check() and __exit__
            self.error = e

    def check(self) -> None:
        if not self.thread.is_alive() and self.error is not None:
            raise AssertionError(f"bridge failed: {self.error!r}")

    def __enter__(self) -> InProcessBridge:
        for k, v in bridge_env().items():
            if k.startswith("AWS_"):
                os.environ.setdefault(k, v)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.worker is not None:
            self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(60)
        assert not self.thread.is_alive(), "bridge did not stop within 60 s"
        if self.error is not None and exc[0] is None:
            raise self.error


@dataclass(frozen=True)
class Event:
    partition: int
    offset: int
    key: dict[str, Any]
    value: dict[str, Any] | None  # None: tombstone
    # The record's CreateTime (ms since the epoch): when its producer was handed it.
    timestamp_ms: int = field(default=0, compare=False)

    @property
    def op(self) -> str | None:
        return None if self.value is None else self.value["op"]

    @property
    def before(self) -> dict[str, Any] | None:
        return None if self.value is None else item_from_avro(self.value["before"])

    @property
    def after(self) -> dict[str, Any] | None:
        return None if self.value is None else item_from_avro(self.value["after"])


class TopicReader:
    """Reads a topic from the start with the Confluent Avro deserializer, via assign()."""

    def __init__(self, bootstrap: str, registry_url: str, topic: str, *, kafka: dict[str, Any] | None = None,
                 registry: dict[str, Any] | None = None) -> None:
        """``kafka`` and ``registry``: extra client settings (TLS, SASL) for a secured stack."""
        registry_client = SchemaRegistryClient({"url": registry_url} | (registry or {}))
        self.topic = topic
        self.consumer = DeserializingConsumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": unique("reader"),
                "enable.auto.commit": False,
                "key.deserializer": AvroDeserializer(registry_client),
                "value.deserializer": AvroDeserializer(registry_client),
            }
            | (kafka or {})
        )
        self._assigned = False
        self.events: list[Event] = []

    def _assign(self, timeout: float) -> bool:
        meta = self.consumer.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return False
        self.consumer.assign([TopicPartition(self.topic, p, 0) for p in meta.partitions])
        self._assigned = True
        return True

    def read_until(
        self, done: Callable[[list[Event]], bool], timeout: float = 60, check: Callable[[], None] | None = None
    ) -> list[Event]:
        """Poll until ``done(events)`` holds; fail with what was read if it never does.

        ``check`` is called on every round and may raise (e.g. the bridge died).
        """
        deadline = time.monotonic() + timeout
        while not done(self.events):
            if check is not None:
                check()
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met in {timeout}s; read {len(self.events)} events")
            if not self._assigned and not self._assign(5):
                time.sleep(0.1)
                continue
            msg = self.consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                raise AssertionError(f"consumer error: {msg.error()}")
            self.events.append(Event(msg.partition(), msg.offset(), msg.key(), msg.value(), msg.timestamp()[1]))
        return self.events

    def read_count(self, n: int, timeout: float = 60, check: Callable[[], None] | None = None) -> list[Event]:
        return self.read_until(lambda ev: len(ev) >= n, timeout, check)

    def drain(self, quiet_s: float = 2.0) -> list[Event]:
        """Keep reading until nothing new arrives for ``quiet_s``: proves there are no extras."""
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            msg = self.consumer.poll(0.2)
            if msg is not None and not msg.error():
                self.events.append(Event(msg.partition(), msg.offset(), msg.key(), msg.value(), msg.timestamp()[1]))
                last = time.monotonic()
        return self.events

    def close(self) -> None:
        self.consumer.close()


def normalize(item: dict[str, Any] | None) -> Any:
    """Compare DynamoDB JSON images: sets are unordered, B may be bytes or bytearray."""
    if item is None:
        return None

    def av(v: dict[str, Any]) -> Any:
        ((t, x),) = v.items()
        if t in ("SS", "NS", "BS"):
            return (t, frozenset(bytes(y) if isinstance(y, (bytes, bytearray)) else y for y in x))
        if t == "M":
            return ("M", normalize(x))
        if t == "L":
            return ("L", tuple(av(y) for y in x))
        if t == "B":
            return ("B", bytes(x))
        return (t, x)

    return {k: av(v) for k, v in item.items()}


def not_run(reason: str, require_env: str) -> NoReturn:
    """Skip a test whose tool or service is absent here, or fail it where ``require_env`` is
    set (CI sets it): a skipped guarantee must never pass for a run one."""
    if os.environ.get(require_env, "").strip() not in ("", "0"):
        pytest.fail(f"required by ${require_env} but cannot run: {reason}", pytrace=False)
    pytest.skip(f"not run: {reason}")
