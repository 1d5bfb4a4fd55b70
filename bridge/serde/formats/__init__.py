"""Converters: a record's Avro (the neutral form, see ``model.py``) as its topic's format.

``format`` per key and per value (a connector says each topic's formats through
``Sources.formats``; its own docs say where its config sets them):

- ``avro`` (default): the handle's Avro bodies as they are, Confluent wire format;
- ``json_schema``: JSON text, its JSON Schema registered with ``schemaType: JSON``, Confluent
  wire format (magic byte, schema id, JSON);
- ``protobuf``: a ``.proto`` generated from the Avro schema, registered with
  ``schemaType: PROTOBUF``, Confluent wire format with message indexes;
- ``json``: plain UTF-8 JSON, no registry, optionally in Kafka Connect's
  ``{"schema", "payload"}`` wrapper (``schemas_enable: true``).

Exact numbers: a decimal is written as its exact text (a JSON string, a protobuf string)
where the format has no decimal type, and as Connect's ``Decimal`` (base64 of the unscaled
two's-complement integer) inside the Connect wrapper. Bytes are base64 text in JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol, get_args

__all__ = ["FORMATS", "Converter", "FormatName", "FormatOptions", "TopicFormats", "converter"]

FormatName = Literal["avro", "json", "json_schema", "protobuf"]
FORMATS: tuple[str, ...] = get_args(FormatName)


@dataclass(frozen=True, slots=True)
class FormatOptions:
    """How a key or a value is written."""

    format: FormatName = "avro"
    schemas_enable: bool = False  # json: Kafka Connect's {"schema", "payload"} wrapper


@dataclass(frozen=True, slots=True)
class TopicFormats:
    """A topic's key and value formats."""

    key: FormatOptions = FormatOptions()
    value: FormatOptions = FormatOptions()

    @property
    def all_avro(self) -> bool:
        return self.key.format == "avro" and self.value.format == "avro"


class Converter(Protocol):
    """One Avro schema as one format: what to register and how to write a body."""

    @property
    def schema_type(self) -> str | None:
        """The registry's ``schemaType`` (AVRO, JSON, PROTOBUF), or None: no registry, no framing."""

    @property
    def schema(self) -> str:
        """The schema text to register (empty with no registry)."""

    def convert(self, body: bytes) -> bytes:
        """An Avro body of the schema as this format's bytes after the 5-byte Confluent header
        (the whole message without a registry); ConversionError when it cannot be written."""


@dataclass(frozen=True, slots=True)
class AvroConverter:
    schema: str
    schema_type: str = "AVRO"

    def convert(self, body: bytes) -> bytes:
        return body


@lru_cache(maxsize=512)
def converter(options: FormatOptions, avro_schema: str) -> Converter:
    """The converter of one Avro schema text to ``options``' format (cached by both); raises
    ConfigError when the schema cannot be written in the format (e.g. a recursive type in
    Kafka Connect's wrapper)."""
    f = options.format
    if f == "avro":
        return AvroConverter(avro_schema)
    if f == "json":
        from bridge.serde.formats.json_plain import JsonConverter

        return JsonConverter(avro_schema, options.schemas_enable)
    if f == "json_schema":
        from bridge.serde.formats.json_schema import JsonSchemaConverter

        return JsonSchemaConverter(avro_schema)
    if f == "protobuf":
        from bridge.serde.formats.protobuf import ProtobufConverter

        return ProtobufConverter(avro_schema)
    raise ValueError(f"unknown format {f!r}; one of {', '.join(FORMATS)}")
