"""DynamoDB sources: Streams readers (and, later, Scan and S3-export snapshots)."""

from connectors.dynamodb.client import AwsJsonClient, RetryPolicy, make_clients
from connectors.dynamodb.streams import ShardReader, StreamsConnector
from connectors.dynamodb.table import TableInfo, describe_table

__all__ = [
    "AwsJsonClient",
    "RetryPolicy",
    "ShardReader",
    "StreamsConnector",
    "TableInfo",
    "describe_table",
    "make_clients",
]
