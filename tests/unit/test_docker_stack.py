"""Without a Docker engine, ``--stack=docker`` falls back to the local stack and says why.

Nothing is started here: the local stack is replaced by a fake so the test needs no
services, and the engine probe talks to a socket that does not exist.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.devstack import StackEndpoints
from tests.stacks import docker_stack
from tests.stacks.docker_stack import docker_engine_problem, open_stack

FAKE = StackEndpoints("127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3")


class FakeLocal:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log_dir = workdir / "logs"
        self.started = False
        self.stopped = False

    def start(self) -> StackEndpoints:
        self.started = True
        return FAKE

    def stop(self) -> None:
        self.stopped = True


class ExplodingDocker:
    def start(self) -> StackEndpoints:
        raise RuntimeError("pull access denied for apache/kafka")

    def stop(self) -> None:  # pragma: no cover - never started
        pass


@pytest.fixture
def dead_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)


def test_probe_reports_a_dead_engine(dead_docker: None) -> None:
    problem = docker_engine_problem(timeout=1)
    assert problem is not None
    assert problem.startswith("no Docker engine reachable")


def test_docker_falls_back_to_local_with_a_reason(dead_docker: None, tmp_path: Path) -> None:
    made: list[FakeLocal] = []

    def local_factory(workdir: Path) -> FakeLocal:
        made.append(FakeLocal(workdir))
        return made[-1]

    def no_docker() -> docker_stack.DockerStack:
        raise AssertionError("containers must not be tried without an engine")

    opened = open_stack("docker", tmp_path, local_factory=local_factory, docker_factory=no_docker)

    assert opened.kind == "local"
    assert opened.endpoints == FAKE
    assert opened.not_run_reason is not None
    assert opened.not_run_reason.startswith("docker stack not run: no Docker engine reachable")
    assert "\n" not in opened.not_run_reason
    assert made[0].started
    opened.close()
    opened.close()  # idempotent
    assert made[0].stopped


def test_docker_start_failure_also_falls_back(tmp_path: Path) -> None:
    opened = open_stack(
        "docker",
        tmp_path,
        local_factory=FakeLocal,
        docker_factory=ExplodingDocker,
        probe=lambda: None,  # an engine answers, but the images cannot be had
    )
    assert opened.kind == "local"
    assert opened.not_run_reason is not None
    assert "pull access denied" in opened.not_run_reason


def test_local_never_probes_docker(tmp_path: Path) -> None:
    def probe() -> str | None:
        raise AssertionError("local must not look for Docker")

    opened = open_stack("local", tmp_path, local_factory=FakeLocal, probe=probe)
    assert opened.kind == "local"
    assert opened.not_run_reason is None


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown test stack"):
        open_stack("podman", tmp_path, local_factory=FakeLocal)
