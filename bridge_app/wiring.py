"""Wires the operations layer to a running worker: health checks, REST server, status
topic, ``--until-caught-up``. ``bridge_app/app.py`` calls ``start_ops`` once and ``stop`` at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.config import BridgeConfig, is_loopback
from bridge.http_service import bind
from bridge.metrics import METRICS
from bridge.ops.control import Control
from bridge.ops.health import CachedProbe, HealthChecks, State
from bridge.ops.rest import RestServer
from bridge.ops.status_topic import StatusWriter
from bridge.task import SourceConnector

if TYPE_CHECKING:
    from bridge.worker import Worker

__all__ = ["OpsHandle", "start_ops", "watch_until_caught_up", "worker_identity"]

log = logging.getLogger(__name__)


def worker_identity(cfg: BridgeConfig) -> str:
    """``host:pid``, or ``host:rest-port`` when the REST API runs (how Kafka Connect names workers)."""
    host = socket.gethostname()
    return f"{host}:{cfg.rest.port}" if cfg.rest.port else f"{host}:{os.getpid()}"


@dataclass
class OpsHandle:
    health: HealthChecks
    control: Control
    rest: RestServer | None = None
    status: StatusWriter | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def health_answer(self) -> tuple[bool, str]:
        doc = self.health.evaluate()
        return doc["status"] != "FAILED", json.dumps(doc, sort_keys=True)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.status is not None:
            await asyncio.to_thread(self.status.close)
        if self.rest is not None:
            await asyncio.to_thread(self.rest.stop)  # joins the server's thread: not on this loop


def _health_checks(cfg: BridgeConfig, worker: Worker, registry_probe: Callable[[], None]) -> HealthChecks:
    ops = worker.ops
    checks = HealthChecks()

    def worker_check() -> tuple[State, str | None]:
        answer = getattr(worker, "health", None)
        if answer is not None:  # the worker's own verdict (stall watch), where it has one
            ok, text = answer()
            if not ok:
                return ("DEGRADED" if text.startswith("DEGRADED") else "FAILED"), text
            return "OK", None
        if worker._failure is not None:
            return "FAILED", f"stopped on an error: {worker._failure}"
        if worker._stop.is_set():
            return "FAILED", "stopping"
        return "OK", None

    def tasks_check() -> tuple[State, str | None]:
        failed = ops.failed_tasks()
        if failed:
            return "FAILED", "; ".join(f"task {t.id} FAILED: {t.trace}" for t in failed[:5])
        if ops.state == "FAILED":
            return "FAILED", ops.trace
        return "OK", None

    def lag_check() -> tuple[State, str | None]:
        behind = [(t.id, t.millis_behind_latest()) for t in ops.tasks.values()]
        over = [(i, ms) for i, ms in behind if ms is not None and ms > cfg.health.max_lag_ms]
        if over:
            worst_id, worst_ms = max(over, key=lambda x: x[1])
            return "DEGRADED", (f"{len(over)} task(s) behind by more than health.max_lag_ms={cfg.health.max_lag_ms}; "
                                f"most: {worst_id} at {worst_ms} ms")
        return "OK", None

    def retry_check() -> tuple[State, str | None]:
        slow = [(t.id, t.polling_s()) for t in ops.tasks.values() if t.polling_s() > cfg.health.max_retrying_s]
        if slow:
            tid, s = max(slow, key=lambda x: x[1])
            return "DEGRADED", (f"{len(slow)} task(s) without an answer from the source for more than "
                                f"health.max_retrying_s={cfg.health.max_retrying_s:g} (retrying); longest: {tid}, {s:.0f} s")
        return "OK", None

    checks.add("worker", worker_check)
    checks.add("tasks", tasks_check)
    checks.add("lag", lag_check)
    checks.add("retrying", retry_check)
    checks.add("schema_registry", CachedProbe(registry_probe, cfg.health.registry_probe_s, "schema registry"))
    METRICS.gauge("bridge_health_status", lambda: float(checks.rank()), "0 OK, 1 DEGRADED, 2 FAILED")
    METRICS.gauge("bridge_connector_paused", lambda: float(ops.state in ("PAUSED", "STOPPED")),
                  "1 while the connector is paused or stopped by request")
    return checks


def start_ops(
    cfg: BridgeConfig,
    worker: Worker,
    *,
    make_connectors: Callable[[], Awaitable[list[SourceConnector]]],
    registry_probe: Callable[[], None],
    snapshots: Callable[[], list[dict[str, Any]]] = lambda: [],
    rest_socket: socket.socket | None = None,
) -> OpsHandle:
    """Call on the worker's event loop, after the worker is built and before it runs.

    ``rest_socket``: the REST port, bound at the start of the run (``bridge.http_service.bind``)."""
    from bridge.ops.offsets_tool import write_offsets

    loop = asyncio.get_running_loop()

    async def reset(partitions: list[dict[str, Any]]) -> int:
        return await asyncio.to_thread(write_offsets, cfg, [(p, None) for p in partitions])

    control = Control(worker, make_connectors, reset)
    handle = OpsHandle(_health_checks(cfg, worker, registry_probe), control)
    if cfg.rest.port is not None:
        if rest_socket is None:
            rest_socket = bind(cfg.rest.host, cfg.rest.port, "rest")
        token = cfg.rest.bearer_token.get_secret_value() if cfg.rest.bearer_token else None

        def offsets() -> list[tuple[dict[str, Any], dict[str, Any]]]:
            return [(p, o) for p in worker.offsets.partitions() if (o := worker.offsets.offset(p)) is not None]

        handle.rest = RestServer(sock=rest_socket, ops=worker.ops, control=control, loop=loop,
                                 health=handle.health, offsets=offsets, snapshots=snapshots, bearer_token=token).start()
        log.info("REST API listening on %s (status page %s/status)", handle.rest.listening, handle.rest.url)
        if token is None and not is_loopback(cfg.rest.host):
            log.warning("REST API without a token on %s (rest.allow_unauthenticated): whoever reaches the port may "
                        "pause, stop and reset offsets", handle.rest.listening)
    if cfg.status.enabled:
        handle.status = StatusWriter(cfg.kafka, cfg.status_topic, worker.ops, interval_s=cfg.status.interval_ms / 1000,
                                     rest_url=handle.rest.url if handle.rest else None)
        handle.tasks.append(asyncio.create_task(handle.status.run(), name="status topic"))
    return handle


def caught_up(worker: Worker) -> bool:
    """Whether this worker has read everything there is right now (``run --until-caught-up``).

    Every part must have been seen, not only what runs: the worker has started its
    connectors and knows its share (in a group: its first assignment is done), every
    connector still running has listed its source at least once and has nothing left to
    start (``pending``; one that cannot say is never caught up), and every task it runs has
    read to its end. Without the first two an empty start (no connector running yet, or no
    shard listed yet) looks like "nothing left to read".
    """
    if not worker._started or not worker.ownership.ready():
        return False
    done = {t.get_name() for t in list(worker._runners) if t.done()}
    for connector in list(worker.connectors):
        if f"connector {connector.name}" in done:
            continue  # ended (a one-off snapshot that finished, a table that stopped alone)
        pending = getattr(connector, "pending", None)
        if pending is None or pending():
            return False
    ops = worker.ops
    for key in list(worker._running):
        state = ops.tasks.get(key)
        if state is None or state.state != "RUNNING" or not state.caught_up:
            return False
    return ops.caught_up()


async def watch_until_caught_up(worker: Worker, interval_s: float = 0.2) -> None:
    """``run --until-caught-up``: stop (drain, commit, exit 0) once every shard has been read to
    its current end, every snapshot is done, and every record is acknowledged and committed."""
    while True:
        await asyncio.sleep(interval_s)
        if worker._stop.is_set():
            return
        if not caught_up(worker):
            continue
        if worker.in_flight() or not worker.offsets_settled():
            worker._flush_now.set()
            continue
        log.info("caught up: every source partition read to its end and every offset committed; stopping (--until-caught-up)")
        worker.stop()
        return


def until_caught_up_hook(worker: Worker) -> None:
    """``on_start`` callback for ``run --until-caught-up``."""
    task = asyncio.get_running_loop().create_task(watch_until_caught_up(worker), name="until caught up")
    with contextlib.suppress(AttributeError):
        worker._ops_watch = task  # type: ignore[attr-defined]  # keep a reference
