"""The DynamoDB connector's configuration: ``aws``, ``tables`` and ``table_discovery``.

It extends the bridge's generic ``BridgeConfig`` (Kafka, registry, offsets, group,
operations) with what only a DynamoDB source needs, so ``bridge/`` stays free of DynamoDB
knowledge; ``bridge_app/app.py`` passes ``DynamoDBConfig`` to the loaders. Error messages keep
the key paths a user writes (``tables[0].snapshot.mode``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import re2
from pydantic import Field, ValidationInfo, field_validator, model_validator

from bridge import config as base
from bridge.config import BridgeConfig, FormatConfig, Model, SourceTopic, http_url, topic_field
from bridge.serde.converter import Strategy
from bridge.serde.formats import TopicFormats
from bridge.transforms import parse_transforms
from connectors.dynamodb.envelope import RecordFormat
from connectors.dynamodb.headers import HEADER_NAMES, HeaderName
from connectors.dynamodb.transforms import expand
from connectors.dynamodb.typed.config import TYPED_KEYS, TypedOptions

__all__ = [
    "AwsConfig",
    "DynamoDBConfig",
    "SnapshotConfig",
    "SnapshotExportConfig",
    "StreamConfig",
    "TableConfig",
    "TableDiscoveryConfig",
    "TableTemplate",
    "ValueConfig",
    "load_config",
    "parse_config",
    "parse_timestamp",
]


class AwsConfig(Model):
    region: str | None = Field(None, description="defaults to the boto3 chain (AWS_REGION, profile)")
    profile: str | None = None
    endpoint_url: str | None = Field(None, description="DynamoDB endpoint override (local testing)")
    streams_endpoint_url: str | None = Field(None, description="defaults to endpoint_url")
    role_arn: str | None = Field(None, description="assume this IAM role (STS) on top of the standard credential "
                                 "chain, refreshed before it expires; for DynamoDB, Streams, S3 and MSK IAM tokens")
    external_id: str | None = Field(None, description="the ExternalId the role's trust policy asks for")
    session_name: str = Field("ddb-kafka-bridge", pattern=r"^[\w+=,.@-]{2,64}$",
                              description="RoleSessionName: shows in CloudTrail as who did what")
    duration_s: int = Field(3600, ge=900, le=43200, description="assumed-role session length (STS: 900-43200 and at "
                            "most the role's maximum)")
    refresh_before_expiry_s: int | None = Field(None, ge=1, le=43200, description="refresh the role's keys this "
                                                "long before they expire; default a third of duration_s, at most 900")

    def assume_role(self) -> Any:
        """The role to assume (``connectors.dynamodb.credentials.AssumeRole``), or None."""
        if not self.role_arn:
            return None
        from connectors.dynamodb.credentials import AssumeRole

        return AssumeRole(self.role_arn, self.external_id, self.session_name, self.duration_s,
                          self.refresh_before_expiry_s)

    @model_validator(mode="after")
    def _refresh_window(self) -> AwsConfig:
        r = self.refresh_before_expiry_s
        if r is not None and r >= self.duration_s:
            raise ValueError(f"aws.refresh_before_expiry_s ({r}) must be less than aws.duration_s ({self.duration_s})")
        return self

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+$", v):
            raise ValueError(f"{v!r} is not an IAM role ARN; write arn:aws:iam::123456789012:role/NAME")
        return v

    @field_validator("endpoint_url", "streams_endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None:
            http_url(v, "http://localhost:8000")
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


class StreamConfig(Model):
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


class SnapshotExportConfig(Model):
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


class SnapshotConfig(Model):
    """How a table's existing items reach the topic, and how that hands over to the stream."""

    mode: Literal["never", "initial", "concurrent", "only"] = Field(
        "never",
        description="never: stream only; initial: record stream positions, snapshot, then stream from them; "
        "concurrent: stream from the start while the snapshot runs (watermark windows); only: snapshot, no stream",
    )
    method: Literal["scan", "export"] = "scan"
    segments: int = Field(4, ge=1, le=1000, description="parallel Scan workers")
    decode_threads: int | None = Field(
        None, ge=1, le=64,
        description="threads that parse and encode Scan pages and export files (gzip, JSON, Avro; the GIL is "
        "released for most of it), so one process uses more than one core; default: the cores this process may use",
    )
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
    return int(t.astimezone(UTC).timestamp() * 1000)


class ValueConfig(TypedOptions, FormatConfig):
    """``tables[].value``: the shape and format of the record values (docs/schemas.md), and what
    ``typed`` reads."""

    shape: Literal["envelope", "typed"] = Field(
        "envelope", description="envelope: {op, before, after, source, ts_ms} with images as map<AttributeValue>, "
        "lossless for any item; typed: images as records with a field per attribute, evolving")

    @model_validator(mode="after")
    def _typed_keys(self) -> ValueConfig:
        # Set and not its default: a discovery template is copied through model_dump, which
        # sets every key, defaults included.
        fields = type(self).model_fields
        extra = sorted(
            k for k in self.model_fields_set & set(TYPED_KEYS)
            if getattr(self, k) != fields[k].get_default(call_default_factory=True)
        ) if self.shape == "envelope" else []
        if extra:
            raise ValueError(f"{extra[0]} is only read with shape: typed; set shape: typed or remove it")
        return self


class RecordOptions(Model):
    """What a table's records look like in Kafka: value shape, subject names, headers (docs/schemas.md)."""

    key: FormatConfig = FormatConfig()
    value: ValueConfig = ValueConfig()
    subject_name_strategy: Strategy = Field(
        "TopicNameStrategy", description="registry subjects as Confluent's serializers name them: TopicNameStrategy "
        "(<topic>-key, <topic>-value), RecordNameStrategy (<record full name>), TopicRecordNameStrategy "
        "(<topic>-<record full name>)")
    headers: bool | list[HeaderName] = Field(
        False, description=f"source metadata as Kafka headers ddb.<name>: true for all, or a list of "
        f"{', '.join(HEADER_NAMES)}")

    transforms: list[dict[str, Any]] = Field(
        default_factory=list, description="single-message transforms applied in order (docs/transforms.md)")

    @field_validator("transforms", mode="before")
    @classmethod
    def _transforms(cls, v: Any) -> Any:
        """One line naming the entry (an unknown transform, a bad option, a function that does not import)."""
        parse_transforms(expand(v), where="")  # the location (tables[i].transforms) comes first
        return v

    @model_validator(mode="after")
    def _transforms_image(self) -> RecordOptions:
        if self.transforms and self.value.shape == "typed" and self.value.image == "after":
            raise ValueError("transforms read op, before and after: use value.image: envelope (the default) with "
                             "transforms; flatten gives the after image alone")
        return self

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, v: Any) -> Any:
        """One line naming the bad entry, instead of pydantic's one per union branch."""
        if isinstance(v, list):
            bad = [n for n in v if n not in HEADER_NAMES]
            if bad:
                raise ValueError(f"unknown header {bad[0]!r}; write true, or a list of {', '.join(HEADER_NAMES)}")
        elif not isinstance(v, bool):
            raise ValueError(f"write true, false or a list of {', '.join(HEADER_NAMES)}, not {v!r:.40}")
        return v

    def record_format(self) -> RecordFormat:
        names = HEADER_NAMES if self.headers is True else tuple(self.headers or ()) or None
        typed = self.value if self.value.shape == "typed" else None
        return RecordFormat(self.subject_name_strategy, names, typed)

    def formats(self) -> TopicFormats:
        return TopicFormats(self.key.options(), self.value.options())

    @model_validator(mode="after")
    def _connect_wrapper(self) -> RecordOptions:
        """Kafka Connect's schemas cannot be recursive; the AttributeValue map is."""
        v = self.value
        if v.schemas_enable and (v.shape == "envelope" or v.maps == "attribute_value"):
            why = "shape: envelope" if v.shape == "envelope" else "maps: attribute_value"
            raise ValueError(f"value.schemas_enable: true needs a schema Kafka Connect can express, and {why} writes "
                             "the recursive AttributeValue; set value.shape: typed with maps: record, or "
                             "schemas_enable: false")
        return self

    @model_validator(mode="after")
    def _typed_no_export(self) -> RecordOptions:
        snapshot = getattr(self, "snapshot", None)
        if self.value.shape == "typed" and snapshot is not None and snapshot.mode != "never" \
                and snapshot.method == "export":
            raise ValueError("value.shape: typed takes snapshots by Scan only in this version; snapshot.method: "
                             "export needs value.shape: envelope (or use method: scan)")
        return self


class TableConfig(RecordOptions):
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
        return topic_field(v)

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


class TableTemplate(RecordOptions):
    """What a discovered table is read with (its topic is ``<topic_prefix>.<table>``)."""

    start_position: Literal["trim_horizon", "latest"] = "trim_horizon"
    stream: StreamConfig = StreamConfig()
    snapshot: SnapshotConfig = SnapshotConfig()


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the refusal below says it in one line; RE2 would add its own to stderr


@lru_cache(maxsize=16)
def name_pattern(pattern: str) -> Any:
    """``table_discovery.name_regex`` compiled by RE2, whose matching is linear in the name.

    Python's ``re`` backtracks: ``(a+)+`` against ``"a" * 34 + "b"`` runs for hours on the
    event loop, with ``/health`` and SIGTERM unanswered. RE2 matches any pattern against a
    table name (255 characters at most) in microseconds, so discovery can match on the loop;
    what RE2 cannot do in linear time (backreferences, lookaround) it refuses, here, at start.
    """
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as e:
        why = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(
            f"RE2 refuses it ({why}); the pattern must be RE2 syntax (matched in linear time: no backreferences such as \\1, "
            f"no lookaround such as (?=...) or (?!...), repetition counts up to 1000); rewrite it, "
            f"e.g. '^orders-.*$', or use name_prefix"
        ) from None


class TableDiscoveryConfig(Model):
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
            name_pattern(v)
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
        return self.name_regex is None or name_pattern(self.name_regex).fullmatch(name) is not None

    def matches_tags(self, tags: dict[str, str]) -> bool:
        return all(k in tags and (v == "*" or tags[k] == v) for k, v in self.tags.items())


class DynamoDBConfig(BridgeConfig):
    """A bridge config whose sources are DynamoDB tables."""

    aws: AwsConfig = AwsConfig()
    table_discovery: TableDiscoveryConfig | None = None  # before tables: their check reads it
    tables: list[TableConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_tables(self) -> DynamoDBConfig:
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

    def _read_as(self) -> list[tuple[str, StreamConfig, SnapshotConfig]]:
        """Each listed table's stream and snapshot settings, and the discovery template's."""
        out = [(t.name, t.stream, t.snapshot) for t in self.tables]
        if self.table_discovery is not None:
            template = self.table_discovery.template
            out.append(("(table_discovery.template)", template.stream, template.snapshot))
        return out

    def solo_reason(self) -> str | None:
        """What only one process can do: ``snapshot.mode: concurrent`` (every Scan chunk waits
        until each shard's reader has passed its window, state in one process's memory) and,
        under exactly-once, ``trimmed_policy: resnapshot`` (the process that met the trimmed
        data reads every segment, and exactly-once lets a process write only units it owns).
        Such a process runs alone: it joins its name's group so that a second process refuses
        to start beside it (bridge.group), and refuses to start beside one. docs/scaling.md says why."""
        base = super().solo_reason()
        if base is not None:
            return base
        settings = self._read_as()
        concurrent = [name for name, _, snapshot in settings if snapshot.mode == "concurrent"]
        if concurrent:
            return f"tables: {concurrent[0]}.snapshot.mode: concurrent"
        resnapshot = [name for name, stream, _ in settings if stream.trimmed_policy == "resnapshot"]
        if resnapshot and self.delivery == "exactly-once":
            return f"tables: {resnapshot[0]}.stream.trimmed_policy: resnapshot under exactly-once"
        return None

    def topic_for(self, table: TableConfig) -> str:
        return table.topic or self.prefixed(table.name)

    def source_topics(self) -> list[SourceTopic]:
        return [
            SourceTopic(
                name=t.name,
                topic=self.topic_for(t),
                where=f"tables[{i}].topic" if t.topic else f"tables[{i}].name",
                hint="" if t.topic else "; set tables[].topic to a shorter name or shorten topic_prefix",
            )
            for i, t in enumerate(self.tables)
        ]


def parse_config(data: Any, source: str = "config", *, check_kafka: bool = True) -> DynamoDBConfig:
    cfg = base.parse_config(data, source, model=DynamoDBConfig, check_kafka=check_kafka)
    if cfg.kafka_auth.aws_msk_iam:
        _install_msk_iam(cfg, source)
    return cfg


def _install_msk_iam(cfg: DynamoDBConfig, source: str) -> None:
    """Every Kafka client gets MSK IAM tokens signed with the ``aws`` section's credentials.

    Nothing is fetched here (``validate`` stays offline): the session, and an assumed role,
    are made on the first token.
    """
    import threading

    from bridge.msk_iam import MskIamTokens, region_from_bootstrap
    from connectors.dynamodb.credentials import boto3_session, msk_iam_signer

    region = cfg.kafka_auth.region or region_from_bootstrap(str(cfg.kafka["bootstrap.servers"])) or cfg.aws.region
    if not region:
        from bridge.errors import ConfigError

        raise ConfigError(f"{source}: kafka_auth.region: no region for MSK IAM tokens (the bootstrap host names none "
                          "and aws.region is not set); set kafka_auth.region")
    lock = threading.Lock()
    made: list[Any] = []

    def credentials() -> Any:
        with lock:
            if not made:
                made.append(boto3_session(region=cfg.aws.region or region, profile=cfg.aws.profile,
                                          role=cfg.aws.assume_role()))
        return made[0].get_credentials()

    # A callback among the settings, put in after validation (librdkafka's oauth_cb).
    cfg.kafka["oauth_cb"] = MskIamTokens(region, msk_iam_signer(region, credentials),  # type: ignore[assignment]
                                         lifetime_s=cfg.kafka_auth.token_lifetime_s)


def load_config(path: str | Path, *, check_kafka: bool = True) -> DynamoDBConfig:
    cfg = base.load_config(path, model=DynamoDBConfig, check_kafka=check_kafka)
    if cfg.kafka_auth.aws_msk_iam:
        _install_msk_iam(cfg, str(path))
    return cfg
