"""Composition root: config → checked connections → connectors → worker.

Everything that can be wrong with the setup is checked here, before anything is read or
written, so a bad config or an unreachable service fails at start with one line.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Producer

from bridge.config import BridgeConfig, TableConfig
from bridge.errors import ConfigError, RetriableError, SchemaError
from bridge.kafka import admin_client, check_reachable, ensure_topics, producer_config
from bridge.group import GroupMembership, check_group_topic
from bridge.metrics import MetricsServer
from bridge.offset_follower import OffsetFollower
from bridge.offsets import OffsetStore
from bridge.ops.wiring import start_ops, worker_identity
from bridge.registry.client import RegistryClientConfig, SchemaRegistryClient
from bridge.serde.serializer import RecordSerializer
from bridge.worker import Worker, WorkerSettings
from bridge.task import SourceConnector
from connectors.dynamodb import RetryPolicy, make_clients
from connectors.dynamodb.discovery import TableDiscovery
from connectors.dynamodb.http import KeepAlivePool
from connectors.dynamodb.snapshot import table_connectors
from connectors.dynamodb.transcode import frame_records

__all__ = ["run_bridge"]

log = logging.getLogger(__name__)

STARTUP_RETRY = RetryPolicy(base_s=0.2, cap_s=2.0, max_attempts=4)


def registry_client(cfg: BridgeConfig) -> SchemaRegistryClient:
    r = cfg.schema_registry
    return SchemaRegistryClient(
        RegistryClientConfig(
            url=r.url,
            username=r.basic_auth.username if r.basic_auth else None,
            password=r.basic_auth.password.get_secret_value() if r.basic_auth else None,
            bearer_token=r.bearer_token.get_secret_value() if r.bearer_token else None,
            ca_file=r.ssl_ca_location,
            cert_file=r.ssl_certificate_location,
            key_file=r.ssl_key_location,
            verify=r.ssl_verify,
            timeout_s=r.timeout_s,
            max_attempts=r.max_retries + 1,
        )
    )


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
    return lambda: probe.subjects() and None


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


async def _check_tables(connectors: list[SourceConnector], endpoint: str) -> None:
    try:
        await asyncio.gather(*(c.validate() for c in connectors))
    except RetriableError as e:
        raise ConfigError(f"aws: cannot reach DynamoDB at {endpoint}: {e}") from None


async def run_bridge(
    cfg: BridgeConfig,
    *,
    install_signal_handlers: bool = True,
    on_start: Callable[[Worker], None] | None = None,
) -> Worker:
    """Run until SIGINT/SIGTERM or ``worker.stop()`` (drain, commit, return) or a failure (raise).

    ``on_start`` receives the worker once it is built, for embedding (tests, other runtimes).
    """
    admin = admin_client(cfg.kafka)
    check_reachable(admin, str(cfg.kafka["bootstrap.servers"]))

    registry = registry_client(cfg)
    try:
        registry.subjects()
    except SchemaError as e:
        raise ConfigError(f"schema_registry.url: {e}") from None

    # One keep-alive pool for DynamoDB and Streams; the poll scheduler keeps fewer Streams calls
    # in flight than it has connections per endpoint (connectors/dynamodb/scheduler.py).
    async with KeepAlivePool(max_connections=256, timeout_s=30.0, connect_timeout_s=5.0) as http:
        ddb, streams = make_clients(
            region=cfg.aws.region,
            profile=cfg.aws.profile,
            endpoint_url=cfg.aws.endpoint_url,
            streams_endpoint_url=cfg.aws.streams_endpoint_url,
            http=http,
            retry=STARTUP_RETRY,
        )
        # A table's stream, its snapshot (scan or export), or both coupled by a handoff mode.
        connectors: list[SourceConnector] = [
            c for t in cfg.tables for c in table_connectors(cfg, t, ddb=ddb, streams=streams)
        ]
        tc = cfg.topic_creation
        # A broker's default max.message.bytes (1 MiB) is below what the producer may send
        # (two 400 KB images and the envelope): the topics the bridge creates take its size.
        sized = {"max.message.bytes": str(producer_config(cfg.kafka)["message.max.bytes"])}
        if cfg.table_discovery is not None:

            async def discovered(t: TableConfig) -> list[SourceConnector]:
                await asyncio.to_thread(ensure_topics, admin, {cfg.topic_for(t): sized | dict(tc.config)},
                                        partitions=tc.partitions, replication_factor=tc.replication_factor)
                return table_connectors(cfg, t, ddb=ddb, streams=streams)

            connectors.append(TableDiscovery(config=cfg.table_discovery, ddb=ddb, make_connectors=discovered,
                                             listed={t.name for t in cfg.tables}))
        await _check_tables(connectors, ddb.url)
        ddb.retry = streams.retry = RetryPolicy()

        topics = {cfg.topic_for(t): sized | dict(tc.config) for t in cfg.tables}
        topics[cfg.offsets_topic] = {"cleanup.policy": "compact"}
        if cfg.status.enabled:
            topics[cfg.status_topic] = {"cleanup.policy": "compact"}
        if cfg.errors.tolerance == "all":
            topics[cfg.dead_letter_topic] = dict(sized)
        ensure_topics(admin, topics, partitions=tc.partitions, replication_factor=tc.replication_factor)
        if cfg.group.enabled:
            check_group_topic(admin, cfg.group_topic, cfg.group.partitions)
            ensure_topics(admin, {cfg.group_topic: {}}, partitions=cfg.group.partitions,
                          replication_factor=tc.replication_factor)

        offsets = OffsetStore(cfg.kafka, cfg.offsets_topic, cfg.name)
        offsets.load()
        exactly_once = cfg.delivery == "exactly-once"
        grouped = cfg.group.enabled
        # One transactional id per bridge name: a second process with the same name fences this one.
        # In a group, one per coordination partition instead (bridge.group), made as partitions come.
        pconf = producer_config(
            cfg.kafka,
            transactional_id=f"{cfg.name}-bridge" if exactly_once and not grouped else None,
            max_in_flight_records=cfg.max_in_flight_records_total,
            buffer_max_bytes=cfg.buffer_max_bytes,
        )
        errors = _FatalErrors()
        producer = None if exactly_once and grouped else Producer(pconf | {"error_cb": errors})
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
            ),
            list(connectors),
            producer,
            offsets,
            RecordSerializer(registry, auto_register=cfg.schema_registry.auto_register, frame_encoded=frame_records),
        )
        errors.worker = worker

        async def make_connectors() -> list[SourceConnector]:
            made = [c for t in cfg.tables for c in table_connectors(cfg, t, ddb=ddb, streams=streams)]
            if cfg.table_discovery is not None:
                made.append(TableDiscovery(config=cfg.table_discovery, ddb=ddb, make_connectors=discovered,
                                           listed={t.name for t in cfg.tables}))
            return made

        ops = start_ops(cfg, worker, make_connectors=make_connectors, registry_probe=_registry_probe(cfg),
                        snapshots=lambda: _snapshots(worker))
        membership: GroupMembership | None = None
        follower: OffsetFollower | None = None
        beside = []
        if grouped:
            loop = asyncio.get_running_loop()
            follower = OffsetFollower(
                offsets, cfg.kafka, group_id=f"{cfg.name}-offset-follower", skip=worker.owns,
                on_change=lambda: loop.call_soon_threadsafe(worker.wake_connectors),
            )
            follower.start()

            def lane_producer(transactional_id: str | None, error_cb: Callable[[KafkaError], None]) -> Producer:
                return Producer(pconf | {"transactional.id": transactional_id, "error_cb": error_cb})

            membership = GroupMembership(
                kafka=cfg.kafka, name=cfg.name, topic=cfg.group_topic, slots=cfg.group.partitions,
                session_timeout_ms=cfg.group.session_timeout_ms, worker=worker, follower=follower,
                make_producer=lane_producer if exactly_once else None, handover_timeout_s=cfg.shutdown_timeout_s,
            )
            follower._skip = membership.owns
            beside.append(membership.run)
        metrics = None
        if cfg.metrics.port is not None:
            metrics = MetricsServer(cfg.metrics.port, cfg.metrics.host, healthy=ops.health_answer).start()
            log.info("metrics on http://%s:%d/metrics", cfg.metrics.host, metrics.port)
        if install_signal_handlers:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, worker.stop)
        if on_start is not None:
            on_start(worker)
        log.info("bridge %s running: %d table(s)", cfg.name, len(connectors))
        try:
            await worker.run(beside=beside)
        finally:
            await ops.stop()
            if membership is not None:
                await membership.close()  # after the worker's final commit: then the others take over
            if follower is not None:
                follower.close()
            if metrics is not None:
                metrics.stop()
        log.info("bridge %s stopped: %d records produced", cfg.name, worker.records_produced)
        return worker
