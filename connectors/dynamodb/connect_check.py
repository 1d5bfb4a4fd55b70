"""``validate --connect``: everything ``run`` needs, checked against the real services, and
what ``run`` would do — without reading or writing any data.

Checks, each reported on its own line as ok or the problem with its fix: Kafka reachable,
topics (exist, or would be created), the registry, AWS credentials, and per table:
DescribeTable, its stream (DescribeStream), read permission on the stream (GetShardIterator
on one shard) and, for snapshots, Scan (one item). Stops nothing, creates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from connectors.dynamodb.config import DynamoDBConfig

__all__ = ["ConnectReport", "check_connect"]


@dataclass
class ConnectReport:
    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"ok       {x}" for x in self.ok] + [f"PROBLEM  {x}" for x in self.problems]
                + (["would run:"] + [f"  {x}" for x in self.plan] if self.plan else []))


def _aws_error(e: Exception) -> str:
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return f"{err.get('Code')}: {err.get('Message')}"
    return f"{type(e).__name__}: {e}"


def check_connect(cfg: DynamoDBConfig) -> ConnectReport:
    from bridge.errors import BridgeError
    from bridge.kafka import admin_client, check_reachable
    from bridge.registry.client import registry_client

    r = ConnectReport()
    topics: set[str] | None = None
    try:
        admin = admin_client(cfg.kafka)
        check_reachable(admin, str(cfg.kafka["bootstrap.servers"]), timeout_s=10, kafka=cfg.kafka)
        topics = set(admin.list_topics(timeout=10).topics)
        r.ok.append(f"kafka: {cfg.kafka['bootstrap.servers']} answers ({len(topics)} topics)")
    except BridgeError as e:
        r.problems.append(str(e))
    try:
        with registry_client(cfg) as reg:
            n = len(reg.subjects())
        r.ok.append(f"schema_registry: {cfg.schema_registry.url.split(',')[0]} answers ({n} subjects)")
    except BridgeError as e:
        r.problems.append(f"schema_registry.url: {e}")

    from connectors.dynamodb.client import aws_session

    try:
        session = aws_session(region=cfg.aws.region, profile=cfg.aws.profile, role=cfg.aws.assume_role(), endpoint_url=cfg.aws.endpoint_url,
                              streams_endpoint_url=cfg.aws.streams_endpoint_url)
    except BridgeError as e:
        r.problems.append(str(e))
        return r
    ddb = session.client("dynamodb", endpoint_url=cfg.aws.endpoint_url)
    streams = session.client("dynamodbstreams", endpoint_url=cfg.aws.streams_endpoint_url or cfg.aws.endpoint_url)
    if session.get_credentials() is None:
        r.problems.append("aws: no credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or a role")
        return r
    r.ok.append(f"aws: credentials found, region {session.region_name}")

    def topic_state(t: str) -> str:
        if topics is None:
            return "unknown"
        return "exists" if t in topics else "would be created"

    for t in cfg.tables:
        topic = cfg.topic_for(t)
        try:
            desc: dict[str, Any] = ddb.describe_table(TableName=t.name)["Table"]
        except (ClientError, BotoCoreError, NoCredentialsError) as e:
            r.problems.append(f"tables: {t.name}: DescribeTable failed ({_aws_error(e)}); check the name, aws.region "
                              f"and dynamodb:DescribeTable")
            continue
        r.ok.append(f"table {t.name}: {desc.get('ItemCount', 0)} items (approximate)")
        needs_stream = t.snapshot.mode != "only"
        arn = desc.get("LatestStreamArn") if (desc.get("StreamSpecification") or {}).get("StreamEnabled") else None
        shards: list[dict[str, Any]] = []
        if needs_stream and arn is None:
            r.problems.append(f"tables: {t.name}: no stream enabled; enable it with StreamViewType=NEW_AND_OLD_IMAGES")
        elif needs_stream:
            try:
                shards = streams.describe_stream(StreamArn=arn)["StreamDescription"].get("Shards", [])
                open_shards = [s for s in shards if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})]
                r.ok.append(f"table {t.name}: stream {str(arn).rsplit('/', 1)[-1]} with {len(shards)} shards "
                            f"({len(open_shards)} open)")
                if shards:
                    streams.get_shard_iterator(StreamArn=arn, ShardId=shards[0]["ShardId"],
                                               ShardIteratorType="LATEST")
                    r.ok.append(f"table {t.name}: may read the stream (GetShardIterator)")
            except (ClientError, BotoCoreError) as e:
                r.problems.append(f"tables: {t.name}: reading the stream failed ({_aws_error(e)}); grant "
                                  f"dynamodb:DescribeStream, GetShardIterator and GetRecords on {arn}")
        if t.snapshot.mode != "never" and t.snapshot.method == "scan":
            try:
                ddb.scan(TableName=t.name, Limit=1)
                r.ok.append(f"table {t.name}: may Scan (snapshot)")
            except (ClientError, BotoCoreError) as e:
                r.problems.append(f"tables: {t.name}: Scan failed ({_aws_error(e)}); grant dynamodb:Scan")
        what = {"never": "stream only", "only": f"snapshot only ({t.snapshot.method}, repeat {t.snapshot.repeat})",
                "initial": f"snapshot ({t.snapshot.method}) then stream", "concurrent": "stream and snapshot together"}
        r.plan.append(f"{t.name} -> {topic} ({topic_state(topic)}): {what[t.snapshot.mode]}"
                      + (f", {len(shards)} shards from stored offsets or {t.start_position}" if needs_stream else ""))
    r.plan.append(f"offsets in {cfg.offsets_topic} ({topic_state(cfg.offsets_topic)}), delivery {cfg.delivery}, "
                  f"errors.tolerance {cfg.errors.tolerance}")
    if cfg.status.enabled:
        r.plan.append(f"status in {cfg.status_topic} ({topic_state(cfg.status_topic)})")
    if cfg.rest.port is not None:
        r.plan.append(f"REST API and status page on http://{cfg.rest.host}:{cfg.rest.port}"
                      + (" (bearer token)" if cfg.rest.bearer_token else ""))
    if cfg.metrics.port is not None:
        r.plan.append(f"/metrics and /health on http://{cfg.metrics.host}:{cfg.metrics.port}")
    return r
