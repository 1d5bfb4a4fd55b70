"""A small Confluent-compatible Schema Registry whose state lives in a compacted Kafka topic.

Why it exists: the bridge's tests, demo and development stack need a registry and there is
no JVM or Docker here. Why it keeps its state in Kafka: ids and versions must survive a
restart (messages already in Kafka carry the ids), and a compacted topic is what Confluent's
registry uses too, so the record layout below follows Confluent's ``_schemas`` topic:

* key ``{"keytype":"SCHEMA","subject":S,"version":V,"magic":1}`` →
  ``{"subject":S,"version":V,"id":N,"schema":TEXT,"deleted":bool}``; a soft delete
  rewrites the value with ``deleted: true``, a permanent delete writes a tombstone;
* key ``{"keytype":"CONFIG","subject":S|null,"magic":0}`` → ``{"compatibilityLevel":L}``;
* key ``{"keytype":"MAX_ID","magic":0}`` → ``{"max_id":N}`` (ours), written on permanent
  deletes so compaction of the deleted version cannot let a later schema reuse its id.

The registry writes a record, waits for the broker's acknowledgement, and only then changes
its in-memory state by applying that same record, so the state after a restart (replaying
the topic) is the state before it. One registry instance per topic: instances do not follow
each other's writes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import signal
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bridge.kafka import END_READER_CONFIG, read_to_end
from devtools.registry import proto_compat
from devtools.registry import types as schema_types
from devtools.registry.compat import (
    CompatibilityLevel,
    InvalidSchemaError,
)

__all__ = [
    "RegistryServer",
    "RegistryServerConfig",
    "RegistryStoreError",
    "main",
]

log = logging.getLogger("devtools.registry.server")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_MAX_VERSION = 2**31 - 1


# ============================================================================================
# Errors in Confluent's shape


class RegistryStoreError(Exception):
    """The Kafka topic holding the registry's state could not be read or written."""


class ApiError(Exception):
    """An error answered to the HTTP client as Confluent does: status + ``error_code``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _subject_not_found(subject: str) -> ApiError:
    return ApiError(404, 40401, f"Subject '{subject}' not found.")


def _version_not_found(version: int | str) -> ApiError:
    return ApiError(404, 40402, f"Version {version} not found.")


def _schema_not_found(schema_id: int | None = None) -> ApiError:
    return ApiError(404, 40403, "Schema not found" if schema_id is None else f"Schema {schema_id} not found")


def _invalid_schema(detail: str) -> ApiError:
    return ApiError(422, 42201, f"Invalid schema: {detail}")


def _invalid_level(value: Any) -> ApiError:
    return ApiError(
        422,
        42203,
        f"Invalid compatibility level {value!r}. Valid values are none, backward, forward, full, "
        "backward_transitive, forward_transitive, and full_transitive",
    )


# ============================================================================================
# Stored records


@dataclass(frozen=True)
class StoredVersion:
    """One (subject, version) registration as kept in the topic."""

    subject: str
    version: int
    schema_id: int
    schema: str
    deleted: bool = False
    schema_type: str = "AVRO"
    references: tuple[tuple[str, str, int], ...] = ()  # (name, subject, version)

    def as_json(self) -> dict[str, Any]:
        """Confluent's representation of a subject version (no ``schemaType`` for Avro)."""
        out: dict[str, Any] = {"subject": self.subject, "version": self.version, "id": self.schema_id}
        if self.schema_type != "AVRO":
            out["schemaType"] = self.schema_type
        if self.references:
            out["references"] = _refs_json(self.references)
        out["schema"] = self.schema
        return out


def _refs_json(refs: Sequence[tuple[str, str, int]]) -> list[dict[str, Any]]:
    return [{"name": n, "subject": s, "version": v} for n, s, v in refs]


MODES = ("READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _schema_key(subject: str, version: int) -> bytes:
    # Key bytes must be identical for the same (subject, version) or compaction keeps both.
    return _dumps({"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1})


def _config_key(subject: str | None) -> bytes:
    return _dumps({"keytype": "CONFIG", "subject": subject, "magic": 0})


def _mode_key(subject: str | None) -> bytes:
    return _dumps({"keytype": "MODE", "subject": subject, "magic": 0})


_MAX_ID_KEY = _dumps({"keytype": "MAX_ID", "magic": 0})


class RegistryState:
    """The registry's whole state, rebuilt only by applying topic records in order.

    No I/O here, so live writes and start-up replay cannot drift apart.
    """

    def __init__(self) -> None:
        self.subjects: dict[str, dict[int, StoredVersion]] = {}
        self.configs: dict[str | None, CompatibilityLevel] = {}
        self.max_id = 0
        self.schemas_by_id: dict[int, str] = {}
        self.types_by_id: dict[int, str] = {}
        self.refs_by_id: dict[int, tuple[tuple[str, str, int], ...]] = {}
        self.modes: dict[str | None, str] = {}
        self.ids_by_canonical: dict[str, int] = {}
        self._canonical_by_id: dict[int, str] = {}
        self._refs: dict[int, set[tuple[str, int]]] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        try:
            k = json.loads(key)
            v = json.loads(value) if value is not None else None
        except ValueError:
            log.warning("ignoring a record with a non-JSON key or value in the schemas topic")
            return
        keytype = k.get("keytype") if isinstance(k, dict) else None
        if keytype == "SCHEMA":
            self._apply_schema(str(k["subject"]), int(k["version"]), v)
        elif keytype == "CONFIG":
            subject = k.get("subject")
            if v is None:
                self.configs.pop(subject, None)
            else:
                try:
                    self.configs[subject] = CompatibilityLevel.parse(v.get("compatibilityLevel", ""))
                except ValueError:
                    log.warning("ignoring an unknown compatibility level in the schemas topic")
        elif keytype == "MAX_ID" and v is not None:
            self.max_id = max(self.max_id, int(v.get("max_id", 0)))
        elif keytype == "MODE":
            subject = k.get("subject")
            if v is None:
                self.modes.pop(subject, None)
            elif str(v.get("mode")) in MODES:
                self.modes[subject] = str(v["mode"])
        # Other key types (NOOP, DELETE_SUBJECT from Confluent) carry nothing we serve.

    def _apply_schema(self, subject: str, version: int, v: Mapping[str, Any] | None) -> None:
        versions = self.subjects.setdefault(subject, {})
        old = versions.pop(version, None)
        if old is not None:
            self._unref(old)
        if v is None:
            if not versions:
                del self.subjects[subject]
            return
        stored = StoredVersion(
            subject=subject,
            version=version,
            schema_id=int(v["id"]),
            schema=str(v["schema"]),
            deleted=bool(v.get("deleted", False)),
            schema_type=str(v.get("schemaType") or "AVRO").upper(),
            references=tuple((str(r["name"]), str(r["subject"]), int(r["version"])) for r in v.get("references") or ()),
        )
        versions[version] = stored
        self.max_id = max(self.max_id, stored.schema_id)
        self._refs.setdefault(stored.schema_id, set()).add((subject, version))
        if stored.schema_id not in self.schemas_by_id:
            self.schemas_by_id[stored.schema_id] = stored.schema
            self.types_by_id[stored.schema_id] = stored.schema_type
            self.refs_by_id[stored.schema_id] = stored.references
            try:
                refs = self.resolve(stored.references)
                canonical = schema_types.parse(stored.schema, stored.schema_type, refs).canonical
            except (InvalidSchemaError, KeyError):
                log.warning(
                    "schema id %d in the schemas topic does not parse; it is served but never reused", stored.schema_id
                )
                return
            self._canonical_by_id[stored.schema_id] = canonical
            self.ids_by_canonical.setdefault(canonical, stored.schema_id)

    def _unref(self, old: StoredVersion) -> None:
        refs = self._refs.get(old.schema_id)
        if refs is None:
            return
        refs.discard((old.subject, old.version))
        if refs:
            return
        # Nothing references the id any more (permanent delete): forget it.
        del self._refs[old.schema_id]
        self.schemas_by_id.pop(old.schema_id, None)
        self.types_by_id.pop(old.schema_id, None)
        self.refs_by_id.pop(old.schema_id, None)
        canonical = self._canonical_by_id.pop(old.schema_id, None)
        if canonical is not None and self.ids_by_canonical.get(canonical) == old.schema_id:
            del self.ids_by_canonical[canonical]

    def resolve(self, refs: Sequence[tuple[str, str, int]], _seen: frozenset[str] = frozenset()) -> schema_types.Refs:
        """The texts of references, theirs first (KeyError when one is not here)."""
        out: dict[str, tuple[str, str, str]] = {}
        for name, subject, version in refs:
            if name in _seen:
                continue
            sv = self.subjects[subject][version]
            for dep in self.resolve(sv.references, _seen | {name}):
                out.setdefault(dep[0], dep)
            out.setdefault(name, (name, sv.schema_type, sv.schema))
        return tuple(out.values())

    def referenced_by(self, subject: str, version: int) -> list[int]:
        """Ids of the live versions whose references name (subject, version)."""
        return sorted({sv.schema_id for versions in self.subjects.values() for sv in versions.values()
                       if not sv.deleted and any(s == subject and v == version for _, s, v in sv.references)})

    def canonical_of(self, schema_id: int) -> str | None:
        return self._canonical_by_id.get(schema_id)

    def versions(self, subject: str, *, deleted: bool = False) -> list[StoredVersion]:
        return sorted(
            (sv for sv in self.subjects.get(subject, {}).values() if deleted or not sv.deleted),
            key=lambda sv: sv.version,
        )

    def refs(self, schema_id: int) -> list[StoredVersion]:
        return sorted(
            (self.subjects[s][v] for s, v in self._refs.get(schema_id, ())),
            key=lambda sv: (sv.subject, sv.version),
        )


# ============================================================================================
# Kafka-backed log


class KafkaLog:
    """Append-and-replay over a single-partition compacted topic."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        kafka_config: Mapping[str, str] | None = None,
        replication_factor: int = 1,
        timeout_s: float = 10.0,
        restore_timeout_s: float = 30.0,
    ) -> None:
        self.topic = topic
        # librdkafka's own log lines go through Python logging, to stderr with the rest.
        self._base: dict[str, Any] = {**(kafka_config or {}), "bootstrap.servers": bootstrap_servers, "logger": log}
        self._replication_factor = replication_factor
        self._timeout_s = timeout_s
        self._restore_timeout_s = restore_timeout_s
        self._producer: Producer | None = None

    def ensure_topic(self) -> None:
        """Create the topic compacted with one partition; one partition keeps a total order."""
        admin = AdminClient(dict(self._base))
        try:
            # list_topics() without a name: asking for one topic may auto-create it uncompacted.
            metadata = admin.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            raise RegistryStoreError(f"cannot reach Kafka to read topic metadata: {exc}") from exc
        if self.topic not in metadata.topics:
            new = NewTopic(
                self.topic,
                num_partitions=1,
                replication_factor=self._replication_factor,
                config={"cleanup.policy": "compact"},
            )
            future = admin.create_topics([new], operation_timeout=self._timeout_s)[self.topic]
            try:
                future.result(timeout=self._timeout_s)
                log.info("created compacted topic %s", self.topic)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise RegistryStoreError(f"cannot create topic {self.topic}: {exc}") from exc
            metadata = admin.list_topics(timeout=self._timeout_s)
        partitions = len(metadata.topics[self.topic].partitions) if self.topic in metadata.topics else 1
        if partitions != 1:
            raise RegistryStoreError(
                f"topic {self.topic} has {partitions} partitions; the registry needs exactly 1 to keep one order"
            )

    def replay(self, apply: Callable[[bytes | None, bytes | None], None]) -> int:
        """Feed every record from the beginning to ``apply``; return how many there were.

        Reads until the broker's end-of-partition event, not just to the high watermark:
        tansu reports the watermark short of a multi-record batch's end (``read_to_end``).
        ``assign()`` rather than a group: nothing is committed and a group join costs seconds.
        """
        consumer = Consumer(
            {
                **self._base,
                **END_READER_CONFIG,
                "group.id": f"schema-registry-restore-{uuid.uuid4()}",
                "enable.auto.offset.store": False,
                "isolation.level": "read_uncommitted",
            }
        )
        try:
            end = read_to_end(consumer, self.topic, lambda m: apply(m.key(), m.value()), timeout_s=self._restore_timeout_s)
        except TimeoutError as exc:
            raise RegistryStoreError(f"could not restore from {exc}") from exc
        except KafkaException as exc:
            raise RegistryStoreError(f"error reading topic {self.topic}: {exc}") from exc
        finally:
            consumer.close()
        return end.records

    def append(self, key: bytes, value: bytes | None) -> None:
        """Write one record and return only once the broker has acknowledged it."""
        producer = self._open_producer()
        outcome: list[KafkaError | None] = []
        producer.produce(
            self.topic, key=key, value=value, partition=0, on_delivery=lambda err, _msg: outcome.append(err)
        )
        producer.flush(self._timeout_s + 1)
        if not outcome:
            raise RegistryStoreError(f"timed out writing to topic {self.topic}")
        if outcome[0] is not None:
            raise RegistryStoreError(f"cannot write to topic {self.topic}: {outcome[0]}")

    def _open_producer(self) -> Producer:
        """One write at a time, acknowledged before the next, so no idempotence is needed.

        A retried duplicate carries the same key and value, and replaying it twice gives the
        same state; idempotence would cost a second at start-up on tansu for nothing.
        """
        if self._producer is None:
            self._producer = Producer(
                {
                    **self._base,
                    "acks": "all",
                    "enable.idempotence": False,
                    "max.in.flight.requests.per.connection": 1,
                    "linger.ms": 0,
                    "message.timeout.ms": int(self._timeout_s * 1000),
                }
            )
        return self._producer

    def connect(self) -> None:
        """Open the producer early so its connection is set up while state is restored."""
        self._open_producer()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self._timeout_s)
            self._producer = None


# ============================================================================================
# Registry logic (HTTP-agnostic)


def _parse_version(raw: str) -> int | None:
    """``None`` means latest; Confluent accepts ``latest`` and ``-1`` for it."""
    if raw == "latest" or raw == "-1":
        return None
    try:
        version = int(raw)
    except ValueError:
        version = 0
    if not 1 <= version <= _MAX_VERSION:
        raise ApiError(
            422,
            42202,
            f"The specified version '{raw}' is not a valid version id. Allowed values are between "
            '[1, 2^31-1] and the string "latest"',
        )
    return version


def _parse_level(value: Any) -> CompatibilityLevel:
    """A level from a request body; a missing or non-text one is refused (422, 42203) as by
    Confluent and Karapace, never read as ``str(None)`` = NONE (a silent downgrade)."""
    if not isinstance(value, str):
        raise _invalid_level(value)
    try:
        return CompatibilityLevel.parse(value)
    except ValueError:
        raise _invalid_level(value) from None


class SchemaRegistry:
    """The REST operations, on top of ``RegistryState`` and a log to persist changes."""

    def __init__(self, kafka_log: KafkaLog, default_level: CompatibilityLevel) -> None:
        self._log = kafka_log
        self._state = RegistryState()
        self._default_level = default_level
        self._lock = threading.RLock()

    def restore(self) -> int:
        with self._lock:
            return self._log.replay(self._state.apply)

    def _write(self, key: bytes, value: Any | None) -> None:
        payload = _dumps(value) if value is not None else None
        try:
            self._log.append(key, payload)
        except (RegistryStoreError, KafkaException, BufferError) as exc:
            log.error("write to the schemas topic failed: %s", exc)
            raise ApiError(500, 50001, f"Error while storing to the schemas topic: {exc}") from exc
        self._state.apply(key, payload)

    # ---------------------------------------------------------------------------- helpers

    def _level(self, subject: str | None) -> CompatibilityLevel:
        if subject is not None and subject in self._state.configs:
            return self._state.configs[subject]
        return self._state.configs.get(None, self._default_level)

    def _find_version(self, subject: str, raw_version: str, *, deleted: bool) -> StoredVersion:
        version = _parse_version(raw_version)
        versions = self._state.versions(subject, deleted=deleted)
        if not versions:
            raise _subject_not_found(subject)
        if version is None:
            return versions[-1]
        for sv in versions:
            if sv.version == version:
                return sv
        raise _version_not_found(version)

    def _mode(self, subject: str | None) -> str:
        if subject is not None and subject in self._state.modes:
            return self._state.modes[subject]
        return self._state.modes.get(None, "READWRITE")

    def _writable(self, subject: str) -> str:
        mode = self._mode(subject)
        if mode in ("READONLY", "READONLY_OVERRIDE"):
            raise ApiError(422, 42205, f"Subject {subject} is in read-only mode")
        return mode

    def _references(self, body: Mapping[str, Any]) -> tuple[tuple[str, str, int], ...]:
        raw = body.get("references") or []
        if not isinstance(raw, list):
            raise _invalid_schema("'references' must be a list of {name, subject, version}")
        out = []
        for r in raw:
            if not isinstance(r, Mapping) or not isinstance(r.get("name"), str) or not isinstance(r.get("subject"), str):
                raise _invalid_schema("each reference needs a name, a subject and a version")
            try:
                version = int(r.get("version", -1))
            except (TypeError, ValueError):
                raise _invalid_schema(f"reference {r['name']!r}: version must be a number") from None
            versions = self._state.versions(r["subject"])
            found = versions[-1] if versions and version == -1 else next(
                (sv for sv in versions if sv.version == version), None)
            if found is None:
                raise _invalid_schema(f"reference {r['name']!r}: subject {r['subject']!r} version {version} not found")
            out.append((r["name"], r["subject"], found.version))
        return tuple(out)

    def _schema_from_body(
        self, body: Mapping[str, Any], normalize: bool = False
    ) -> tuple[schema_types.Parsed, tuple[tuple[str, str, int], ...]]:
        """Validate a request's schema: its text to store and its identity, and its references."""
        schema = body.get("schema")
        if not isinstance(schema, str) or not schema.strip():
            raise _invalid_schema("the request has no 'schema' string")
        schema_type = str(body.get("schemaType") or "AVRO").upper()
        if schema_type not in schema_types.SCHEMA_TYPES:
            raise _invalid_schema(f"schemaType {schema_type!r} is not supported; this registry serves "
                                  f"{', '.join(schema_types.SCHEMA_TYPES)}")
        if body.get("metadata") or body.get("ruleSet"):
            raise _invalid_schema("schema metadata and rule sets are not supported by this registry")
        with self._lock:
            refs = self._references(body)
            resolved = self._state.resolve(refs)
        try:
            return schema_types.parse(schema, schema_type, resolved, normalize=normalize), refs
        except InvalidSchemaError as exc:
            raise _invalid_schema(str(exc)) from None

    def _incompatibilities(
        self, level: CompatibilityLevel, schema: schema_types.Parsed, targets: Sequence[StoredVersion]
    ) -> list[str]:
        try:
            olds = [(f"version {t.version}", schema_types.parse(t.schema, t.schema_type,
                                                                self._state.resolve(t.references)))
                    for t in targets]
            return schema_types.check(level, schema, olds)
        except InvalidSchemaError as exc:  # a stored schema written by someone else
            raise ApiError(500, 50001, f"A stored schema version does not parse: {exc}") from exc

    # ---------------------------------------------------------------------------- subjects

    def register(self, subject: str, body: Mapping[str, Any], *, normalize: bool = False) -> dict[str, Any]:
        parsed, refs = self._schema_from_body(body, normalize)
        text, canonical = parsed.text, parsed.canonical
        with self._lock:
            mode = self._writable(subject)
            explicit_id, explicit_version = body.get("id"), body.get("version")
            if mode != "IMPORT" and (explicit_id is not None or explicit_version is not None):
                raise ApiError(422, 42205, f"Subject {subject} is not in import mode; an id or a version can only "
                               "be given in IMPORT mode")
            if mode == "IMPORT":
                return self._import(subject, parsed, refs, explicit_id, explicit_version)
            live = self._state.versions(subject)
            for sv in live:
                if self._state.canonical_of(sv.schema_id) == canonical:
                    return {"id": sv.schema_id}
            level = self._level(subject)
            problems = self._incompatibilities(level, parsed, live)
            if problems:
                raise ApiError(
                    409,
                    409,
                    f'Schema being registered is incompatible with an earlier schema for subject "{subject}", '
                    f"details: [{'; '.join(problems)}]",
                )
            schema_id = self._state.ids_by_canonical.get(canonical)
            if schema_id is None:
                schema_id = self._state.max_id + 1
            else:
                text = self._state.schemas_by_id[schema_id]
            all_versions = self._state.versions(subject, deleted=True)
            version = (all_versions[-1].version if all_versions else 0) + 1
            self._store(subject, version, schema_id, text, parsed.schema_type, refs)
            return {"id": schema_id}

    def _store(self, subject: str, version: int, schema_id: int, text: str, schema_type: str,
               refs: Sequence[tuple[str, str, int]]) -> None:
        stored: dict[str, Any] = {"subject": subject, "version": version, "id": schema_id, "schema": text,
                                  "deleted": False}
        if schema_type != "AVRO":
            stored["schemaType"] = schema_type
        if refs:
            stored["references"] = _refs_json(refs)
        self._write(_schema_key(subject, version), stored)
        log.info("registered subject %s version %d as schema id %d", subject, version, schema_id)

    def _import(self, subject: str, parsed: schema_types.Parsed, refs: Sequence[tuple[str, str, int]],
                schema_id: Any, version: Any) -> dict[str, Any]:
        """IMPORT mode: the given id and version are kept (no compatibility check), as when a
        registry is copied; an id already used by another schema is refused."""
        try:
            sid = int(schema_id) if schema_id is not None else None
            ver = int(version) if version is not None else None
        except (TypeError, ValueError):
            raise ApiError(422, 42202, "id and version must be numbers") from None
        if sid is None:
            sid = self._state.ids_by_canonical.get(parsed.canonical, self._state.max_id + 1)
        elif sid in self._state.schemas_by_id and self._state.canonical_of(sid) != parsed.canonical:
            raise ApiError(422, 42207, f"Overwrite new schema with id {sid} is not permitted.")
        every = self._state.versions(subject, deleted=True)
        if ver is None:
            ver = (every[-1].version if every else 0) + 1
        elif any(sv.version == ver for sv in every):
            found = next(sv for sv in every if sv.version == ver)
            if found.schema_id == sid:
                return {"id": sid}
            raise ApiError(422, 42207, f"Overwrite new schema with version {ver} of subject {subject} is not "
                           "permitted.")
        self._store(subject, ver, sid, parsed.text, parsed.schema_type, refs)
        return {"id": sid}

    def lookup(self, subject: str, body: Mapping[str, Any], *, deleted: bool, normalize: bool = False) -> dict[str, Any]:
        canonical = self._schema_from_body(body, normalize)[0].canonical
        with self._lock:
            versions = self._state.versions(subject, deleted=deleted)
            if not versions:
                raise _subject_not_found(subject)
            for sv in reversed(versions):
                if self._state.canonical_of(sv.schema_id) == canonical:
                    return sv.as_json()
            raise _schema_not_found()

    def list_subjects(self, *, deleted: bool, deleted_only: bool, prefix: str) -> list[str]:
        with self._lock:
            out = []
            for subject, versions in self._state.subjects.items():
                if not subject.startswith(prefix):
                    continue
                has_live = any(not sv.deleted for sv in versions.values())
                if deleted_only:
                    if not has_live:
                        out.append(subject)
                elif has_live or deleted:
                    out.append(subject)
            return sorted(out)

    def list_versions(self, subject: str, *, deleted: bool, deleted_only: bool) -> list[int]:
        with self._lock:
            every = self._state.versions(subject, deleted=True)
            if deleted_only:
                chosen = [sv for sv in every if sv.deleted]
            elif deleted:
                chosen = every
            else:
                chosen = [sv for sv in every if not sv.deleted]
            if not every or (not chosen and not (deleted or deleted_only)):
                raise _subject_not_found(subject)
            return [sv.version for sv in chosen]

    def get_version(self, subject: str, raw_version: str, *, deleted: bool) -> StoredVersion:
        with self._lock:
            return self._find_version(subject, raw_version, deleted=deleted)

    def _not_referenced(self, sv: StoredVersion) -> None:
        if self._state.referenced_by(sv.subject, sv.version):
            raise ApiError(422, 42206, f"One or more references exist to the schema {{magic=1,keytype=SCHEMA,"
                           f"subject={sv.subject},version={sv.version}}}.")

    def delete_subject(self, subject: str, *, permanent: bool) -> list[int]:
        with self._lock:
            versions = self._state.versions(subject, deleted=True)
            if not versions:
                raise _subject_not_found(subject)
            self._writable(subject)
            for sv in versions:
                self._not_referenced(sv)
            live = [sv for sv in versions if not sv.deleted]
            if permanent:
                if live:
                    raise ApiError(
                        404, 40405, f"Subject '{subject}' was not deleted first before being permanently deleted"
                    )
                self._write(_MAX_ID_KEY, {"max_id": self._state.max_id})
                for sv in versions:
                    self._write(_schema_key(subject, sv.version), None)
                if subject in self._state.configs:
                    self._write(_config_key(subject), None)
                log.info("permanently deleted subject %s", subject)
                return [sv.version for sv in versions]
            if not live:
                raise ApiError(
                    404, 40404, f"Subject '{subject}' was soft deleted.Set permanent=true to delete permanently"
                )
            for sv in live:
                self._write(_schema_key(subject, sv.version), {**_record(sv), "deleted": True})
            log.info("soft-deleted subject %s", subject)
            return [sv.version for sv in live]

    def delete_version(self, subject: str, raw_version: str, *, permanent: bool) -> int:
        with self._lock:
            # "latest" means the latest live version for a soft delete, the latest at all otherwise.
            latest_live = _parse_version(raw_version) is None and not permanent
            sv = self._find_version(subject, raw_version, deleted=not latest_live)
            self._writable(subject)
            self._not_referenced(sv)
            if permanent:
                if not sv.deleted:
                    raise ApiError(
                        404,
                        40407,
                        f"Subject '{subject}' Version {sv.version} was not deleted first before being "
                        "permanently deleted",
                    )
                self._write(_MAX_ID_KEY, {"max_id": self._state.max_id})
                self._write(_schema_key(subject, sv.version), None)
            else:
                if sv.deleted:
                    raise ApiError(
                        404,
                        40406,
                        f"Subject '{subject}' Version {sv.version} was soft deleted.Set permanent=true to "
                        "delete permanently",
                    )
                self._write(_schema_key(subject, sv.version), {**_record(sv), "deleted": True})
            how = "permanently deleted" if permanent else "soft-deleted"
            log.info("%s subject %s version %d", how, subject, sv.version)
            return sv.version

    # ---------------------------------------------------------------------------- schemas by id

    def schema_by_id(self, schema_id: int) -> str:
        with self._lock:
            schema = self._state.schemas_by_id.get(schema_id)
            if schema is None:
                raise _schema_not_found(schema_id)
            return schema

    def schema_json(self, schema_id: int, fmt: str | None = None) -> dict[str, Any]:
        """``GET /schemas/ids/{id}``: the schema, and its type when not Avro (``format=serialized``:
        a Protobuf schema as the base64 of its file descriptor, as confluent-kafka asks)."""
        with self._lock:
            schema = self.schema_by_id(schema_id)
            kind = self._state.types_by_id.get(schema_id, "AVRO")
            refs = self._state.refs_by_id.get(schema_id, ())
            resolved = self._state.resolve(refs)
        out: dict[str, Any] = {} if kind == "AVRO" else {"schemaType": kind}
        if refs:
            out["references"] = _refs_json(refs)
        if kind == "PROTOBUF" and fmt == "serialized":
            schema = proto_compat.serialized(schema, tuple((n, t) for n, _, t in resolved))
        out["schema"] = schema
        return out

    def serialized_version(self, sv: StoredVersion) -> str:
        with self._lock:
            resolved = self._state.resolve(sv.references)
        return proto_compat.serialized(sv.schema, tuple((n, t) for n, _, t in resolved))

    def list_schemas(self, *, prefix: str, deleted: bool, latest_only: bool, offset: int, limit: int
                     ) -> list[dict[str, Any]]:
        """``GET /schemas``: every (subject, version), by subject and version."""
        with self._lock:
            out = []
            for subject in sorted(self._state.subjects):
                if not subject.startswith(prefix):
                    continue
                versions = self._state.versions(subject, deleted=deleted)
                out += [sv.as_json() for sv in (versions[-1:] if latest_only else versions)]
        return out[offset:] if limit < 0 else out[offset:offset + limit]

    def referenced_by(self, subject: str, raw_version: str) -> list[int]:
        with self._lock:
            sv = self._find_version(subject, raw_version, deleted=False)
            return self._state.referenced_by(sv.subject, sv.version)

    # ---------------------------------------------------------------------------- mode

    def get_mode(self, subject: str | None, *, default_to_global: bool) -> str:
        with self._lock:
            if subject is None or subject in self._state.modes or default_to_global:
                return self._mode(subject)
            raise ApiError(404, 40409, f"Subject '{subject}' does not have subject-level mode configured")

    def set_mode(self, subject: str | None, body: Mapping[str, Any], *, force: bool) -> str:
        mode = str(body.get("mode", "")).upper()
        if mode not in MODES:
            raise ApiError(422, 42204, f"Invalid mode. Valid values are {', '.join(MODES)}.")
        with self._lock:
            if mode == "IMPORT" and not force:
                has = self._state.versions(subject) if subject is not None else any(
                    self._state.versions(s) for s in self._state.subjects)
                if has:
                    raise ApiError(422, 42205, "Cannot import since found existing subjects")
            self._write(_mode_key(subject), {"mode": mode})
            return mode

    def delete_mode(self, subject: str) -> str:
        with self._lock:
            previous = self.get_mode(subject, default_to_global=False)
            self._write(_mode_key(subject), None)
            return previous

    def id_usages(self, schema_id: int, *, deleted: bool) -> list[StoredVersion]:
        with self._lock:
            if schema_id not in self._state.schemas_by_id:
                raise _schema_not_found(schema_id)
            return [sv for sv in self._state.refs(schema_id) if deleted or not sv.deleted]

    # ---------------------------------------------------------------------------- config

    def get_level(self, subject: str | None, *, default_to_global: bool) -> CompatibilityLevel:
        with self._lock:
            if subject is None or subject in self._state.configs or default_to_global:
                return self._level(subject)
            raise ApiError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")

    def set_level(self, subject: str | None, body: Mapping[str, Any]) -> CompatibilityLevel:
        level = _parse_level(body.get("compatibility", body.get("compatibilityLevel")))
        with self._lock:
            self._write(_config_key(subject), {"compatibilityLevel": level.value})
            log.info("compatibility of %s set to %s", f"subject {subject}" if subject else "the registry", level.value)
            return level

    def delete_level(self, subject: str | None) -> CompatibilityLevel:
        with self._lock:
            previous = self.get_level(subject, default_to_global=False)
            if subject in self._state.configs:
                self._write(_config_key(subject), None)
            return previous

    # ---------------------------------------------------------------------------- compatibility

    def test_compatibility(
        self, subject: str, raw_version: str | None, body: Mapping[str, Any], *, normalize: bool = False
    ) -> tuple[bool, list[str]]:
        parsed = self._schema_from_body(body, normalize)[0]
        version = _parse_version(raw_version) if raw_version is not None else None
        with self._lock:
            level = self._level(subject)
            if version is None:
                # Against "latest" (or all versions) the level decides how far back to look;
                # a subject without versions accepts anything, as in Confluent.
                targets = self._state.versions(subject)
            else:
                targets = [self._find_version(subject, str(version), deleted=False)]
            problems = self._incompatibilities(level, parsed, targets)
            return not problems, problems


def _record(sv: StoredVersion) -> dict[str, Any]:
    out = {
        "subject": sv.subject,
        "version": sv.version,
        "id": sv.schema_id,
        "schema": sv.schema,
        "deleted": sv.deleted,
    }
    if sv.schema_type != "AVRO":
        out["schemaType"] = sv.schema_type
    if sv.references:
        out["references"] = _refs_json(sv.references)
    return out


# ============================================================================================
# HTTP


def _last(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name) or []
    return values[-1] if values else None


def _flag(query: Mapping[str, list[str]], name: str) -> bool:
    values = query.get(name) or []
    return bool(values) and values[-1].strip().lower() == "true"


_SEG = r"([^/]+)"

Q = Mapping[str, list[str]]
Result = tuple[int, Any]  # (HTTP status, JSON-able payload or raw bytes)
Route = tuple[str, "re.Pattern[str]", str]
_ROUTES: list[Route] = [
    (method, re.compile(f"^{pattern}$"), handler)
    for method, pattern, handler in [
        ("GET", r"/?", "root"),
        ("GET", r"/subjects/?", "subjects"),
        ("POST", rf"/subjects/{_SEG}/?", "lookup"),
        ("DELETE", rf"/subjects/{_SEG}/?", "delete_subject"),
        ("GET", rf"/subjects/{_SEG}/versions/?", "versions"),
        ("POST", rf"/subjects/{_SEG}/versions/?", "register"),
        ("GET", rf"/subjects/{_SEG}/versions/{_SEG}/?", "version"),
        ("DELETE", rf"/subjects/{_SEG}/versions/{_SEG}/?", "delete_version"),
        ("GET", rf"/subjects/{_SEG}/versions/{_SEG}/schema/?", "version_schema"),
        ("GET", r"/schemas/types/?", "schema_types"),
        ("GET", r"/schemas/?", "schemas"),
        ("GET", rf"/subjects/{_SEG}/versions/{_SEG}/referencedby/?", "referenced_by"),
        ("GET", r"/mode/?", "get_mode"),
        ("PUT", r"/mode/?", "put_mode"),
        ("GET", rf"/mode/{_SEG}/?", "get_mode"),
        ("PUT", rf"/mode/{_SEG}/?", "put_mode"),
        ("DELETE", rf"/mode/{_SEG}/?", "delete_mode"),
        ("GET", rf"/schemas/ids/{_SEG}/?", "schema_by_id"),
        ("GET", rf"/schemas/ids/{_SEG}/schema/?", "raw_schema_by_id"),
        ("GET", rf"/schemas/ids/{_SEG}/subjects/?", "id_subjects"),
        ("GET", rf"/schemas/ids/{_SEG}/versions/?", "id_versions"),
        ("GET", r"/config/?", "get_config"),
        ("PUT", r"/config/?", "put_config"),
        ("DELETE", r"/config/?", "delete_config"),
        ("GET", rf"/config/{_SEG}/?", "get_config"),
        ("PUT", rf"/config/{_SEG}/?", "put_config"),
        ("DELETE", rf"/config/{_SEG}/?", "delete_config"),
        ("POST", rf"/compatibility/subjects/{_SEG}/versions/{_SEG}/?", "compatibility"),
        ("POST", rf"/compatibility/subjects/{_SEG}/versions/?", "compatibility"),
    ]
]


class _Handler(BaseHTTPRequestHandler):
    """Routes Confluent's REST paths to ``SchemaRegistry`` and renders its answers."""

    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms stall
    server_version = "bridge-schema-registry"
    timeout = 60  # an idle keep-alive connection must not pin a thread forever
    server: _HTTPServer

    # ------------------------------------------------------------------ plumbing

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        try:
            body = self._read_body()
            path_matched = False
            for route_method, pattern, name in _ROUTES:
                match = pattern.match(parts.path)
                if match is None:
                    continue
                path_matched = True
                if route_method != method:
                    continue
                args = [unquote(g) for g in match.groups()]
                status, payload = getattr(self, f"_h_{name}")(args, query, body)
                self._send(status, payload)
                return
            if path_matched:
                raise ApiError(405, 405, "HTTP 405 Method Not Allowed")
            raise ApiError(404, 404, "HTTP 404 Not Found")
        except ApiError as exc:
            if exc.status >= 500:
                log.error("%s %s failed: %s", method, parts.path, exc.message)
            self._send(exc.status, {"error_code": exc.code, "message": exc.message})
        except Exception:  # a bug must answer 500, not drop the connection
            log.exception("%s %s failed", method, parts.path)
            self._send(500, {"error_code": 50001, "message": "Internal error in the schema registry"})

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            return {}
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, 400, "Unrecognized request body: not JSON") from None

    def _send(self, status: int, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else _dumps(payload)
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    @property
    def _registry(self) -> SchemaRegistry:
        return self.server.registry

    @staticmethod
    def _object(body: Any) -> Mapping[str, Any]:
        if not isinstance(body, Mapping):
            raise ApiError(422, 422, "Unprocessable Entity: the request body must be a JSON object")
        return body

    @staticmethod
    def _schema_id(raw: str) -> int:
        try:
            return int(raw)
        except ValueError:
            raise _schema_not_found() from None

    # ------------------------------------------------------------------ handlers

    def _h_root(self, args: list[str], query: Q, body: Any) -> Result:
        return 200, {}

    def _h_subjects(self, args: list[str], query: Q, body: Any) -> Result:
        prefix = (query.get("subjectPrefix") or [""])[-1]
        return 200, self._registry.list_subjects(
            deleted=_flag(query, "deleted"), deleted_only=_flag(query, "deleted_only"), prefix=prefix
        )

    def _h_lookup(self, args: list[str], query: Q, body: Any) -> Result:
        return 200, self._registry.lookup(args[0], self._object(body), deleted=_flag(query, "deleted"),
                                          normalize=_flag(query, "normalize"))

    def _h_delete_subject(self, args: list[str], query: Q, body: Any) -> Result:
        return 200, self._registry.delete_subject(args[0], permanent=_flag(query, "permanent"))

    def _h_versions(self, args: list[str], query: Q, body: Any) -> Result:
        return 200, self._registry.list_versions(
            args[0], deleted=_flag(query, "deleted"), deleted_only=_flag(query, "deleted_only")
        )

    def _h_register(self, args: list[str], query: Q, body: Any) -> Result:
        return 200, self._registry.register(args[0], self._object(body), normalize=_flag(query, "normalize"))

    def _h_version(self, args: list[str], query: Q, body: Any) -> Result:
        sv = self._registry.get_version(args[0], args[1], deleted=_flag(query, "deleted"))
        out = sv.as_json()
        if sv.schema_type == "PROTOBUF" and _last(query, "format") == "serialized":
            out["schema"] = self._registry.serialized_version(sv)
        return 200, out

    def _h_schemas(self, args: list[str], query: Q, body: Any) -> Result:
        try:
            offset, limit = int(_last(query, "offset") or 0), int(_last(query, "limit") or -1)
        except ValueError:
            raise ApiError(422, 42202, "offset and limit must be numbers") from None
        return 200, self._registry.list_schemas(prefix=_last(query, "subjectPrefix") or "",
                                                deleted=_flag(query, "deleted"), latest_only=_flag(query, "latestOnly"),
                                                offset=max(0, offset), limit=limit)

    def _h_referenced_by(self, args: list[str], query: Q, body: Any) -> Result:
        return 200, self._registry.referenced_by(args[0], args[1])

    def _h_get_mode(self, args: list[str], query: Q, body: Any) -> Result:
        subject = args[0] if args else None
        return 200, {"mode": self._registry.get_mode(subject, default_to_global=_flag(query, "defaultToGlobal"))}

    def _h_put_mode(self, args: list[str], query: Q, body: Any) -> Result:
        mode = self._registry.set_mode(args[0] if args else None, self._object(body), force=_flag(query, "force"))
        return 200, {"mode": mode}

    def _h_delete_mode(self, args: list[str], query: Q, body: Any) -> Result:
        return 200, {"mode": self._registry.delete_mode(args[0])}

    def _h_delete_version(self, args: list[str], query: Q, body: Any) -> Result:
        return 200, self._registry.delete_version(args[0], args[1], permanent=_flag(query, "permanent"))

    def _h_version_schema(self, args: list[str], query: Q, body: Any) -> Result:
        return 200, self._registry.get_version(args[0], args[1], deleted=_flag(query, "deleted")).schema.encode()

    def _h_schema_types(self, args: list[str], query: Q, body: Any) -> Result:
        return 200, list(schema_types.SCHEMA_TYPES)

    def _h_schema_by_id(self, args: list[str], query: Q, body: Any) -> Result:
        return 200, self._registry.schema_json(self._schema_id(args[0]), _last(query, "format"))

    def _h_raw_schema_by_id(self, args: list[str], query: Q, body: Any) -> Result:
        return 200, self._registry.schema_by_id(self._schema_id(args[0])).encode()

    def _h_id_subjects(self, args: list[str], query: Q, body: Any) -> Result:
        usages = self._registry.id_usages(self._schema_id(args[0]), deleted=_flag(query, "deleted"))
        return 200, sorted({sv.subject for sv in usages})

    def _h_id_versions(self, args: list[str], query: Q, body: Any) -> Result:
        usages = self._registry.id_usages(self._schema_id(args[0]), deleted=_flag(query, "deleted"))
        return 200, [{"subject": sv.subject, "version": sv.version} for sv in usages]

    def _h_get_config(self, args: list[str], query: Q, body: Any) -> Result:
        subject = args[0] if args else None
        level = self._registry.get_level(subject, default_to_global=_flag(query, "defaultToGlobal"))
        return 200, {"compatibilityLevel": level.value}

    def _h_put_config(self, args: list[str], query: Q, body: Any) -> Result:
        level = self._registry.set_level(args[0] if args else None, self._object(body))
        return 200, {"compatibility": level.value}

    def _h_delete_config(self, args: list[str], query: Q, body: Any) -> Result:
        return 200, {"compatibilityLevel": self._registry.delete_level(args[0] if args else None).value}

    def _h_compatibility(self, args: list[str], query: Q, body: Any) -> Result:
        ok, messages = self._registry.test_compatibility(
            args[0], args[1] if len(args) > 1 else None, self._object(body), normalize=_flag(query, "normalize")
        )
        payload: dict[str, Any] = {"is_compatible": ok}
        if _flag(query, "verbose"):
            payload["messages"] = messages
        return 200, payload


class _HTTPServer(ThreadingHTTPServer):
    """Tracks open connections so stop() can close idle keep-alive ones instead of waiting."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: SchemaRegistry) -> None:
        self.registry = registry
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that fails the TLS handshake (no or an unknown certificate) is one line, not a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError)):
            log.warning("client %s: %s", client_address[0] if client_address else "?", " ".join(str(exc).split()))
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)


# ============================================================================================
# Server lifecycle


@dataclass(frozen=True)
class RegistryServerConfig:
    """Where the registry listens and where it keeps its state.

    ``kafka_config`` passes extra librdkafka settings (security, SASL); it is never logged.
    """

    bootstrap_servers: str
    host: str = "127.0.0.1"
    port: int = 8081
    topic: str = "_schemas"
    replication_factor: int = 1
    default_compatibility: CompatibilityLevel = CompatibilityLevel.BACKWARD
    kafka_config: Mapping[str, Any] = field(default_factory=dict, repr=False)
    kafka_timeout_s: float = 10.0
    restore_timeout_s: float = 30.0
    # HTTPS: the server's certificate chain and key (PEM); with tls_client_ca_file every
    # client must present a certificate signed by that CA (mutual TLS).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None


class RegistryServer:
    """Restores state from the topic, then serves HTTP on a background thread.

    ``start()`` returns only once the state is restored and the socket listens, so a client
    can never observe a half-restored registry (ids missing, versions renumbered).
    ``port=0`` picks a free port; read it back from ``port`` / ``url``.
    """

    def __init__(self, config: RegistryServerConfig) -> None:
        self.config = config
        self._log = KafkaLog(
            config.bootstrap_servers,
            config.topic,
            kafka_config=config.kafka_config,
            replication_factor=config.replication_factor,
            timeout_s=config.kafka_timeout_s,
            restore_timeout_s=config.restore_timeout_s,
        )
        self._registry = SchemaRegistry(self._log, CompatibilityLevel.parse(config.default_compatibility))
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._http is None:
            raise RuntimeError("the registry is not started")
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        host = self.config.host if self.config.host not in ("0.0.0.0", "") else "127.0.0.1"
        scheme = "https" if self.config.tls_cert_file else "http"
        return f"{scheme}://{host}:{self.port}"

    def _tls_context(self) -> ssl.SSLContext | None:
        c = self.config
        if not c.tls_cert_file:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(c.tls_cert_file, c.tls_key_file)
        if c.tls_client_ca_file:
            ctx.load_verify_locations(cafile=c.tls_client_ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._http is not None:
            raise RuntimeError("the registry is already started")
        started = time.monotonic()
        self._log.ensure_topic()
        self._log.connect()
        count = self._registry.restore()
        log.info("restored %d records from topic %s in %.2fs", count, self.config.topic, time.monotonic() - started)
        tls = self._tls_context()
        self._http = _HTTPServer((self.config.host, self.config.port), self._registry)
        if tls is not None:
            # The handshake runs on the first read, in the request's own thread: a slow or
            # silent client never holds up accept() for the others.
            self._http.socket = tls.wrap_socket(self._http.socket, server_side=True, do_handshake_on_connect=False)
        self._thread = threading.Thread(
            target=self._http.serve_forever, args=(0.1,), name="schema-registry-http", daemon=True
        )
        self._thread.start()
        log.info("schema registry listening on %s", self.url)

    def stop(self) -> None:
        http, thread = self._http, self._thread
        self._http = self._thread = None
        if http is not None:
            http.shutdown()
            http.close_connections()
            http.server_close()
        if thread is not None:
            thread.join(timeout=10)
        self._log.close()

    def __enter__(self) -> RegistryServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ============================================================================================
# Command line


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.registry.server",
        description="Confluent-compatible Schema Registry (Avro) keeping its state in a compacted Kafka topic.",
    )
    parser.add_argument("--port", type=int, default=8081, help="HTTP port (0 picks a free one; default 8081)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, HOST:PORT[,...]")
    parser.add_argument("--topic", default="_schemas", help="compacted topic holding schemas (default _schemas)")
    parser.add_argument("--replication-factor", type=int, default=1, help="when creating the topic (default 1)")
    parser.add_argument(
        "--default-compatibility",
        default="BACKWARD",
        choices=[level.value for level in CompatibilityLevel],
        help="compatibility level when none is configured (default BACKWARD)",
    )
    parser.add_argument(
        "--kafka-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka setting, repeatable (e.g. security.protocol=SASL_SSL); values are never logged",
    )
    parser.add_argument("--aws-msk-iam-region", metavar="REGION",
                        help="authenticate to Amazon MSK with IAM (SASL_SSL + OAUTHBEARER; tokens signed with the AWS "
                        "credential chain) in this region")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", help="the private key of --tls-cert (PEM)")
    parser.add_argument("--tls-client-ca", help="require client certificates signed by this CA (PEM)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG logs every request (default INFO)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    extra: dict[str, str] = {}
    for item in args.kafka_config:
        key, sep, value = item.partition("=")
        if not sep or not key:
            log.error("--kafka-config expects KEY=VALUE, got a value without '='")
            return 2
        extra[key.strip()] = value
    kafka_config: dict[str, Any] = dict(extra)
    if args.aws_msk_iam_region:
        from bridge.msk_iam import MskIamTokens, default_chain_signer

        region = args.aws_msk_iam_region
        kafka_config |= {"security.protocol": extra.get("security.protocol", "SASL_SSL"),
                         "sasl.mechanism": "OAUTHBEARER",
                         "oauth_cb": MskIamTokens(region, default_chain_signer(region))}
    config = RegistryServerConfig(
        bootstrap_servers=args.bootstrap_servers,
        host=args.host,
        port=args.port,
        topic=args.topic,
        replication_factor=args.replication_factor,
        default_compatibility=CompatibilityLevel(args.default_compatibility),
        kafka_config=kafka_config,
        tls_cert_file=args.tls_cert,
        tls_key_file=args.tls_key,
        tls_client_ca_file=args.tls_client_ca,
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    server = RegistryServer(config)
    try:
        server.start()
    except (RegistryStoreError, KafkaException, OSError, ssl.SSLError) as exc:
        log.error("schema registry failed to start: %s", exc)
        server.stop()
        return 1
    try:
        stop.wait()
    finally:
        server.stop()
    log.info("schema registry stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
