"""DynamoDB Streams: the shard graph, one reader per shard, parents before children.

Per-key order across a split or a rollover holds only if a child shard is read after its
parent is finished, so the connector starts a shard's reader only when every parent it
names has a durable "ended" offset (or has aged out of the stream). The stream is listed
every ``discovery_interval`` (DescribeStream is limited to ~10 calls/s per account), timed
from the start of one listing to the next, and at once when a shard ends, so its children
start without waiting for the next interval.

Readers do not call GetRecords on their own clock: each asks the process's poll scheduler
(``scheduler.PollScheduler``) for a turn at its due time, so thousands of shards share a
bounded number of requests in flight. An idle open shard is due again after
``poll_interval_ms``; with ``max_idle_poll_interval_ms`` set, that wait doubles after every
empty page up to the maximum, and the first record resets it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.errors import ConfigError, CorruptOffsetError, RetriableError, SourceGoneError, TrimmedDataError
from bridge.metrics import METRICS
from bridge.task import Batch, SourceConnector, SourceTask, TaskRuntime
from connectors.dynamodb.client import AwsApiError, AwsJsonClient, ExpiredIteratorError, RetryPolicy
from connectors.dynamodb.config import StreamConfig
from connectors.dynamodb.envelope import RecordFormat
from connectors.dynamodb.records import PageReader, StreamContext
from connectors.dynamodb.scheduler import PollScheduler, scheduler_for
from connectors.dynamodb.start import SkipOlder
from connectors.dynamodb.table import TableInfo, describe_table
from connectors.dynamodb.typed.start import start_typed

__all__ = ["Shard", "ShardReader", "StreamsConnector", "list_shards"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Shard:
    id: str
    parents: tuple[str, ...]
    start_seq: str | None
    end_seq: str | None  # set once the shard is closed

    @property
    def closed(self) -> bool:
        return self.end_seq is not None


def _shard(s: dict[str, Any]) -> Shard:
    parents = tuple(p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p)
    rng = s.get("SequenceNumberRange") or {}
    return Shard(s["ShardId"], parents, rng.get("StartingSequenceNumber"), rng.get("EndingSequenceNumber"))


async def list_shards(streams: AwsJsonClient, stream_arn: str) -> tuple[dict[str, Shard], str]:
    """Every shard of the stream (paginated), and the stream's status."""
    shards: dict[str, Shard] = {}
    payload: dict[str, Any] = {"StreamArn": stream_arn}
    while True:
        desc = (await streams.call("DescribeStream", payload))["StreamDescription"]
        for s in desc.get("Shards", []):
            shards[s["ShardId"]] = _shard(s)
        last = desc.get("LastEvaluatedShardId")
        if not last:
            return shards, desc.get("StreamStatus", "ENABLED")
        payload = {"StreamArn": stream_arn, "ExclusiveStartShardId": last}


class ShardReader(SourceTask):
    """Reads one shard from a start position to its end, handing on one page at a time."""

    def __init__(
        self,
        *,
        streams: AwsJsonClient,
        ctx: StreamContext,
        shard: Shard,
        start: tuple[str, str | None],
        config: StreamConfig,
        on_trimmed: Callable[[str, str | None], None] | None = None,
        scheduler: PollScheduler | None = None,
        on_gone: Callable[[], Awaitable[bool]] | None = None,
        bad_position: Callable[[str], str] | None = None,
    ) -> None:
        self.partition = {"table": ctx.table, "shard": shard.id}
        # The start is a stored offset's position (AFTER/AT_SEQUENCE_NUMBER from the offsets
        # topic): checked against the shard before it is used (``_check_stored``); this makes
        # the one line that names the offset's key and the fix.
        self._bad_position = bad_position
        self._on_trimmed = on_trimmed
        self._on_gone = on_gone  # True (or raises) if the table or its stream is gone, not just this shard
        self.shard = shard
        self._streams = streams
        self._ctx = ctx
        self._config = config
        self._start_type, self._last_seq = start
        # AT_SEQUENCE_NUMBER: a position recorded before a snapshot (mode initial): read from
        # that record on. Every other start's sequence means "resume after this".
        self._at_seq: str | None = None
        if self._start_type == "AT_SEQUENCE_NUMBER":
            self._at_seq, self._last_seq = self._last_seq, None
        self._iterator: str | None = None
        self._bad_position_pending = bad_position is not None and start[1] is not None
        self._pages = PageReader(ctx)
        self.pages = 0
        self._scheduler = scheduler or scheduler_for(streams)
        self._retry: RetryPolicy = getattr(streams, "retry", None) or RetryPolicy()
        self._attempt = 0  # failed GetRecords attempts in a row (throttling, 5xx, connection)
        self.due = 0.0  # event-loop time of the next GetRecords; 0: at once
        self._poll_s = config.poll_interval_ms / 1000
        self._max_idle_s = max(self._poll_s, (config.max_idle_poll_interval_ms or 0) / 1000)
        self.idle_wait_s = self._poll_s  # the wait after the next empty page (adaptive: grows)
        self._idle_pages = 0  # empty pages in a row on this open shard

    def _refuse(self, why: str) -> CorruptOffsetError:
        what = f"table {self._ctx.table!r} shard {self.shard.id}: the stored position {why}"
        return CorruptOffsetError(self._bad_position(what) if self._bad_position is not None else what)

    def _check_stored(self) -> None:
        """A stored position past the end of a closed shard is refused before any call.

        An iterator there would read nothing, and the shard would count as finished with
        every record after the position unread (a hand-edited or imported offset). A
        position before the shard's start is left to GetShardIterator: records gone from
        the shard's start are trimmed data, which ``trimmed_policy`` handles.
        """
        seq = self._last_seq or self._at_seq
        if seq is None or not seq.isdigit() or self.shard.end_seq is None or not self.shard.end_seq.isdigit():
            return
        if int(seq) > int(self.shard.end_seq):
            raise self._refuse(f"(sequence number {seq}) is past the end of the shard, whose sequence numbers "
                               f"end at {self.shard.end_seq}")

    async def _stored_iterator(self) -> str:
        """The first iterator from a stored position; DynamoDB refuses one outside the shard
        (ValidationException): refused with the key and the fix, or, before the shard's
        start, handled as trimmed data."""
        self._check_stored()
        seq = self._last_seq or self._at_seq
        try:
            iterator = await self._get_iterator()
        except AwsApiError as e:
            if e.code not in ("ValidationException", "InvalidArgumentException"):
                raise
            self._bad_position_pending = False
            start = self.shard.start_seq
            if seq is not None and start is not None and seq.isdigit() and start.isdigit() and int(seq) < int(start):
                raise TrimmedDataError(f"sequence number {seq} is before the shard's first, {start}: {e}") from None
            raise self._refuse(f"(sequence number {seq}) is not in the shard: DynamoDB Streams refused an "
                               f"iterator there ({e})") from None
        self._bad_position_pending = False
        return iterator

    async def _get_iterator(self) -> str:
        req: dict[str, Any] = {"StreamArn": self._ctx.stream_arn, "ShardId": self.shard.id}
        if self._last_seq is not None:
            req |= {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self._last_seq}
        elif self._at_seq is not None:
            req |= {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "SequenceNumber": self._at_seq}
        else:
            req["ShardIteratorType"] = self._start_type
        return (await self._streams.call("GetShardIterator", req))["ShardIterator"]

    def _trimmed(self, cause: str, *, gone: bool = False) -> Batch:
        """Records this reader still had to read are gone: apply ``trimmed_policy``."""
        what = (
            f"table {self._ctx.table!r} shard {self.shard.id}: records after sequence {self._last_seq} "
            if self._last_seq
            else f"table {self._ctx.table!r} shard {self.shard.id}: records from the shard's start "
        ) + f"were trimmed before they were read ({cause})"
        METRICS.inc("bridge_trimmed_shards_total", help="shards that lost unread records to trimming",
                    table=self._ctx.table)
        policy = self._config.trimmed_policy
        if policy == "fail":
            raise TrimmedDataError(
                f"{what}; changes were lost. To go on, set tables[].stream.trimmed_policy to "
                f"skip-and-alert or resnapshot"
            )
        log.error("%s; continuing from the oldest record still in the shard (trimmed_policy=%s)", what, policy)
        if self._on_trimmed is not None:
            self._on_trimmed(self.shard.id, self._last_seq)
        if gone:  # nothing left to read: the shard is finished, its children may start
            return Batch([], {"seq": self._last_seq, "ended": True, "trimmed": True}, final=True, reason="trimmed")
        self._start_type, self._last_seq, self._iterator = "TRIM_HORIZON", None, None
        self._at_seq = None
        return Batch([], None)

    async def _get_records(self) -> bytes:
        """One GetRecords attempt, in a turn the scheduler gives at this reader's due time."""
        scheduler = self._scheduler
        await scheduler.turn(self.due)
        try:
            return await self._streams.call_once_raw(
                "GetRecords", {"ShardIterator": self._iterator, "Limit": self._config.max_records_per_call}
            )
        finally:
            scheduler.done()

    def _retry_later(self, error: RetriableError) -> None:
        """Throttled, 5xx or a dropped connection: due again after a jittered back-off.

        The wait is a place in the scheduler's queue, not a sleeping task holding a slot.
        """
        self._attempt += 1
        retry = self._retry
        if retry.max_attempts is not None and self._attempt >= retry.max_attempts:
            raise error
        delay = retry.delay(self._attempt)
        level = logging.WARNING if self._attempt in (1, 10) or self._attempt % 100 == 0 else logging.DEBUG
        log.log(level, "%s (shard %s, attempt %d, retrying in %.2fs)", error, self.shard.id, self._attempt, delay)
        self.due = asyncio.get_running_loop().time() + delay

    def _schedule_next(self, had_records: bool) -> None:
        """When this shard is due again: at once after records (or on a closed shard, whose
        remaining pages are read without waiting), after the idle wait otherwise."""
        now = asyncio.get_running_loop().time()
        if had_records:
            self.idle_wait_s = self._poll_s  # the first record resets the back-off
            self._idle_pages = 0
            self.due = now
            return
        if self.shard.closed or not self._poll_s:
            self.due = now
            return
        wait = self.idle_wait_s
        if self._idle_pages == 0:
            # The first wait of an idle spell is drawn from [wait/2, wait]: shards started
            # together do not stay in lock-step, so their polls spread over the interval.
            wait *= random.uniform(0.5, 1.0)
        self._idle_pages += 1
        self.due = now + wait
        self.idle_wait_s = min(self.idle_wait_s * 2, self._max_idle_s)

    async def poll(self) -> Batch:
        while True:
            try:
                if self._iterator is None:
                    if self._bad_position_pending:
                        self._iterator = await self._stored_iterator()
                    else:
                        self._iterator = await self._get_iterator()
                body = await self._get_records()
            except TrimmedDataError as e:
                return self._trimmed(str(e))
            except AwsApiError as e:
                if e.code != "ResourceNotFoundException":
                    raise
                if self._on_gone is not None and await self._on_gone():
                    # The table is gone and stops alone (the connector says why); no offset:
                    # nothing more was read.
                    return Batch([], None, final=True, reason="stream-gone")
                # The shard aged out of the stream (24 h) before we finished it.
                return self._trimmed(str(e), gone=True)
            except ExpiredIteratorError:
                # Iterators live 15 minutes; the next poll resumes after the last record handed on.
                log.info("iterator expired on %s; re-acquiring after %s", self.shard.id, self._last_seq)
                self._iterator = None
                return Batch([], None)
            except RetriableError as e:
                self._retry_later(e)
                continue
            break
        self._attempt = 0
        self.pages += 1
        records, last_seq, self._iterator = self._pages.read(body)
        if last_seq is not None:
            self._last_seq = last_seq
        # When the newest record happened, for the lag the status shows (``source_ms``).
        extra = {"source_ms": records[-1].position.get("approximate_creation_ms")} if records else {}
        if self._iterator is None:
            log.info("shard %s ended after %s", self.shard.id, self._last_seq)
            return Batch(records, {"seq": self._last_seq, "ended": True}, final=True, reason="shard-end", extra=extra)
        self._schedule_next(last_seq is not None)
        # An empty page with an iterator to go on with: the open shard is read to its end for now (lag 0).
        if last_seq is None and not self.shard.closed:
            extra["caught_up"] = True
        return Batch(records, {"seq": self._last_seq, "ended": False} if last_seq is not None else None, extra=extra)


@dataclass
class _Lineage:
    shards: dict[str, Shard] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    started: set[str] = field(default_factory=set)


# How many times as seldom a group worker that does not own a table's listing unit lists it.
FOLLOWER_LISTING_FACTOR = 6


class StreamsConnector(SourceConnector):
    """Follows one table's stream: discovers shards and starts readers in lineage order."""

    record_format = RecordFormat()  # the table's; set by table_connectors
    # value: {shape: typed}: subject -> its latest schema text or None (set by table_connectors)
    typed_latest: Callable[[str], str | None] | None = None

    def __init__(
        self,
        *,
        table: str,
        topic: str,
        ddb: AwsJsonClient,
        streams: AwsJsonClient,
        config: StreamConfig,
        start_position: str = "trim_horizon",
        start_ms: int | None = None,
    ) -> None:
        self.name = f"streams:{table}"
        self._start_ms = start_ms  # start_position: at_timestamp
        self._disabled: str | None = None  # why the stream stopped: its shards are read to their ends
        self.table_name = table
        self.topic = topic
        self._ddb = ddb
        self._streams = streams
        self._config = config
        self._start_position = start_position
        self._lineage = _Lineage()
        self._wake = asyncio.Event()  # list the shards now (a shard ended here: its children start)
        # Offsets or ownership changed (another worker committed, a rebalance): start what the
        # last listing makes ready, without a new DescribeStream. In a group every worker's
        # commits reach every other worker; relisting on each would multiply the account's
        # ~10 DescribeStream/s by the number of workers.
        self._recheck = asyncio.Event()
        self.scheduler = scheduler_for(streams)  # installs the DescribeStream / GetShardIterator lanes
        self.listings = 0
        self.table: TableInfo | None = None
        # Called with (shard id, last sequence read) when records were lost to trimming;
        # the snapshot side sets it for trimmed_policy=resnapshot.
        self.on_trimmed: Callable[[str, str | None], None] | None = None
        self.runtime: TaskRuntime | None = None
        # Other tables run beside this one (several listed, or table_discovery): a deleted
        # table or a disabled stream then stops this table alone instead of the bridge.
        self.stop_alone = False
        self.stopped_reason: str | None = None

    async def validate(self) -> None:
        self.table = await describe_table(self._ddb, self.table_name)
        if self.table.stream_arn is None:
            raise ConfigError(
                f"tables: table {self.table_name!r} has no stream enabled; enable it with "
                f"StreamSpecification StreamEnabled=true, StreamViewType=NEW_AND_OLD_IMAGES"
            )
        typed = self.record_format.typed_table(self.table.name, self.table.key_fields)
        if typed is not None and typed.cfg.image == "after" and self.table.view_type in ("KEYS_ONLY", "OLD_IMAGE"):
            raise ConfigError(
                f"tables: {self.table_name}.value.image is after, but the table's stream carries "
                f"{self.table.view_type} (no new image to publish); set StreamViewType NEW_IMAGE or "
                f"NEW_AND_OLD_IMAGES, or use image: envelope"
            )
        if typed is not None and not typed.sampled:
            await self._start_typed(typed)

    async def _start_typed(self, typed: Any) -> None:
        assert self.table is not None
        await start_typed(typed, ddb=self._ddb, table=self.table, topic=self.topic, latest=self.typed_latest)

    async def _gone(self) -> str | None:
        """Why the table's stream is no longer the one being read, or None if it still is."""
        assert self.table is not None
        try:
            now = await describe_table(self._ddb, self.table_name)
        except ConfigError:
            return f"table {self.table_name!r} was deleted while the bridge was running"
        if now.stream_arn != self.table.stream_arn:
            what = "disabled" if now.stream_arn is None else f"replaced by a new stream ({now.stream_arn})"
            return f"table {self.table_name!r}: its stream {self.table.stream_arn} was {what} while the bridge was running"
        return None

    async def check_stream(self) -> None:
        """A shard or the stream was not found: stop with one line naming the table if the
        table was deleted or its stream disabled or replaced; return if it is still there
        (then only a shard aged out, which ``trimmed_policy`` handles)."""
        why = await self._gone()
        if why is not None:
            raise SourceGoneError(
                f"{why}; its unread records cannot be read any more. Remove the table from tables[], or re-create "
                "it or enable its stream, and restart (the bridge then reads the new stream from its start)"
            )

    def _partition(self, shard_id: str) -> dict[str, str]:
        return {"table": self.table_name, "shard": shard_id}

    async def run(self, runtime: TaskRuntime) -> None:
        self.runtime = runtime
        if self.table is None:
            await self.validate()
        assert self.table is not None and self.table.stream_arn is not None
        loop = asyncio.get_running_loop()
        fresh = True
        while True:
            started = loop.time()
            try:
                shards, status = await list_shards(self._streams, self.table.stream_arn)
            except AwsApiError as e:
                if e.code != "ResourceNotFoundException":
                    raise
                try:
                    await self.check_stream()
                except SourceGoneError as gone:
                    if not self.stop_alone:
                        raise
                    await self._stop_table(runtime, str(gone))
                    return
                raise
            if self.stopped_reason is not None:
                await self._stop_table(runtime, self.stopped_reason)
                return
            self.listings += 1
            if status in ("DISABLING", "DISABLED") and self._disabled is None:
                # The old stream's records stay readable (24 h): read every shard to its end first.
                self._disabled = await self._gone() or (
                    f"table {self.table_name!r}: its stream {self.table.stream_arn} was disabled while the bridge "
                    "was running")
                log.warning("%s; reading its shards to their ends, then stopping", self._disabled)
            self._lineage.shards = shards
            self._start_ready(runtime, fresh)
            if self._disabled is not None and all(s in self._lineage.finished for s in shards):
                done = SourceGoneError(
                    f"{self._disabled}; every record of that stream was read. Changes from now on are in no stream "
                    "the bridge reads: enable the stream and restart (the bridge reads the new stream from its start)"
                )
                if not self.stop_alone:
                    raise done
                await self._stop_table(runtime, str(done))
                return
            fresh = False
            await self._until_next_listing(runtime, started)

    def _listing_interval_s(self, runtime: TaskRuntime) -> float:
        """``discovery_interval_ms``; in a group only for the worker that owns the table's
        listing unit. The others list ``FOLLOWER_LISTING_FACTOR`` times as seldom, and at once
        when a shard another worker finished has children their listing does not show: so a
        group lists each table about as often as one process does (DynamoDB allows ~10
        DescribeStream calls/s per account), not once per worker."""
        interval = self._config.discovery_interval_ms / 1000
        owns = getattr(runtime, "owns", None)
        if owns is None or owns({"table": self.table_name, "listing": "shards"}):
            return interval
        return interval * FOLLOWER_LISTING_FACTOR

    async def _until_next_listing(self, runtime: TaskRuntime, started: float) -> None:
        """Wait until the next listing is due (an interval after this one *started*, so the
        period holds however long a listing of many pages takes) or a shard ended here;
        meanwhile a recheck starts what the last listing makes ready. A shard another worker
        finished whose children this listing does not show yet brings the listing forward."""
        loop = asyncio.get_running_loop()
        while not self._wake.is_set():
            wait = started + self._listing_interval_s(runtime) - loop.time()
            if wait <= 0:
                break
            recheck = asyncio.ensure_future(self._recheck.wait())
            wake = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait((recheck, wake), timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                recheck.cancel()
                wake.cancel()
            if self._recheck.is_set() and not self._wake.is_set():
                self._recheck.clear()
                finished = set(self._lineage.finished)
                self._start_ready(runtime, False)
                children = self._children()
                if any(s not in children for s in self._lineage.finished - finished):
                    break  # ended elsewhere, its children not listed yet: list now
        self._wake.clear()
        self._recheck.clear()

    def _children(self) -> dict[str, list[str]]:
        """Shard id -> ids of the shards naming it as a parent (one pass, not one per shard)."""
        out: dict[str, list[str]] = {}
        for shard in self._lineage.shards.values():
            for parent in shard.parents:
                out.setdefault(parent, []).append(shard.id)
        return out

    def _has_offset_below(self, shard_id: str, runtime: TaskRuntime, children: dict[str, list[str]]) -> bool:
        """True if any descendant has a stored offset: then this shard was already passed."""
        todo = [shard_id]
        seen: set[str] = set()
        while todo:
            for child in children.get(todo.pop(), ()):
                if child in seen:
                    continue
                seen.add(child)
                if runtime.offsets.offset(self._partition(child)) is not None:
                    return True
                todo.append(child)
        return False

    def _start_ready(self, runtime: TaskRuntime, first_listing: bool) -> None:
        lin = self._lineage
        table = self.table
        assert table is not None and table.stream_arn is not None
        no_offsets = not any(runtime.offsets.offset(self._partition(s)) for s in lin.shards)
        latest = first_listing and no_offsets and self._start_position == "latest"
        children = self._children()
        # Walk parents before children so one listing can start a whole ready chain's head.
        for shard in lin.shards.values():
            if shard.id in lin.finished or shard.id in lin.started:
                continue
            stored = runtime.offsets.offset(self._partition(shard.id))
            if stored and stored.get("ended") and shard.closed:
                lin.finished.add(shard.id)
                continue
            if stored is None and (self._has_offset_below(shard.id, runtime, children) or (latest and shard.closed)):
                lin.finished.add(shard.id)
                continue
        owns = getattr(runtime, "owns", None)
        for shard in lin.shards.values():
            if shard.id in lin.finished or shard.id in lin.started:
                continue
            if owns is not None and not owns(self._partition(shard.id)):
                continue  # another worker of this name reads it (bridge.group)
            waiting = [p for p in shard.parents if p in lin.shards and p not in lin.finished]
            if waiting:
                continue
            for parent in shard.parents:
                if parent not in lin.shards and parent not in lin.finished:
                    self._parent_aged_out(parent, runtime)
            stored = runtime.offsets.offset(self._partition(shard.id))
            if stored is not None and stored.get("ended"):
                # Only a reader that saw a closed shard's end writes "ended": on a shard still
                # open it was edited or imported, and trusting it would leave the shard unread
                # for good (its later changes too) with nothing said. Read it after the stored
                # sequence number: at worst a record again, never one lost.
                log.warning("table %r shard %s: the stored offset %s says the shard ended, but the shard is still "
                            "open (an edited or imported offset?); reading it after sequence %s instead (a record "
                            "may be published again)", table.name, shard.id, json.dumps(stored, sort_keys=True),
                            stored.get("seq"))
            if stored is not None and stored.get("seq"):
                start: tuple[str, str | None] = ("AFTER_SEQUENCE_NUMBER", stored["seq"])
            elif stored is not None and stored.get("at"):
                start = ("AT_SEQUENCE_NUMBER", stored["at"])  # recorded by a snapshot handoff
            elif latest:
                start = ("LATEST", None)
            else:
                start = ("TRIM_HORIZON", None)
            ctx = StreamContext(
                topic=self.topic,
                table=table.name,
                region=table.region,
                key_fields=table.key_fields,
                stream_arn=table.stream_arn,
                shard_id=shard.id,
                record_schema=self.record_format.schema(table.name, table.key_fields),
                typed=self.record_format.typed_table(table.name, table.key_fields),
            )
            log.info("starting reader for %s %s at %s", table.name, shard.id, start[0])
            lin.started.add(shard.id)
            reader = self._make_reader(ctx, shard, start)
            if stored is None and self._start_ms is not None and start[0] == "TRIM_HORIZON":
                reader = SkipOlder(reader, self._start_ms, table=table.name)
            runtime.start_task(reader)

    def _make_reader(self, ctx: StreamContext, shard: Shard, start: tuple[str, str | None]) -> SourceTask:
        """The task that reads one shard (a snapshot handoff wraps it)."""
        # A start with a sequence number is a stored offset's position (``_start_ready``).
        stored = start[1] is not None and self.runtime is not None
        return ShardReader(
            streams=self._streams, ctx=ctx, shard=shard, start=start, config=self._config, on_trimmed=self.on_trimmed,
            on_gone=self._reader_gone,
            bad_position=self._bad_offset_line(self.runtime, shard.id) if stored and self.runtime else None,
        )

    def _bad_offset_line(self, runtime: TaskRuntime, shard_id: str) -> Callable[[str], str]:
        """How a reader names the stored offset it refuses: the offsets store's line (its
        topic, key and the ``offsets reset`` command), or the partition alone."""
        describe = getattr(runtime.offsets, "bad_offset_line", None)
        partition = self._partition(shard_id)
        if describe is None:
            return lambda why: f"{why}; reset the stored offset of {partition}"
        return lambda why: describe(partition, why)

    def _parent_aged_out(self, parent: str, runtime: TaskRuntime) -> None:
        """A parent left DescribeStream (24 h retention). Fine if it was finished or never
        ours to read; if we had started it and not finished, its tail was lost."""
        self._lineage.finished.add(parent)
        stored = runtime.offsets.offset(self._partition(parent))
        if stored is None or stored.get("ended"):
            return
        what = (
            f"table {self.table_name!r} shard {parent}: aged out of the stream after sequence "
            f"{stored.get('seq')} before it was read to its end"
        )
        METRICS.inc("bridge_trimmed_shards_total", help="shards that lost unread records to trimming",
                    table=self.table_name)
        if self._config.trimmed_policy == "fail":
            raise TrimmedDataError(f"{what}; changes were lost. To go on, set tables[].stream.trimmed_policy "
                                   f"to skip-and-alert or resnapshot")
        log.error("%s; its children start now (trimmed_policy=%s)", what, self._config.trimmed_policy)
        if self.on_trimmed is not None:
            self.on_trimmed(parent, stored.get("seq"))

    def restart_task(self, partition: dict[str, Any]) -> bool:
        """A failed shard reader (``errors.task_failure: fail-task``) starts again from its
        committed offset at the next listing, which this wakes."""
        shard_id = partition.get("shard")
        if shard_id not in self._lineage.started:
            return False
        self._lineage.started.discard(shard_id)
        self._wake.set()
        return True

    def pending(self) -> bool:
        """Not listed yet; or shards of this process known but neither finished nor reading
        (children waiting for a parent); or a listing due because a shard ended: not caught up
        yet. Shards another process of the group owns are its business."""
        lin = self._lineage
        if not self.listings or not lin.shards:  # not listed yet
            return True
        owns = getattr(self.runtime, "owns", None) or (lambda p: True)
        return (self._wake.is_set() or self._recheck.is_set()
                or any(s not in lin.finished and s not in lin.started and owns(self._partition(s))
                       for s in lin.shards))

    def describe(self) -> dict[str, Any]:
        """The shard graph as last listed, for the REST API and the status page."""
        lin = self._lineage
        return {
            "table": self.table_name,
            "stream_arn": self.table.stream_arn if self.table else None,
            "shards": [
                {"id": s.id, "parents": list(s.parents), "closed": s.closed,
                 "finished": s.id in lin.finished, "reading": s.id in lin.started}
                for s in lin.shards.values()
            ],
        }

    async def _reader_gone(self) -> bool:
        """A reader met ResourceNotFoundException: True if the table is gone and stops alone;
        raises if it is gone and the bridge stops; False if only the shard aged out."""
        try:
            await self.check_stream()
        except SourceGoneError as e:
            if not self.stop_alone:
                raise
            self.stopped_reason = str(e)
            return True
        return False

    async def _stop_table(self, runtime: TaskRuntime, why: str) -> None:
        """Stop this table cleanly: commit what its readers read, say so; the other tables carry on."""
        self.stopped_reason = why
        stop = getattr(runtime, "stop_tasks", None)
        if stop is not None:
            await stop()
        METRICS.inc("bridge_tables_stopped_total", help="tables stopped while running (deleted, stream disabled)",
                    table=self.table_name)
        log.warning("%s; this table's readers stopped, the other tables carry on", why)

    def task_stopped(self, task: SourceTask) -> None:
        """The shard moved to another worker: forget it was started, so it can start again here."""
        self._lineage.started.discard(task.partition["shard"])

    def wake(self) -> None:
        """Ownership changed, or another worker committed an offset: look at the shards again
        (the last listing; a new one only if a finished shard's children are not in it)."""
        self._recheck.set()

    def task_finished(self, task: SourceTask, batch: Batch) -> None:
        if batch.reason == "stream-gone":
            self._lineage.started.discard(task.partition["shard"])
            self._wake.set()
            return
        shard_id = task.partition["shard"]
        self._lineage.finished.add(shard_id)
        self._lineage.started.discard(shard_id)
        self._wake.set()
