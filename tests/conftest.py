"""Shared fixtures: one stack per test session, and clients for it.

``--stack=local`` (default, or ``BRIDGE_TEST_STACK``) runs a broker, moto and the project's
registry as subprocesses; ``--stack=docker`` runs the real images through testcontainers
and, where no Docker engine can be used, falls back to the local stack and says so in the
terminal summary. ``--broker`` (or ``BRIDGE_TEST_BROKER``) picks the local stack's broker:
tansu (default) or Apache Kafka.

Tests whose truth depends on the broker (exactly-once, restarts, failover) ask for
``kafka_stack`` / ``kafka_cluster``: Apache Kafka, always. Where Java or Maven is missing
they are reported as not run with the reason, and ``BRIDGE_REQUIRE_APACHE_KAFKA=1`` (set by
``.ci/run``) turns that into a failure, so CI can never pass without running them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import BridgeError
from devtools.apache_kafka import cannot_run_reason
from devtools.devstack import BROKERS, LocalStack, StackEndpoints
from tests.helpers import not_run
from tests.stacks.docker_stack import STACK_KINDS, OpenedStack, open_stack

AWS_REGION = "us-east-1"
_NOTES = pytest.StashKey[list[str]]()
_LOG_DIRS = pytest.StashKey[list[Path]]()
_MEASURED = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stack",
        choices=STACK_KINDS,
        default=os.environ.get("BRIDGE_TEST_STACK", "local"),
        help="services the integration tests run against: local subprocesses (default) or "
        "docker containers (falls back to local when no Docker engine is usable); "
        "default from $BRIDGE_TEST_STACK",
    )
    parser.addoption(
        "--broker",
        choices=BROKERS,
        default=os.environ.get("BRIDGE_TEST_BROKER", "tansu"),
        help="the local stack's broker for the shared `stack` fixture: tansu (default) or "
        "kafka (Apache Kafka); default from $BRIDGE_TEST_BROKER",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_NOTES] = []
    config.stash[_LOG_DIRS] = []
    config.stash[_MEASURED] = []


def _remember_logs(config: pytest.Config, log_dir: Path | None) -> None:
    if log_dir is not None:
        config.stash[_LOG_DIRS].append(log_dir)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackEndpoints]:
    """Endpoints of the session's stack, started on first use and stopped at the end."""
    config = request.config
    requested = config.getoption("--stack")
    workdir = tmp_path_factory.mktemp("stack")
    _remember_logs(config, workdir / "logs")
    broker = config.getoption("--broker")
    if broker == "kafka":
        _need_apache_kafka()
    try:
        opened: OpenedStack = open_stack(requested, workdir, local_factory=lambda w: LocalStack(w, broker=broker))
    except BridgeError as exc:
        pytest.fail(f"the local test stack did not start (logs in {workdir / 'logs'}):\n{exc}", pytrace=False)
    if opened.not_run_reason:
        config.stash[_NOTES].append(opened.not_run_reason)
    try:
        yield opened.endpoints
    finally:
        opened.close()


REQUIRE_APACHE_KAFKA = "BRIDGE_REQUIRE_APACHE_KAFKA"


def _need_apache_kafka() -> None:
    """Skip (on a laptop without a JDK or Maven) or fail (in CI) where Apache Kafka cannot run."""
    reason = cannot_run_reason()
    if reason is not None:
        not_run(f"Apache Kafka: {reason}", REQUIRE_APACHE_KAFKA)


@pytest.fixture(scope="session")
def kafka_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackEndpoints]:
    """A stack on Apache Kafka (one KRaft node), for tests whose truth depends on the broker.

    It is the session's ``stack`` when that runs on Apache Kafka already (``--broker kafka``).
    """
    _need_apache_kafka()
    if request.config.getoption("--broker") == "kafka" and request.config.getoption("--stack") == "local":
        yield request.getfixturevalue("stack")
        return
    workdir = tmp_path_factory.mktemp("apache-kafka-stack")
    _remember_logs(request.config, workdir / "logs")
    local = LocalStack(workdir, broker="kafka")
    try:
        endpoints = local.start()
    except BridgeError as exc:
        pytest.fail(f"the Apache Kafka stack did not start (logs in {workdir / 'logs'}):\n{exc}", pytrace=False)
    try:
        yield endpoints
    finally:
        local.stop()


@pytest.fixture
def measured(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Report a figure a test measured (duplicates, pauses, ...): printed, and listed again in
    the run's closing summary, so CI's output shows what the guarantees were measured at."""

    def say(text: str) -> None:
        text = text.strip()
        print("\n" + text)
        request.config.stash[_MEASURED].append(f"{request.node.name}: {text}")

    return say


@pytest.fixture
def local_stack_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., LocalStack]]:
    """Makes private, not yet started LocalStacks for tests that stop or restart parts.

    Fault tests must not break the shared session stack; every stack made here is stopped
    at teardown whatever state the test left it in.
    """
    made: list[LocalStack] = []

    def make(**kwargs: Any) -> LocalStack:
        if kwargs.get("broker") == "kafka":
            _need_apache_kafka()
        workdir = tmp_path_factory.mktemp("private-stack")
        _remember_logs(request.config, workdir / "logs")
        local = LocalStack(workdir, **kwargs)
        made.append(local)
        return local

    yield make
    for local in made:
        local.stop()


@pytest.fixture
def dynamodb(stack: StackEndpoints) -> Iterator[Any]:
    """A boto3 DynamoDB client for the stack (moto and DynamoDB Local accept any key)."""
    import boto3

    client = boto3.client(
        "dynamodb",
        region_name=AWS_REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        endpoint_url=stack.dynamodb_endpoint,
    )
    yield client
    client.close()


@pytest.fixture
def kafka_admin(stack: StackEndpoints) -> Any:
    """A confluent_kafka AdminClient for the stack's broker."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": stack.kafka_bootstrap})


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    figures = config.stash.get(_MEASURED, [])
    if figures:
        terminalreporter.section("measured")
        for line in figures:
            terminalreporter.write_line(line)
    notes = config.stash.get(_NOTES, [])
    if notes:
        terminalreporter.section("test stack")
        for note in notes:
            terminalreporter.write_line(note)
    failed = terminalreporter.stats.get("failed") or terminalreporter.stats.get("error")
    log_dirs = [d for d in config.stash.get(_LOG_DIRS, []) if d.is_dir()]
    if failed and log_dirs:
        terminalreporter.section("local stack logs")
        for log_dir in log_dirs:
            for log in sorted(log_dir.glob("*.log")):
                terminalreporter.write_line(str(log))
