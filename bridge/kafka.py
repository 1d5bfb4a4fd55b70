"""librdkafka configuration shared by the producer, the offset reader and the admin client.

The bridge's own settings win over the user's pass-through ones where correctness depends
on them (idempotence, acks=all, murmur2 partitioning); consumers and the admin client get
only the connection and security settings, so librdkafka does not warn about producer keys.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.errors import ConfigError, ProduceError

__all__ = [
    "END_READER_CONFIG",
    "TopicEnd",
    "admin_client",
    "check_kafka_settings",
    "check_reachable",
    "client_config",
    "ensure_topics",
    "producer_config",
    "position",
    "read_to_end",
    "LIBRDKAFKA_TROUBLE",
    "TroubleReports",
]

_CLIENT_PREFIXES = (
    "bootstrap.servers",
    "client.",
    "security.",
    "sasl.",
    "ssl.",
    "ssl_",
    "socket.",
    "broker.",
    "metadata.",
    "api.version",
    "enable.ssl",
    "connections.max",
    "reconnect.",
    "retry.backoff",
    "topic.metadata",
    "debug",
    "log_level",
    "client.dns",
    "oauth_cb",  # a token callback (MSK IAM, bridge/msk_iam.py), put in by the config loader
)


def position(msg: Message) -> tuple[int, int]:
    """A consumed message's (partition, offset): always set on what a consumer returns, though
    the client's types allow None (for a message not yet produced)."""
    return cast(int, msg.partition()), cast(int, msg.offset())


# librdkafka logs through Python logging (served on poll) instead of writing to stderr
# from its own threads, where it would interleave with, and follow, our one-line errors.
RDKAFKA_LOGGER = logging.getLogger("librdkafka")


class TroubleReports(logging.Filter):
    """Remembers librdkafka's newest report of trouble, for a stalled producer's warning.

    Why a filter: the reason a produce is retried forever (e.g. ``Unknown Producer Id``
    after a broker lost its producer state) is only in librdkafka's *debug* lines of the
    ``eos`` context, which the producer enables (``debug: eos``, a few lines at start, quiet
    while healthy). The filter reads every line for the cause and passes on only those the
    root log level lets through, so the debug lines stay out of the log unless asked for.
    """

    _TROUBLE = re.compile(r"fail|error|unknown|refused|timed? ?out|down|cannot|invalid|fenced", re.IGNORECASE)
    # "DRAIN [rdkafka#producer-4] [thrd:127.0.0.1:34227/111]: " before the message proper
    _PREFIX = re.compile(r"^\s*(?:[A-Z_]+\s+)?\[[^\]]*\]\s*\[thrd:[^\]]*\]:\s*")

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._last: tuple[float, str] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - never break logging over a report
            return True
        if record.levelno >= logging.WARNING or self._TROUBLE.search(message):
            self.report(message)
        return record.levelno >= logging.getLogger().getEffectiveLevel()

    def report(self, text: str) -> None:
        """Remember ``text`` (from a log line or the producer's error_cb) as the newest trouble."""
        text = " ".join(self._PREFIX.sub("", text).split())[:400]
        with self._lock:
            self._last = (time.monotonic(), text)

    def latest(self, since: float | None = None) -> str | None:
        """The newest report, if any was made at or after ``since`` (a monotonic time)."""
        with self._lock:
            last = self._last
        if last is None or (since is not None and last[0] < since):
            return None
        return last[1]


LIBRDKAFKA_TROUBLE = TroubleReports()
RDKAFKA_LOGGER.addFilter(LIBRDKAFKA_TROUBLE)
RDKAFKA_LOGGER.setLevel(logging.DEBUG)  # the filter above decides what reaches the log


def client_config(kafka: dict[str, Any]) -> dict[str, Any]:
    """Connection and security settings only: for consumers and the admin client."""
    conf = {k: v for k, v in kafka.items() if k.startswith(_CLIENT_PREFIXES)}
    conf["logger"] = RDKAFKA_LOGGER
    return conf


# librdkafka's defaults for its local queue (queue.buffering.max.messages / .kbytes).
_QUEUE_MAX_MESSAGES = 100_000
_QUEUE_MAX_KBYTES = 1024 * 1024


def producer_config(
    kafka: dict[str, Any],
    *,
    transactional_id: str | None = None,
    max_in_flight_records: int | None = None,
    buffer_max_bytes: int | None = None,
) -> dict[str, Any]:
    """The bridge's producer settings; the user's pass-through ones in between.

    ``max_in_flight_records`` and ``buffer_max_bytes`` are the worker's own bounds: librdkafka's
    queue limits are kept at twice those (a task may go one batch over the worker's bound
    before it stops reading), so that the worker's backpressure, which pauses reading, binds
    first, and librdkafka's queue-full (which makes produce wait) stays an exception.
    """
    conf: dict[str, Any] = {
        "linger.ms": 5,
        "compression.type": "lz4",
        # Two 400 KB item images plus envelope fit; anything larger goes to the DLQ.
        "message.max.bytes": 2 * 1024 * 1024,
        "batch.size": 1024 * 1024,
        # As Kafka Connect's source producers: never give up on a record while the broker
        # is away; backpressure pauses the readers meanwhile.
        "message.timeout.ms": 0,
        "logger": RDKAFKA_LOGGER,
        # The idempotence state machine's debug lines: the only place librdkafka says why it
        # retries a produce forever (TroubleReports). Quiet while the producer is healthy.
        "debug": "eos",
    }
    conf.update(kafka)
    if max_in_flight_records is not None:
        queued = int(conf.get("queue.buffering.max.messages", _QUEUE_MAX_MESSAGES))
        conf["queue.buffering.max.messages"] = max(queued, 2 * max_in_flight_records)
    if buffer_max_bytes is not None:
        kbytes = int(conf.get("queue.buffering.max.kbytes", _QUEUE_MAX_KBYTES))
        conf["queue.buffering.max.kbytes"] = min(2**31 - 1, max(kbytes, 2 * buffer_max_bytes // 1024))
    conf.update({"enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random"})
    if transactional_id:
        conf["transactional.id"] = transactional_id
    return conf


# Receives what librdkafka logs while a throwaway client checks settings (e.g. "no
# bootstrap.servers"): nothing a user needs to read.
_SILENT = logging.getLogger("bridge.kafka.check")
_SILENT.propagate = False
_SILENT.addHandler(logging.NullHandler())


def _librdkafka_refuses(conf: dict[str, Any]) -> str | None:
    """librdkafka's reason for refusing ``conf``, or None; builds a client that connects nowhere."""
    from confluent_kafka import Producer

    conf = {k: v for k, v in conf.items() if k != "bootstrap.servers"} | {"logger": _SILENT}
    try:
        Producer(conf)
    except KafkaException as e:
        err = e.args[0] if e.args else None
        text = err.str() if err is not None and hasattr(err, "str") else str(e)
        return " ".join(text.removeprefix("Failed to create producer: ").split())
    except (TypeError, ValueError) as e:  # a value of a type the binding cannot pass on
        return str(e)
    return None


_INT32_MAX = 2**31 - 1


def _check_int_bounds(kafka: dict[str, Any]) -> None:
    """librdkafka keeps whole-number settings in 32 bits and wraps a larger value before it
    checks the range (100000000000 was reported as 1215752192): name the value as written
    and the range librdkafka allows instead."""
    for key, value in kafka.items():
        text = str(value).strip()
        if isinstance(value, bool) or not text.lstrip("+-").isdigit():
            continue
        n = int(text)
        if -_INT32_MAX - 1 <= n <= _INT32_MAX or _librdkafka_refuses({key: value}) is None:
            continue  # in range, or a text setting that happens to be digits
        limit = _INT32_MAX if n > 0 else -_INT32_MAX - 1
        why = _librdkafka_refuses({key: limit}) or ""
        allowed = re.search(r"allowed range (-?\d+)\.\.(-?\d+)", why)
        bound = (f"librdkafka allows {allowed.group(1)}..{allowed.group(2)}" if allowed
                 else f"librdkafka's settings hold at most {_INT32_MAX}")
        raise ConfigError(f"kafka.{key}: {text} is out of range ({bound}); choose a value in that range")


def check_kafka_settings(kafka: dict[str, Any], *, transactional: bool = False) -> None:
    """Refuse librdkafka settings librdkafka itself would refuse, naming the key.

    Runs at config load (so ``validate`` catches them) and therefore before any side
    effect of ``run``: a client is built with the settings but without
    ``bootstrap.servers``, so nothing is contacted. librdkafka names aliases in its
    messages (``queue.buffering.max.ms`` for ``linger.ms``), so a refusal is traced back
    to the user's own key by trying the keys one at a time.
    """
    _check_int_bounds(kafka)
    conf = producer_config(kafka, transactional_id="validate" if transactional else None)
    why = _librdkafka_refuses(conf)
    if why is None:
        return
    named = re.search(r'property:? "([^"]+)"', why)
    culprit = named.group(1) if named and named.group(1) in kafka else None
    if culprit is None:  # an alias (linger.ms is queue.buffering.max.ms) or no name: the key alone says
        culprit = next((k for k, v in kafka.items() if _librdkafka_refuses({k: v}) == why), None)
    if culprit is not None:
        raise ConfigError(f"kafka.{culprit}: librdkafka refuses it: {why}; fix or remove it "
                          "(see librdkafka's CONFIGURATION.md)")
    raise ConfigError(f"kafka: librdkafka refuses these settings together: {why}; fix them "
                      "(see librdkafka's CONFIGURATION.md)")


def admin_client(kafka: dict[str, Any]) -> AdminClient:
    return AdminClient(client_config(kafka))


def check_reachable(admin: AdminClient, bootstrap: str, timeout_s: float = 10.0, *,
                    kafka: dict[str, Any] | None = None) -> None:
    """Fail at start, with one line, when no broker answers.

    With ``kafka`` (the user's settings) a refused login or TLS handshake is named at once,
    setting and fix, instead of a timeout (``bridge/kafka_access.py``).
    """
    if kafka is not None:
        from bridge.kafka_access import check_access

        check_access(kafka, client_config(kafka), timeout_s)
        return
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as e:
        raise ConfigError(
            f"kafka.bootstrap.servers: cannot reach Kafka at {bootstrap} within {timeout_s:.0f}s "
            f"({e.args[0].str() if e.args else e}); check the address and that the broker is up"
        ) from None


def ensure_topics(
    admin: AdminClient,
    topics: dict[str, dict[str, str]],
    *,
    partitions: int,
    replication_factor: int,
    timeout_s: float = 30.0,
) -> None:
    """Create the topics that are missing; ``topics`` maps name to topic config."""
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [
        NewTopic(name, num_partitions=1 if conf.get("cleanup.policy") == "compact" else partitions,
                 replication_factor=replication_factor, config=conf)
        for name, conf in topics.items()
        if name not in existing
    ]
    if not missing:
        return
    # First ask the broker to validate every topic without creating any (a replication
    # factor above the broker count, a bad topic config), so one refused topic does not
    # leave the others created. Brokers that ignore validate_only (tansu creates the
    # topics right away) make the second round find them: TOPIC_ALREADY_EXISTS is fine.
    for validate_only in (True, False):
        for name, fut in admin.create_topics(missing, operation_timeout=timeout_s, validate_only=validate_only).items():
            try:
                fut.result(timeout=timeout_s)
            except KafkaException as e:
                err = e.args[0] if e.args else None
                if err is not None and err.name() == "TOPIC_ALREADY_EXISTS":
                    continue
                raise ProduceError(f"cannot create topic {name!r}: {err.str() if err else e}") from None
    _wait_for_leaders(admin, [t.topic for t in missing], timeout_s)


def _wait_for_leaders(admin: AdminClient, topics: list[str], timeout_s: float) -> None:
    """A created topic is usable once every partition has a leader; on Apache Kafka that
    takes a moment after CreateTopics returns, and reads meanwhile fail with NOT_LEADER."""
    deadline = time.monotonic() + timeout_s
    while True:
        meta = admin.list_topics(timeout=timeout_s).topics
        pending = [
            t for t in topics
            if t not in meta or meta[t].error is not None
            or any(p.leader < 0 or p.error is not None for p in meta[t].partitions.values())
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise ProduceError(f"topics {pending} have no partition leader {timeout_s:.0f} s after creation")
        time.sleep(0.1)


# A consumer that reads a topic to its end: the broker's end-of-partition event says when,
# and a short fetch wait makes that event come within milliseconds of the last record.
END_READER_CONFIG: dict[str, Any] = {
    "enable.partition.eof": True,
    "fetch.wait.max.ms": 20,
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
}


@dataclass(frozen=True)
class TopicEnd:
    """Where a read to the end stopped: per partition, the high watermark when the read
    began and the offset at which the broker said "end of partition"."""

    watermarks: dict[int, int]
    eof_offsets: dict[int, int]
    records: int


def read_to_end(
    consumer: Consumer,
    topic: str,
    apply: Callable[[Message], None],
    *,
    timeout_s: float = 30.0,
) -> TopicEnd:
    """Feed every record of ``topic`` to ``apply``, from the beginning to its end now.

    The end is the first end-of-partition event of each partition (``consumer`` must be
    made with ``END_READER_CONFIG``), not the high watermark: the event comes where the
    broker has nothing more to serve, past transaction markers and, for a
    ``read_committed`` consumer, at the last stable offset, so an open transaction of a
    crashed writer does not hold the read up. A watermark alone would not do on every
    broker: tansu reports it short of a multi-record batch's end. A writer that keeps
    writing cannot hold the read up either: the event comes whenever a fetch finds
    nothing new. Raises ``TimeoutError`` when the end is not reached in ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None:
        return TopicEnd({}, {}, 0)
    parts = sorted(meta.partitions)
    watermarks = {p: _end_offset(consumer, TopicPartition(topic, p), deadline) for p in parts}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    eof: dict[int, int] = {}
    records = 0
    while len(eof) < len(parts):
        if time.monotonic() > deadline:
            behind = sorted(set(parts) - set(eof))
            raise TimeoutError(f"topic {topic!r}: partitions {behind} not read to their end within {timeout_s:.0f} s")
        for msg in consumer.consume(num_messages=1000, timeout=0.2):
            err = msg.error()
            if err is None:
                apply(msg)
                records += 1
            elif err.code() == KafkaError._PARTITION_EOF:
                eof.setdefault(*position(msg))
            elif not err.retriable():
                raise KafkaException(err)
    return TopicEnd(watermarks, eof, records)


# A partition whose leader is moving (a new topic, a broker restart, a failover) answers
# these for a moment; the read waits them out within its deadline.
_LEADER_MOVING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
}


def _end_offset(consumer: Consumer, tp: TopicPartition, deadline: float) -> int:
    while True:
        try:
            return int(consumer.get_watermark_offsets(tp, timeout=max(1.0, deadline - time.monotonic()), cached=False)[1])
        except KafkaException as e:
            err = e.args[0] if e.args else None
            if err is None or err.code() not in _LEADER_MOVING or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
