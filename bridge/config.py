"""Typed, validated configuration: every problem reported at once, each naming key and fix.

The YAML file is the whole interface a user has to the bridge, so a bad file must fail at
start with one clear line, never half-start. ``${VAR}`` and ``${VAR:-default}`` in string
values are replaced from the environment, so secrets need not sit in the file.
"""

from __future__ import annotations

import difflib
import os
import re
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
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(5, ge=0)
    auto_register: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        for u in v.split(","):
            if not re.match(r"^https?://[^/\s]+", u.strip()):
                raise ValueError(f"{u.strip()!r} is not an http(s) URL; use e.g. http://localhost:8081")
        return v


class AwsConfig(_Model):
    region: str | None = Field(None, description="defaults to the boto3 chain (AWS_REGION, profile)")
    profile: str | None = None
    endpoint_url: str | None = Field(None, description="DynamoDB endpoint override (local testing)")
    streams_endpoint_url: str | None = Field(None, description="defaults to endpoint_url")


class StreamConfig(_Model):
    poll_interval_ms: int = Field(1000, ge=0, description="wait after an empty GetRecords page")
    max_idle_poll_interval_ms: int | None = Field(
        None, ge=0, le=600_000,
        description="adaptive idle polling: the wait after an empty page doubles from poll_interval_ms up to this; "
        "the first record resets it. Unset or 0: off (always poll_interval_ms)",
    )
    discovery_interval_ms: int = Field(10000, ge=100, description="how often DescribeStream looks for new shards")
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
    poll_interval_s: float = Field(10.0, gt=0, description="DescribeExport interval while an export runs")
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
    page_size: int | None = Field(None, ge=1, description="Scan Limit per call; default: DynamoDB's 1 MB pages")
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
    pass_interval_s: float = Field(3600.0, ge=0, description="pause between passes with repeat: continuous")
    progress_interval_s: float = Field(10.0, gt=0, description="progress log line interval when not on a terminal")
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
    clock_skew_ms: int = Field(1000, ge=0, description="concurrent: allowed clock difference to DynamoDB")

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


class TableConfig(_Model):
    name: str = Field(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$")
    topic: str | None = None
    start_position: Literal["trim_horizon", "latest"] = "trim_horizon"
    stream: StreamConfig = StreamConfig()
    snapshot: SnapshotConfig = SnapshotConfig()


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
    partitions: int = Field(1, ge=1)
    replication_factor: int = Field(-1, description="-1 = the broker's default")
    config: dict[str, str] = Field(default_factory=dict)


class OffsetsConfig(_Model):
    topic: str | None = Field(None, description="defaults to '<name>-offsets'")
    flush_interval_ms: int = Field(1000, ge=10)


class ErrorsConfig(_Model):
    tolerance: Literal["none", "all"] = Field(
        "none", description="none: stop on a record that cannot be written; all: send it to the dead-letter topic"
    )
    dead_letter_topic: str | None = Field(None, description="defaults to '<name>-dlq'")
    task_failure: Literal["stop", "fail-task"] = Field(
        "stop", description="stop: a task's error stops the bridge (exit 1); fail-task: only that task stops, FAILED "
        "in /health and the REST API, until restarted (POST /connectors/<name>/tasks/<task>/restart)"
    )


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
    host: str = Field("127.0.0.1", description="0.0.0.0 to let other hosts scrape (the default keeps it local)")


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


class BridgeConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="connector name: offsets and ids hang off it")
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
    delivery: Literal["at-least-once", "exactly-once"] = "at-least-once"
    max_in_flight_records: int = Field(20000, ge=1, description="per task; a reader waits above it")
    max_in_flight_records_total: int = Field(100000, ge=1, description="per worker; every reader waits above it")
    buffer_max_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024, description="per worker")
    shutdown_timeout_s: float = Field(30.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("kafka")
    @classmethod
    def _kafka(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "bootstrap.servers" not in v:
            raise ValueError("'bootstrap.servers' is required, e.g. kafka: {bootstrap.servers: localhost:9092}")
        for key, why in OWNED_KAFKA_KEYS.items():
            if key in v:
                raise ValueError(f"remove {key!r}: {why}")
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
        if self.group.enabled:
            snap = [t.name for t in self.tables if t.snapshot.mode != "never"]
            if self.table_discovery is not None and self.table_discovery.template.snapshot.mode != "never":
                snap.append("(table_discovery.template)")
            if snap:
                raise ValueError(
                    f"tables: snapshots (table {snap[0]!r}) are not shared between processes yet; with "
                    f"group.enabled set snapshot.mode: never, or snapshot with one process without group"
                )
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
    return f"{where}: {msg}"


def parse_config(data: Any, source: str = "config") -> BridgeConfig:
    """Validate a parsed YAML document; raises ConfigError listing every problem on one line."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a YAML mapping at the top level")
    missing: list[str] = []
    data = _interpolate(data, "", missing)
    if missing:
        raise ConfigError(f"{source}: " + "; ".join(missing))
    try:
        return BridgeConfig.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(_describe(err) for err in e.errors())
        raise ConfigError(f"{source}: {problems}") from None


def load_config(path: str | Path) -> BridgeConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}:{where} is not valid YAML: {getattr(e, 'problem', e)}") from None
    return parse_config(data, str(p))
