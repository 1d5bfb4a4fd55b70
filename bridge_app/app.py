"""Composition root: config → checked connections → connectors → worker.

Everything that can be wrong with the setup is checked here, before anything is read or
written, so a bad config or an unreachable service fails at start with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from bridge.config import BridgeConfig
from bridge.errors import ConfigError, ProduceError, SchemaError
from bridge.group import GroupMembership, GroupOwnership, check_group_topic
from bridge.heartbeat import HEARTBEAT_HANDLE
from bridge.http_service import bind_listeners, listening_ports
from bridge.kafka import admin_client, check_reachable, ensure_topics, producer_config
from bridge.metrics import MetricsServer
from bridge.offset_follower import OffsetFollower
from bridge.offsets import OffsetStore
from bridge.registry.client import RegistryClientConfig, SchemaRegistryClient, registry_client
from bridge.serde.serializer import RecordSerializer, check_formats, check_subjects
from bridge.task import SourceConnector
from bridge.worker import Worker, WorkerSettings
from bridge_app.connector import connector
from bridge_app.wiring import start_ops, worker_identity

__all__ = [
    "check_connect", "load_config", "offset_problem", "run_bridge", "tail_view", "verify_source",
]

log = logging.getLogger(__name__)


# ---- the connector's seams for the command line -----------------------------------------
# The CLI (bridge_app/cli.py, bridge_app/ops_cli.py) asks here; the connector plugin answers.


def load_config(path: str | Path) -> BridgeConfig:
    """The config file, validated against the connector's model."""
    return connector().load_config(path)


def check_connect(cfg: BridgeConfig) -> Any:
    """``validate --connect``: reach every service, probe permissions, say what would run."""
    return connector().check_connect(cfg)


def offset_problem(cfg: BridgeConfig, partition: dict[str, Any], offset: dict[str, Any] | None) -> str | None:
    """``offsets import``: why the start would refuse this offset (the same checks), or None."""
    return connector().offset_problem(cfg, partition, offset)


def verify_source(cfg: BridgeConfig, name: str, **kw: Any) -> Any:
    """``verify``: the source's current contents against its topic (a report with ``clean``)."""
    return connector().verify_source(cfg, name, **kw)


def _registry_probe(cfg: BridgeConfig) -> Callable[[], None]:
    """One quick GET for /health: is the registry answering? (no retries, a short timeout)"""
    r = cfg.schema_registry
    probe = SchemaRegistryClient(RegistryClientConfig(
        url=r.url,
        username=r.basic_auth.username if r.basic_auth else None,
        password=r.basic_auth.password.get_secret_value() if r.basic_auth else None,
        bearer_token=r.bearer_token.get_secret_value() if r.bearer_token else None,
        ca_file=r.ssl_ca_location, cert_file=r.ssl_certificate_location, key_file=r.ssl_key_location,
        verify=r.ssl_verify, timeout_s=min(3.0, r.timeout_s), max_attempts=1,
    ))

    def answers() -> None:
        probe.subjects()

    return answers


def _snapshots(worker: Worker) -> list[dict[str, Any]]:
    """Snapshot progress of the running connectors, for the REST API and the status page."""
    out = []
    for c in list(worker.connectors):
        progress = getattr(c, "progress", None)
        if progress is not None and hasattr(progress, "metrics"):
            out.append(progress.metrics() | {"fraction": progress.fraction()})
    return out


class _FatalErrors:
    """The producer's error_cb, handed on to the worker once it exists (it needs the producer)."""

    def __init__(self) -> None:
        self.worker: Worker | None = None

    def __call__(self, err: KafkaError) -> None:
        if self.worker is not None:
            self.worker.on_kafka_error(err)


def _create_topics(admin: Any, cfg: BridgeConfig) -> None:
    tc = cfg.topic_creation
    # A broker's default max.message.bytes (1 MiB) is below what the producer may send
    # (two 400 KB images and the envelope): the topics the bridge creates take its size.
    sized = {"max.message.bytes": str(producer_config(cfg.kafka)["message.max.bytes"])}
    topics = {s.topic: sized | dict(tc.config) for s in cfg.source_topics()}
    topics[cfg.offsets_topic] = {"cleanup.policy": "compact"}
    if cfg.status.enabled:
        topics[cfg.status_topic] = {"cleanup.policy": "compact"}
    if cfg.errors.tolerance == "all":
        topics[cfg.dead_letter_topic] = dict(sized)
    if cfg.heartbeat_topic is not None:  # the latest heartbeat of each source partition
        topics[cfg.heartbeat_topic] = {"cleanup.policy": "compact"}
    try:
        ensure_topics(admin, topics, partitions=tc.partitions, replication_factor=tc.replication_factor)
    except ProduceError as e:
        raise ConfigError(f"topic_creation: {e}; check topic_creation (partitions, replication_factor, config) "
                          "and the bridge's permissions") from None
    # Every process joins its name's group, a single one too (bridge.group).
    check_group_topic(admin, cfg.group_topic, cfg.group.partitions)
    ensure_topics(admin, {cfg.group_topic: {}}, partitions=cfg.group.partitions,
                  replication_factor=tc.replication_factor)


def _create_source_topic(admin: Any, cfg: BridgeConfig, topic: str) -> None:
    """The topic of a source found while running (table_discovery)."""
    tc = cfg.topic_creation
    sized = {"max.message.bytes": str(producer_config(cfg.kafka)["message.max.bytes"])}
    ensure_topics(admin, {topic: sized | dict(tc.config)}, partitions=tc.partitions,
                  replication_factor=tc.replication_factor)


async def run_bridge(
    cfg: BridgeConfig,
    *,
    install_signal_handlers: bool = True,
    on_start: Callable[[Worker], None] | None = None,
) -> Worker | None:
    """Run until SIGINT/SIGTERM/SIGHUP or ``worker.stop()`` (drain, commit, return) or a failure (raise).

    Every check comes before the first side effect (topics created, offsets written), in
    this order: metrics port, Kafka, registry, the connector's sources (DynamoDB tables), key
    schemas (and registered subjects with ``auto_register: false``), the offsets topic's
    contents; only then are topics created. ``on_start`` receives the worker once it is built, for embedding.
    """
    worker_ref: list[Worker] = []
    health_answer: list[Callable[[], tuple[bool, str]]] = []  # the ops checks, once the worker runs
    stopping: list[bool] = []

    def health() -> tuple[bool, str]:
        if health_answer:
            return health_answer[0]()
        return worker_ref[0].health() if worker_ref else (False, "STARTING")

    if install_signal_handlers:
        # Installed first, so a stop signal during the start-up checks stops cleanly too
        # (SIGHUP as well: a closed terminal or a supervisor's reload).
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()

        def on_signal() -> None:
            if worker_ref:
                worker_ref[0].stop()
            elif not stopping and main is not None:
                stopping.append(True)
                main.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, on_signal)
    # Every listening port first: a port in use is a start-up error, not a traceback later.
    sockets = bind_listeners(listening_ports(cfg))
    metrics = MetricsServer(sockets["metrics"], healthy=health) if "metrics" in sockets else None
    if metrics is not None:  # /health answers 503 STARTING during the checks
        metrics.start()
    try:
        return await _run(cfg, metrics, sockets.get("rest"), worker_ref, health_answer, on_start)
    except asyncio.CancelledError:
        if not stopping or worker_ref:
            raise
        log.info("bridge %s stopped during start-up: nothing was read or written", cfg.name)
        return None
    finally:
        if metrics is not None:
            metrics.stop()
        for sock in sockets.values():
            sock.close()  # a REST socket the start never reached (closing twice is harmless)


async def _off_loop(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking start-up check (a broker or registry that accepts and never answers
    holds one for its whole timeout) in a daemon thread, so that the event loop, and with it
    SIGTERM, stays responsive: a stop signal ends the wait at once and the thread is left to
    end at its own timeout (a daemon thread does not hold up the exit; the default executor
    would, for the rest of that timeout)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if not done.done():
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)

    def work() -> None:
        try:
            result, error = fn(*args, **kwargs), None
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
            result, error = None, e
        with contextlib.suppress(RuntimeError):  # the loop is gone: the start was stopped
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=f"start-up check {getattr(fn, '__name__', fn)}", daemon=True).start()
    return await done


async def _run(
    cfg: BridgeConfig,
    metrics: MetricsServer | None,
    rest_socket: socket.socket | None,
    worker_ref: list[Worker],
    health_answer: list[Callable[[], tuple[bool, str]]],
    on_start: Callable[[Worker], None] | None,
) -> Worker:
    admin = admin_client(cfg.kafka)
    await _off_loop(check_reachable, admin, str(cfg.kafka["bootstrap.servers"]), kafka=cfg.kafka)

    registry = registry_client(cfg)
    try:
        await _off_loop(registry.subjects)
    except SchemaError as e:
        if e.status in (401, 403):
            raise ConfigError(
                f"schema_registry: the registry refused the credentials ({e}); check schema_registry.basic_auth "
                "or bearer_token"
            ) from None
        raise ConfigError(f"schema_registry.url: {e}; check that the URL is a Schema Registry") from None

    plugin = connector()

    async def create_topic(topic: str) -> None:
        """The topic of a source found while running (e.g. by table_discovery)."""
        await asyncio.to_thread(_create_source_topic, admin, cfg, topic)

    # The connector's sources, checked against the source system (its own one-line errors).
    async with plugin.open(cfg, create_topic=create_topic) as sources:
        connectors = sources.connectors
        check_formats(sources.schemas, sources.formats)
        if not cfg.schema_registry.auto_register:
            schemas = list(sources.schemas)
            if cfg.heartbeat_topic is not None:  # the heartbeat topic's subjects are written too
                schemas.append((cfg.heartbeat_topic, HEARTBEAT_HANDLE))
            await _off_loop(check_subjects, registry, schemas, sources.formats)

        # Read (never write) the offsets first: a corrupt offsets topic stops the start here,
        # before any topic is created.
        offsets = OffsetStore(cfg.kafka, cfg.offsets_topic, cfg.name, check=sources.check_offset)
        await _off_loop(offsets.load)
        _create_topics(admin, cfg)

        exactly_once = cfg.delivery == "exactly-once"
        # Every process is a group member; it shares the work unless it must run alone (solo).
        solo = cfg.solo_reason()
        grouped = solo is None
        # Alone: one transactional id per bridge name (a second process of the name is refused
        # by the group before it reads). Sharing: one per coordination partition (bridge.group),
        # made as partitions come.
        pconf = producer_config(
            cfg.kafka,
            transactional_id=f"{cfg.name}-bridge" if exactly_once and not grouped else None,
            max_in_flight_records=cfg.max_in_flight_records_total,
            buffer_max_bytes=cfg.buffer_max_bytes,
        )
        ownership = GroupOwnership(slots=cfg.group.partitions, session_timeout_ms=cfg.group.session_timeout_ms,
                                   lane_per_slot=exactly_once and grouped, solo=solo)
        errors = _FatalErrors()
        try:
            # Exactly-once: the lanes' producers come with ownership (a process that runs alone
            # makes its one transactional producer only once the group says it is alone: its
            # init_transactions would fence a running process of the same name).
            producer = None if exactly_once else Producer(pconf | {"error_cb": errors})
        except KafkaException as e:  # validated at config load; a last guard for what only shows here
            raise ConfigError(f"kafka: librdkafka refuses the producer settings: {e.args[0].str()}") from None
        worker = Worker(
            WorkerSettings(
                connector_name=cfg.name,
                flush_interval_s=cfg.offsets.flush_interval_ms / 1000,
                max_in_flight_records=cfg.max_in_flight_records,
                max_in_flight_records_total=cfg.max_in_flight_records_total,
                buffer_max_bytes=cfg.buffer_max_bytes,
                shutdown_timeout_s=cfg.shutdown_timeout_s,
                dead_letter_topic=cfg.dead_letter_topic if cfg.errors.tolerance == "all" else None,
                exactly_once=exactly_once,
                max_message_bytes=int(pconf["message.max.bytes"]),
                transaction_timeout_s=int(pconf.get("transaction.timeout.ms", 60000)) / 1000,
                worker_id=worker_identity(cfg),
                task_failure=cfg.errors.task_failure,
                stall_warn_s=cfg.stall.warn_after_s,
                stall_fail_s=cfg.stall.fail_after_s,
                heartbeat_topic=cfg.heartbeat_topic,
                heartbeat_interval_s=(cfg.heartbeat.interval_ms or 0) / 1000,
            ),
            list(connectors),
            producer,
            offsets,
            RecordSerializer(registry, auto_register=cfg.schema_registry.auto_register,
                             frame_encoded=sources.frame_encoded, formats=sources.formats),
            ownership,
        )
        errors.worker = worker
        worker_ref.append(worker)

        async def make_connectors() -> list[SourceConnector]:
            return sources.remake()

        follower: OffsetFollower | None = None
        beside = []
        if grouped:
            loop = asyncio.get_running_loop()
            follower = OffsetFollower(
                offsets, cfg.kafka, group_id=f"{cfg.name}-offset-follower", skip=ownership.owns,
                on_change=lambda: loop.call_soon_threadsafe(worker.wake_connectors),
            )
            follower.start()

        def lane_producer(transactional_id: str | None, error_cb: Callable[[KafkaError], None]) -> Producer:
            return Producer(pconf | {"transactional.id": transactional_id, "error_cb": error_cb})

        membership = GroupMembership(
            kafka=cfg.kafka, name=cfg.name, topic=cfg.group_topic, worker=worker, ownership=ownership,
            follower=follower,
            make_producer=lane_producer if exactly_once and grouped else None,
            handover_timeout_s=cfg.shutdown_timeout_s,
            solo_producer=(lambda: Producer(pconf | {"error_cb": errors})) if exactly_once and solo else None,
        )
        beside.append(membership.run)

        ops = start_ops(cfg, worker, make_connectors=make_connectors, registry_probe=_registry_probe(cfg),
                        snapshots=lambda: _snapshots(worker), rest_socket=rest_socket)
        health_answer.append(ops.health_answer)
        if metrics is not None:  # logged once running: a start-up failure stays one line
            host = cfg.metrics.host
            log.info("metrics on http://%s:%d/metrics", f"[{host}]" if ":" in host else host, metrics.port)
        if on_start is not None:
            on_start(worker)
        if sources.startup_line is not None:
            log.log(*sources.startup_line)  # e.g. WARNING when DynamoDB's slow pure-Python transcoder runs
        log.info("bridge %s running: %d table(s)", cfg.name, len(connectors))
        try:
            await worker.run(beside=beside)
        finally:
            await ops.stop()
            await membership.close()  # after the worker's final commit: then the others take over
            if follower is not None:
                follower.close()
        log.info("bridge %s stopped: %d records produced", cfg.name, worker.records_produced)
        return worker


def tail_view(value: dict[str, Any]) -> dict[str, Any]:
    """``tail``: a decoded value as the connector shows it."""
    return connector().tail_view(value)
