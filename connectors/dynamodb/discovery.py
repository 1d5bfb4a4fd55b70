"""Tables found by name prefix, regular expression or tag, followed while the bridge runs.

Every ``interval_ms`` the connector lists the account's tables (``ListTables``), keeps those
whose name matches, and, when tags are asked for, reads each candidate's tags
(``ListTagsOfResource``, once per table: tags rarely change and the call is rate-limited).
A new match starts like a listed table (its stream, or its snapshot mode); a table that
disappears from the listing, or whose stream is disabled, stops cleanly: its readers'
offsets are committed, a log line and ``bridge_tables_stopped_total`` say so, and the
other tables carry on. Confluent's and Redpanda's DynamoDB sources discover tables the
same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.errors import ConfigError
from bridge.metrics import METRICS
from bridge.task import SourceConnector, TaskRuntime
from connectors.dynamodb.client import AwsApiError, AwsJsonClient
from connectors.dynamodb.config import TableConfig, TableDiscoveryConfig

__all__ = ["TableDiscovery", "list_tables"]

log = logging.getLogger(__name__)


async def list_tables(ddb: AwsJsonClient) -> list[str]:
    """Every table name in the account and region (paginated)."""
    names: list[str] = []
    payload: dict[str, Any] = {}
    while True:
        page = await ddb.call("ListTables", payload)
        names.extend(page.get("TableNames", []))
        last = page.get("LastEvaluatedTableName")
        if not last:
            return names
        payload = {"ExclusiveStartTableName": last}


async def table_tags(ddb: AwsJsonClient, table: str) -> dict[str, str]:
    desc = (await ddb.call("DescribeTable", {"TableName": table}))["Table"]
    tags: dict[str, str] = {}
    payload: dict[str, Any] = {"ResourceArn": desc["TableArn"]}
    while True:
        page = await ddb.call("ListTagsOfResource", payload)
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        token = page.get("NextToken")
        if not token:
            return tags
        payload = {"ResourceArn": desc["TableArn"], "NextToken": token}


class TableDiscovery(SourceConnector):
    """Starts and stops the connectors of the tables that match ``config``."""

    def __init__(
        self,
        *,
        config: TableDiscoveryConfig,
        ddb: AwsJsonClient,
        make_connectors: Callable[[TableConfig], Awaitable[list[SourceConnector]]],
        listed: set[str],
    ) -> None:
        self.name = "discovery"
        self._config = config
        self._ddb = ddb
        self._make = make_connectors
        self._listed = listed  # named in tables[]: already running, never started here
        self._tags: dict[str, dict[str, str]] = {}
        self.running: dict[str, list[SourceConnector]] = {}
        self._wake = asyncio.Event()

    async def validate(self) -> None:
        try:
            await list_tables(self._ddb)
        except AwsApiError as e:
            raise ConfigError(f"table_discovery: cannot list tables ({e}); the bridge needs dynamodb:ListTables") from None

    async def _matches(self, names: list[str]) -> list[str]:
        cfg = self._config
        out = []
        for name in names:
            if name in self._listed or not cfg.matches_name(name):
                continue
            if cfg.tags:
                if name not in self._tags:
                    try:
                        self._tags[name] = await table_tags(self._ddb, name)
                    except AwsApiError as e:
                        if e.code == "ResourceNotFoundException":
                            continue  # deleted between the listing and now
                        raise
                if not cfg.matches_tags(self._tags[name]):
                    continue
            out.append(name)
        return out

    async def run(self, runtime: TaskRuntime) -> None:
        interval = self._config.interval_ms / 1000
        while True:
            names = await list_tables(self._ddb)
            present = set(names)
            for name in await self._matches(names):
                if name not in self.running:
                    await self._start(runtime, name)
            for name in [n for n in self.running if n not in present]:
                await self._stop(runtime, name, "deleted")
            for name in [n for n in self._tags if n not in present]:
                self._tags.pop(name, None)  # a table re-created under the name may carry other tags
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _start(self, runtime: TaskRuntime, name: str) -> None:
        t = TableConfig(name=name, **self._config.template.model_dump())
        connectors = await self._make(t)  # the composition root creates its topic too
        try:
            for c in connectors:
                await c.validate()
        except ConfigError as e:
            # No stream yet (or being created): looked at again at the next interval.
            log.warning("table_discovery: table %s matches but cannot be read yet: %s", name, e)
            return
        self.running[name] = connectors
        METRICS.inc("bridge_tables_started_total", help="tables started by discovery", table=name)
        log.info("table_discovery: table %s found; starting it (snapshot.mode %s)", name, t.snapshot.mode)
        for c in connectors:
            runtime.add_connector(c)

    async def _stop(self, runtime: TaskRuntime, name: str, why: str) -> None:
        connectors = self.running.pop(name, [])
        already = any(getattr(c, "stopped_reason", None) for c in connectors)  # it said so itself
        remove = getattr(runtime, "remove_connector", None)
        for c in connectors:
            if remove is not None:
                await remove(c)
        if already:
            return
        METRICS.inc("bridge_tables_stopped_total", help="tables stopped while running (deleted, stream disabled)",
                    table=name, reason=why)
        log.warning("table_discovery: table %s %s; its readers stopped, the other tables carry on", name, why)
