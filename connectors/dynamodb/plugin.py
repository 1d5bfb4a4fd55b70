"""The DynamoDB connector as a plugin of the bridge (``bridge.plugin``), found by its entry point.

Everything the composition root needs that knows the sources are DynamoDB tables: the
config model, the clients and the connectors of a run (streams, snapshots, discovery), and
the command line's seams (``validate --connect``, ``verify``, ``offsets import``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bridge.errors import ConfigError, RetriableError
from bridge.plugin import Sources
from bridge.serde.formats import TopicFormats
from bridge.task import RecordSchema, SourceConnector
from bridge.transforms import TransformStage
from connectors.dynamodb.client import AwsApiError, RetryPolicy, make_clients
from connectors.dynamodb.config import DynamoDBConfig, TableConfig, load_config, parse_config
from connectors.dynamodb.discovery import TableDiscovery
from connectors.dynamodb.envelope import EnvelopeSchema, RecordFormat
from connectors.dynamodb.http import KeepAlivePool
from connectors.dynamodb.offset_shapes import check_offset, check_partition
from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.snapshot import table_connectors
from connectors.dynamodb.streams import StreamsConnector
from connectors.dynamodb.table import TableInfo
from connectors.dynamodb.transcode import frame_records, startup_line
from connectors.dynamodb.transforms import table_stage

__all__ = ["PLUGIN", "DynamoDBPlugin"]

STARTUP_RETRY = RetryPolicy(base_s=0.2, cap_s=2.0, max_attempts=4)


class DynamoDBPlugin:
    name = "dynamodb"

    def load_config(self, path: str | Path) -> DynamoDBConfig:
        return load_config(path)

    def parse_config(self, data: Any, source: str = "config") -> DynamoDBConfig:
        return parse_config(data, source)

    @asynccontextmanager
    async def open(
        self, cfg: DynamoDBConfig, *, create_topic: Callable[[str], Awaitable[None]]
    ) -> AsyncIterator[Sources]:
        # One keep-alive pool for DynamoDB and Streams; the poll scheduler keeps fewer Streams calls
        # in flight than it has connections per endpoint (connectors/dynamodb/scheduler.py).
        # Start-up checks wait 5 s per call (DescribeTable answers in milliseconds), so an
        # endpoint that accepts and never answers fails the start in seconds, not minutes.
        async with KeepAlivePool(max_connections=256, timeout_s=5.0, connect_timeout_s=5.0) as http:
            ddb, streams = make_clients(
                region=cfg.aws.region,
                profile=cfg.aws.profile,
                role=cfg.aws.assume_role(),
                endpoint_url=cfg.aws.endpoint_url,
                streams_endpoint_url=cfg.aws.streams_endpoint_url,
                http=http,
                retry=STARTUP_RETRY,
            )
            # With other tables beside it (several listed, or discovery), a deleted table or a
            # disabled stream stops that table alone; a bridge of one table stops with one line.
            alone = cfg.table_discovery is not None or len(cfg.tables) > 1

            def table_parts(t: TableConfig) -> list[SourceConnector]:
                """A table's stream, its snapshot (scan or export), or both coupled by a handoff mode."""
                parts = table_connectors(cfg, t, ddb=ddb, streams=streams)
                for c in parts:
                    if isinstance(c, StreamsConnector):
                        c.stop_alone = alone
                    if isinstance(c.transforms, TransformStage):
                        c.transforms.create_topic = create_topic  # a route's topics, as discovered ones
                return parts

            async def discovered(t: TableConfig) -> list[SourceConnector]:
                await create_topic(cfg.topic_for(t))
                return table_parts(t)

            def all_connectors() -> list[SourceConnector]:
                made = [c for t in cfg.tables for c in table_parts(t)]
                if cfg.table_discovery is not None:
                    made.append(TableDiscovery(config=cfg.table_discovery, ddb=ddb, make_connectors=discovered,
                                               listed={t.name for t in cfg.tables}))
                return made

            connectors = all_connectors()
            check_template(cfg)
            await _check_tables(connectors, ddb.url)
            ddb.retry = streams.retry = RetryPolicy()
            http.timeout_s = 30.0
            yield Sources(connectors=connectors, remake=all_connectors, check_offset=check_offset,
                          frame_encoded=frame_records, startup_line=startup_line(),
                          schemas=topic_schemas(connectors), formats=topic_formats(cfg))

    def check_connect(self, cfg: DynamoDBConfig) -> Any:
        """``validate --connect``: reach every service, probe permissions, say what would run."""
        from connectors.dynamodb.connect_check import check_connect

        return check_connect(cfg)

    def offset_problem(
        self, cfg: DynamoDBConfig, partition: dict[str, Any], offset: dict[str, Any] | None
    ) -> str | None:
        """``offsets import``: why the start would refuse this offset (the same checks), or None.

        A null offset (a tombstone) needs only a partition the connectors write; a table that is
        not in the config would be an offset no start ever reads (unless table_discovery may find it).
        """
        why = check_partition(partition) if offset is None else check_offset(partition, offset)
        if why is not None:
            return why
        listed = [t.name for t in cfg.tables]
        if cfg.table_discovery is None and partition["table"] not in listed:
            return (f"table {partition['table']!r} is not in the config's tables ({', '.join(listed)}); "
                    "import offsets only for the tables this config reads")
        return None

    def tail_view(self, value: dict[str, Any]) -> dict[str, Any]:
        """``tail``: a decoded envelope with its images as DynamoDB JSON."""
        from connectors.dynamodb.items import tail_view

        return tail_view(value)

    def verify_source(self, cfg: DynamoDBConfig, name: str, **kw: Any) -> Any:
        """``verify``: the table's current contents against its topic (a report with ``clean``)."""
        from connectors.dynamodb.verify import verify_table

        table = next(t for t in cfg.tables if t.name == name)
        return verify_table(cfg, table, **kw)


def topic_formats(cfg: DynamoDBConfig) -> Callable[[str], TopicFormats]:
    """Each table's key and value formats by topic; a discovered table's are the template's."""
    by_topic = {cfg.topic_for(t): t.formats() for t in cfg.tables}
    other = TopicFormats() if cfg.table_discovery is None else cfg.table_discovery.template.formats()

    def formats(topic: str) -> TopicFormats:
        found = by_topic.get(topic)
        if found is None:  # a topic a table's transforms routed to takes that table's formats
            found = next((t.formats() for t in cfg.tables
                          if (s := table_stage(t)) is not None and topic in s.topics), other)
            by_topic[topic] = found
        return found
    return formats


def topic_schemas(connectors: list[SourceConnector]) -> list[tuple[str, RecordSchema]]:
    """Each table's topic and schema handle (key and value schemas, subject strategy), decided
    now that DescribeTable gave the key schemas: every one is checked at start with
    ``auto_register: false`` (two tables on one topic have a value schema each).

    Two tables may share a topic only if their keys are alike: the topic's key subject holds
    one key schema.
    """
    by_topic: dict[str, EnvelopeSchema] = {}
    pairs: list[tuple[str, RecordSchema]] = []
    for c in connectors:
        table: TableInfo | None = getattr(c, "table", None)
        topic: str | None = getattr(c, "topic", None)
        record_format: RecordFormat | None = getattr(c, "record_format", None)
        if table is None or topic is None or record_format is None:
            continue
        schema = record_format.schema(table.name, table.key_fields)
        other = by_topic.get(topic)
        if other is not None and other.table != table.name and other.key_fields != table.key_fields:
            def keys(fields: tuple[KeyField, ...]) -> str:
                return ", ".join(f"{f.name} ({f.type})" for f in fields)

            raise ConfigError(
                f"tables[].topic: tables {other.table!r} and {table.name!r} both write to topic {topic!r} but their "
                f"keys differ ({keys(other.key_fields)} vs {keys(table.key_fields)}); give each its own topic"
            )
        by_topic.setdefault(topic, schema)
        # With transforms, the chain's output handle: compiling it now refuses a bad path at start.
        stage = c.transforms
        pairs.append((topic, stage.handle(schema) if isinstance(stage, TransformStage) else schema))
    return pairs


def check_template(cfg: DynamoDBConfig) -> None:
    """The discovery template's transforms against a table of its record format with no
    attributes yet: a path that can go nowhere in any table (``metadata.nope``, ``op.x``) is
    refused at start, not when the first table is found."""
    template = cfg.table_discovery.template if cfg.table_discovery is not None else None
    stage = table_stage(template) if template is not None else None
    if stage is not None:
        assert template is not None
        stage.check(template.record_format().schema("table_discovery.template", ()))


async def _check_tables(connectors: list[SourceConnector], endpoint: str) -> None:
    try:
        await asyncio.gather(*(c.validate() for c in connectors))
    except RetriableError as e:
        raise ConfigError(
            f"aws: cannot reach DynamoDB at {endpoint}: {e}; check aws.endpoint_url (is DynamoDB there?) and the network"
        ) from None
    except AwsApiError as e:
        raise ConfigError(
            f"aws: DynamoDB at {endpoint} refused the start-up checks ({e}); check aws.endpoint_url (is it a "
            "DynamoDB endpoint?), aws.region and the credentials' permissions"
        ) from None


PLUGIN = DynamoDBPlugin()
