"""Typed, validated configuration: every problem reported at once, each naming key and fix.

The YAML file is the whole interface a user has to the bridge, so a bad file must fail at
start with one clear line, never half-start. ``${VAR}`` and ``${VAR:-default}`` in string
values are replaced from the environment, so secrets need not sit in the file.
"""

from __future__ import annotations

import difflib
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.errors import ConfigError
from bridge.redact import redact, register_secret, register_secrets

__all__ = [
    "AwsConfig",
    "BridgeConfig",
    "ErrorsConfig",
    "GroupConfig",
    "HealthConfig",
    "MetricsConfig",
    "RestConfig",
    "StatusConfig",
    "OffsetsConfig",
    "RegistryConfig",
    "SnapshotConfig",
    "SnapshotExportConfig",
    "StreamConfig",
    "TableConfig",
    "TableDiscoveryConfig",
    "TableTemplate",
    "TopicCreationConfig",
    "StallConfig",
    "check_topic_name",
    "load_config",
    "parse_config",
]

# Producer settings the bridge sets itself: ordering and "offset after ack" depend on them.
OWNED_KAFKA_KEYS = {
    "enable.idempotence": "the bridge always enables idempotence to keep per-key order",
    "acks": "the bridge always uses acks=all so an offset is never stored before its records",
    "transactional.id": "set 'delivery: exactly-once' instead; the bridge derives transactional ids",
    "partitioner": "the bridge partitions with murmur2 like the Java client",
}


class _Model(BaseModel):
    # allow_inf_nan=False: ".inf" or ".nan" for a timeout or an interval is never meant.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Kafka's own rules for topic names (kafka.common.internals.Topic).
TOPIC_MAX_LENGTH = 249
_TOPIC_CHARS = re.compile(r"^[A-Za-z0-9._-]+$")
# Topics other software owns on the same cluster: the Schema Registry's store, Kafka's internals.
RESERVED_TOPICS = {"_schemas": "the Schema Registry's own topic"}


def check_topic_name(name: str) -> str | None:
    """Why ``name`` cannot be a Kafka topic, or None if it can."""
    if not name:
        return "is empty; name a topic"
    if name in (".", ".."):
        return f"{name!r} is not a legal Kafka topic name; use letters, digits, '.', '_' or '-'"
    if len(name) > TOPIC_MAX_LENGTH:
        return f"{name[:40]!r}... is {len(name)} characters; Kafka allows at most {TOPIC_MAX_LENGTH}"
    if not _TOPIC_CHARS.match(name):
        bad = next(c for c in name if not _TOPIC_CHARS.match(c))
        return f"{name!r} has {bad!r}, not legal in a Kafka topic name; use letters, digits, '.', '_' or '-'"
    if name.startswith("__"):
        return f"{name!r} starts with '__', which Kafka keeps for its internal topics; choose another name"
    if name in RESERVED_TOPICS:
        return f"{name!r} is {RESERVED_TOPICS[name]}; choose another name"
    return None


def _topic_field(v: str | None) -> str | None:
    if v is not None:
        why = check_topic_name(v)
        if why is not None:
            raise ValueError(why)
    return v


def _http_url(value: str, example: str) -> None:
    if not re.match(r"^https?://[^/\s]+", value.strip()):
        raise ValueError(f"{redact(value.strip())!r} is not an http(s) URL; use e.g. {example}")


class BasicAuth(_Model):
    username: str
    password: SecretStr


class RegistryConfig(_Model):
    url: str = Field(description="Schema Registry URL; a comma-separated list is tried in turn")
    basic_auth: BasicAuth | None = None
    bearer_token: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_verify: bool = True
    timeout_s: float = Field(10.0, gt=0, le=600)
    max_retries: int = Field(5, ge=0, le=100)
    auto_register: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        for u in v.split(","):
            _http_url(u, "http://localhost:8081")
        return v

    @model_validator(mode="after")
    def _one_auth(self) -> RegistryConfig:
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("basic_auth and bearer_token are both set; keep the one your registry expects")
        return self


class AwsConfig(_Model):
    region: str | None = Field(None, description="defaults to the boto3 chain (AWS_REGION, profile)")
    profile: str | None = None
    endpoint_url: str | None = Field(None, description="DynamoDB endpoint override (local testing)")
    streams_endpoint_url: str | None = Field(None, description="defaults to endpoint_url")

    @field_validator("endpoint_url", "streams_endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None:
            _http_url(v, "http://localhost:8000")
        return v

    @model_validator(mode="after")
    def _region(self) -> AwsConfig:
        """An AWS region name; a local endpoint (DynamoDB Local, moto) takes any simple name."""
        r = self.region
        if r is None:
            return self
        aws_like = re.match(r"^[a-z]{2}(-[a-z]+)+-\d+$", r)
        if not aws_like and not (self.endpoint_url and re.match(r"^[A-Za-z0-9-]+$", r)):
            raise ValueError(f"aws.region {r!r} is not an AWS region; write one such as us-east-1 or eu-west-1")
        return self


class StreamConfig(_Model):
    poll_interval_ms: int = Field(1000, ge=0, le=300_000, description="wait after an empty GetRecords page")
    max_idle_poll_interval_ms: int | None = Field(
        None, ge=0, le=600_000,
        description="adaptive idle polling: the wait after an empty page doubles from poll_interval_ms up to this; "
        "the first record resets it. Unset or 0: off (always poll_interval_ms)",
    )
    discovery_interval_ms: int = Field(
        10000, ge=100, le=3_600_000, description="how often DescribeStream looks for new shards"
    )
    max_records_per_call: int = Field(1000, ge=1, le=1000)
    trimmed_policy: Literal["fail", "skip-and-alert", "resnapshot"] = Field(
        "fail",
        description="records trimmed (>24 h old) before they were read: stop, or continue from the oldest "
        "record and alert, or continue and snapshot the table again",
    )

    @model_validator(mode="after")
    def _idle_cap(self) -> StreamConfig:
        cap = self.max_idle_poll_interval_ms
        if cap and cap < self.poll_interval_ms:
            raise ValueError(f"max_idle_poll_interval_ms ({cap}) is below poll_interval_ms ({self.poll_interval_ms}); "
                             f"set it at or above poll_interval_ms, or 0 to turn adaptive idle polling off")
        return self


_AV_TYPES = {"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"}


class SnapshotExportConfig(_Model):
    """Where an S3 export lives, or where to ask DynamoDB to write one (``trigger``)."""

    s3_bucket: str | None = Field(None, description="bucket of the export (required with trigger)")
    s3_prefix: str | None = Field(None, description="prefix the export was (or is to be) written under")
    export_arn: str | None = Field(None, description="read this finished export (DescribeExport finds its files)")
    trigger: bool = Field(False, description="request ExportTableToPointInTime (needs PITR) and wait for it")
    poll_interval_s: float = Field(10.0, gt=0, le=3600, description="DescribeExport interval while an export runs")
    parallel_files: int = Field(4, ge=1, le=256, description="data files read at the same time")
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint override; defaults to aws.endpoint_url")

    @model_validator(mode="after")
    def _where(self) -> SnapshotExportConfig:
        if self.trigger and self.export_arn:
            raise ValueError("set either export_arn (read an existing export) or trigger: true (request one), not both")
        if self.trigger and not (self.s3_bucket and self.s3_prefix):
            raise ValueError("trigger: true needs s3_bucket and s3_prefix to write the export to")
        if not self.trigger and not self.export_arn and not self.s3_bucket:
            raise ValueError("name the export: export_arn, or s3_bucket (+ s3_prefix) of its files, or trigger: true")
        return self


class SnapshotConfig(_Model):
    """How a table's existing items reach the topic, and how that hands over to the stream."""

    mode: Literal["never", "initial", "concurrent", "only"] = Field(
        "never",
        description="never: stream only; initial: record stream positions, snapshot, then stream from them; "
        "concurrent: stream from the start while the snapshot runs (watermark windows); only: snapshot, no stream",
    )
    method: Literal["scan", "export"] = "scan"
    segments: int = Field(4, ge=1, le=1000, description="parallel Scan workers")
    straggler_split: bool = Field(True, description="scan segments * split_factor fine segments from a shared queue")
    split_factor: int = Field(8, ge=2, le=1000)
    page_size: int | None = Field(None, ge=1, le=1_000_000, description="Scan Limit per call; default: DynamoDB's 1 MB pages")
    filter_expression: str | None = None
    projection_expression: str | None = None
    expression_attribute_names: dict[str, str] = Field(default_factory=dict)
    expression_attribute_values: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="DynamoDB JSON, e.g. {':min': {N: '10'}}"
    )
    consistent_read: bool | None = Field(None, description="default: true for initial/concurrent, false for only")
    max_items_per_second: float | None = Field(None, gt=0, description="read-rate limit in items scanned")
    max_rcu_per_second: float | None = Field(None, gt=0, description="read-rate limit in read capacity units")
    repeat: Literal["once", "continuous"] = "once"
    pass_interval_s: float = Field(
        3600.0, ge=0, le=30 * 86400, description="pause between passes with repeat: continuous"
    )
    progress_interval_s: float = Field(
        10.0, gt=0, le=86400, description="progress log line interval when not on a terminal"
    )
    export: SnapshotExportConfig | None = None
    retention_warn_hours: float = Field(
        20.0, gt=0, lt=24, description="initial: warn when recorded stream positions get this old"
    )
    fail_on_retention_risk: bool = Field(
        False, description="initial: stop at retention_warn_hours, before recorded positions leave the 24 h retention"
    )
    watermarks: bool = Field(
        True, description="concurrent: write marker items (PutItem/DeleteItem) so idle shards close chunk windows"
    )
    clock_skew_ms: int = Field(1000, ge=0, le=600_000, description="concurrent: allowed clock difference to DynamoDB")

    @field_validator("expression_attribute_names")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not k.startswith("#")]
        if bad:
            raise ValueError(f"expression attribute names start with '#', e.g. '#{bad[0]}'")
        return v

    @field_validator("expression_attribute_values")
    @classmethod
    def _values(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for k, av in v.items():
            if not k.startswith(":"):
                raise ValueError(f"expression attribute values start with ':', e.g. ':{k}'")
            if len(av) != 1 or next(iter(av)) not in _AV_TYPES:
                raise ValueError(
                    f"{k}: write the value in DynamoDB JSON with one type key ({', '.join(sorted(_AV_TYPES))}), "
                    "e.g. {N: '10'}"
                )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SnapshotConfig:
        problems: list[str] = []
        if self.method == "export" and self.export is None:
            problems.append("method: export needs an 'export' section (export_arn, s3_bucket/s3_prefix or trigger)")
        if self.method == "scan" and self.export is not None:
            problems.append("the 'export' section is only read with method: export")
        if self.method == "export" and (
            self.filter_expression or self.projection_expression or self.max_items_per_second or self.max_rcu_per_second
        ):
            problems.append("filter/projection expressions and read-rate limits apply to method: scan only")
        if self.mode == "concurrent" and self.method != "scan":
            problems.append("mode: concurrent reads the table in chunks and needs method: scan")
        if self.mode == "concurrent" and self.consistent_read is False:
            problems.append("mode: concurrent needs consistent_read: true (an eventually consistent chunk may be stale)")
        if self.mode == "initial" and self.method == "export" and not (self.export and self.export.trigger):
            problems.append("mode: initial with method: export needs export.trigger: true, so the export is newer than the recorded stream positions")
        if self.repeat == "continuous" and self.mode != "only":
            problems.append("repeat: continuous needs mode: only (a handoff snapshots once)")
        if self.repeat == "continuous" and self.method == "export":
            problems.append("repeat: continuous needs method: scan")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def reads_consistent(self) -> bool:
        if self.consistent_read is not None:
            return self.consistent_read
        return self.mode in ("initial", "concurrent")

    @property
    def total_segments(self) -> int:
        return self.segments * (self.split_factor if self.straggler_split else 1)


def parse_timestamp(value: str | int) -> int:
    """Epoch milliseconds of an ISO 8601 time with a zone (or of epoch milliseconds)."""
    if isinstance(value, bool):
        raise ValueError("write a time such as 2024-05-01T12:00:00Z or epoch milliseconds")
    if isinstance(value, int):
        if not 0 <= value < 10**14:
            raise ValueError(f"{value} is not epoch milliseconds; write e.g. 2024-05-01T12:00:00Z")
        return value
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time; write e.g. 2024-05-01T12:00:00Z") from None
    if t.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone; add one, e.g. {value}Z for UTC")
    return int(t.astimezone(timezone.utc).timestamp() * 1000)


class TableConfig(_Model):
    name: str = Field(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$")
    topic: str | None = None
    start_position: Literal["trim_horizon", "latest", "at_timestamp"] = "trim_horizon"
    start_timestamp: str | int | None = Field(
        None, description="with start_position: at_timestamp: skip records older than this (ISO 8601 or epoch ms)"
    )
    stream: StreamConfig = StreamConfig()
    snapshot: SnapshotConfig = SnapshotConfig()

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        return _topic_field(v)

    @field_validator("start_timestamp")
    @classmethod
    def _timestamp(cls, v: str | int | None) -> str | int | None:
        if v is not None:
            parse_timestamp(v)
        return v

    @model_validator(mode="after")
    def _start(self) -> TableConfig:
        if self.start_position == "at_timestamp" and self.start_timestamp is None:
            raise ValueError("start_position: at_timestamp needs start_timestamp, e.g. start_timestamp: 2024-05-01T12:00:00Z")
        if self.start_timestamp is not None and self.start_position != "at_timestamp":
            raise ValueError("start_timestamp is only read with start_position: at_timestamp; set that or remove it")
        if self.start_position == "at_timestamp" and self.snapshot.mode != "never":
            raise ValueError(
                f"start_position: at_timestamp reads the stream only; snapshot.mode {self.snapshot.mode} "
                "decides where the stream starts itself. Use one or the other"
            )
        return self

    @property
    def start_ms(self) -> int | None:
        return None if self.start_timestamp is None else parse_timestamp(self.start_timestamp)


class TableTemplate(_Model):
    """What a discovered table is read with (its topic is ``<topic_prefix>.<table>``)."""

    start_position: Literal["trim_horizon", "latest"] = "trim_horizon"
    stream: StreamConfig = StreamConfig()
    snapshot: SnapshotConfig = SnapshotConfig()


class TableDiscoveryConfig(_Model):
    """Tables found by name or tag (ListTables, ListTagsOfResource), looked for again every interval."""

    name_prefix: str | None = Field(None, description="tables whose name starts with this")
    name_regex: str | None = Field(None, description="tables whose whole name matches this regular expression")
    tags: dict[str, str] = Field(default_factory=dict, description="tables carrying every one of these tags "
                                 "(value '*': any value)")
    exclude: list[str] = Field(default_factory=list, description="table names never picked up")
    interval_ms: int = Field(60000, ge=1000, description="how often to look for new and deleted tables")
    template: TableTemplate = TableTemplate()

    @field_validator("name_regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a valid regular expression ({e}); e.g. '^orders-.*$'") from None
        return v

    @model_validator(mode="after")
    def _something(self) -> TableDiscoveryConfig:
        if not (self.name_prefix or self.name_regex or self.tags):
            raise ValueError("set name_prefix, name_regex or tags, or every table in the account would be read")
        return self

    def matches_name(self, name: str) -> bool:
        if name in self.exclude:
            return False
        if self.name_prefix is not None and not name.startswith(self.name_prefix):
            return False
        return self.name_regex is None or re.fullmatch(self.name_regex, name) is not None

    def matches_tags(self, tags: dict[str, str]) -> bool:
        return all(k in tags and (v == "*" or tags[k] == v) for k, v in self.tags.items())


class TopicCreationConfig(_Model):
    partitions: int = Field(1, ge=1, le=10_000)
    replication_factor: int = Field(-1, ge=-1, le=32767, description="-1 = the broker's default")
    config: dict[str, str] = Field(default_factory=dict)

    @field_validator("replication_factor")
    @classmethod
    def _rf(cls, v: int) -> int:
        if v == 0:
            raise ValueError("0 copies is not a replication factor; use -1 (the broker's default) or 1 and up")
        return v


class OffsetsConfig(_Model):
    topic: str | None = Field(None, description="defaults to '<name>-offsets'")
    flush_interval_ms: int = Field(1000, ge=10, le=300_000)

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        return _topic_field(v)


class ErrorsConfig(_Model):
    tolerance: Literal["none", "all"] = Field(
        "none", description="none: stop on a record that cannot be written; all: send it to the dead-letter topic"
    )
    dead_letter_topic: str | None = Field(None, description="defaults to '<name>-dlq'")
    task_failure: Literal["stop", "fail-task"] = Field(
        "stop", description="stop: a task's error stops the bridge (exit 1); fail-task: only that task stops, FAILED "
        "in /health and the REST API, until restarted (POST /connectors/<name>/tasks/<task>/restart)"
    )

    @field_validator("dead_letter_topic")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        return _topic_field(v)


class GroupConfig(_Model):
    """Several processes of one ``name`` sharing the work through Kafka's consumer group protocol."""

    enabled: bool = Field(
        False, description="join the group of every process with this name; each unit of work (a shard, a "
        "snapshot segment) is read by one of them, and moves to another when one stops or dies",
    )
    partitions: int = Field(
        16, ge=1, le=256, description="coordination partitions; a unit belongs to partition crc32(unit) mod this. "
        "Exactly-once keeps one transactional producer per partition a process owns",
    )
    topic: str | None = Field(None, description="coordination topic; defaults to '<name>-workers'")
    session_timeout_ms: int = Field(
        10000, ge=1000, le=300000, description="a process silent this long is presumed dead and its work moves",
    )


class MetricsConfig(_Model):
    port: int | None = Field(None, ge=0, le=65535, description="serve /metrics and /health on this port")
    host: str = Field("127.0.0.1", min_length=1, max_length=253,
                      description="0.0.0.0 to let other hosts scrape (the default keeps it local)")


class RestConfig(_Model):
    port: int | None = Field(None, ge=0, le=65535, description="serve the REST API and the status page on this port")
    host: str = Field("127.0.0.1", description="0.0.0.0 to serve other hosts (set bearer_token then)")
    bearer_token: SecretStr | None = Field(None, description="required as 'Authorization: Bearer <token>' when set")


class HealthConfig(_Model):
    max_lag_ms: int = Field(60_000, ge=0, description="/health DEGRADED while a task's millis_behind_latest exceeds it")
    max_retrying_s: float = Field(60.0, gt=0, description="/health DEGRADED while a task's read retries this long")
    registry_probe_s: float = Field(15.0, gt=0, description="how often /health checks that the registry answers")


class StatusConfig(_Model):
    topic: str | None = Field(None, description="compacted status topic; defaults to '<name>-status'")
    interval_ms: int = Field(5000, ge=100, description="how often task positions and lag are written to it")
    enabled: bool = True


class StallConfig(_Model):
    """How long the broker may acknowledge nothing while records wait (see docs/fault-model.md)."""

    warn_after_s: float = Field(
        60.0, gt=0, le=86400, description="log a WARNING with librdkafka's last error and turn /health DEGRADED"
    )
    fail_after_s: float | None = Field(
        900.0, gt=0, le=7 * 86400, description="exit 1 so a supervisor restarts the bridge; null: never"
    )

    @model_validator(mode="after")
    def _order(self) -> StallConfig:
        if self.fail_after_s is not None and self.fail_after_s <= self.warn_after_s:
            raise ValueError(
                f"fail_after_s ({self.fail_after_s:g}) must be greater than warn_after_s ({self.warn_after_s:g})"
            )
        return self


class BridgeConfig(_Model):
    # <name>-offsets must stay a legal topic name (at most 249 characters).
    name: str = Field(
        min_length=1, max_length=TOPIC_MAX_LENGTH - len("-offsets"), pattern=r"^[A-Za-z0-9_.-]+$",
        description="connector name: offsets and ids hang off it",
    )
    kafka: dict[str, str | int | float | bool]
    schema_registry: RegistryConfig
    aws: AwsConfig = AwsConfig()
    topic_prefix: str = Field("ddb", pattern=r"^[A-Za-z0-9_.-]*$")
    table_discovery: TableDiscoveryConfig | None = None  # before tables: their check reads it
    tables: list[TableConfig] = Field(default_factory=list)
    topic_creation: TopicCreationConfig = TopicCreationConfig()
    offsets: OffsetsConfig = OffsetsConfig()
    errors: ErrorsConfig = ErrorsConfig()
    metrics: MetricsConfig = MetricsConfig()
    group: GroupConfig = GroupConfig()
    rest: RestConfig = RestConfig()
    health: HealthConfig = HealthConfig()
    status: StatusConfig = StatusConfig()
    stall: StallConfig = StallConfig()
    delivery: Literal["at-least-once", "exactly-once"] = "at-least-once"
    max_in_flight_records: int = Field(20000, ge=1, le=10_000_000, description="per task; a reader waits above it")
    max_in_flight_records_total: int = Field(
        100000, ge=1, le=10_000_000, description="per worker; every reader waits above it"
    )
    buffer_max_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024, le=1 << 40, description="per worker")
    shutdown_timeout_s: float = Field(30.0, gt=0, le=3600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("kafka")
    @classmethod
    def _kafka(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "bootstrap.servers" not in v:
            raise ValueError("'bootstrap.servers' is required, e.g. kafka: {bootstrap.servers: localhost:9092}")
        for key, why in OWNED_KAFKA_KEYS.items():
            if key in v:
                raise ValueError(f"remove {key!r}: {why}")
        if not str(v["bootstrap.servers"]).strip():
            raise ValueError("'bootstrap.servers' is empty; name at least one broker, e.g. localhost:9092")
        return v

    @model_validator(mode="after")
    def _unique_tables(self) -> BridgeConfig:
        names = [t.name for t in self.tables]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"table {dup[0]!r} is listed twice; list each table once")
        return self

    @field_validator("tables")
    @classmethod
    def _some_tables(cls, v: list[TableConfig], info: ValidationInfo) -> list[TableConfig]:
        if not v and info.data.get("table_discovery") is None:
            raise ValueError("list at least one table, or set table_discovery (name_prefix, name_regex or tags)")
        return v

    @model_validator(mode="after")
    def _group_modes(self) -> BridgeConfig:
        """Snapshots are shared (every segment or file a unit) with ``mode: only`` and
        ``initial``; ``concurrent`` is not (docs/scaling.md says why)."""
        if self.group.enabled:
            snap = [t.name for t in self.tables if t.snapshot.mode == "concurrent"]
            if self.table_discovery is not None and self.table_discovery.template.snapshot.mode == "concurrent":
                snap.append("(table_discovery.template)")
            if snap:
                raise ValueError(
                    f"tables: {snap[0]}.snapshot.mode: concurrent is not shared between processes (every Scan chunk "
                    f"waits until each shard's reader has passed its window, and those readers run in other "
                    f"processes); with group.enabled use snapshot.mode: initial, or run mode: concurrent in one "
                    f"process without group"
                )
        return self

    @model_validator(mode="after")
    def _topics(self) -> BridgeConfig:
        """Every topic the bridge writes is a legal name, and no two roles share one.

        Two tables may share a topic only with the same key schema, which is known at start
        (DescribeTable); that part is checked there (``app``).
        """
        problems: list[str] = []
        own = {self.offsets_topic: "offsets.topic"}
        if self.errors.tolerance == "all":
            if self.dead_letter_topic in own:
                problems.append(
                    f"errors.dead_letter_topic: {self.dead_letter_topic!r} is also the offsets topic; give each its own"
                )
            own[self.dead_letter_topic] = "errors.dead_letter_topic"
        derived = [t for t, set_ in ((self.offsets_topic, self.offsets.topic), (self.dead_letter_topic,
                                     self.errors.dead_letter_topic)) if set_ is None]
        for topic in derived:
            why = check_topic_name(topic)
            if why is not None:
                problems.append(f"name: the topic derived from it {why}")
        seen_kafka: dict[str, str] = {}
        for i, t in enumerate(self.tables):
            topic = self.topic_for(t)
            where = f"tables[{i}].topic" if t.topic else f"tables[{i}].name"
            why = check_topic_name(topic)
            if why is not None:
                hint = "" if t.topic else "; set tables[].topic to a shorter name or shorten topic_prefix"
                problems.append(f"{where}: topic {why}{hint}")
                continue
            if topic in own:
                problems.append(f"{where}: topic {topic!r} is the bridge's {own[topic]}; give the table its own topic")
            # Kafka refuses a topic whose name differs from another only in '.' versus '_'.
            folded = topic.replace(".", "_")
            other = seen_kafka.get(folded)
            if other is not None and other != topic:
                problems.append(
                    f"{where}: topic {topic!r} collides with {other!r} (Kafka treats '.' and '_' alike in topic "
                    "names); rename one"
                )
            seen_kafka.setdefault(folded, topic)
        if problems:
            raise ValueError("; ".join(dict.fromkeys(problems)))
        return self

    def topic_for(self, table: TableConfig) -> str:
        return table.topic or (f"{self.topic_prefix}.{table.name}" if self.topic_prefix else table.name)

    @property
    def offsets_topic(self) -> str:
        return self.offsets.topic or f"{self.name}-offsets"

    @property
    def group_topic(self) -> str:
        return self.group.topic or f"{self.name}-workers"

    @property
    def status_topic(self) -> str:
        return self.status.topic or f"{self.name}-status"

    @property
    def dead_letter_topic(self) -> str:
        return self.errors.dead_letter_topic or f"{self.name}-dlq"


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, path: str, missing: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", missing) for i, v in enumerate(value)]
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            env = os.environ.get(m.group(1), m.group(2))
            if env is None:
                missing.append(f"{path}: environment variable {m.group(1)} is not set; set it or use ${{{m.group(1)}:-default}}")
                return ""
            return env

        return _ENV.sub(sub, value)
    return value


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that holds the key at ``loc``, to suggest valid keys for a typo."""
    model: Any = BridgeConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return None
    return model


def _describe(err: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    where = _location(loc)
    if err["type"] == "extra_forbidden":
        model = _model_at(loc)
        valid = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
        return f"{where}: unknown key; {hint}"
    if err["type"] == "missing":
        return f"{where}: required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] in _BOUND_ERRORS:
        # "Input should be less than or equal to 600" names the bound; add what was given.
        got = err.get("input")
        if isinstance(got, (int, float)) and not isinstance(got, bool):
            return f"{where}: {msg} (got {got:g}); change it to a value within the bound"
        return f"{where}: {msg}"
    if err["type"] == "string_pattern_mismatch":
        got = err.get("input")
        shown = f" ({redact(str(got))[:60]!r})" if isinstance(got, str) else ""
        if loc and loc[-1] == "region":
            return f"{where}: not an AWS region{shown}; write one such as us-east-1 or eu-west-1"
        return f"{where}: has characters a name here cannot have{shown}; use only letters, digits, '.', '_' and '-'"
    if err["type"] == "finite_number":
        return f"{where}: must be a finite number (not .inf or .nan); write a number"
    return f"{where}: {msg}"


_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_long", "too_short",
                 "string_too_long", "string_too_short"}


def _register_secrets(data: dict[str, Any]) -> None:
    """Mask the config's secrets in every message from now on (before anything can echo them)."""
    kafka = data.get("kafka")
    if isinstance(kafka, dict):
        register_secrets({str(k): v for k, v in kafka.items() if isinstance(v, str)})
    registry = data.get("schema_registry")
    if isinstance(registry, dict):
        auth = registry.get("basic_auth")
        if isinstance(auth, dict):
            register_secret(auth.get("password"))
        register_secret(registry.get("bearer_token"))


def parse_config(data: Any, source: str = "config", *, check_kafka: bool = True) -> BridgeConfig:
    """Validate a parsed YAML document; raises ConfigError listing every problem on one line.

    ``check_kafka`` also has librdkafka check the ``kafka`` settings (without connecting).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a YAML mapping at the top level")
    missing: list[str] = []
    data = _interpolate(data, "", missing)
    _register_secrets(data)
    if missing:
        raise ConfigError(f"{source}: " + "; ".join(missing))
    try:
        cfg = BridgeConfig.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(_describe(err) for err in e.errors())
        raise ConfigError(redact(f"{source}: {problems}")) from None
    if check_kafka:
        from bridge.kafka import check_kafka_settings

        try:
            check_kafka_settings(cfg.kafka, transactional=cfg.delivery == "exactly-once")
        except ConfigError as e:
            raise ConfigError(redact(f"{source}: {e}")) from None
    return cfg


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses what a config file never needs and an attacker could use.

    Aliases (``*name``) let a small file expand into gigabytes (the "billion laughs");
    duplicate keys silently keep the last value, so a second ``kafka:`` would drop the first.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                problem=f"YAML aliases (*{event.anchor}) are not allowed in a bridge config; write the value out",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_scalar(key_node)
                if key in seen:
                    raise yaml.MarkedYAMLError(
                        problem=f"key {key!r} appears twice in one mapping; keep one",
                        problem_mark=key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path, *, check_kafka: bool = True) -> BridgeConfig:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}; check the path") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{p}: not UTF-8 text (byte 0x{raw[e.start]:02x} at position {e.start}); save the file as UTF-8"
        ) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(redact(f"{p}:{where} is not valid YAML: {problem}")) from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to be a bridge config; flatten it") from None
    return parse_config(data, str(p), check_kafka=check_kafka)
