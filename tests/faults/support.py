"""Tooling for the fault tests: a change log that knows what the topic must hold, a reader
that keeps up with ten thousand events, assertions that say *which* change went wrong,
and small clients for the bridge's metrics, the offsets topic and the dead-letter topic.

Every change a test writes goes through :class:`ChangeLog`, which writes it to the
Streams double and remembers it per key, with the sequence number the double gave it.
The topic is then judged against that memory:

- :func:`assert_exact`: every change once, nothing else, in write order per key: the
  bar for every fault that is not a crash;
- :func:`assert_complete_in_order`: every change at least once and the *first*
  occurrences per key in write order (at-least-once after a crash replays a tail);
  returns the number of duplicates so the test can print it.

A change's identity on the topic is its ``source.sequence_number`` (unique per stream);
a tombstone carries no value, so it takes the identity of the delete it follows.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import signal
import socket
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.group import unit_slot
from bridge.kafka import END_READER_CONFIG, read_to_end
from tests.doubles.streams_double import PutResult, StreamsDouble
from tests.helpers import BridgeProcess, Event, TopicReader, bridge_config, normalize, unique

__all__ = [
    "Change",
    "ChangeLog",
    "ChangeReader",
    "DeadLetter",
    "assert_complete_in_order",
    "Bridges",
    "assert_exact",
    "broker_hides_aborted",
    "dedupe",
    "double_config",
    "free_port",
    "get_status",
    "last_line",
    "metric",
    "observed",
    "read_dead_letters",
    "read_offsets",
    "scrape",
    "topic_of",
    "wait_for_log_count",
    "wait_until",
    "Writer",
]

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``cond`` until truthy; fail naming ``what``. Waiting on a condition, not a clock."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------- changes


def _normalize(item: dict[str, Any] | None) -> Any:
    """``normalize`` for what the test wrote; a deliberately broken image (poison) that it
    cannot read stays as written, to be compared by identity only."""
    try:
        return normalize(item)
    except (TypeError, ValueError):
        return json.dumps(item, sort_keys=True)


@dataclass(frozen=True)
class Change:
    """One record the topic must hold for a key: a change or the tombstone after a delete."""

    seq: str
    op: str  # c | u | d | tombstone
    before: Any
    after: Any
    shard: str

    def brief(self) -> str:
        return f"{self.op}@{self.seq[-8:]}({self.shard[-8:]})"


class ChangeLog:
    """Writes changes to a :class:`StreamsDouble` and remembers what the topic must hold.

    Items are ``{"pk": S, "v": N, "body": S}``; ``v`` counts the writes to a key, so a
    reordering shows up in the images as well as in the sequence numbers. Thread-safe, so
    a background writer and the test thread (splits, kills) can share one log.
    """

    def __init__(self, double: StreamsDouble, *, body_bytes: int = 40) -> None:
        self.double = double
        self.body_bytes = body_bytes
        self.state: dict[str, dict[str, Any]] = {}
        self.expected: dict[str, list[Change]] = defaultdict(list)
        self.by_seq: dict[str, Change] = {}
        self.count = 0  # Kafka records expected (a delete counts twice: event + tombstone)
        self.writes = 0
        self._versions: Counter[str] = Counter()
        self._lock = threading.Lock()

    def item(self, pk: str, version: int, **extra: Any) -> dict[str, Any]:
        body = f"{pk}:{version}:".ljust(self.body_bytes, "x")
        return {"pk": {"S": pk}, "v": {"N": str(version)}, "body": {"S": body}, **extra}

    def write(self, pk: str, *, delete: bool = False, **extra: Any) -> PutResult:
        """Insert, update or (``delete=True``) remove ``pk``; extra attributes go in the image."""
        with self._lock:
            old = self.state.get(pk)
            key = {"pk": {"S": pk}}
            if delete:
                if old is None:
                    raise ValueError(f"{pk} does not exist; cannot delete it")
                res = self.double.put(key, old_image=old, event="REMOVE")
                self.state.pop(pk)
                self._remember(pk, Change(res.sequence_number, "d", _normalize(old), None, res.shard_id))
                self._remember(pk, Change(res.sequence_number, "tombstone", None, None, res.shard_id))
            else:
                self._versions[pk] += 1
                new = self.item(pk, self._versions[pk], **extra)
                if old is None:
                    res = self.double.put(key, new_image=new, event="INSERT")
                else:
                    res = self.double.put(key, new_image=new, old_image=old, event="MODIFY")
                self.state[pk] = new
                op = "u" if old is not None else "c"
                self._remember(pk, Change(res.sequence_number, op, _normalize(old), _normalize(new), res.shard_id))
            self.writes += 1
            return res

    def _remember(self, pk: str, change: Change) -> None:
        self.expected[pk].append(change)
        if change.op != "tombstone":
            self.by_seq[change.seq] = change
        self.count += 1

    def write_many(
        self, n: int, keys: int | list[str] = 10, *, rng: random.Random | None = None, delete_every: int = 0
    ) -> list[PutResult]:
        """``n`` changes over ``keys`` keys, round robin (or random with ``rng``); every
        ``delete_every``-th change deletes its key if it exists."""
        names = [f"k{i:04d}" for i in range(keys)] if isinstance(keys, int) else keys
        out = []
        for i in range(n):
            pk = rng.choice(names) if rng else names[i % len(names)]
            delete = bool(delete_every) and (i + 1) % delete_every == 0 and pk in self.state
            out.append(self.write(pk, delete=delete))
        return out

    @property
    def seqs(self) -> set[str]:
        with self._lock:
            return set(self.by_seq)

    def without(self, seqs: Iterable[str]) -> ChangeLog:
        """A copy that no longer expects the changes with these sequence numbers (with
        their tombstones): what the topic must hold after a policy that skips them."""
        drop = set(seqs)
        other = ChangeLog(self.double, body_bytes=self.body_bytes)
        with self._lock:
            for pk, changes in self.expected.items():
                for c in changes:
                    if c.seq not in drop:
                        other._remember(pk, c)
        return other


class Writer(threading.Thread):
    """Writes ``total`` changes over ``keys`` keys as fast as its quota allows, splitting
    (and once rolling over) a random open shard at the given write counts."""

    def __init__(self, log: ChangeLog, total: int, keys: int, rng: random.Random, reshapes: dict[int, str],
                 per_tick: int = 50) -> None:
        """``per_tick``: changes written every 0.1 s (50: about 500 changes a second)."""
        super().__init__(daemon=True, name="change-writer")
        self.log, self.total, self.rng, self.per_tick = log, total, rng, per_tick
        self.names = [f"k{i:04d}" for i in range(keys)]
        self.reshapes = dict(reshapes)
        self.quota = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self.events: list[str] = []

    def run(self) -> None:
        try:
            i = 0
            while i < self.total and not self._halt.is_set():
                if i >= self.quota:
                    time.sleep(0.01)
                    continue
                for _ in range(min(self.per_tick, self.quota - i, self.total - i)):
                    pk = self.rng.choice(self.names)
                    self.log.write(pk, delete=i % 37 == 36 and pk in self.log.state)
                    i += 1
                    what = self.reshapes.pop(i, None)
                    if what:
                        shard = self.rng.choice(self.log.double.open_shard_ids())
                        if what == "split":
                            self.log.double.split(shard)
                        elif what == "merge":
                            others = [s for s in self.log.double.open_shard_ids() if s != shard]
                            if others:
                                self.log.double.merge(shard, self.rng.choice(others))
                        else:
                            self.log.double.rollover(shard)
                        self.events.append(f"{what} {shard[-8:]} at write {i}")
                time.sleep(0.1)  # a stream (~500 changes/s), not one burst
        except BaseException as e:  # surfaced by the test
            self.error = e

    def stop(self) -> None:
        self._halt.set()


# --------------------------------------------------------------------------- reading


class ChangeReader(TopicReader):
    """A :class:`TopicReader` that tracks which sequence numbers it has seen, incrementally,
    so waiting for ten thousand changes costs O(events), not O(events²)."""

    def __init__(self, bootstrap: str, registry_url: str, topic: str, bridges: Bridges | None = None) -> None:
        super().__init__(bootstrap, registry_url, topic)
        self.seen: Counter[str] = Counter()
        self._n = 0
        self._bridges = bridges

    def _check(self) -> None:
        """Fail at once, with its log, when the newest bridge exited with an error by
        itself while a test waits for its output (SIGKILLs and clean stops are fine)."""
        if self._bridges is None or not self._bridges.started:
            return
        b = self._bridges.started[-1]
        code = b.proc.poll() if b.proc is not None else None
        if code is not None and code > 0:
            raise AssertionError(f"the bridge exited with code {code} while the test waited:\n{b.log()[-3000:]}")

    def _update(self) -> None:
        for e in self.events[self._n :]:
            if e.value is not None:
                self.seen[e.value["source"]["sequence_number"]] += 1
        self._n = len(self.events)

    def _stuck(self, error: AssertionError) -> AssertionError:
        """A wait timed out while the bridge still runs: have it dump every thread's stack
        (PYTHONFAULTHANDLER is set for bridges started by the fixtures) and show the log."""
        b = self._bridges.started[-1] if self._bridges and self._bridges.started else None
        if b is None or b.proc is None or b.proc.poll() is not None:
            return error
        b.proc.send_signal(signal.SIGABRT)
        with contextlib.suppress(Exception):
            b.proc.wait(5)
        return AssertionError(f"{error}\nthe bridge was still running; its stacks and log:\n{b.log()[-6000:]}")

    def wait_for(self, seqs: Iterable[str], timeout: float = 60) -> list[Event]:
        """Read until every sequence number in ``seqs`` has arrived at least once."""
        self._update()
        missing = set(seqs) - set(self.seen)

        def done(_: list[Event]) -> bool:
            for e in self.events[self._n :]:
                if e.value is not None:
                    s = e.value["source"]["sequence_number"]
                    self.seen[s] += 1
                    missing.discard(s)
            self._n = len(self.events)
            return not missing

        try:
            return self.read_until(done, timeout, self._check)
        except AssertionError as e:
            if "exited with code" in str(e):
                raise
            sample = sorted(missing)[:5]
            raise self._stuck(AssertionError(f"{e}; {len(missing)} changes never arrived, e.g. {sample}")) from None

    def wait_for_log(self, log: ChangeLog, timeout: float = 60) -> list[Event]:
        return self.wait_for(log.seqs, timeout)

    def grow_by(self, n: int, timeout: float = 60) -> list[Event]:
        start = len(self.events)
        try:
            return self.read_until(lambda ev: len(ev) >= start + n, timeout, self._check)
        except AssertionError as e:
            if "exited with code" in str(e):
                raise
            raise self._stuck(e) from None

    def poll_for(self, seconds: float) -> list[Event]:
        """Read whatever arrives for ``seconds`` (for "nothing more must arrive" checks)."""
        end = time.monotonic() + seconds
        try:
            self.read_until(lambda _: time.monotonic() >= end, seconds + 30)
        finally:
            self._update()
        return self.events


def observed(events: list[Event]) -> dict[str, list[Change]]:
    """The topic's records per key, in partition order, as :class:`Change` values."""
    out: dict[str, list[Change]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    last_delete: dict[str, Change] = {}
    for e in sorted(events, key=lambda e: (e.partition, e.offset)):
        pk = e.key["pk"]
        partitions[pk].add(e.partition)
        if e.value is None:
            d = last_delete.get(pk)
            out[pk].append(Change(d.seq if d else "?", "tombstone", None, None, d.shard if d else "?"))
            continue
        src = e.value["source"]
        c = Change(src["sequence_number"], e.op, normalize(e.before), normalize(e.after), src.get("shard_id") or "?")
        if c.op == "d":
            last_delete[pk] = c
        out[pk].append(c)
    split = {pk: sorted(p) for pk, p in partitions.items() if len(p) > 1}
    assert not split, f"one key's changes went to several partitions: {dict(list(split.items())[:3])}"
    return out


def _first_difference(got: list[Change], want: list[Change]) -> str:
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            if g.seq == w.seq and g.op == w.op:
                what = "content differs"
            elif any(g.seq == c.seq and g.op == c.op for c in got[:i]):
                what = "duplicate"
            elif not any(w.seq == c.seq and w.op == c.op for c in got):
                what = "missing"
            else:
                what = "order differs"
            return (
                f"at index {i} ({what}): got {g.brief()} expected {w.brief()}; "
                f"got {[c.brief() for c in got[max(0, i - 2): i + 3]]} "
                f"expected {[c.brief() for c in want[max(0, i - 2): i + 3]]}"
            )
    if len(got) < len(want):
        return f"{len(want) - len(got)} missing from index {len(got)}: first {want[len(got)].brief()}"
    return f"{len(got) - len(want)} extra from index {len(want)}: first {got[len(want)].brief()}"


def assert_exact(events: list[Event], log: ChangeLog) -> None:
    """Every change exactly once, nothing else, in write order per key, with exact images."""
    got = observed(events)
    problems = []
    for pk in sorted(set(got) | set(log.expected)):
        if got.get(pk, []) != log.expected.get(pk, []):
            problems.append(f"key {pk}: {_first_difference(got.get(pk, []), log.expected.get(pk, []))}")
    dupes = len(events) - log.count
    assert not problems, f"{len(problems)} keys differ (events {len(events)}, expected {log.count}):\n" + "\n".join(
        problems[:10]
    )
    assert dupes == 0, f"{dupes} extra records on the topic"


def dedupe(changes: list[Change]) -> list[Change]:
    seen: set[tuple[str, str]] = set()
    out = []
    for c in changes:
        ident = (c.seq, c.op)
        if ident not in seen:
            seen.add(ident)
            out.append(c)
    return out


def assert_complete_in_order(
    events: list[Event], log: ChangeLog, *, prefix_only: bool = False
) -> int:
    """At-least-once: the first occurrences per key are the written changes, in order.

    With ``prefix_only`` (mid-run checks) a key may still lack its newest changes, but
    what is there must be an unbroken prefix: a gap means a change was lost. Returns the
    number of duplicate records.
    """
    got = observed(events)
    problems = []
    for pk in sorted(set(got) | set(log.expected)):
        first = dedupe(got.get(pk, []))
        want = log.expected.get(pk, [])
        if prefix_only:
            want = want[: len(first)]
        if first != want:
            problems.append(f"key {pk}: {_first_difference(first, want)}")
    assert not problems, f"{len(problems)} keys lost or reordered changes:\n" + "\n".join(problems[:10])
    distinct = sum(len(dedupe(v)) for v in got.values())
    return len(events) - distinct


# --------------------------------------------------------------------------- bridge


def double_config(
    stack: Any,
    double: StreamsDouble,
    *,
    name: str | None = None,
    stream: dict[str, Any] | None = None,
    partitions: int = 3,
    metrics: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """A bridge config reading ``double``'s table (DescribeTable and Streams both on the
    double) into the session broker and registry."""
    table = {
        "name": double.table,
        "stream": {"poll_interval_ms": 50, "discovery_interval_ms": 300, **(stream or {})},
    }
    cfg = bridge_config(stack, [table], name=name or unique("fault"), **extra)
    cfg["aws"] = {
        "region": "us-east-1",
        "endpoint_url": double.endpoint_url,
        "streams_endpoint_url": double.endpoint_url,
    }
    cfg.setdefault("topic_creation", {"partitions": partitions})
    if metrics:
        cfg.setdefault("metrics", {"port": free_port(), "host": "127.0.0.1"})
    return cfg


GROUP_SLOTS = 16  # group.partitions' default


def shard_slot(d: StreamsDouble, shard_id: str) -> int:
    """The group slot the bridge puts a shard of the double's table in."""
    return unit_slot({"table": d.table, "shard": shard_id}, GROUP_SLOTS)


def spread_over_slots(d: StreamsDouble) -> None:
    """Split shards until open ones sit in both halves of the group's slots. Shard ids are
    random, so a few shards can all hash into one half: then whichever process gets the other
    half has nothing to read, and a test that two processes share the work proves nothing."""
    while len({shard_slot(d, s) < GROUP_SLOTS // 2 for s in d.open_shard_ids()}) < 2:
        d.split(d.open_shard_ids()[0])


def table_spread_over_slots(segments: int) -> str:
    """A fresh table name whose Scan segments sit in both halves of the group's slots (see
    ``spread_over_slots``: with few segments, one half can be empty by chance)."""
    while True:
        table = unique("t")
        halves = {unit_slot({"table": table, "segment": i, "total_segments": segments}, GROUP_SLOTS) < GROUP_SLOTS // 2
                  for i in range(segments)}
        if len(halves) == 2:
            return table


def shards_of_assignment(d: StreamsDouble, log_text: str) -> list[str]:
    """The open shards in the slots of a process's first assignment (its ``group: assigned`` line)."""
    m = re.search(r"group: assigned partitions \[([\d, ]+)\]", log_text)
    assert m, "no 'group: assigned' line with partitions"
    taken = {int(k) for k in m[1].split(",")}
    theirs = [s for s in d.open_shard_ids() if shard_slot(d, s) in taken]
    assert theirs, f"the group gave this process slots {sorted(taken)}, where no open shard lives"
    return theirs


def topic_of(cfg: dict[str, Any]) -> str:
    t = cfg["tables"][0]
    return t.get("topic") or f"{cfg.get('topic_prefix', 'ddb')}.{t['name']}"


def get_status(url: str, timeout: float = 2.0) -> tuple[int | None, str]:
    try:
        with _NO_PROXY.open(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode(errors="replace")
    except (OSError, ValueError):
        return None, ""


def scrape(cfg: dict[str, Any]) -> dict[str, float] | None:
    """The bridge's /metrics as {name: value summed over labels}; None if it did not answer."""
    port = (cfg.get("metrics") or {}).get("port")
    if port is None:
        return None
    status, text = get_status(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return None
    out: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            series, value = line.rsplit(" ", 1)
            out[series.split("{", 1)[0]] += float(value)
        except ValueError:
            continue
    return dict(out)


def metric(cfg: dict[str, Any], name: str) -> float | None:
    m = scrape(cfg)
    return None if m is None else m.get(name)


def read_offsets(bootstrap: str, cfg: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """The newest stored offset per shard for this bridge name, read straight from the
    offsets topic to its end (``read_committed``, as the bridge itself reads it)."""
    topic = (cfg.get("offsets") or {}).get("topic") or f"{cfg['name']}-offsets"
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("offsets-reader"), **END_READER_CONFIG})
    out: dict[str, dict[str, Any] | None] = {}

    def apply(msg: Any) -> None:
        name, partition = json.loads(msg.key())
        if name == cfg["name"] and "shard" in partition:
            out[partition["shard"]] = None if msg.value() is None else json.loads(msg.value())

    try:
        read_to_end(c, topic, apply, timeout_s=30)
    finally:
        c.close()
    return out


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


def read_dead_letters(
    bootstrap: str, topic: str, n: int, timeout: float = 60, bridge: BridgeProcess | None = None
) -> list[DeadLetter]:
    """The first ``n`` records of the dead-letter topic; fails early if ``bridge`` exits.

    A record too large for the broker arrives in chunks (headers ``__bridge.chunk`` i of
    ``__bridge.chunks``); they are joined back into one dead letter here.
    """
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("dlq-reader"), "enable.auto.commit": False})
    out: list[DeadLetter] = []
    parts: list[bytes] = []
    deadline = time.monotonic() + timeout
    assigned = False
    try:
        while len(out) < n:
            if bridge is not None and bridge.proc is not None and bridge.proc.poll() is not None:
                raise AssertionError(
                    f"{len(out)} of {n} dead letters; the bridge exited ({bridge.proc.returncode}):\n"
                    f"{bridge.log()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(out)} of {n} dead letters on {topic!r} after {timeout:.0f}s")
            if not assigned:
                meta = c.list_topics(topic, timeout=5).topics.get(topic)
                if meta is None or meta.error is not None or not meta.partitions:
                    time.sleep(0.2)
                    continue
                c.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
                assigned = True
            msg = c.poll(0.2)
            if msg is None or msg.error():
                continue
            headers = {k: (v.decode() if v is not None else "") for k, v in (msg.headers() or [])}
            if "__bridge.chunks" in headers:
                assert int(headers["__bridge.chunk"]) == len(parts) + 1, "dead-letter chunks out of order"
                parts.append(msg.value())
                if len(parts) < int(headers["__bridge.chunks"]):
                    continue
                value, parts = b"".join(parts), []
                out.append(DeadLetter(msg.key(), value, headers))
                continue
            out.append(DeadLetter(msg.key(), msg.value(), headers))
    finally:
        c.close()
    return out


def broker_hides_aborted(bootstrap: str, timeout: float = 30) -> bool | None:
    """Whether a ``read_committed`` consumer on this broker skips aborted records (real Kafka
    does; tansu 0.6 does not). Exactly-once duplicate counts can be asserted only if so.
    None: the probe itself could not run (no transactions), so nothing can be said."""
    topic = unique("txn-probe")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, num_partitions=1)]).values():
        fut.result(timeout)  # tansu does not create topics on first produce
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("txn-probe")})
    try:
        p.init_transactions(timeout)
        p.begin_transaction()
        p.produce(topic, b"aborted")
        p.flush(timeout)
        p.abort_transaction(timeout)
        p.begin_transaction()
        p.produce(topic, b"committed")
        p.commit_transaction(timeout)
    except KafkaException:
        return None
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("txn-probe"),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    seen: list[bytes] = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + timeout
        while b"committed" not in seen and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                seen.append(msg.value())
    finally:
        c.close()
    if b"committed" not in seen:
        return None
    return b"aborted" not in seen


# --------------------------------------------------------------------------- processes


RUNNING = " running: "  # app.py: "bridge <name> running: N table(s)"


def wait_for_log_count(b: BridgeProcess, text: str, count: int, timeout: float = 60) -> None:
    """Wait until ``text`` occurs ``count`` times in the log; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    while b.log().count(text) < count:
        assert b.proc is not None
        if b.proc.poll() is not None:
            raise AssertionError(f"bridge exited ({b.proc.returncode}) before logging {text!r}:\n{b.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"bridge did not log {text!r} in {timeout}s:\n{b.log()[-3000:]}")
        time.sleep(0.05)


class Bridges:
    """Starts bridge processes for one test and kills whatever is left at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[BridgeProcess] = []

    def start(
        self, cfg: dict[str, Any], *, wait_running: bool = True, timeout: float = 60, instance: str = "",
        env: dict[str, str] | None = None,
    ) -> BridgeProcess:
        """Start ``ddb-kafka-bridge run``; with ``wait_running``, return once *this* run
        logged that it is running (restarts append to the same log file). Processes that
        run side by side under one name need their own ``instance`` (own log file)."""
        b = BridgeProcess.write(self.tmp / instance if instance else self.tmp, cfg)
        b.env = env
        before = b.log().count(RUNNING)
        b.start()
        self.started.append(b)
        if wait_running:
            wait_for_log_count(b, RUNNING, before + 1, timeout)
        return b

    def cleanup(self) -> None:
        for b in self.started:
            if b.proc is not None and b.proc.poll() is None:
                b.proc.kill()
                b.proc.wait(10)
