"""Decode the bridge's topics back into Python values, through the Schema Registry.

Used by ``tail`` and ``verify``: the runtime never decodes, but an operator wants to read
what was written in the same terms as a consumer would (Confluent framing, Avro schemas by
id from the registry). What the values mean is the connector's (``tail`` asks the
composition root for its view of a value; ``verify`` is the connector's own).
"""

from __future__ import annotations

import base64
import io
import json
from decimal import Decimal
from typing import Any

import fastavro

from bridge.config import BridgeConfig
from bridge.errors import ConversionError, SchemaError
from bridge.registry.client import SchemaRegistryClient
from bridge.serde.wire import unframe

__all__ = ["DECODE_ERRORS", "TopicDecoder", "Undecodable", "to_jsonable"]

#: What decoding a record that the bridge did not write raises (other framing, an unknown
#: schema id, a body that is not the schema's, a value that is not the bridge's envelope).
DECODE_ERRORS = (ConversionError, SchemaError, KeyError, TypeError)


class Undecodable:
    """Records of a topic that do not decode (foreign bytes): named by partition and
    offset, and either the end of the command (one line with the fix) or, with
    ``--skip-undecodable``, skipped and counted."""

    def __init__(self, topic: str, skip: bool) -> None:
        self.topic, self.skip = topic, skip
        self.count = 0
        self.first: str | None = None

    def met(self, partition: int, offset: int, error: BaseException) -> None:
        """Count it (skipping) or raise ConversionError naming where it is."""
        if isinstance(error, SchemaError) and error.status != 404:
            raise error  # the registry is away or refuses us: no verdict on the record
        why = str(error) if not isinstance(error, (KeyError, TypeError)) else "not a change record the bridge wrote"
        where = f"topic {self.topic!r} partition {partition} offset {offset}"
        if not self.skip:
            raise ConversionError(f"{where}: cannot decode the record ({why}); it is not one the bridge wrote. "
                                  "Run again with --skip-undecodable to skip such records (they are counted)")
        self.count += 1
        if self.first is None:
            self.first = f"{where} ({why})"

    def summary(self) -> str | None:
        if not self.count:
            return None
        return f"skipped {self.count} undecodable record(s) in {self.topic!r}, the first at {self.first}"


class TopicDecoder:
    """Framed Avro bytes → Python values; one parsed schema per id, cached."""

    def __init__(self, registry: SchemaRegistryClient) -> None:
        self._registry = registry
        self._parsed: dict[int, Any] = {}

    @classmethod
    def for_config(cls, cfg: BridgeConfig) -> TopicDecoder:
        from bridge.registry.client import registry_client

        return cls(registry_client(cfg))

    def decode(self, data: bytes | None) -> Any:
        if data is None:
            return None
        schema_id, body = unframe(data)
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            try:
                parsed = fastavro.parse_schema(json.loads(self._registry.get_schema(schema_id)))
            except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException, fastavro.schema.UnknownType):
                raise ConversionError(f"schema id {schema_id} is not an Avro schema (a json_schema or protobuf "
                                      "topic?); tail and verify read Avro topics") from None
            self._parsed[schema_id] = parsed
        try:
            return fastavro.schemaless_reader(io.BytesIO(body), parsed)
        except (EOFError, ValueError, TypeError, IndexError) as e:
            raise ConversionError(f"cannot decode a record with schema id {schema_id}: {e}") from None

    def close(self) -> None:
        self._registry.close()


def to_jsonable(value: Any) -> Any:
    """Avro values → JSON: bytes as base64 (as DynamoDB JSON writes B), sets as sorted lists."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(to_jsonable(v) for v in value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Decimal):
        return str(value)  # exact, as DynamoDB JSON writes N (Avro decimal of a typed value)
    return value


