"""Connector, task and worker state in a compacted topic, as Kafka Connect's ``status.storage.topic``.

Any worker of a group, or ``ddb-kafka-bridge status`` with no bridge running, reads the
topic to its end and knows, per task: its state (RUNNING, PAUSED, FAILED with the error and
its time, FINISHED), its worker, its position and its lag as of the last write. Keys:

- ``status-connector-<name>``: ``{state, trace, worker_id, time_ms}``
- ``status-task-<name>-<task id>``: the task's JSON (``TaskState.to_json``) and ``time_ms``
- ``status-worker-<worker id>``: ``{worker_id, connector, rest_url, time_ms}``
- ``status-graph-<name>-<table>``: the shard graph as last listed (parents, closed, reading)

Written on every state change and every ``status.interval_ms`` (positions and lag move
without a state change; the worker record is the process's heartbeat, removed with a
tombstone when it stops cleanly: ``bridge/ops/liveness.py``); a task that is gone (the
connector was stopped) gets a tombstone. The writes are best effort: a status record
that cannot be written is logged, never a reason to stop moving data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from confluent_kafka import KafkaException, Producer

from bridge.kafka import client_config
from bridge.ops.runtime import OpsState, TaskState

__all__ = ["StatusWriter", "parse_status_key"]

log = logging.getLogger(__name__)


def parse_status_key(name: str, key: str) -> tuple[str, str] | None:
    """(kind, id) of a status key of connector ``name``: connector, task, worker or graph."""
    for kind in ("connector", "task", "graph"):
        prefix = f"status-{kind}-{name}"
        if key == prefix and kind == "connector":
            return kind, name
        if key.startswith(prefix + "-") and kind != "connector":
            return kind, key[len(prefix) + 1:]
    if key.startswith("status-worker-"):
        return "worker", key[len("status-worker-"):]
    return None


class StatusWriter:
    def __init__(self, kafka: dict[str, Any], topic: str, ops: OpsState, *, interval_s: float,
                 rest_url: str | None = None) -> None:
        self.topic = topic
        self.ops = ops
        self.interval_s = interval_s
        self.rest_url = rest_url
        self._producer = Producer(client_config(kafka) | {"enable.idempotence": True, "acks": "all",
                                                         "linger.ms": 50})
        self._wake = asyncio.Event()
        self._written_tasks: dict[str, TaskState] = {}
        self._warned = False
        self.writes = 0
        ops.changed = self._wake.set

    def _produce(self, key: str, value: dict[str, Any] | None) -> None:
        data = None if value is None else json.dumps(value, sort_keys=True, default=str).encode()
        try:
            self._producer.produce(self.topic, data, key.encode(), on_delivery=self._delivered)
        except (BufferError, KafkaException) as e:
            self._warn(str(e))

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._warn(err.str())
        else:
            self.writes += 1

    def _warn(self, text: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("status topic %s: write failed (%s); status is best effort, data keeps flowing", self.topic, text)

    def write_all(self) -> None:
        ops, now = self.ops, int(time.time() * 1000)
        self._produce(f"status-connector-{ops.name}",
                      {"name": ops.name, "state": ops.state, "trace": ops.trace, "worker_id": ops.worker_id,
                       "time_ms": now})
        self._produce(f"status-worker-{ops.worker_id}",
                      {"worker_id": ops.worker_id, "connector": ops.name, "rest_url": self.rest_url, "time_ms": now})
        current: dict[str, TaskState] = {}
        for t in list(ops.tasks.values()) + list(ops.finished.values()):
            key = f"status-task-{ops.name}-{t.id}"
            current[key] = t
            self._produce(key, t.to_json() | {"name": ops.name, "time_ms": now})
        if ops.state == "STOPPED":  # stopped on request: its tasks are gone (a shutdown keeps them, see close)
            for key in set(self._written_tasks) - set(current):
                self._produce(key, None)
            self._written_tasks = current
        else:
            self._written_tasks |= current
        for c in list(ops.connectors.values()):
            describe = getattr(c, "describe", None)
            if describe is not None:
                graph = describe()
                self._produce(f"status-graph-{ops.name}-{graph['table']}", graph | {"name": ops.name, "time_ms": now})
        self._producer.poll(0)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            try:
                self.write_all()
            except Exception as e:  # noqa: BLE001 - best effort, see the module docstring
                self._warn(f"{type(e).__name__}: {e}")
            await asyncio.sleep(0.05)  # coalesce a burst of changes into one write

    def close(self, timeout_s: float = 1.0) -> None:
        """The process ends: its connector and tasks become UNASSIGNED, positions kept.

        Best effort and briefly: the worker has used ``shutdown_timeout_s`` already, and a
        broker that is away must not hold the exit (the status is information, not data).
        """
        ops, now = self.ops, int(time.time() * 1000)
        with contextlib.suppress(Exception):
            self._produce(f"status-connector-{ops.name}", {"name": ops.name, "state": "UNASSIGNED", "trace": ops.trace,
                                                           "worker_id": ops.worker_id, "time_ms": now})
            # The worker record is this process's heartbeat (bridge.ops.liveness): gone with it.
            self._produce(f"status-worker-{ops.worker_id}", None)
            for key, t in self._written_tasks.items():
                doc = t.to_json() | {"name": ops.name, "time_ms": now}
                if t.state not in ("FINISHED", "FAILED"):
                    doc["state"] = "UNASSIGNED"
                self._produce(key, doc)
        self._producer.flush(timeout_s)
