"""``start_position: at_timestamp``: read from the trim horizon, skip what is older.

DynamoDB Streams has no AT_TIMESTAMP iterator (Kinesis has), so a shard with no stored
offset is read from TRIM_HORIZON and its records are dropped until the first one whose
``ApproximateCreationDateTime`` is at or after the configured time; from then on
everything passes (a shard's records are in write order). The dropped records are
covered by the batch's offset, so a restart does not read them again.
"""

from __future__ import annotations

import logging

from bridge.task import Batch, SourceTask

__all__ = ["SkipOlder"]

log = logging.getLogger(__name__)


class SkipOlder(SourceTask):
    """Wraps a shard reader; drops records created before ``start_ms`` until one is not."""

    def __init__(self, inner: SourceTask, start_ms: int, *, table: str) -> None:
        self.inner = inner
        self.partition = inner.partition
        self._start_ms: int | None = start_ms
        self._table = table
        self.skipped = 0

    async def poll(self) -> Batch:
        batch = await self.inner.poll()
        start_ms = self._start_ms
        if start_ms is None or not batch.records:
            return batch
        records = batch.records
        # A record without a creation time cannot be judged older: it passes.
        keep = next((i for i, r in enumerate(records)
                     if (r.position.get("approximate_creation_ms") or start_ms) >= start_ms), len(records))
        self.skipped += keep
        if keep < len(records):
            self._start_ms = None
            log.info("table %s %s: skipped %d records older than start_timestamp; reading on from there",
                     self._table, self.partition.get("shard"), self.skipped)
        if not keep:
            return batch
        return Batch(records[keep:], batch.offset, batch.final, batch.reason, batch.extra)

    async def close(self) -> None:
        await self.inner.close()
