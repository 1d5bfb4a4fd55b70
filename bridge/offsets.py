"""Source offsets in a compacted topic, in Kafka Connect's layout.

Key: JSON ``["<connector>", {<source partition>}]``; value: JSON offset, or null to delete.
A stored offset means "resume after this" and is written only after every record it
covers has been acknowledged (the worker guarantees that; this module only stores).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException

from bridge.errors import CorruptOffsetError, OffsetStoreError
from bridge.kafka import END_READER_CONFIG, client_config, position, read_to_end
from bridge.task import partition_key

__all__ = ["OffsetStore", "ParsedOffset", "encode_offset_key", "parse_offset_record"]

# Why an offset value is not one the connector wrote (None: it is); the connector supplies it.
OffsetCheck = Callable[[Mapping[str, Any], Any], "str | None"]
ParsedOffset = tuple[str, dict[str, Any], dict[str, Any] | None]


def parse_offset_record(key: bytes | None, value: bytes | None) -> ParsedOffset:
    """(connector, source partition, offset or None) of one offsets-topic record.

    Strict about the layout every connector shares (Kafka Connect's): the key is UTF-8
    JSON ``["<connector>", {partition}]``, the value UTF-8 JSON object or null (a
    tombstone). Raises ValueError saying what is wrong; the offset's own fields are the
    connector's to check.
    """
    if key is None:
        raise ValueError("the record has no key")
    parsed_key = _utf8_json(key, "key")
    if (not isinstance(parsed_key, list) or len(parsed_key) != 2 or not isinstance(parsed_key[0], str)
            or not isinstance(parsed_key[1], dict)):
        raise ValueError('the key is not ["<connector name>", {source partition}]')
    name, partition = parsed_key
    if value is None:
        return name, partition, None
    offset = _utf8_json(value, "value")
    if not isinstance(offset, dict):
        kind = "a JSON list" if isinstance(offset, list) else f"JSON {type(offset).__name__}"
        raise ValueError(f"the value is {kind}, not an object (or null)")
    return name, partition, offset


def _utf8_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"the {what} is not UTF-8 (byte 0x{raw[e.start]:02x} at {e.start})") from None
    except ValueError:
        raise ValueError(f"the {what} is not JSON") from None


def _another_connectors(key: bytes | None, connector: str) -> bool:
    """Whether a record that did not parse at least names another connector (not ours to judge)."""
    try:
        parsed = json.loads((key or b"").decode("utf-8"))
    except ValueError:
        return False
    return isinstance(parsed, list) and len(parsed) == 2 and isinstance(parsed[0], str) and parsed[0] != connector


def _shell_key(key: bytes | None) -> str:
    """How to name ``key`` on a command line: --key 'text', or --key-hex for anything unprintable."""
    if key is None:
        return "(no key)"
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return f"--key-hex {key.hex()}"
    if "'" in text or not text.isprintable():
        return f"--key-hex {key.hex()}"
    return f"--key '{text}'"

log = logging.getLogger(__name__)


def encode_offset_key(connector: str, partition: Mapping[str, Any]) -> bytes:
    return json.dumps([connector, dict(partition)], sort_keys=True, separators=(",", ":")).encode()


class OffsetStore:
    """The connector's committed offsets, loaded once at start and kept current on write."""

    def __init__(self, kafka: dict[str, Any], topic: str, connector: str, check: OffsetCheck | None = None) -> None:
        self.topic = topic
        self.connector = connector
        self._kafka = kafka
        self._offsets: dict[str, dict[str, Any]] = {}
        self._check = check
        # Records that are not offsets this connector wrote, by key, until a later record of
        # the same key replaces them (a tombstone or a good value: how a user fixes one).
        self._corrupt: dict[Any, str] = {}

    def load(self, timeout_s: float = 30.0) -> int:
        """Read the topic up to its end at start; returns how many offsets this connector has.

        The end is where the broker says so (``read_to_end``): past the last batch on every
        broker, at the last stable offset for this ``read_committed`` reader, so a crashed
        exactly-once writer's open transaction neither holds up the load nor counts.
        """
        conf = client_config(self._kafka) | END_READER_CONFIG | {
            "group.id": f"{self.connector}-offset-reader",
            "isolation.level": "read_committed",
        }
        consumer = Consumer(conf)
        try:
            read_to_end(
                consumer,
                self.topic,
                lambda m: self._apply(m.key(), m.value(), position(m)),
                timeout_s=timeout_s,
            )
        except KafkaException as e:
            raise OffsetStoreError(f"reading offsets topic {self.topic!r}: {e}") from None
        except TimeoutError as e:
            raise OffsetStoreError(f"reading offsets topic: {e}; check that the brokers are up") from None
        finally:
            consumer.close()
        self.raise_if_corrupt()
        log.info("loaded %d stored offsets from %s", len(self._offsets), self.topic)
        return len(self._offsets)

    def _apply(self, key: bytes | None, value: bytes | None, where: tuple[int, int] | None = None) -> None:
        """Apply one record of the topic; a record that is no offset of ours is remembered
        (``raise_if_corrupt``) unless a later record of the same key replaces it."""
        try:
            name, partition, offset = parse_offset_record(key, value)
        except ValueError as e:
            if value is None:  # a tombstone for a key that is no offset key: how such a record is removed
                self._corrupt.pop(("raw", key), None)
            elif not _another_connectors(key, self.connector):
                self._corrupt[("raw", key)] = self._corrupt_line(key, where, str(e))
            return
        if name != self.connector:
            return
        pkey = partition_key(partition)
        self._corrupt.pop(("raw", key), None)
        self._corrupt.pop(("partition", pkey), None)
        if offset is None:
            self._offsets.pop(pkey, None)
            return
        why = self._check(partition, offset) if self._check is not None else None
        if why is not None:
            self._offsets.pop(pkey, None)
            self._corrupt[("partition", pkey)] = self._corrupt_line(key, where, why)
            return
        self._offsets[pkey] = offset

    def _corrupt_line(self, key: bytes | None, where: tuple[int, int] | None, why: str) -> str:
        at = f" partition {where[0]} offset {where[1]}" if where is not None else ""
        shown = "none" if key is None else repr(key.decode("utf-8", errors="backslashreplace"))[:300]
        if key is None:
            fix = (f"a record without a key cannot be replaced: move to a new offsets.topic, or delete topic "
                   f"{self.topic!r} (the bridge then starts every table at its start_position)")
        else:
            fix = (f"remove it with a tombstone for that key: ddb-kafka-bridge offsets reset -c <config> "
                   f"{_shell_key(key)} (that source is then read again from its start_position), "
                   "or write a corrected value under the same key")
        return (f"offsets topic {self.topic!r}{at}, key {shown}: {why}; not an offset this bridge wrote, so it "
                f"will not start on it (it could skip or re-read data). Fix: {fix}")

    def bad_offset_line(self, partition: Mapping[str, Any], why: str) -> str:
        """The one line for a stored offset its source refuses once it looks (a position past
        the end of what the source holds): the topic, the key and how to remove it."""
        return self._corrupt_line(encode_offset_key(self.connector, partition), None, why)

    def raise_if_corrupt(self) -> None:
        """Stop the start on the first record that no later record replaced."""
        if self._corrupt:
            raise CorruptOffsetError(next(iter(self._corrupt.values())))

    def offset(self, partition: Mapping[str, Any]) -> dict[str, Any] | None:
        return self._offsets.get(partition_key(partition))

    def partitions(self) -> list[dict[str, Any]]:
        return [json.loads(k) for k in self._offsets]

    def encode(self, partition: Mapping[str, Any], offset: Mapping[str, Any] | None) -> tuple[bytes, bytes | None]:
        """Key and value bytes of an offset record, for the worker to produce."""
        value = None if offset is None else json.dumps(offset, sort_keys=True, separators=(",", ":")).encode()
        return encode_offset_key(self.connector, partition), value

    def stored(self, partition: Mapping[str, Any], offset: Mapping[str, Any] | None) -> None:
        """Record that an offset write was acknowledged."""
        pkey = partition_key(partition)
        if offset is None:
            self._offsets.pop(pkey, None)
        else:
            self._offsets[pkey] = dict(offset)
