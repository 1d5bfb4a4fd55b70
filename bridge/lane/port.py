"""The one interface a lane's helpers (commits, dead letters) get of their producer lane.

The helpers used to hold the whole ``ProducerLane`` and the lane them, so the four modules
imported each other in a circle. Now the lane is built on them and hands each this view of
itself: what they read (settings, producer, offsets, progress, bounds), the commit state
they share with the produce path, and three calls (``fail``, ``kick``, ``held``).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from confluent_kafka import Producer

from bridge.lane.accounting import Bounds, Progress
from bridge.offsets import OffsetStore
from bridge.settings import WorkerSettings

__all__ = ["LanePort"]


class LanePort(Protocol):
    """A producer lane as its commits and dead letters see it."""

    settings: WorkerSettings
    producer: Producer
    offsets: OffsetStore
    bounds: Bounds
    progress: dict[str, Progress]
    # The exactly-once commit's shared state: it drains the lane's records, and new batches
    # wait while it runs.
    records_in_flight: int
    drained: asyncio.Event
    committing: bool
    commit_done: asyncio.Event
    partial_batch: bool  # a task was cancelled with its batch half produced
    fatal: bool  # the producer reported a fatal error (e.g. fenced): it cannot even abort

    def fail(self, error: BaseException) -> None:
        """Stop the worker with this error."""

    def kick(self) -> None:
        """Something was produced: the lane's poll loop has callbacks to serve."""

    def held(self) -> bool:
        """Offset writes wait while true (a group worker that may have lost its units)."""
