"""The test stack on real images (Apache Kafka, Confluent Schema Registry, DynamoDB Local),
for machines with a Docker engine, and the choice between it and the local stack.

testcontainers and the Docker SDK are imported only when the docker stack is asked for, so
the default run needs neither. A docker stack that cannot run (no engine, an image that
cannot be pulled) never fails or skips the suite: the run falls back to the local stack and
says why in the terminal summary, so "docker was not tested" is visible, not silent.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from devtools.apache_kafka import KAFKA_VERSION
from devtools.devstack import LocalStack, StackEndpoints

__all__ = [
    "DYNAMODB_IMAGE",
    "KAFKA_IMAGE",
    "REGISTRY_IMAGE",
    "STACK_KINDS",
    "DockerStack",
    "OpenedStack",
    "docker_engine_problem",
    "open_stack",
]

KAFKA_IMAGE = f"apache/kafka:{KAFKA_VERSION}"  # the version the local Apache Kafka stack runs
REGISTRY_IMAGE = "confluentinc/cp-schema-registry:7.7.1"
DYNAMODB_IMAGE = "amazon/dynamodb-local:2.5.2"
STACK_KINDS = ("local", "docker")

_KAFKA_ALIAS = "kafka"
_KAFKA_HOST_PORT = 9092  # PLAINTEXT, advertised with the host's mapped port
_KAFKA_INTERNAL_PORT = 19092  # BROKER, what the registry container uses on the network
_KAFKA_CONTROLLER_PORT = 9093
_START_SCRIPT = "/tmp/bridge-tc-start.sh"
_READY_TIMEOUT = 120.0
_POLL = 0.25


class _Stoppable(Protocol):
    def stop(self) -> None: ...


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


def docker_engine_problem(timeout: float = 3.0) -> str | None:
    """Why no Docker engine can be used here, or None when one answers a ping."""
    try:
        import testcontainers  # noqa: F401

        import docker  # the Docker SDK that testcontainers is built on
    except ImportError as exc:
        return f"testcontainers is not installed ({_one_line(exc)})"
    try:
        client = docker.from_env(timeout=int(max(1, timeout)))
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # DockerException, connection errors, bad DOCKER_HOST
        return f"no Docker engine reachable ({_one_line(exc)})"
    return None


def _wait_until(what: str, check: Callable[[], bool], timeout: float = _READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(_POLL)  # polling a container from outside has nothing to block on
    raise TimeoutError(f"{what} did not become ready within {timeout:.0f} s")


def _http_status(url: str) -> int | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def _kafka_answers(bootstrap: str) -> bool:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=2)
    except KafkaException:
        return False
    return True


def _put_file(container: Any, path: str, content: bytes) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo(name=path.lstrip("/"))
        info.size = len(content)
        info.mode = 0o755
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(content))
    archive.seek(0)
    container.get_wrapped_container().put_archive("/", archive.getvalue())


class DockerStack:
    """Kafka (KRaft), Schema Registry and DynamoDB Local in containers on one network.

    Kafka must advertise the port Docker maps on the host, which is known only after the
    container starts; so, as testcontainers' own Kafka modules do, the container waits for a
    start script that is copied in once the mapping is known.
    """

    def __init__(self) -> None:
        self._started: list[_Stoppable] = []

    def start(self) -> StackEndpoints:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> StackEndpoints:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.network import Network

        network = Network().create()
        self._started.append(_NetworkHandle(network))

        kafka = (
            DockerContainer(KAFKA_IMAGE)
            .with_network(network)
            .with_network_aliases(_KAFKA_ALIAS)
            .with_exposed_ports(_KAFKA_HOST_PORT)
            .with_envs(
                KAFKA_NODE_ID="1",
                KAFKA_PROCESS_ROLES="broker,controller",
                KAFKA_CONTROLLER_QUORUM_VOTERS=f"1@localhost:{_KAFKA_CONTROLLER_PORT}",
                KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
                KAFKA_LISTENERS=(
                    f"PLAINTEXT://0.0.0.0:{_KAFKA_HOST_PORT},"
                    f"BROKER://0.0.0.0:{_KAFKA_INTERNAL_PORT},"
                    f"CONTROLLER://0.0.0.0:{_KAFKA_CONTROLLER_PORT}"
                ),
                KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
                KAFKA_INTER_BROKER_LISTENER_NAME="BROKER",
                CLUSTER_ID="4L6g3nShT-eMCtK--X86sw",
                KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
                KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
                KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
                KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
                KAFKA_LOG_DIRS="/tmp/kraft-combined-logs",
            )
            .with_command(
                ["sh", "-c", f"while [ ! -f {_START_SCRIPT} ]; do sleep 0.1; done; exec sh {_START_SCRIPT}"]
            )
        )
        kafka.start()
        self._started.append(kafka)
        host = kafka.get_container_host_ip()
        kafka_port = int(kafka.get_exposed_port(_KAFKA_HOST_PORT))
        advertised = f"PLAINTEXT://{host}:{kafka_port},BROKER://{_KAFKA_ALIAS}:{_KAFKA_INTERNAL_PORT}"
        _put_file(
            kafka,
            _START_SCRIPT,
            f"export KAFKA_ADVERTISED_LISTENERS='{advertised}'\nexec /etc/kafka/docker/run\n".encode(),
        )

        dynamodb = (
            DockerContainer(DYNAMODB_IMAGE)
            .with_exposed_ports(8000)
            .with_command(["-jar", "DynamoDBLocal.jar", "-sharedDb", "-inMemory"])
        )
        dynamodb.start()
        self._started.append(dynamodb)

        bootstrap = f"{host}:{kafka_port}"
        _wait_until(f"{KAFKA_IMAGE} at {bootstrap}", lambda: _kafka_answers(bootstrap))

        registry = (
            DockerContainer(REGISTRY_IMAGE)
            .with_network(network)
            .with_network_aliases("schema-registry")
            .with_exposed_ports(8081)
            .with_envs(
                SCHEMA_REGISTRY_HOST_NAME="schema-registry",
                SCHEMA_REGISTRY_LISTENERS="http://0.0.0.0:8081",
                SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS=f"PLAINTEXT://{_KAFKA_ALIAS}:{_KAFKA_INTERNAL_PORT}",
            )
        )
        registry.start()
        self._started.append(registry)

        dynamodb_url = f"http://{dynamodb.get_container_host_ip()}:{dynamodb.get_exposed_port(8000)}"
        registry_url = f"http://{registry.get_container_host_ip()}:{registry.get_exposed_port(8081)}"
        # DynamoDB Local answers a bare GET with 400: any HTTP answer means it is up.
        _wait_until(f"{DYNAMODB_IMAGE} at {dynamodb_url}", lambda: _http_status(dynamodb_url) is not None)
        _wait_until(f"{REGISTRY_IMAGE} at {registry_url}", lambda: _http_status(f"{registry_url}/subjects") == 200)
        return StackEndpoints(kafka_bootstrap=bootstrap, dynamodb_endpoint=dynamodb_url, registry_url=registry_url)

    def stop(self) -> None:
        while self._started:
            part = self._started.pop()
            with contextlib.suppress(Exception):  # teardown must go on to the next container
                part.stop()


@dataclass
class _NetworkHandle:
    network: Any

    def stop(self) -> None:
        self.network.remove()


@dataclass
class OpenedStack:
    """A running test stack, which kind it really is, and why docker was not used if asked."""

    endpoints: StackEndpoints
    kind: str
    not_run_reason: str | None = None
    log_dir: Path | None = None
    handle: _Stoppable | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            handle.stop()


def open_stack(
    requested: str,
    workdir: Path,
    *,
    local_factory: Callable[[Path], LocalStack] = LocalStack,
    docker_factory: Callable[[], DockerStack] = DockerStack,
    probe: Callable[[], str | None] = docker_engine_problem,
) -> OpenedStack:
    """Start the requested stack kind, falling back from docker to local with a reason.

    The factories and the probe are parameters so the fallback can be tested without
    starting anything.
    """
    if requested not in STACK_KINDS:
        raise ValueError(f"unknown test stack {requested!r}; expected one of {', '.join(STACK_KINDS)}")
    reason: str | None = None
    if requested == "docker":
        problem = probe()
        if problem is None:
            docker_stack = docker_factory()
            try:
                endpoints = docker_stack.start()
            except Exception as exc:  # no image, pull refused, container never ready ...
                problem = f"docker stack failed to start ({_one_line(exc)})"
            else:
                return OpenedStack(endpoints=endpoints, kind="docker", handle=docker_stack)
        reason = f"docker stack not run: {problem}; used the local stack instead"
    local = local_factory(workdir)
    endpoints = local.start()
    return OpenedStack(
        endpoints=endpoints, kind="local", not_run_reason=reason, log_dir=local.log_dir, handle=local
    )
