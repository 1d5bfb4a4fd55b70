"""One error hierarchy for the whole bridge.

Library exceptions (botocore, httpx, KafkaException) are translated into these at the
module that calls the library, so callers only ever handle ``BridgeError`` subclasses and
the CLI can print one clear line for any of them.
"""

from __future__ import annotations

__all__ = [
    "BridgeError",
    "StartupError",
    "ConfigError",
    "ConnectorError",
    "RetriableError",
    "TrimmedDataError",
    "ConversionError",
    "SchemaError",
    "ProduceError",
    "OffsetStoreError",
    "CorruptOffsetError",
    "ProducerStalledError",
]


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class StartupError(BridgeError):
    """The bridge refuses to start, before it has read or written anything: exit code 2.

    Raised for whatever a user has to fix before a start can succeed (the config file, a
    missing table, a corrupt offsets topic); a failure after the start is exit code 1.
    """


class ConfigError(StartupError):
    """The configuration is invalid or names something that does not exist; fix and restart."""


class ConnectorError(BridgeError):
    """A source system (DynamoDB, DynamoDB Streams, S3) failed in a way retrying will not fix."""


class RetriableError(ConnectorError):
    """A transient source failure (throttling, 5xx, dropped connection): retry with backoff."""


class SourceGoneError(ConnectorError):
    """The table was deleted, or its stream disabled or replaced, while the bridge ran."""


class TrimmedDataError(ConnectorError):
    """Records a task still had to read were trimmed from the stream (older than 24 hours)."""


class ConversionError(BridgeError):
    """A source record could not be turned into a Kafka record (bad attribute value, too large)."""


class SchemaError(BridgeError):
    """The Schema Registry refused or could not serve a schema.

    ``status`` and ``code`` carry the HTTP status and Confluent error code when there is one.
    """

    def __init__(self, message: str, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ProduceError(BridgeError):
    """Kafka refused a record or the broker could not be reached in time."""


class GroupError(BridgeError):
    """The process lost its place in its name's group (its coordination topic was deleted)."""


class OffsetStoreError(BridgeError):
    """Source offsets could not be read from or written to the offsets topic."""


class CorruptOffsetError(OffsetStoreError, StartupError):
    """A record in the offsets topic is not an offset this bridge wrote.

    Acting on it could skip a shard or re-read a table, so the start stops instead; the
    message names the topic, partition, offset and key, and how to remove the record.
    """


class ProducerStalledError(ProduceError):
    """The broker has acknowledged nothing for longer than the configured stall limit.

    The process exits so that a supervisor restarts it with a new producer; the restart
    resumes from the committed offsets, so nothing is lost.
    """
