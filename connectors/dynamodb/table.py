"""What the bridge needs to know about a table: key schema and stream."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.errors import ConfigError
from connectors.dynamodb.client import AwsApiError, AwsJsonClient
from connectors.dynamodb.schemas import KeyField

__all__ = ["TableInfo", "describe_table"]


@dataclass(frozen=True, slots=True)
class TableInfo:
    name: str
    region: str
    key_fields: tuple[KeyField, ...]  # hash key first, then range key
    stream_arn: str | None
    view_type: str | None
    item_count: int


async def describe_table(ddb: AwsJsonClient, name: str) -> TableInfo:
    try:
        desc = (await ddb.call("DescribeTable", {"TableName": name}))["Table"]
    except AwsApiError as e:
        if e.code == "ResourceNotFoundException":
            raise ConfigError(
                f"tables: table {name!r} not found in region {ddb.region} at {ddb.url}; check the name and aws.region"
            ) from None
        raise
    types = {a["AttributeName"]: a["AttributeType"] for a in desc.get("AttributeDefinitions", [])}
    keys = sorted(desc["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
    spec = desc.get("StreamSpecification") or {}
    enabled = spec.get("StreamEnabled", False)
    return TableInfo(
        name=name,
        region=ddb.region,
        key_fields=tuple(KeyField(k["AttributeName"], types[k["AttributeName"]]) for k in keys),
        stream_arn=desc.get("LatestStreamArn") if enabled else None,
        view_type=spec.get("StreamViewType") if enabled else None,
        item_count=int(desc.get("ItemCount", 0)),
    )
