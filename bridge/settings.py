"""The worker's settings, derived from the config by the composition root (``bridge_app.app``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WorkerSettings"]


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    connector_name: str
    flush_interval_s: float = 1.0
    max_in_flight_records: int = 20000  # per task
    max_in_flight_records_total: int = 100000  # per worker: tasks × the per-task bound bounds nothing
    buffer_max_bytes: int = 256 * 1024 * 1024  # per worker: 2 × payload + 2 KiB per record (see accounting.Entry)
    shutdown_timeout_s: float = 30.0
    dead_letter_topic: str | None = None  # None: errors.tolerance = none
    exactly_once: bool = False
    max_message_bytes: int = 2 * 1024 * 1024  # the producer's message.max.bytes
    transaction_timeout_s: float = 60.0
    worker_id: str = "local"  # who runs the tasks, in the REST API and the status topic
    task_failure: str = "stop"  # errors.task_failure: "fail-task" lets the other tasks go on
    stall_warn_s: float = 60.0  # oldest unacknowledged record this old: WARNING and /health DEGRADED
    stall_fail_s: float | None = 900.0  # this old: stop (exit 1); None: wait forever
    heartbeat_topic: str | None = None  # None: no heartbeats (bridge.heartbeat)
    heartbeat_interval_s: float = 0.0
