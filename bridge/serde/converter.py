"""The converter seam: what a connector hands the runtime, and what the runtime does with it.

Kafka Connect's split (``SourceRecord`` with ``keySchema``/``valueSchema``, then a converter)
is the model. The runtime never interprets a record's data: it knows Avro, the Confluent
wire format, the registry and subject name strategies, and nothing of any source.

Contract
--------
A connector produces :class:`bridge.task.SourceRecord` objects:

``topic``
    where the record goes.
``schema``
    a :class:`RecordSchema` *handle* (below). Records of one table (and one schema
    version) share **one object**: the runtime caches registered ids by the handle's
    identity first (one pointer compare per record on the hot path) and by its content
    second (``key_schema``, ``value_schema``, ``strategy``), so a new handle with the same
    text registers nothing.
``key`` / ``value``
    structured data *in the handle's terms* (opaque to the runtime: the DynamoDB envelope
    handle takes DynamoDB JSON there). ``value`` may be None when ``encoded_value`` is set.
``position``
    a JSON-able dict saying where in the source the record was read; the runtime only
    prints it (error lines, the dead-letter header ``__bridge.source.position``).
``ts_ms``
    when the bridge read the record (the connector decides what it means in its value).
``tombstone``
    a record with a null value (after a delete); only the key is written.
``encoded_key`` / ``encoded_value``
    the fast path: the Avro *bodies* (no framing) the connector already wrote in one pass
    with exactly ``schema.key_schema`` / ``schema.value_schema`` (the C transcoder does this).
    The runtime then only frames them (``frame_encoded``, a connector's own framing of its own
    record type, may do it without copying). Bytes must equal what ``encode_key`` /
    ``encode_value`` give for the same record: tests hold the two paths to identical bytes.

A :class:`RecordSchema` handle provides:

``key_schema`` / ``value_schema``
    Avro schema JSON text exactly as it is registered (the text is the cache key and is
    what ``auto_register: false`` looks up).
``strategy``
    the subject name strategy of the record's table (:data:`STRATEGIES`); see
    :func:`subject_name`. The runtime derives subjects from it and never hard-codes them.
``encode_key(record)`` / ``encode_value(record)``
    the Avro body of the record's key / value (no framing), from ``record.key`` /
    ``record.value``; raise :class:`bridge.errors.ConversionError` for data that does not
    fit (the record then goes to the dead-letter topic, never stops the bridge).
``dead_letter_value(record)``
    a JSON-able picture of a record that did not convert, for the dead-letter topic.
``headers``
    None (no headers: the hot path pays nothing), or a callable ``record -> list of
    (name, bytes)``, the Kafka headers of the record (the table's ``headers`` option).

Schema evolution (typed values): a handle is immutable. A connector whose schema changes
builds a new handle and attaches it to the records that need it; the runtime registers it
(off the event loop, in ``prepare``) before the first of them is produced. With
``auto_register: false`` a handle whose schema is not registered fails that record's batch
(the start-up check, ``check_subjects``, already covered what was known then).
"""

from __future__ import annotations

import json

from bridge.task import STRATEGIES, KafkaHeaders, RecordSchema, Strategy

__all__ = ["STRATEGIES", "KafkaHeaders", "RecordSchema", "Strategy", "record_name", "subject_name"]

def record_name(schema: str) -> str:
    """The full name (``namespace.name``) of an Avro record schema's text, as Confluent's
    serializers take it for RecordNameStrategy (a primitive schema is named by its type)."""
    parsed = json.loads(schema)
    if isinstance(parsed, str):
        return parsed
    if not isinstance(parsed, dict) or "name" not in parsed:
        raise ValueError("a record name strategy needs a named Avro schema (a record, enum or fixed)")
    name = str(parsed["name"])
    namespace = parsed.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def subject_name(strategy: Strategy, topic: str, schema: str, *, is_key: bool) -> str:
    """The registry subject of a key or value schema, as Confluent's serializers name it.

    - TopicNameStrategy: ``<topic>-key`` / ``<topic>-value`` (the default);
    - RecordNameStrategy: ``<record full name>`` (key and value alike);
    - TopicRecordNameStrategy: ``<topic>-<record full name>``.
    """
    if strategy == "TopicNameStrategy":
        return f"{topic}-{'key' if is_key else 'value'}"
    if strategy == "RecordNameStrategy":
        return record_name(schema)
    if strategy == "TopicRecordNameStrategy":
        return f"{topic}-{record_name(schema)}"
    raise ValueError(f"unknown subject name strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
