"""Apache Kafka for the local stack: the reference broker that the guarantees are proven on.

tansu (the pip-only default) is not Apache Kafka where it matters most (aborted records
visible to ``read_committed``, no data across restarts, a short high watermark), so the
stack can run the real broker instead, in KRaft mode on the machine's JDK. Nothing is
downloaded but Maven artifacts: a pinned ``org.apache.kafka:kafka_2.13`` and its runtime
dependencies are resolved once with ``mvn`` into a user cache; later runs are offline.

This module only knows how to get the jars, write one node's ``server.properties``,
format its storage and build the command line. ``devtools.devstack`` runs the processes.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bridge.errors import BridgeError

__all__ = [
    "KAFKA_VERSION",
    "KafkaNode",
    "KafkaSecurity",
    "Listener",
    "cache_dir",
    "ensure_distribution",
    "format_storage",
    "cannot_run_reason",
    "missing_tools",
    "node_command",
    "write_node_config",
]

KAFKA_VERSION = "4.1.1"
_SLF4J_BINDING = ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3")
_MAIN = "kafka.Kafka"
_STORAGE_TOOL = "kafka.tools.StorageTool"
_COMPLETE = ".complete"

# A small heap and few GC threads: the stack shares two cores with the bridge and the tests.
_JVM_OPTS = (
    "-Xms128m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:ParallelGCThreads=2",
    "-XX:ConcGCThreads=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Djava.net.preferIPv4Stack=true",
)

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.ddb-kafka-bridge</groupId>
  <artifactId>apache-kafka-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>{lg}</groupId><artifactId>{la}</artifactId><version>{lv}</version></dependency>
  </dependencies>
</project>
"""

# Warnings and errors only, except the lines that say a node started or stopped.
_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
"""


def cache_dir() -> Path:
    """Where the resolved jars live: ``$DDB_BRIDGE_CACHE`` or the XDG cache directory."""
    root = os.environ.get("DDB_BRIDGE_CACHE")
    if root:
        return Path(root).expanduser() / f"apache-kafka-{KAFKA_VERSION}"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "ddb-kafka-bridge" / f"apache-kafka-{KAFKA_VERSION}"


def missing_tools(*, need_mvn: bool = True) -> list[str]:
    """The programs this machine lacks to run Apache Kafka (``mvn`` only until the jars are cached)."""
    tools = ["java"] + (["mvn"] if need_mvn else [])
    return [t for t in tools if shutil.which(t) is None]


_APT = {"java": "openjdk-17-jre-headless", "mvn": "maven"}


def cannot_run_reason() -> str | None:
    """None when Apache Kafka can run here; otherwise the one-line reason it cannot."""
    lacking = missing_tools(need_mvn=not (cache_dir() / "libs" / _COMPLETE).is_file())
    if not lacking:
        return None
    return (
        f"Apache Kafka needs {' and '.join(lacking)} on PATH "
        f"(Debian: apt-get install {' '.join(_APT[t] for t in lacking)}); "
        "or use the pip-only tansu broker (--broker tansu)"
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One resolver at a time per cache (a test session and `dev up` may race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_distribution(timeout_s: float = 600.0) -> Path:
    """The folder of Apache Kafka's jars, resolved through ``mvn`` on first use.

    Raises ``BridgeError`` with one line naming what to install when ``java`` or ``mvn``
    is missing, or with Maven's last lines when resolution fails.
    """
    home = cache_dir()
    libs = home / "libs"
    if (libs / _COMPLETE).is_file():
        return libs
    reason = cannot_run_reason()
    if reason:
        raise BridgeError(f"kafka: {reason}")
    with _locked(home / ".lock"):
        if (libs / _COMPLETE).is_file():
            return libs
        pom = home / "pom.xml"
        pom.write_text(
            _POM.format(kafka=KAFKA_VERSION, lg=_SLF4J_BINDING[0], la=_SLF4J_BINDING[1], lv=_SLF4J_BINDING[2])
        )
        staging = home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            "mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise BridgeError(f"kafka: resolving Apache Kafka {KAFKA_VERSION} with mvn took over {timeout_s:.0f} s") from None
        if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            raise BridgeError(
                f"kafka: mvn could not resolve org.apache.kafka:kafka_2.13:{KAFKA_VERSION} "
                f"(exit {done.returncode}): {tail or 'no output'}; check that Maven Central is reachable"
            )
        (home / "log4j2.properties").write_text(_LOG4J2)
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        (libs / _COMPLETE).write_text(KAFKA_VERSION + "\n")
    return libs


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node that is both broker and controller, on loopback."""

    node_id: int
    port: int
    controller_port: int
    data_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Listener:
    """A client listener beyond PLAINTEXT, e.g. ``Listener("SCRAM", "SASL_SSL", 9094)``."""

    name: str
    protocol: str
    port: int


@dataclass(frozen=True)
class KafkaSecurity:
    """What a one-node cluster needs for TLS and SASL listeners (the tests' secured broker).

    PLAINTEXT stays for the controller, the brokers' own traffic and the stack's probe;
    ``listeners`` are added beside it, ``properties`` (e.g. ``ssl.keystore.type=PEM``,
    ``listener.name.scram.sasl.enabled.mechanisms``) are appended to ``server.properties``,
    ``scram_credentials`` are given to the storage format (``--add-scram``, KRaft's way to
    have SCRAM users before the first start) and ``classpath`` adds jars or class folders
    (a custom OAUTHBEARER validator).
    """

    listeners: tuple[Listener, ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)
    scram_credentials: tuple[str, ...] = ()
    classpath: tuple[Path, ...] = ()


def write_node_config(
    node: KafkaNode, cluster: list[KafkaNode], path: Path, security: KafkaSecurity | None = None
) -> Path:
    """``server.properties`` for ``node`` in a cluster of ``cluster`` (itself included).

    One node: replication factor 1 everywhere. Three or more: RF 3 and
    ``min.insync.replicas=2``, so a topic survives the loss of any one node without
    acknowledging a write that only one replica holds.
    """
    size = len(cluster)
    rf = min(size, 3)
    isr = 1 if size == 1 else 2
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in cluster)
    props = {
        "node.id": node.node_id,
        "process.roles": "broker,controller",
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.quorum.voters": voters,
        "log.dirs": str(node.data_dir),
        "num.partitions": 1,
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "transaction.state.log.num.partitions": 10,
        "group.initial.rebalance.delay.ms": 0,
        # Bridge workers in a group (group.session_timeout_ms) may be declared dead after 2 s in
        # tests, instead of the broker's 6 s floor.
        "group.min.session.timeout.ms": 2000,
        # A dead node is noticed in ~3 s instead of 9, so failover tests do not wait long.
        "broker.session.timeout.ms": 3000,
        "broker.heartbeat.interval.ms": 500,
        # Transactions past transaction.timeout.ms are aborted within a second, not ten.
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": 1000,
    }
    if security is not None and security.listeners:
        if size != 1:
            raise BridgeError("kafka: secured listeners are for a one-node cluster (each node would need its own ports)")
        extra = [f"{x.name}://127.0.0.1:{x.port}" for x in security.listeners]
        props["listeners"] = ",".join([str(props["listeners"]), *extra])
        props["advertised.listeners"] = ",".join([str(props["advertised.listeners"]), *extra])
        props["listener.security.protocol.map"] = ",".join(
            [str(props["listener.security.protocol.map"]), *(f"{x.name}:{x.protocol}" for x in security.listeners)]
        )
    if security is not None:
        props.update(security.properties)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return path


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64. One that starts with '-' is drawn
    again, as Kafka's own Uuid.randomUuid does: a command line would read it as an option."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _cluster_id(data_root: Path) -> str:
    """A cluster id kept beside the nodes' data, so a restart formats nothing anew."""
    path = data_root / "cluster.id"
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    cid = new_cluster_id()
    data_root.mkdir(parents=True, exist_ok=True)
    path.write_text(cid + "\n")
    return cid


def _java(libs: Path, main: str, *args: str, jvm: tuple[str, ...] = (), classpath: tuple[Path, ...] = ()) -> list[str]:
    home = libs.parent
    return [
        "java", *jvm, f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
        "-cp", os.pathsep.join([str(libs / "*"), *map(str, classpath)]), main, *args,
    ]


def format_storage(
    libs: Path, config: Path, node: KafkaNode, data_root: Path, scram_credentials: tuple[str, ...] = ()
) -> None:
    """Format a node's log directory for KRaft unless it holds data already (then keep it).

    ``scram_credentials`` (``SCRAM-SHA-512=[name=u,password=p]``) become SCRAM users in the
    cluster's first metadata, so a SASL listener accepts them from the first start.
    """
    if (node.data_dir / "meta.properties").is_file():
        return
    scram = [a for c in scram_credentials for a in ("--add-scram", c)]
    cmd = _java(libs, _STORAGE_TOOL, "format", f"--cluster-id={_cluster_id(data_root)}", "-c", str(config),
                "--ignore-formatted", *scram,
                jvm=("-Xmx256m", "-XX:TieredStopAtLevel=1"))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
        raise BridgeError(f"kafka: formatting {node.data_dir} failed (exit {done.returncode}): {tail}")


def node_command(libs: Path, config: Path, classpath: tuple[Path, ...] = ()) -> list[str]:
    return _java(libs, _MAIN, str(config), jvm=_JVM_OPTS, classpath=classpath)
