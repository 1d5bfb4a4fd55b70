"""Typed, validated configuration: every problem reported at once, each naming key and fix.

The YAML file is the whole interface a user has to the bridge, so a bad file must fail at
start with one clear line, never half-start. ``${VAR}``, ``${VAR:-default}`` and
``${file:/path[:key]}`` in string values are resolved (``bridge/interpolate.py``), so secrets
need not sit in the file.

This module holds what every source shares (Kafka, registry, offsets, errors, group,
operations). A connector extends ``BridgeConfig`` with its own keys (the DynamoDB one:
``connectors/dynamodb/config.py``) and names its sources' topics through
``source_topics()``; ``bridge_app/app.py`` picks the model.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

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
from pydantic_core import ErrorDetails

from bridge.errors import ConfigError
from bridge.interpolate import interpolate
from bridge.redact import redact, register_secret, register_secrets, register_url_secrets
from bridge.serde.formats import FormatName, FormatOptions

__all__ = [
    "BridgeConfig",
    "FormatConfig",
    "ErrorsConfig",
    "GroupConfig",
    "HealthConfig",
    "KafkaAuthConfig",
    "MetricsConfig",
    "RestConfig",
    "StatusConfig",
    "OffsetsConfig",
    "RegistryConfig",
    "TopicCreationConfig",
    "StallConfig",
    "Model",
    "SourceTopic",
    "check_topic_name",
    "http_url",
    "topic_field",
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


class Model(BaseModel):
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


class FormatConfig(Model):
    """How a record's key or value is written (``bridge/serde/formats``): ``key: {format: ...}``,
    ``value: {format: ...}``."""

    format: FormatName = Field("avro", description="avro, json_schema or protobuf (Confluent wire format, schema "
                               "registered), or json (plain UTF-8 JSON, no registry)")
    schemas_enable: bool = Field(False, description="format: json: Kafka Connect's {\"schema\", \"payload\"} "
                                 "wrapper (JsonConverter's schemas.enable)")

    @model_validator(mode="after")
    def _wrapper(self) -> FormatConfig:
        if self.schemas_enable and self.format != "json":
            raise ValueError(f"schemas_enable is only read with format: json (format is {self.format}); "
                             "remove it or set format: json")
        return self

    def options(self) -> FormatOptions:
        return FormatOptions(self.format, self.schemas_enable)


def topic_field(v: str | None) -> str | None:
    if v is not None:
        why = check_topic_name(v)
        if why is not None:
            raise ValueError(why)
    return v


def http_url(value: str, example: str) -> None:
    if not re.match(r"^https?://[^/\s]+", value.strip()):
        raise ValueError(f"{redact(value.strip())!r} is not an http(s) URL; use e.g. {example}")


class BasicAuth(Model):
    username: str
    password: SecretStr


class RegistryConfig(Model):
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
            http_url(u, "http://localhost:8081")
        return v

    @model_validator(mode="after")
    def _one_auth(self) -> RegistryConfig:
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("basic_auth and bearer_token are both set; keep the one your registry expects")
        return self


class KafkaAuthConfig(Model):
    """Credentials the bridge supplies to Kafka itself (beyond what librdkafka reads from ``kafka``)."""

    aws_msk_iam: bool = Field(False, description="Amazon MSK IAM: sign OAUTHBEARER tokens with the AWS credential "
                              "chain (needs security.protocol SASL_SSL and sasl.mechanism OAUTHBEARER)")
    region: str | None = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$",
                               description="the cluster's region; default: from the bootstrap host, then aws.region")
    token_lifetime_s: int | None = Field(None, ge=10, le=900, description="report tokens as valid this long (the "
                                         "signer's are 900 s), so librdkafka renews them sooner")


class TopicCreationConfig(Model):
    partitions: int = Field(1, ge=1, le=10_000)
    replication_factor: int = Field(-1, ge=-1, le=32767, description="-1 = the broker's default")
    config: dict[str, str] = Field(default_factory=dict)

    @field_validator("replication_factor")
    @classmethod
    def _rf(cls, v: int) -> int:
        if v == 0:
            raise ValueError("0 copies is not a replication factor; use -1 (the broker's default) or 1 and up")
        return v


class OffsetsConfig(Model):
    topic: str | None = Field(None, description="defaults to '<name>-offsets'")
    flush_interval_ms: int = Field(1000, ge=10, le=300_000)

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        return topic_field(v)


class ErrorsConfig(Model):
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
        return topic_field(v)


class GroupConfig(Model):
    """Every process of one ``name`` shares the work through Kafka's consumer group protocol.

    A single process is a group of one, so a second process of the same name takes half the
    work instead of publishing every change again (bridge.group)."""

    enabled: bool = Field(
        True, description="share the work with every process of this name (the default): each unit of work (a "
        "source partition: a stream's partition, a snapshot segment) is read by one of them, and moves to another when one stops or dies. false: "
        "this process runs alone, reading every unit; it still joins the group, so it refuses to start while "
        "another process of the name runs, and makes any later one refuse",
    )
    partitions: int = Field(
        16, ge=1, le=256, description="coordination partitions; a unit belongs to partition crc32(unit) mod this. "
        "Exactly-once keeps one transactional producer per partition a process owns",
    )
    topic: str | None = Field(None, description="coordination topic; defaults to '<name>-workers'")
    session_timeout_ms: int = Field(
        10000, ge=1000, le=300000, description="a process silent this long is presumed dead and its work moves",
    )


def _unbracket(host: str) -> str:
    """An IPv6 address as URLs write it (``[::1]``) is the address a socket binds (``::1``)."""
    host = host.strip()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


class MetricsConfig(Model):
    port: int | None = Field(None, ge=0, le=65535, description="serve /metrics and /health on this port")
    host: str = Field("127.0.0.1", min_length=1, max_length=253,
                      description="0.0.0.0 to let other hosts scrape (the default keeps it local)")

    _host = field_validator("host")(_unbracket)


class RestConfig(Model):
    port: int | None = Field(None, ge=0, le=65535, description="serve the REST API and the status page on this port")
    host: str = Field("127.0.0.1", description="0.0.0.0 to serve other hosts (bearer_token required then)")
    _host = field_validator("host")(_unbracket)
    allow_unauthenticated: bool = Field(
        False, description="serve a host other than loopback without bearer_token (anyone who reaches it may "
                           "pause, stop and reset offsets)",
    )
    # After port, host and allow_unauthenticated: its check reads them.
    bearer_token: SecretStr | None = Field(None, validate_default=True,
                                           description="required as 'Authorization: Bearer <token>' when set")

    @field_validator("bearer_token")
    @classmethod
    def _auth(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """An empty token (an unset ``${REST_TOKEN}``) would turn authentication off unseen,
        and a server on another interface without one lets anyone reset offsets: both refused."""
        if v is not None and not v.get_secret_value().strip():
            raise ValueError("is empty or blank (an unset ${VARIABLE}?); set a token, or remove the key to serve "
                             "loopback only without one")
        if v is not None:
            # HTTP strips the spaces around a header's value and cannot carry a line break or
            # other control character: such a token (an env variable from a secret file that
            # ends in a newline) could never be sent, so every request would be refused.
            token = v.get_secret_value().strip()
            if any(ord(c) < 32 or ord(c) == 127 for c in token):
                raise ValueError("holds a line break or other control character, which no HTTP client can send; "
                                 "use a token of printable characters")
            v = SecretStr(token)
        host = info.data.get("host", "127.0.0.1")
        if v is None and info.data.get("port") is not None and not info.data.get("allow_unauthenticated") \
                and not is_loopback(host):
            raise ValueError(f"required when rest.host is {host or '(every interface)'!r}, not a loopback address; "
                             "set a token (or rest.allow_unauthenticated: true if a network policy guards the port)")
        return v


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (an IP in 127.0.0.0/8 or ::1, or 'localhost')."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost, or '' (every interface)


class HealthConfig(Model):
    max_lag_ms: int = Field(60_000, ge=0, description="/health DEGRADED while a task's millis_behind_latest exceeds it")
    max_retrying_s: float = Field(60.0, gt=0, description="/health DEGRADED while a task's read retries this long")
    registry_probe_s: float = Field(15.0, gt=0, description="how often /health checks that the registry answers")


class StatusConfig(Model):
    topic: str | None = Field(None, description="compacted status topic; defaults to '<name>-status'")
    interval_ms: int = Field(5000, ge=100, description="how often task positions and lag are written to it")
    enabled: bool = True


class StallConfig(Model):
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


@dataclass(frozen=True)
class SourceTopic:
    """A source named in the config (a table), the topic it writes, and where the config says so."""

    name: str
    topic: str
    where: str  # key path for errors, e.g. "tables[0].name"
    hint: str = ""  # appended to a "name too long" error: how to shorten it


class HeartbeatConfig(Model):
    interval_ms: int | None = Field(
        None, ge=100, le=86_400_000, description="a reader that read nothing this long writes a heartbeat record "
        "(None: no heartbeats)")
    topic: str | None = Field(None, description="defaults to '<name>-heartbeats'")

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        return topic_field(v)


class BridgeConfig(Model):
    # <name>-offsets must stay a legal topic name (at most 249 characters).
    name: str = Field(
        min_length=1, max_length=TOPIC_MAX_LENGTH - len("-offsets"), pattern=r"^[A-Za-z0-9_.-]+$",
        description="connector name: offsets and ids hang off it",
    )
    kafka: dict[str, str | int | float | bool]
    kafka_auth: KafkaAuthConfig = KafkaAuthConfig()
    schema_registry: RegistryConfig
    topic_prefix: str = Field("ddb", pattern=r"^[A-Za-z0-9_.-]*$")
    topic_creation: TopicCreationConfig = TopicCreationConfig()
    offsets: OffsetsConfig = OffsetsConfig()
    errors: ErrorsConfig = ErrorsConfig()
    metrics: MetricsConfig = MetricsConfig()
    group: GroupConfig = GroupConfig()
    rest: RestConfig = RestConfig()
    health: HealthConfig = HealthConfig()
    status: StatusConfig = StatusConfig()
    stall: StallConfig = StallConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
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
    def _msk_iam(self) -> BridgeConfig:
        """MSK IAM is OAUTHBEARER over SASL: refuse settings it cannot work with, naming the key."""
        if not self.kafka_auth.aws_msk_iam:
            return self
        k = self.kafka
        problems = []
        if str(k.get("security.protocol", "")).upper() not in ("SASL_SSL", "SASL_PLAINTEXT"):
            problems.append("kafka.security.protocol: kafka_auth.aws_msk_iam needs SASL_SSL (MSK's IAM port is 9098); "
                            "set security.protocol: SASL_SSL")
        mech = k.get("sasl.mechanism", k.get("sasl.mechanisms"))
        if str(mech).upper() != "OAUTHBEARER":
            problems.append("kafka.sasl.mechanism: kafka_auth.aws_msk_iam signs OAUTHBEARER tokens; set "
                            "sasl.mechanism: OAUTHBEARER")
        if str(k.get("sasl.oauthbearer.method", "default")).lower() == "oidc":
            problems.append("kafka.sasl.oauthbearer.method: oidc fetches tokens from an OIDC server, not MSK IAM; "
                            "remove it")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _topics(self) -> BridgeConfig:
        """Every topic the bridge writes is a legal name, and no two roles share one.

        Two sources may share a topic only with the same key schema, which is known at start
        (e.g. DescribeTable); that part is checked there (``app``).
        """
        problems: list[str] = []
        own = {self.offsets_topic: "offsets.topic"}
        if self.errors.tolerance == "all":
            if self.dead_letter_topic in own:
                problems.append(
                    f"errors.dead_letter_topic: {self.dead_letter_topic!r} is also the offsets topic; give each its own"
                )
            own[self.dead_letter_topic] = "errors.dead_letter_topic"
        if self.heartbeat_topic is not None:
            if self.heartbeat_topic in own:
                problems.append(f"heartbeat.topic: {self.heartbeat_topic!r} is also the {own[self.heartbeat_topic]}; "
                                "give each its own")
            own[self.heartbeat_topic] = "heartbeat.topic"
        if self.heartbeat.topic is not None and self.heartbeat.interval_ms is None:
            problems.append("heartbeat.topic: set without heartbeat.interval_ms, so no heartbeat would be written; "
                            "set heartbeat.interval_ms (e.g. 60000) or remove heartbeat.topic")
        derived = [t for t, set_ in ((self.offsets_topic, self.offsets.topic), (self.dead_letter_topic,
                                     self.errors.dead_letter_topic), (self.heartbeat_topic, self.heartbeat.topic))
                   if set_ is None and t is not None]
        for topic in derived:
            why = check_topic_name(topic)
            if why is not None:
                problems.append(f"name: the topic derived from it {why}")
        seen_kafka: dict[str, str] = {}
        for src in self.source_topics():
            topic, where = src.topic, src.where
            why = check_topic_name(topic)
            if why is not None:
                problems.append(f"{where}: topic {why}{src.hint}")
                continue
            if topic in own:
                problems.append(f"{where}: topic {topic!r} is the bridge's {own[topic]}; give the source its own topic")
            # Kafka refuses a topic whose name differs from another only in '.' versus '_'.
            folded = topic.replace(".", "_")
            other = seen_kafka.get(folded)
            if other is not None and other != topic:
                problems.append(
                    f"{where}: topic {topic!r} collides with {other!r} (Kafka treats '.' and '_' alike in topic "
                    "names); rename one"
                )
            seen_kafka.setdefault(folded, topic)
        problems += self._port_clashes()
        if problems:
            raise ValueError("; ".join(dict.fromkeys(problems)))
        return self

    def _port_clashes(self) -> list[str]:
        """Two servers of this process on one port: the second would fail after topics exist."""
        listening = {"metrics.port": self.metrics.port, "rest.port": self.rest.port}
        seen: dict[int, str] = {}
        problems = []
        for key, port in listening.items():
            if not port:  # None: not served; 0: the system picks a free one
                continue
            if port in seen:
                problems.append(f"{key}: {port} is also {seen[port]}; give each server its own port")
            seen.setdefault(port, key)
        return problems

    def source_topics(self) -> list[SourceTopic]:
        """The topics of the sources named in the config; a connector's config model lists them."""
        return []

    def prefixed(self, name: str) -> str:
        """The topic a source writes to unless the config names one: ``<topic_prefix>.<name>``."""
        return f"{self.topic_prefix}.{name}" if self.topic_prefix else name

    @property
    def offsets_topic(self) -> str:
        return self.offsets.topic or f"{self.name}-offsets"

    @property
    def group_topic(self) -> str:
        return self.group.topic or f"{self.name}-workers"

    def solo_reason(self) -> str | None:
        """Why this process must run alone (reading every unit, never sharing), or None: it
        shares the work with every process of its name. A source's config adds its own reasons."""
        return None if self.group.enabled else "group.enabled: false"

    @property
    def shares_work(self) -> bool:
        """Whether units are divided between the processes of this name (else this one reads all)."""
        return self.solo_reason() is None

    @property
    def status_topic(self) -> str:
        return self.status.topic or f"{self.name}-status"

    @property
    def dead_letter_topic(self) -> str:
        return self.errors.dead_letter_topic or f"{self.name}-dlq"

    @property
    def heartbeat_topic(self) -> str | None:
        """Where heartbeats go, or None when they are off (``heartbeat.interval_ms`` unset)."""
        if self.heartbeat.interval_ms is None:
            return None
        return self.heartbeat.topic or f"{self.name}-heartbeats"


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that holds the key at ``loc``, to suggest valid keys for a typo."""
    model: Any = root
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


def _describe(root: type[BaseModel], err: ErrorDetails) -> str:
    loc = tuple(err["loc"])
    where = _location(loc)
    if err["type"] == "extra_forbidden":
        model = _model_at(root, loc)
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
        return f"{where}: has characters a name here cannot have{shown}; use only letters, digits, '.', '_' and '-'"
    if err["type"] == "finite_number":
        return f"{where}: must be a finite number (not .inf or .nan); write a number"
    if not loc and re.match(r"^[A-Za-z_][\w.\[\]]*: ", msg):
        return msg  # a whole-config check that names its key itself (e.g. "rest.port: ...")
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
        if isinstance(registry.get("url"), str):
            register_url_secrets(registry["url"])
    rest = data.get("rest")
    if isinstance(rest, dict):
        register_secret(rest.get("bearer_token"))
        if isinstance(rest.get("bearer_token"), str):
            register_secret(rest["bearer_token"].strip())  # what the server compares, and may echo


C = TypeVar("C", bound=BridgeConfig)


def parse_config(
    data: Any, source: str = "config", *, model: type[C] = BridgeConfig, check_kafka: bool = True  # type: ignore[assignment]
) -> C:
    """Validate a parsed YAML document against ``model``; raises ConfigError listing every
    problem on one line.

    ``check_kafka`` also has librdkafka check the ``kafka`` settings (without connecting).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a YAML mapping at the top level")
    data, missing = interpolate(data)
    _register_secrets(data)
    if missing:
        raise ConfigError(f"{source}: " + "; ".join(missing))
    try:
        cfg = model.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(_describe(model, err) for err in e.errors())
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


def load_config(path: str | Path, *, model: type[C] = BridgeConfig, check_kafka: bool = True) -> C:  # type: ignore[assignment]
    """Read and validate a YAML config file (strict: no aliases, no duplicate keys, UTF-8)."""
    return parse_config(read_config(path), str(path), model=model, check_kafka=check_kafka)


def read_config(path: str | Path) -> Any:
    """A YAML config file's data, not validated yet (strict: no aliases, no duplicate keys, UTF-8)."""
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
    return data
