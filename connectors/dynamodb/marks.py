"""A task that only stores an offset: how a connector makes a decision durable.

Connectors cannot write offsets themselves; the worker writes a task's offset once the
records before it are acknowledged, and a *final* batch's offset is durable before the
connector hears ``task_finished``. A task with no records and one final batch is
therefore the way to persist a fact before acting on it: the export a snapshot asked for
(so a restart does not request a second one), the stream positions an ``initial``
snapshot recorded before it started.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.task import Batch, SourceTask

__all__ = ["OffsetTask"]


class OffsetTask(SourceTask):
    def __init__(self, partition: dict[str, Any], offset: dict[str, Any], reason: str = "mark") -> None:
        self.partition = partition
        self.offset = offset
        self.reason = reason
        self.durable = asyncio.Event()

    async def poll(self) -> Batch:
        return Batch([], self.offset, final=True, reason=self.reason)
