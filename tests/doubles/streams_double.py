"""A fault-injecting DynamoDB Streams endpoint that speaks the real JSON protocol.

moto emulates DynamoDB Streams with one shard that never splits, never trims and
never fails, so none of the paths that make a stream reader hard can be reached
through it: lineage after splits and merges, shards that close and age out, data
trimmed under a reader, iterators expiring, throttling, 5xx, dropped connections.
This double models exactly those, behind a real HTTP/1.1 endpoint, so code under
test runs its production client path (SigV4 signing, ``application/x-amz-json-1.0``
bodies, ``X-Amz-Target`` dispatch, keep-alive) rather than a mocked-out seam.

The model is deliberately small and scriptable from the test thread: tests write
changes with :meth:`StreamsDouble.put`, reshape the shard graph with ``split``,
``merge``, ``rollover``, ``trim`` and ``remove_shard``, and queue faults on
:attr:`StreamsDouble.faults`. Everything is guarded by one lock, so the test
thread and the server's handler threads see one consistent stream.

One endpoint can serve many tables, as one DynamoDB endpoint serves an account: the
double is its first table, and :meth:`StreamsDouble.add_table` adds more (each with its
own key schema, shard tree, puts, splits and tags), listed by ``ListTables`` and found by
table name, table ARN, stream ARN or iterator. A test that never calls ``add_table`` sees
exactly one table, as before.

Where AWS documentation is silent or self-contradicting, the choice made here is
written down next to the code (search for "AWS:").
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import hashlib
import json
import random
import socket
import struct
import sys
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

__all__ = [
    "AWS_ERRORS",
    "CallCounter",
    "FaultPlan",
    "FaultRule",
    "ManualClock",
    "OPERATIONS",
    "PutResult",
    "TABLE_OPERATIONS",
    "ShardView",
    "StreamsDouble",
    "TRANSPORT_FAULTS",
]

TARGET_PREFIX = "DynamoDBStreams_20120810."
OPERATIONS = ("DescribeStream", "GetRecords", "GetShardIterator", "ListStreams")
#: The DynamoDB (not Streams) calls a stream reader makes: DescribeTable, for the key
#: schema and the stream ARN, Scan, for a snapshot (e.g. re-snapshotting after data
#: was trimmed), and ListTables / ListTagsOfResource, for table discovery. Served on the
#: same endpoint, dispatched by target, so a bridge can run with ``endpoint_url`` and
#: ``streams_endpoint_url`` both on the double.
TABLE_TARGET_PREFIX = "DynamoDB_20120810."
TABLE_OPERATIONS = ("DescribeTable", "Scan", "ListTables", "ListTagsOfResource")
#: Operations about the account, not one table: the endpoint's first table answers them
#: for every table it serves.
_ACCOUNT_OPERATIONS = ("ListTables", "ListStreams")
HASH_SPACE = 1 << 128
ACCOUNT_ID = "123456789012"

_DDB = "com.amazonaws.dynamodb.v20120810#"
_CORAL = "com.amazon.coral.service#"

#: AWS error code -> (HTTP status, fully qualified ``__type``). botocore and the
#: bridge both strip everything up to ``#``; the prefixes are kept faithful anyway
#: so a client that logs ``__type`` sees what production would show.
#: AWS: DynamoDB's error guide lists throttling, validation and the authentication
#: errors (MissingAuthenticationTokenException included) under HTTP 400, and
#: InternalServerError under 500.
AWS_ERRORS: dict[str, tuple[int, str]] = {
    "ExpiredIteratorException": (400, _DDB + "ExpiredIteratorException"),
    "TrimmedDataAccessException": (400, _DDB + "TrimmedDataAccessException"),
    "LimitExceededException": (400, _DDB + "LimitExceededException"),
    "ProvisionedThroughputExceededException": (
        400,
        _DDB + "ProvisionedThroughputExceededException",
    ),
    "ResourceNotFoundException": (400, _DDB + "ResourceNotFoundException"),
    "InternalServerError": (500, _DDB + "InternalServerError"),
    "ValidationException": (400, "com.amazon.coral.validate#ValidationException"),
    "ThrottlingException": (400, "com.amazon.coral.availability#ThrottlingException"),
    "MissingAuthenticationTokenException": (400, _CORAL + "MissingAuthenticationTokenException"),
    "UnrecognizedClientException": (400, _CORAL + "UnrecognizedClientException"),
    "AccessDeniedException": (400, _CORAL + "AccessDeniedException"),
    "UnknownOperationException": (400, _CORAL + "UnknownOperationException"),
    "SerializationException": (400, _CORAL + "SerializationException"),
}

_DEFAULT_MESSAGES = {
    "ExpiredIteratorException": "Iterator expired. The iterator was created too long ago.",
    "TrimmedDataAccessException": "The operation attempted to read past the oldest stream record in a shard.",
    "LimitExceededException": "Rate exceeded for shard.",
    "ProvisionedThroughputExceededException": "Rate of requests exceeds the allowed throughput.",
    "ResourceNotFoundException": "Requested resource not found",
    "InternalServerError": "Internal server error",
    "ValidationException": "Validation error",
    "ThrottlingException": "Rate exceeded",
    "MissingAuthenticationTokenException": "Request is missing Authentication Token",
    "UnrecognizedClientException": "The security token included in the request is invalid.",
    "AccessDeniedException": "User is not authorized to perform this action",
    "UnknownOperationException": "Unknown operation",
    "SerializationException": "Malformed request body",
}

#: Faults that are not AWS error documents but failures of the transport:
#: ``http500``/``http503`` answer with an HTML body as a load balancer would (botocore
#: then reports the bare status code), ``drop`` closes the socket after reading the
#: request (FIN, no response), ``reset`` aborts it (RST), ``slow`` delays the request
#: by ``delay`` seconds and then serves it normally.
TRANSPORT_FAULTS = ("http500", "http503", "drop", "reset", "slow")

ViewType = Literal["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"]
EventName = Literal["INSERT", "MODIFY", "REMOVE"]
_VIEW_TYPES = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")
_ITERATOR_TYPES = (
    "TRIM_HORIZON",
    "LATEST",
    "AT_SEQUENCE_NUMBER",
    "AFTER_SEQUENCE_NUMBER",
    "AT_TIMESTAMP",
)


class ManualClock:
    """A clock tests move by hand, so iterator expiry needs no real waiting."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward; returns the new time."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._now += seconds
            return self._now


class _AwsError(Exception):
    """Raised inside operation handlers; becomes an AWS JSON error response."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message or _DEFAULT_MESSAGES.get(code, code)


# --------------------------------------------------------------------------- model


@dataclass
class _Record:
    seq: int
    created: float
    size: int
    wire: dict[str, Any]


@dataclass
class _Shard:
    shard_id: str
    start_seq: int
    hash_ranges: list[tuple[int, int]]
    parent_id: str | None = None
    adjacent_parent_id: str | None = None
    end_seq: int | None = None
    #: Smallest sequence number still readable. Positions below it are trimmed.
    trim_horizon: int = 0
    trimmed_count: int = 0
    removed: bool = False
    #: Highest sequence number ever written here; survives trimming, so a closed
    #: shard's EndingSequenceNumber stays put when its records age out.
    last_seq: int | None = None
    records: list[_Record] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)

    @property
    def closed(self) -> bool:
        return self.end_seq is not None

    def owns(self, h: int) -> bool:
        return any(lo <= h < hi for lo, hi in self.hash_ranges)

    def high_water(self) -> int:
        """The greatest sequence number a client could legitimately name here."""
        if self.end_seq is not None:
            return self.end_seq
        return self.last_seq if self.last_seq is not None else self.start_seq


@dataclass(frozen=True)
class ShardView:
    """A read-only snapshot of one shard, for assertions. ``sequence_numbers`` are
    the retained records' only; ``trimmed_count`` says how many aged out before."""

    shard_id: str
    parent_shard_id: str | None
    adjacent_parent_shard_id: str | None
    starting_sequence_number: str
    ending_sequence_number: str | None
    removed: bool
    sequence_numbers: tuple[str, ...]
    trimmed_count: int

    @property
    def closed(self) -> bool:
        return self.ending_sequence_number is not None


@dataclass(frozen=True)
class PutResult:
    """Where a change landed, so a test can name the shard and position it expects."""

    shard_id: str
    sequence_number: str
    record: dict[str, Any]


@dataclass
class _Iterator:
    """What a shard iterator stands for. Tokens carry it themselves (as real ones
    carry an encrypted position), so a long idle-polling run keeps no state per call
    and a token from long ago still decodes, to be refused as expired."""

    shard_id: str
    position: int  # read records with seq >= position
    issued_at: float
    generation: int
    empty_left: int


# --------------------------------------------------------------------------- faults


@dataclass
class FaultRule:
    """One scripted failure. ``times=None`` fires until removed; ``skip`` lets the
    first N matching calls through, so "fail the third GetRecords" is expressible."""

    error: str
    op: str | None = None
    shard: str | None = None
    segments: frozenset[int] | None = None  # Scan: only these Segment numbers
    times: int | None = 1
    skip: int = 0
    delay: float = 1.0
    message: str | None = None
    fired: int = 0
    seen: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def matches(self, op: str, shard: str | None, segment: int | None = None) -> bool:
        if self.op is not None and self.op != op:
            return False
        if self.segments is not None and segment not in self.segments:
            return False
        return self.shard is None or self.shard == shard


class FaultPlan:
    """The ordered fault rules of one double; the first live matching rule fires."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(
        self,
        error: str,
        *,
        op: str | None = None,
        shard: str | None = None,
        segments: Iterable[int] | None = None,
        times: int | None = 1,
        skip: int = 0,
        delay: float = 1.0,
        message: str | None = None,
    ) -> FaultRule:
        """Queue a fault; returns the rule so a test can assert it actually fired.
        ``segments``: a Scan fault for these segments only (a test holds some segments back)."""
        if error not in AWS_ERRORS and error not in TRANSPORT_FAULTS:
            raise ValueError(
                f"unknown fault {error!r}; use one of {sorted(AWS_ERRORS) + list(TRANSPORT_FAULTS)}"
            )
        if op is not None and op not in OPERATIONS + TABLE_OPERATIONS:
            raise ValueError(f"unknown operation {op!r}; use one of {OPERATIONS + TABLE_OPERATIONS}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        rule = FaultRule(error, op, shard, None if segments is None else frozenset(segments), times, skip, delay,
                         message)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def remove(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.remove(rule)

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    @property
    def pending(self) -> list[FaultRule]:
        """Rules that can still fire: a test ending with some left scripted a path
        its code never took."""
        with self._lock:
            return [r for r in self._rules if not r.exhausted]

    def _take(self, op: str, shard: str | None, segment: int | None = None) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.exhausted or not rule.matches(op, shard, segment):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                rule.fired += 1
                return rule
        return None


class CallCounter:
    """Requests received, per (operation, shard), counted before faults apply: a
    throttled call still costs the reader a round trip and a share of the quota."""

    _ANY: Any = object()

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str | None]] = Counter()
        self._lock = threading.Lock()

    def _record(self, op: str, shard: str | None) -> None:
        with self._lock:
            self._counts[(op, shard)] += 1

    def count(self, op: str | None = None, shard: Any = _ANY) -> int:
        """Sum over operations (``op=None``) and/or shards (``shard`` omitted)."""
        with self._lock:
            return sum(
                n
                for (o, s), n in self._counts.items()
                if (op is None or o == op) and (shard is self._ANY or s == shard)
            )

    def __getitem__(self, key: str | tuple[str, str | None]) -> int:
        if isinstance(key, tuple):
            return self.count(key[0], key[1])
        return self.count(key)

    def snapshot(self) -> dict[tuple[str, str | None], int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


# --------------------------------------------------------------------------- double


@dataclass
class _Reply:
    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/x-amz-json-1.0"
    action: Literal["respond", "drop", "reset"] = "respond"


class StreamsDouble:
    """One table's DynamoDB stream, served over HTTP on 127.0.0.1 (and, after
    :meth:`add_table`, more tables' streams on the same endpoint).

    Sequence numbers come from one counter shared by every shard and advance by
    irregular steps: numbers are strictly increasing within a shard, a child's
    numbers exceed its parent's, and code that assumes "next = previous + 1" fails.
    Keys are routed by a 128-bit hash over hash ranges owned by the open shards, so
    a split moves only the split shard's keys, and only into its own children.
    """

    def __init__(
        self,
        table: str = "t",
        key_schema: Sequence[tuple[str, str]] = (("pk", "S"),),
        view_type: ViewType = "NEW_AND_OLD_IMAGES",
        region: str = "us-east-1",
        *,
        shards: int = 1,
        clock: Callable[[], float] | None = None,
        seed: int = 0,
    ) -> None:
        if view_type not in _VIEW_TYPES:
            raise ValueError(f"view_type must be one of {_VIEW_TYPES}")
        if not 1 <= len(key_schema) <= 2:
            raise ValueError("key_schema has a hash key and at most one range key")
        for _, t in key_schema:
            if t not in ("S", "N", "B"):
                raise ValueError(f"key attribute type {t!r} is not S, N or B")
        if shards < 1:
            raise ValueError("a stream has at least one shard")
        self.table = table
        self.key_schema: list[tuple[str, str]] = [tuple(k) for k in key_schema]  # type: ignore[misc]
        self.view_type: str = view_type
        self.region = region
        self.clock: Callable[[], float] = clock or time.time

        # Knobs tests may set at any time.
        self.describe_page_size = 100
        self.max_page_bytes = 1024 * 1024
        #: Every new iterator chain starts with this many empty pages even where
        #: records wait, as DynamoDB does on sparse shards.
        self.empty_pages_before_data = 0
        #: AWS: the Streams docs say an iterator expires 15 minutes after issue.
        self.iterator_ttl: float | None = 15 * 60.0
        #: AWS: whether the final records of a closed shard come with a null
        #: NextShardIterator or with an iterator whose next page is empty and null
        #: is not documented; readers must handle both. False = records and end
        #: together; True = one more empty page carries the end.
        self.closed_shard_final_empty_page = False
        #: AWS: DynamoDB names one parent; Kinesis adds AdjacentParentShardId on
        #: merges. boto3's model lacks the member and drops it; raw readers see it.
        self.expose_adjacent_parent = True
        #: AWS: the TTL docs show ``userIdentity.type``/``principalId`` (lowercase,
        #: as Lambda delivers them) while the SDK model names ``Type``/``PrincipalId``
        #: (which is all boto3 will parse). "lower" or "model".
        self.ttl_identity_style: Literal["lower", "model"] = "lower"
        self.stream_status = "ENABLED"
        #: What DescribeTable says about the stream. False: no LatestStreamArn and
        #: StreamEnabled false, as for a table whose stream was never switched on.
        self.stream_enabled = True
        #: delete_table() was called: every operation on the table or stream is "not found".
        self.table_deleted = False
        #: The table's tags, as ListTagsOfResource serves them (tests set them directly).
        self.tags: dict[str, str] = {}

        self.faults = FaultPlan()
        self.calls = CallCounter()
        #: Exceptions raised inside the double while serving; a test that sees an
        #: unexpected InternalServerError should look here first.
        self.server_errors: list[BaseException] = []
        #: Every GetShardIterator request that reached the model (faulted ones did
        #: not), as {"shard", "type", "seq"}: lets a test check *where* a reader resumed.
        self.iterator_requests: list[dict[str, Any]] = []
        #: Records served by GetRecords, per shard (re-reads counted again): a reader
        #: that pauses shows a counter that stops moving.
        self.records_served: Counter[str] = Counter()
        #: Every GetRecords and GetShardIterator request, as (monotonic time, op, shard,
        #: access key id of its signature), and every Scan with "segment S/T limit L" for the
        #: shard: a test that gives each process its own key can tell which process read
        #: which shard or segment when.
        self.request_log: list[tuple[float, str, str | None, str]] = []
        #: Requests being served now, and the most ever served at once, per operation:
        #: what a client's bound on requests in flight looks like from the server.
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()

        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._seq = 300_000_000_000_000_000_000  # 21 digits, as DynamoDB's are
        self._last_shard_ms = 0
        self._shards: dict[str, _Shard] = {}
        #: The table as the stream has built it: item image by canonical key (images the
        #: view type leaves out are the bare key). DescribeTable counts it, Scan serves it.
        self._items: dict[bytes, dict[str, Any]] = {}
        self._generation = 0
        self._created = self.clock()
        self.stream_label = _iso_millis(self._created)
        self.stream_arn = (
            f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{table}/stream/{self.stream_label}"
        )
        step = HASH_SPACE // shards
        for i in range(shards):
            hi = HASH_SPACE if i == shards - 1 else (i + 1) * step
            self._new_shard([(i * step, hi)])

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

        #: The double whose endpoint serves this table (None: this one's own).
        self._root: StreamsDouble | None = None
        self._seed = seed
        #: On the endpoint's first table: every table served, in creation order, and each
        #: one by table name, table ARN and stream ARN, so routing a request is one lookup.
        self._tables: list[StreamsDouble] = [self]
        self._by_name: dict[str, StreamsDouble] = {table: self, self.table_arn: self, self.stream_arn: self}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> StreamsDouble:
        if self._root is not None:
            raise RuntimeError(f"table {self.table} is served by its first table's endpoint; start that one")
        if self._server is not None:
            raise RuntimeError("already started")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="streams-double",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every open keep-alive connection, so a client still
        holding one sees the endpoint go away instead of a zombie handler."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_all_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> StreamsDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._root is not None:
            return self._root.endpoint_url
        if self._server is None:
            raise RuntimeError("not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def table_arn(self) -> str:
        return f"arn:aws:dynamodb:{self.region}:{ACCOUNT_ID}:table/{self.table}"

    # ------------------------------------------------------------------ many tables

    def add_table(
        self,
        table: str,
        key_schema: Sequence[tuple[str, str]] = (("pk", "S"),),
        view_type: ViewType | None = None,
        *,
        shards: int = 1,
        tags: Mapping[str, str] | None = None,
        seed: int | None = None,
    ) -> StreamsDouble:
        """Serve one more table (and its stream) on this endpoint, now or while a client
        runs: the next ListTables names it. Returns its own double, for ``put``, ``split``,
        ``delete_table`` and the rest; its ``endpoint_url`` is this one's.

        Call counts, the request log, faults and server errors are the endpoint's, shared
        by every table (shard ids differ between tables, so per-shard counts still work);
        records served, iterator requests and the knobs (page sizes, TTLs) are per table.
        """
        if self._root is not None:
            return self._root.add_table(table, key_schema, view_type, shards=shards, tags=tags, seed=seed)
        with self._lock:
            if table in self._by_name:
                raise ValueError(f"table {table!r} is already served here (the double does not re-create tables)")
            # A seed of its own per table, so two tables never draw the same shard ids.
            own_seed = seed if seed is not None else zlib.crc32(f"{self._seed}/{table}".encode())
            t = StreamsDouble(table, key_schema, view_type or self.view_type, self.region,  # type: ignore[arg-type]
                              shards=shards, clock=self.clock, seed=own_seed)
            t._root = self
            t.tags = dict(tags or {})
            t.faults, t.calls, t.server_errors, t.request_log = (
                self.faults, self.calls, self.server_errors, self.request_log)
            t.in_flight, t.max_in_flight = self.in_flight, self.max_in_flight
            self._tables.append(t)
            for name in (t.table, t.table_arn, t.stream_arn):
                self._by_name[name] = t
            return t

    @property
    def tables(self) -> list[StreamsDouble]:
        """Every table this endpoint serves (deleted ones included), in creation order."""
        root = self._root or self
        with root._lock:
            return list(root._tables)

    def _target(self, op: str, params: dict[str, Any]) -> StreamsDouble:
        """The table a request is about, by table name or ARN, stream ARN or iterator.
        An unknown name goes to the first table, which answers it as not found."""
        if op in _ACCOUNT_OPERATIONS:
            return self
        if op in ("DescribeTable", "Scan"):
            ref = params.get("TableName")
        elif op == "ListTagsOfResource":
            ref = params.get("ResourceArn")
        elif op == "GetRecords":
            token = params.get("ShardIterator")
            ref = token.split("|", 1)[0] if isinstance(token, str) else None
        else:
            ref = params.get("StreamArn")
        return self._by_name.get(ref, self) if isinstance(ref, str) else self

    # ------------------------------------------------------------------ test-facing API

    @property
    def shards(self) -> list[ShardView]:
        """Every shard ever created, removed ones included, in creation order."""
        with self._lock:
            return [self._view(s) for s in self._shards.values()]

    def shard(self, shard_id: str) -> ShardView:
        with self._lock:
            return self._view(self._get(shard_id))

    def open_shard_ids(self) -> list[str]:
        with self._lock:
            return [s.shard_id for s in self._shards.values() if not s.closed]

    def shard_for(self, key: Mapping[str, Any]) -> str:
        """The open shard a change to ``key`` would land on now."""
        with self._lock:
            return self._route(self._check_key(key)).shard_id

    def records(self, shard_id: str) -> list[dict[str, Any]]:
        """The retained (untrimmed) records of a shard, exactly as served."""
        with self._lock:
            return [copy.deepcopy(r.wire) for r in self._get(shard_id).records]

    def put(
        self,
        key: Mapping[str, Any],
        new_image: Mapping[str, Any] | None = None,
        old_image: Mapping[str, Any] | None = None,
        event: EventName = "INSERT",
        shard: str | None = None,
        ttl: bool = False,
    ) -> PutResult:
        """Append one change record. ``key`` and images are DynamoDB JSON. Images
        default to the bare key where the view type needs one, because DynamoDB
        never emits an image without its key attributes."""
        if event not in ("INSERT", "MODIFY", "REMOVE"):
            raise ValueError(f"event must be INSERT, MODIFY or REMOVE, not {event!r}")
        if event == "INSERT" and old_image is not None:
            raise ValueError("an INSERT has no old image")
        if event == "REMOVE" and new_image is not None:
            raise ValueError("a REMOVE has no new image")
        if ttl and event != "REMOVE":
            raise ValueError("only a REMOVE can be a TTL delete")
        with self._lock:
            keys = self._check_key(key)
            for image in (new_image, old_image):
                if image is not None:
                    for name, _ in self.key_schema:
                        if image.get(name) != keys[name]:
                            raise ValueError(f"image attribute {name!r} differs from the key")
            target = self._get(shard) if shard is not None else self._route(keys)
            if target.closed:
                raise ValueError(f"{target.shard_id} is closed; write to an open shard")
            now = self.clock()
            seq = self._next_seq()
            body: dict[str, Any] = {
                "ApproximateCreationDateTime": int(now),
                "Keys": copy.deepcopy(keys),
            }
            wants_new = self.view_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
            wants_old = self.view_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES")
            if wants_new and event != "REMOVE":
                body["NewImage"] = copy.deepcopy(dict(new_image if new_image is not None else keys))
            if wants_old and event != "INSERT":
                body["OldImage"] = copy.deepcopy(dict(old_image if old_image is not None else keys))
            body["SequenceNumber"] = str(seq)
            body["SizeBytes"] = len(
                _dumps({k: body[k] for k in ("Keys", "NewImage", "OldImage") if k in body})
            )
            body["StreamViewType"] = self.view_type
            wire: dict[str, Any] = {
                "eventID": f"{self._rng.getrandbits(128):032x}",
                "eventName": event,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": self.region,
                "dynamodb": body,
            }
            if ttl:
                if self.ttl_identity_style == "lower":
                    wire["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
                else:
                    wire["userIdentity"] = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
            canonical = _dumps(keys, sort_keys=True)
            if event == "REMOVE":
                self._items.pop(canonical, None)
            else:
                self._items[canonical] = copy.deepcopy(dict(new_image if new_image is not None else keys))
            target.records.append(_Record(seq, now, len(_dumps(wire)), wire))
            target.seqs.append(seq)
            target.last_seq = seq
            return PutResult(target.shard_id, str(seq), copy.deepcopy(wire))

    def split(self, shard_id: str) -> tuple[str, str]:
        """Close an open shard and open two children, each owning half its keys."""
        with self._lock:
            parent = self._open(shard_id)
            self._close(parent)
            ranges = parent.hash_ranges
            if len(ranges) == 1:
                lo, hi = ranges[0]
                mid = lo + (hi - lo) // 2
                halves = ([(lo, mid)], [(mid, hi)])
            else:
                cut = len(ranges) // 2
                halves = (ranges[:cut], ranges[cut:])
            a = self._new_shard(halves[0], parent=parent.shard_id)
            b = self._new_shard(halves[1], parent=parent.shard_id)
            return a.shard_id, b.shard_id

    def merge(self, a: str, b: str) -> str:
        """Close two open shards and open one child owning both key ranges."""
        if a == b:
            raise ValueError("merge needs two different shards")
        with self._lock:
            first, second = self._open(a), self._open(b)
            self._close(first)
            self._close(second)
            child = self._new_shard(
                first.hash_ranges + second.hash_ranges, parent=a, adjacent_parent=b
            )
            return child.shard_id

    def rollover(self, shard_id: str) -> str:
        """Close an open shard and open its single successor, as DynamoDB does
        every few hours without any change in throughput."""
        with self._lock:
            parent = self._open(shard_id)
            self._close(parent)
            return self._new_shard(parent.hash_ranges, parent=shard_id).shard_id

    def trim(
        self, shard_id: str, *, before: str | int | None = None, count: int | None = None
    ) -> int:
        """Drop a shard's oldest records (those below ``before``, or the first
        ``count``), as the 24-hour retention does. Returns how many were dropped."""
        if (before is None) == (count is None):
            raise ValueError("give exactly one of before= or count=")
        with self._lock:
            s = self._get(shard_id)
            if count is not None:
                if count < 0:
                    raise ValueError("count must be >= 0")
                n = min(count, len(s.records))
                if n:
                    s.trim_horizon = max(s.trim_horizon, s.seqs[n - 1] + 1)
            else:
                # Clamp to what has been written: retention cannot trim the future.
                limit = min(int(before), s.high_water() + 1)  # type: ignore[arg-type]
                n = bisect.bisect_left(s.seqs, limit)
                s.trim_horizon = max(s.trim_horizon, limit)
            del s.records[:n]
            del s.seqs[:n]
            s.trimmed_count += n
            return n

    def remove_shard(self, shard_id: str) -> None:
        """Let a closed shard age out: gone from DescribeStream, its children still
        naming it as parent, as DynamoDB shows a day after a shard closes."""
        with self._lock:
            s = self._get(shard_id)
            if not s.closed:
                raise ValueError(f"{shard_id} is open; only closed shards age out")
            s.removed = True
            s.records.clear()
            s.seqs.clear()

    def disable_stream(self) -> None:
        """Switch the table's stream off, as UpdateTable StreamEnabled=false does: every
        shard closes, the stream reports DISABLED and stays readable (24 h), and
        DescribeTable shows no stream."""
        with self._lock:
            for s in self._shards.values():
                if not s.closed:
                    self._close(s)
            self.stream_status = "DISABLED"
            self.stream_enabled = False

    def delete_table(self) -> None:
        """Delete the table and its stream: DescribeTable, DescribeStream and GetRecords
        answer ResourceNotFoundException from now on."""
        with self._lock:
            self.table_deleted = True

    def expire_iterators(self) -> None:
        """Make every iterator issued so far expired (ones issued later are fine)."""
        with self._lock:
            self._generation += 1

    # ------------------------------------------------------------------ internals: model

    def _view(self, s: _Shard) -> ShardView:
        return ShardView(
            shard_id=s.shard_id,
            parent_shard_id=s.parent_id,
            adjacent_parent_shard_id=s.adjacent_parent_id,
            starting_sequence_number=str(s.start_seq),
            ending_sequence_number=None if s.end_seq is None else str(s.end_seq),
            removed=s.removed,
            sequence_numbers=tuple(str(q) for q in s.seqs),
            trimmed_count=s.trimmed_count,
        )

    def _next_seq(self) -> int:
        self._seq += self._rng.randint(1, 997)
        return self._seq

    def _new_shard(
        self,
        ranges: list[tuple[int, int]],
        parent: str | None = None,
        adjacent_parent: str | None = None,
    ) -> _Shard:
        # Ids embed a creation time in milliseconds, zero-padded, so sorting ids
        # sorts by creation, which DescribeStream's ExclusiveStartShardId relies on.
        ms = max(int(self.clock() * 1000), self._last_shard_ms + 1)
        self._last_shard_ms = ms
        shard_id = f"shardId-{ms:020d}-{self._rng.getrandbits(32):08x}"
        start = self._next_seq()
        s = _Shard(
            shard_id=shard_id,
            start_seq=start,
            hash_ranges=list(ranges),
            parent_id=parent,
            adjacent_parent_id=adjacent_parent,
            trim_horizon=start,
        )
        self._shards[shard_id] = s
        return s

    def _close(self, s: _Shard) -> None:
        s.end_seq = s.last_seq if s.last_seq is not None else s.start_seq

    def _get(self, shard_id: str) -> _Shard:
        try:
            return self._shards[shard_id]
        except KeyError:
            raise KeyError(f"no shard {shard_id!r}") from None

    def _open(self, shard_id: str) -> _Shard:
        s = self._get(shard_id)
        if s.closed:
            raise ValueError(f"{shard_id} is already closed")
        return s

    def _check_key(self, key: Mapping[str, Any]) -> dict[str, Any]:
        names = {n for n, _ in self.key_schema}
        if set(key) != names:
            raise ValueError(f"key must have exactly the attributes {sorted(names)}, got {sorted(key)}")
        for name, typ in self.key_schema:
            value = key[name]
            if not isinstance(value, Mapping) or list(value) != [typ]:
                raise ValueError(f"key attribute {name!r} must be DynamoDB JSON {{{typ!r}: ...}}")
        return {n: dict(key[n]) for n, _ in self.key_schema}

    def _route(self, keys: dict[str, Any]) -> _Shard:
        h = int.from_bytes(hashlib.md5(_dumps(keys, sort_keys=True)).digest(), "big")
        for s in self._shards.values():
            if not s.closed and s.owns(h):
                return s
        raise AssertionError("open shards no longer cover the key space")  # model bug

    # ------------------------------------------------------------------ internals: protocol

    def _handle(self, headers: Mapping[str, str], raw: bytes) -> _Reply:
        """Turn one HTTP request into a reply. Order mirrors AWS: authentication,
        then dispatch, then the operation; faults sit just before the operation so a
        faulted call has no side effect."""
        auth = headers.get("Authorization") or ""
        if not auth.startswith("AWS4-HMAC-SHA256 Credential="):
            return _error_reply("MissingAuthenticationTokenException")
        target = headers.get("X-Amz-Target") or ""
        if target.startswith(TARGET_PREFIX):
            op = target[len(TARGET_PREFIX):]
            known = op in OPERATIONS
        elif target.startswith(TABLE_TARGET_PREFIX):
            # AWS: the real DynamoDB endpoint knows many more operations; this double
            # serves the reads a stream reader makes (TABLE_OPERATIONS) and refuses the
            # rest as unknown, so a reader that strays into writes (PutItem) fails loudly here.
            op = target[len(TABLE_TARGET_PREFIX):]
            known = op in TABLE_OPERATIONS
        else:
            op, known = "", False
        if not known:
            return _error_reply("UnknownOperationException", f"Unknown operation: {target!r}")
        try:
            params = json.loads(raw or b"{}")
        except ValueError:
            return _error_reply("SerializationException")
        if not isinstance(params, dict):
            return _error_reply("SerializationException", "Request body must be a JSON object")

        with self._lock:
            self.in_flight[op] += 1
            self.max_in_flight[op] = max(self.max_in_flight[op], self.in_flight[op])
        who = auth.split("Credential=", 1)[1].split("/", 1)[0]
        try:
            return self._serve(op, params, who)
        finally:
            with self._lock:
                self.in_flight[op] -= 1

    def _serve(self, op: str, params: dict[str, Any], who: str = "") -> _Reply:
        try:
            target = self._target(op, params)
            shard = target._shard_hint(op, params)
            self.calls._record(op, shard)
            if op in ("GetRecords", "GetShardIterator"):
                self.request_log.append((time.monotonic(), op, shard, who))
            elif op == "Scan":  # which worker read which segment when (snapshots shared by a group)
                unit = f"segment {params.get('Segment')}/{params.get('TotalSegments')} limit {params.get('Limit')}"
                self.request_log.append((time.monotonic(), op, unit, who))
            segment = params.get("Segment") if op == "Scan" else None
            rule = self.faults._take(op, shard, segment if isinstance(segment, int) else None)
            if rule is not None:
                if rule.error != "slow":
                    return _fault_reply(rule)
                if self._stopping.wait(rule.delay):
                    return _Reply(action="drop")
            with target._lock:
                result = getattr(target, f"_op_{op}")(params)
        except _AwsError as e:
            return _error_reply(e.code, e.message)
        except Exception as e:  # a bug in the double, not a scripted fault
            self.server_errors.append(e)
            return _error_reply("InternalServerError", f"double failed: {e!r}")
        return _Reply(body=_dumps(result))

    def _shard_hint(self, op: str, params: dict[str, Any]) -> str | None:
        if op == "GetShardIterator":
            sid = params.get("ShardId")
            return sid if isinstance(sid, str) else None
        if op == "GetRecords":
            it = self._decode(params.get("ShardIterator"))
            return it.shard_id if it else None
        if op == "DescribeStream":
            f = params.get("ShardFilter")
            return f.get("ShardId") if isinstance(f, dict) else None
        return None

    def _check_arn(self, params: dict[str, Any]) -> None:
        arn = params.get("StreamArn")
        if not arn:
            raise _AwsError("ValidationException", "StreamArn is required")
        if arn != self.stream_arn or self.table_deleted:
            raise _AwsError(
                "ResourceNotFoundException", f"Requested resource not found: Stream: {arn} not found"
            )

    def _live(self, shard_id: Any) -> _Shard:
        s = self._shards.get(shard_id) if isinstance(shard_id, str) else None
        if s is None or s.removed or self.table_deleted:
            raise _AwsError(
                "ResourceNotFoundException", "Requested resource not found: Shard does not exist"
            )
        return s

    def _op_DescribeStream(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check_arn(params)
        limit = _limit(params, 100, self.describe_page_size)
        shards = sorted(
            (s for s in self._shards.values() if not s.removed), key=lambda s: s.shard_id
        )
        flt = params.get("ShardFilter")
        if flt is not None:
            if not isinstance(flt, dict) or flt.get("Type") != "CHILD_SHARDS":
                raise _AwsError("ValidationException", "ShardFilter Type must be CHILD_SHARDS")
            parent = flt.get("ShardId")
            if not parent:
                raise _AwsError("ValidationException", "ShardFilter ShardId is required")
            shards = [s for s in shards if parent in (s.parent_id, s.adjacent_parent_id)]
        start = params.get("ExclusiveStartShardId")
        if start:
            shards = [s for s in shards if s.shard_id > start]
        page = shards[:limit]
        desc: dict[str, Any] = {
            "StreamArn": self.stream_arn,
            "StreamLabel": self.stream_label,
            "StreamStatus": self.stream_status,
            "StreamViewType": self.view_type,
            "CreationRequestDateTime": self._created,
            "TableName": self.table,
            "KeySchema": [
                {"AttributeName": name, "KeyType": "HASH" if i == 0 else "RANGE"}
                for i, (name, _) in enumerate(self.key_schema)
            ],
            "Shards": [self._describe_shard(s) for s in page],
        }
        # AWS: "LastEvaluatedShardId not empty does not necessarily mean there is
        # more data". Set it whenever the page is full, so readers meet the empty
        # last page that real DynamoDB sometimes returns.
        if page and len(page) == limit:
            desc["LastEvaluatedShardId"] = page[-1].shard_id
        return {"StreamDescription": desc}

    def _describe_shard(self, s: _Shard) -> dict[str, Any]:
        rng = {"StartingSequenceNumber": str(s.start_seq)}
        if s.end_seq is not None:
            rng["EndingSequenceNumber"] = str(s.end_seq)
        out: dict[str, Any] = {"ShardId": s.shard_id, "SequenceNumberRange": rng}
        if s.parent_id:
            out["ParentShardId"] = s.parent_id
        if s.adjacent_parent_id and self.expose_adjacent_parent:
            out["AdjacentParentShardId"] = s.adjacent_parent_id
        return out

    def _op_DescribeTable(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("TableName")
        if not isinstance(name, str) or not name:
            raise _AwsError("ValidationException", "TableName is required")
        # AWS: DescribeTable also accepts the table ARN in TableName.
        if name not in (self.table, self.table_arn) or self.table_deleted:
            raise _AwsError(
                "ResourceNotFoundException",
                f"Requested resource not found: Table: {name} not found",
            )
        types = dict(self.key_schema)
        table: dict[str, Any] = {
            "TableName": self.table,
            "TableArn": self.table_arn,
            "TableId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.table_arn)),
            "TableStatus": "ACTIVE",
            "CreationDateTime": self._created,
            "KeySchema": [
                {"AttributeName": n, "KeyType": "HASH" if i == 0 else "RANGE"}
                for i, (n, _) in enumerate(self.key_schema)
            ],
            "AttributeDefinitions": [
                {"AttributeName": n, "AttributeType": types[n]} for n, _ in self.key_schema
            ],
            "ProvisionedThroughput": {
                "NumberOfDecreasesToday": 0,
                "ReadCapacityUnits": 0,
                "WriteCapacityUnits": 0,
            },
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
            # AWS: ItemCount and TableSizeBytes are refreshed about every six hours;
            # the double keeps them current, which no correct reader can tell apart.
            "ItemCount": len(self._items),
            "TableSizeBytes": sum(r.size for s in self._shards.values() for r in s.records),
        }
        if self.stream_enabled:
            table["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": self.view_type}
            table["LatestStreamArn"] = self.stream_arn
            table["LatestStreamLabel"] = self.stream_label
        else:
            table["StreamSpecification"] = {"StreamEnabled": False}
        return {"Table": table}

    def _op_Scan(self, params: dict[str, Any]) -> dict[str, Any]:
        """A plain full-table Scan: Limit, ExclusiveStartKey/LastEvaluatedKey and parallel
        Segment/TotalSegments; no filters or projections (a snapshot needs none)."""
        name = params.get("TableName")
        if name not in (self.table, self.table_arn):
            raise _AwsError(
                "ResourceNotFoundException", f"Requested resource not found: Table: {name} not found"
            )
        for unsupported in ("FilterExpression", "ProjectionExpression", "ScanFilter", "AttributesToGet"):
            if unsupported in params:
                raise _AwsError("ValidationException", f"the double does not support {unsupported}")
        limit = _limit(params, 1_000_000, 1_000_000)
        total = params.get("TotalSegments")
        segment = params.get("Segment")
        if (total is None) != (segment is None):
            raise _AwsError("ValidationException", "Segment and TotalSegments go together")
        if total is not None and not (
            isinstance(total, int) and isinstance(segment, int) and 1 <= total <= 1_000_000 and 0 <= segment < total
        ):
            raise _AwsError("ValidationException", f"invalid Segment {segment!r} of TotalSegments {total!r}")
        # Items in hash order, so segments are hash ranges as in DynamoDB.
        rows = sorted(
            (int.from_bytes(hashlib.md5(k).digest(), "big"), k, item) for k, item in self._items.items()
        )
        if total is not None:
            lo, hi = HASH_SPACE * segment // total, HASH_SPACE * (segment + 1) // total
            rows = [r for r in rows if lo <= r[0] < hi]
        start = params.get("ExclusiveStartKey")
        if start is not None:
            if not isinstance(start, dict):
                raise _AwsError("ValidationException", "ExclusiveStartKey must be a map")
            mark = _dumps(self._check_key_or_validation(start), sort_keys=True)
            pos = (int.from_bytes(hashlib.md5(mark).digest(), "big"), mark)
            rows = [r for r in rows if (r[0], r[1]) > pos]
        page = rows[:limit]
        out: dict[str, Any] = {
            "Items": [copy.deepcopy(item) for _, _, item in page],
            "Count": len(page),
            "ScannedCount": len(page),
        }
        if len(rows) > limit:
            out["LastEvaluatedKey"] = json.loads(page[-1][1])
        return out

    def _check_key_or_validation(self, key: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._check_key(key)
        except ValueError as e:
            raise _AwsError("ValidationException", str(e)) from None

    def _op_ListStreams(self, params: dict[str, Any]) -> dict[str, Any]:
        limit = _limit(params, 100, 100)
        table = params.get("TableName")
        # AWS: a deleted table's stream stays listed (readable for 24 h), so deleted
        # tables are not filtered out here.
        tables = [t for t in self._tables if table is None or table == t.table]
        after = params.get("ExclusiveStartStreamArn")
        if after is not None:
            arns = [t.stream_arn for t in tables]
            tables = tables[arns.index(after) + 1:] if after in arns else []
        page = tables[:limit]
        out: dict[str, Any] = {"Streams": [
            {"StreamArn": t.stream_arn, "TableName": t.table, "StreamLabel": t.stream_label} for t in page
        ]}
        if len(tables) > limit:
            out["LastEvaluatedStreamArn"] = page[-1].stream_arn
        return out

    def _op_ListTables(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every live table's name, in name order, 100 a page at most."""
        limit = _limit(params, 100, 100)
        names = sorted(t.table for t in self._tables if not t.table_deleted)
        after = params.get("ExclusiveStartTableName")
        if after is not None:
            names = [n for n in names if n > after]
        out: dict[str, Any] = {"TableNames": names[:limit]}
        if len(names) > limit:
            out["LastEvaluatedTableName"] = names[limit - 1]
        return out

    def _op_ListTagsOfResource(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = params.get("ResourceArn")
        if not isinstance(arn, str) or not arn:
            raise _AwsError("ValidationException", "ResourceArn is required")
        if arn != self.table_arn or self.table_deleted:
            raise _AwsError("ResourceNotFoundException", f"Requested resource not found: ResourceArn: {arn} not found")
        return {"Tags": [{"Key": k, "Value": v} for k, v in sorted(self.tags.items())]}

    def _op_GetShardIterator(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check_arn(params)
        s = self._live(params.get("ShardId"))
        kind = params.get("ShardIteratorType")
        if kind not in _ITERATOR_TYPES:
            raise _AwsError("ValidationException", f"Invalid ShardIteratorType: {kind!r}")
        if kind == "TRIM_HORIZON":
            position = s.trim_horizon
        elif kind == "LATEST":
            position = s.high_water() + 1
        elif kind == "AT_TIMESTAMP":
            ts = params.get("Timestamp")
            if not isinstance(ts, (int, float)):
                raise _AwsError("ValidationException", "Timestamp is required for AT_TIMESTAMP")
            if ts > self.clock():
                raise _AwsError("ValidationException", "Timestamp is in the future")
            later = [r.seq for r in s.records if r.created >= ts]
            position = later[0] if later else s.high_water() + 1
        else:
            raw = params.get("SequenceNumber")
            if not isinstance(raw, str) or not raw.isdigit():
                raise _AwsError(
                    "ValidationException", f"Invalid SequenceNumber {raw!r} for {kind}"
                )
            seq = int(raw)
            if not s.start_seq <= seq <= s.high_water():
                raise _AwsError(
                    "ValidationException",
                    f"Invalid SequenceNumber {raw} for shard {s.shard_id}: outside "
                    f"[{s.start_seq}, {s.high_water()}]",
                )
            position = seq if kind == "AT_SEQUENCE_NUMBER" else seq + 1
            if position < s.trim_horizon:
                raise _AwsError(
                    "TrimmedDataAccessException",
                    f"Sequence number {raw} has been trimmed from shard {s.shard_id}",
                )
        self.iterator_requests.append(
            {"shard": s.shard_id, "type": kind, "seq": params.get("SequenceNumber")}
        )
        return {"ShardIterator": self._issue(s.shard_id, position, self.empty_pages_before_data)}

    def _issue(self, shard_id: str, position: int, empty_left: int) -> str:
        state = [shard_id, position, self.clock(), self._generation, empty_left,
                 self._rng.getrandbits(32)]  # the nonce keeps every token distinct
        blob = base64.urlsafe_b64encode(_dumps(state)).decode()
        return f"{self.stream_arn}|1|{blob}"

    def _decode(self, token: Any) -> _Iterator | None:
        if not isinstance(token, str):
            return None
        prefix = f"{self.stream_arn}|1|"
        if not token.startswith(prefix):
            return None
        try:
            shard_id, position, issued, generation, empty_left, _ = json.loads(
                base64.urlsafe_b64decode(token[len(prefix):])
            )
            return _Iterator(str(shard_id), int(position), float(issued), int(generation), int(empty_left))
        except (ValueError, TypeError, binascii.Error):
            return None

    def _op_GetRecords(self, params: dict[str, Any]) -> dict[str, Any]:
        it = self._decode(params.get("ShardIterator"))
        if it is None:
            raise _AwsError("ValidationException", "Invalid ShardIterator")
        limit = _limit(params, 1000, 1000)
        age = self.clock() - it.issued_at
        if it.generation < self._generation or (
            self.iterator_ttl is not None and age > self.iterator_ttl
        ):
            raise _AwsError(
                "ExpiredIteratorException",
                f"Iterator expired. The iterator was created {age:.0f} seconds ago.",
            )
        s = self._live(it.shard_id)
        if it.position < s.trim_horizon:
            raise _AwsError(
                "TrimmedDataAccessException",
                f"Iterator position is before the trim horizon of shard {s.shard_id}",
            )
        idx = bisect.bisect_left(s.seqs, it.position)
        exhausted = s.closed and idx >= len(s.seqs)
        if exhausted:
            return {"Records": []}
        if it.empty_left > 0:
            return {
                "Records": [],
                "NextShardIterator": self._issue(s.shard_id, it.position, it.empty_left - 1),
            }
        taken: list[_Record] = []
        budget = self.max_page_bytes
        for rec in s.records[idx:]:
            if len(taken) >= limit or (taken and rec.size > budget):
                break
            taken.append(rec)
            budget -= rec.size
        position = taken[-1].seq + 1 if taken else it.position
        self.records_served[s.shard_id] += len(taken)
        out: dict[str, Any] = {"Records": [r.wire for r in taken]}
        at_end = s.closed and bisect.bisect_left(s.seqs, position) >= len(s.seqs)
        if not at_end or self.closed_shard_final_empty_page:
            out["NextShardIterator"] = self._issue(s.shard_id, position, 0)
        return out


# --------------------------------------------------------------------------- helpers


def _dumps(obj: Any, sort_keys: bool = False) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=sort_keys).encode()


def _iso_millis(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"


def _limit(params: dict[str, Any], maximum: int, default: int) -> int:
    raw = params.get("Limit")
    if raw is None:
        return max(1, min(default, maximum))
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= maximum:
        raise _AwsError(
            "ValidationException",
            f"1 validation error detected: Value '{raw}' at 'limit' failed to satisfy "
            f"constraint: Member must have value between 1 and {maximum}",
        )
    return raw


def _error_reply(code: str, message: str | None = None) -> _Reply:
    status, qualified = AWS_ERRORS[code]
    body = {"__type": qualified, "message": message or _DEFAULT_MESSAGES.get(code, code)}
    return _Reply(status=status, body=_dumps(body))


def _fault_reply(rule: FaultRule) -> _Reply:
    if rule.error in ("drop", "reset"):
        return _Reply(action=rule.error)  # type: ignore[arg-type]
    if rule.error in ("http500", "http503"):
        status = int(rule.error[4:])
        text = "Internal Server Error" if status == 500 else "Service Unavailable"
        html = f"<html><body><h1>{status} {text}</h1></body></html>\n"
        return _Reply(status=status, body=html.encode(), content_type="text/html")
    return _error_reply(rule.error, rule.message)


# --------------------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a client opening more connections at once
    # (the bridge's pool does, at start-up) sees SYNs dropped and retried a second later.
    request_queue_size = 128

    def __init__(self, double: StreamsDouble) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.double = double
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response (timeouts, scripted slow calls) are
        # expected here; anything else is a bug worth printing.
        if isinstance(sys.exc_info()[1], (ConnectionError, OSError, ValueError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes; without NODELAY, Nagle plus the
        # client's delayed ACK adds ~40 ms to every keep-alive round trip.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        # The real endpoint answers GET / with a health line; probes can use it.
        self._send(_Reply(body=f"healthy: streams.dynamodb.{self.server.double.region}.amazonaws.com".encode(),
                          content_type="text/plain"))

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._send(_Reply(status=411, body=b"Length Required", content_type="text/plain"))
            return
        raw = self.rfile.read(int(length))
        reply = self.server.double._handle(self.headers, raw)
        if reply.action == "drop":
            self.close_connection = True
            return
        if reply.action == "reset":
            self.close_connection = True
            # SO_LINGER 0 turns close() into an RST. rfile holds a reference to the
            # socket, so release it first or close() would not close anything yet.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
            return
        self._send(reply)

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        self.send_header("x-amzn-RequestId", uuid.uuid4().hex.upper())
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("x-amz-crc32", str(zlib.crc32(reply.body) & 0xFFFFFFFF))
        self.end_headers()
        self.wfile.write(reply.body)
