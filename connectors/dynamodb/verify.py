"""``verify``: does the compacted topic hold exactly the table?

Scans the table and reads the topic's latest value per key (a delete or a tombstone removes
the key), then reports three kinds of difference, with counts and the first examples:

- **missing**: an item in the table with no live value in the topic;
- **extra**: a key with a live value in the topic that the table no longer has (a delete
  that never reached the topic, or its tombstone);
- **changed**: both have the key, but an attribute differs (numbers compared exactly, to
  all 38 digits; sets unordered; binary by bytes).

On a live table the scan and the topic are never at the same instant, so a clean bridge
still shows the keys written while it ran as different. With ``settle_s`` the differing
keys are checked again, each against a fresh consistent GetItem and the topic read on to
its new end, until they agree or the time is up: only differences that persist are
reported. The exit code of the command says clean (0) or not (1).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from bridge.errors import ConfigError, ConnectorError
from bridge.ops.decode import (
    DECODE_ERRORS,
    TopicDecoder,
    Undecodable,
    to_jsonable,
)
from bridge.ops.topicstate import CompactedView
from connectors.dynamodb.config import DynamoDBConfig, TableConfig
from connectors.dynamodb.items import avro_item, canonical_item, canonical_number
from connectors.dynamodb.schemas import KeyField, avro_name
from connectors.dynamodb.watermarks import WATERMARK_PREFIX

__all__ = ["Difference", "VerifyReport", "verify_table"]

Kind = Literal["missing", "extra", "changed"]
KeyId = tuple[tuple[str, Any], ...]


@dataclass
class Difference:
    kind: Kind
    key: dict[str, Any]  # DynamoDB JSON of the key
    attributes: list[str] = field(default_factory=list)  # changed: the attributes that differ
    table_item: dict[str, Any] | None = None
    topic_item: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "key": to_jsonable(self.key)}
        if self.attributes:
            out["attributes"] = self.attributes
        if self.table_item is not None:
            out["table"] = to_jsonable(self.table_item)
        if self.topic_item is not None:
            out["topic"] = to_jsonable(self.topic_item)
        return out


@dataclass
class VerifyReport:
    table: str
    topic: str
    table_items: int = 0
    topic_keys: int = 0
    topic_records: int = 0
    rechecked: int = 0
    keys_only: bool = False  # the topic carries no images (stream view KEYS_ONLY/OLD_IMAGE): keys compared only
    differences: list[Difference] = field(default_factory=list)
    skipped: str | None = None  # --skip-undecodable: how many records were skipped, and the first

    def of(self, kind: Kind) -> list[Difference]:
        return [d for d in self.differences if d.kind == kind]

    @property
    def clean(self) -> bool:
        return not self.differences

    def to_json(self, examples: int = 5) -> dict[str, Any]:
        return {
            "table": self.table,
            "topic": self.topic,
            "clean": self.clean,
            "table_items": self.table_items,
            "topic_keys": self.topic_keys,
            "topic_records": self.topic_records,
            "rechecked": self.rechecked,
            "keys_only": self.keys_only,
            "skipped_undecodable": self.skipped,
            "counts": {k: len(self.of(k)) for k in ("missing", "extra", "changed")},
            "examples": {k: [d.to_json() for d in self.of(k)[:examples]] for k in ("missing", "extra", "changed")},
        }

    def lines(self, examples: int = 5) -> list[str]:
        head = (f"table {self.table!r} vs topic {self.topic!r}: {self.table_items} items, {self.topic_keys} live keys "
                f"in {self.topic_records} records")
        note = [f"  {self.skipped}"] if self.skipped else []
        if self.clean:
            return [f"{head}: clean" + (f" ({self.rechecked} keys re-checked after the stream caught up)"
                                        if self.rechecked else "")] + note
        out = [f"{head}: {len(self.of('missing'))} missing, {len(self.of('extra'))} extra, "
               f"{len(self.of('changed'))} changed"]
        kinds: tuple[tuple[Kind, str], ...] = (
            ("missing", "in the table, not in the topic"),
            ("extra", "in the topic, not in the table (a delete without its tombstone?)"),
            ("changed", "attributes differ"),
        )
        for kind, what in kinds:
            for d in self.of(kind)[:examples]:
                extra = f" attributes {', '.join(d.attributes)}" if d.attributes else ""
                out.append(f"  {kind}: key {_key_text(d.key)}: {what}{extra}")
        return out + note


def _key_text(key: dict[str, Any]) -> str:
    import json

    return json.dumps(to_jsonable(key), sort_keys=True)


def _scalar_id(t: str, v: Any) -> Any:
    if t == "N":
        return canonical_number(str(v))
    if t == "B":
        return canonical_item({"x": {"B": v}})["x"][1]
    return str(v)


class _TableSide:
    """The table's key schema and items, read with boto3 (control-plane speed is enough)."""

    def __init__(self, cfg: DynamoDBConfig, table: str) -> None:
        from connectors.dynamodb.client import aws_session

        session = aws_session(region=cfg.aws.region, profile=cfg.aws.profile, role=cfg.aws.assume_role(), endpoint_url=cfg.aws.endpoint_url)
        self.client = session.client("dynamodb", endpoint_url=cfg.aws.endpoint_url)
        self.table = table
        try:
            desc = self.client.describe_table(TableName=table)["Table"]
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise ConfigError(f"tables: table {table!r} not found; check the name and aws.region") from None
            raise ConnectorError(f"DescribeTable {table!r}: {e}") from None
        except BotoCoreError as e:
            raise ConnectorError(f"cannot reach DynamoDB: {e}") from None
        types = {a["AttributeName"]: a["AttributeType"] for a in desc.get("AttributeDefinitions", [])}
        keys = sorted(desc["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
        self.key_fields = tuple(KeyField(k["AttributeName"], types[k["AttributeName"]]) for k in keys)
        spec = desc.get("StreamSpecification") or {}
        self.view_type = spec.get("StreamViewType") if spec.get("StreamEnabled") else None

    def key_of(self, item: dict[str, Any]) -> dict[str, Any]:
        return {kf.name: item[kf.name] for kf in self.key_fields}

    def key_id(self, key: dict[str, Any]) -> KeyId:
        return tuple((kf.name, _scalar_id(kf.type, next(iter(key[kf.name].values())))) for kf in self.key_fields)

    def is_watermark(self, key: dict[str, Any]) -> bool:
        first = self.key_fields[0]
        v = next(iter(key[first.name].values()))
        if first.type == "S":
            return str(v).startswith(WATERMARK_PREFIX)
        if first.type == "B":
            return _scalar_id("B", v).startswith(WATERMARK_PREFIX.encode())
        return str(v).startswith("-9.9999999999999999999999")

    def scan(self, consistent: bool) -> dict[KeyId, dict[str, Any]]:
        out: dict[KeyId, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": consistent}
        try:
            for page in self.client.get_paginator("scan").paginate(**kwargs):
                for item in page.get("Items", []):
                    key = self.key_of(item)
                    if not self.is_watermark(key):
                        out[self.key_id(key)] = item
        except (ClientError, BotoCoreError) as e:
            raise ConnectorError(f"Scan {self.table!r}: {e}") from None
        return out

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as e:
            raise ConnectorError(f"GetItem {self.table!r}: {e}") from None


class _TopicSide:
    """The topic's latest value per key, as DynamoDB JSON items (None: deleted)."""

    def __init__(self, cfg: DynamoDBConfig, topic: str, table: _TableSide, skip_undecodable: bool = False) -> None:
        self.table = table
        self.undecodable = Undecodable(topic, skip_undecodable)
        self.decoder = TopicDecoder.for_config(cfg)
        self.latest: dict[KeyId, dict[str, Any] | None] = {}
        self.keys: dict[KeyId, dict[str, Any]] = {}
        self.images = True
        self.view = CompactedView(cfg.kafka, topic, self._apply)

    def _key_json(self, avro_key: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for kf in self.table.key_fields:
            v = avro_key[avro_name(kf.name)]
            out[kf.name] = {kf.type: v}
        return out

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            self._apply_decoded(key, value)
        except DECODE_ERRORS as e:
            self.undecodable.met(*self.view.position, e)

    def _apply_decoded(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        k = self._key_json(self.decoder.decode(key))
        if self.table.is_watermark(k):
            return
        env = None if value is None else self.decoder.decode(value)
        after = None
        if env is not None and env["op"] != "d":  # decoded in full before anything is kept
            after = avro_item(env.get("after"))
            if after is None:  # a view type without new images: presence only
                self.images = False
                after = dict(k)
        kid = self.table.key_id(k)
        self.keys[kid] = k
        self.latest[kid] = after

    def live(self) -> dict[KeyId, dict[str, Any]]:
        return {k: v for k, v in self.latest.items() if v is not None}

    def close(self) -> None:
        self.view.close()
        self.decoder.close()


def _compare(kid: KeyId, key: dict[str, Any], table_item: dict[str, Any] | None,
             topic_item: dict[str, Any] | None, images: bool) -> Difference | None:
    if table_item is None and topic_item is None:
        return None
    if topic_item is None:
        return Difference("missing", key, table_item=table_item)
    if table_item is None:
        return Difference("extra", key, topic_item=topic_item)
    if not images:
        return None
    a, b = canonical_item(table_item), canonical_item(topic_item)
    if a == b:
        return None
    attrs = sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))
    return Difference("changed", key, attributes=attrs, table_item=table_item, topic_item=topic_item)


def verify_table(
    cfg: DynamoDBConfig,
    table_cfg: TableConfig,
    *,
    settle_s: float = 0.0,
    consistent: bool = True,
    progress: Callable[[str], None] | None = None,
    skip_undecodable: bool = False,
) -> VerifyReport:
    """Compare one table with its topic; ``settle_s`` > 0 re-checks differences (live tables)."""
    if table_cfg.value.shape != "envelope":
        raise ConfigError(
            f"verify: table {table_cfg.name!r} has value.shape {table_cfg.value.shape}; verify compares "
            "envelope topics (whose images keep every AttributeValue) only; use tail to read a typed topic"
        )
    if table_cfg.transforms:
        raise ConfigError(
            f"verify: table {table_cfg.name!r} has transforms; its topic holds what they made, not the table's "
            "items; verify compares untransformed envelope topics only (use tail to read the topic)"
        )
    say = progress or (lambda _msg: None)
    topic = cfg.topic_for(table_cfg)
    table = _TableSide(cfg, table_cfg.name)
    report = VerifyReport(table_cfg.name, topic)
    side = _TopicSide(cfg, topic, table, skip_undecodable)
    try:
        say(f"reading topic {topic!r}")
        side.view.read_to_end()
        say(f"scanning table {table_cfg.name!r}")
        items = table.scan(consistent)
        # Read on: changes written during the scan are in the topic by now or soon.
        side.view.read_to_end()
        live = side.live()
        report.table_items, report.topic_keys = len(items), len(live)
        report.keys_only = not side.images
        diffs: dict[KeyId, Difference] = {}
        for kid in set(items) | set(live):
            key = table.key_of(items[kid]) if kid in items else side.keys[kid]
            d = _compare(kid, key, items.get(kid), live.get(kid), side.images)
            if d is not None:
                diffs[kid] = d
        deadline = time.monotonic() + settle_s
        if diffs and settle_s > 0:
            report.rechecked = len(diffs)
            say(f"{len(diffs)} keys differ; re-checking them for up to {settle_s:.0f} s while the stream catches up")
        while diffs and time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            side.view.read_to_end()
            for kid in list(diffs):
                key = diffs[kid].key
                d = _compare(kid, key, table.get(key), side.latest.get(kid), side.images)
                if d is None:
                    del diffs[kid]
                else:
                    diffs[kid] = d
        report.topic_records = side.view.records
        report.skipped = side.undecodable.summary()
        order = {"missing": 0, "extra": 1, "changed": 2}
        report.differences = sorted(diffs.values(), key=lambda d: (order[d.kind], _key_text(d.key)))
        return report
    finally:
        side.close()
