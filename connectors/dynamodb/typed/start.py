"""A typed table's first schema version, before its first record: the subject's latest
version (a restart goes on from it, so a widened field stays widened), grown by a sample
Scan of the table. Both the stream and a snapshot-only Scan start here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bridge.errors import ConfigError
from bridge.serde.converter import subject_name
from connectors.dynamodb.client import AwsJsonClient
from connectors.dynamodb.table import TableInfo

__all__ = ["start_typed"]


async def start_typed(typed: Any, *, ddb: AwsJsonClient, table: TableInfo, topic: str,
                      latest: Callable[[str], str | None] | None) -> None:
    """``typed`` (the table's TypedTable) resumes from ``latest(subject)`` and absorbs the sample;
    ``latest`` blocks (registry HTTP), so it runs off the loop."""
    from connectors.dynamodb.typed.from_avro import rec_from_value_schema
    from connectors.dynamodb.typed.sample import sample_items

    if latest is not None:
        subject = subject_name(typed.handle.strategy, topic, typed.handle.value_schema, is_key=False)
        text = await asyncio.to_thread(latest, subject)
        if text is not None:
            try:
                typed.resume(rec_from_value_schema(text, typed.cfg.image))
            except (ValueError, KeyError, TypeError, StopIteration) as e:
                raise ConfigError(f"tables: {table.name}: the latest version of subject {subject!r} is not "
                                  f"a typed schema of this table ({e!r:.80}); give the table another topic or "
                                  f"subject, or delete the subject") from None
    if typed.cfg.sample_items:
        typed.absorb_items(await sample_items(ddb, table.name, typed.cfg.sample_items))
    typed.sampled = True
