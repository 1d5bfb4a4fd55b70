"""The measured paths: the librdkafka ceiling, the naive baseline, the bridge, its stages.

Every variant starts from the same GetRecords bodies and reports the stream records it
handled, the wall time, and the CPU time of this process (all its threads, librdkafka's
included; the broker runs in another process and is not counted). "Per core" is records
per CPU-second, which holds up when other work shares the machine; wall rates do not.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Producer

import connectors.dynamodb.records as records_module
from bench.workload import KEYS, REGION, STREAM_ARN, TABLE, Workload, page_body, page_records
from bridge.gctune import tune_for_throughput
from bridge.kafka import producer_config
from bridge.offsets import OffsetStore
from bridge.serde.serializer import RecordSerializer
from bridge.task import Batch, SourceConnector, SourceTask, TaskRuntime
from bridge.worker import Worker, WorkerSettings
from connectors.dynamodb.config import StreamConfig
from connectors.dynamodb.envelope import change_record, envelope_schema
from connectors.dynamodb.records import PageReader, StreamContext, from_stream_records
from connectors.dynamodb.schemas import KeyField, table_schemas
from connectors.dynamodb.streams import Shard, ShardReader
from connectors.dynamodb.transcode import PyTranscoder, Transcoder
from connectors.dynamodb.typed import TypedTable, TypedValueConfig

KEY_FIELDS = tuple(KeyField(n, t) for n, t in KEYS)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    name: str
    records: int  # stream records (a REMOVE is one record, two Kafka messages)
    json_bytes: int  # GetRecords bytes those records came in
    wall_s: float
    cpu_s: float
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_core(self) -> float:
        return self.records / self.cpu_s if self.cpu_s > 0 else 0.0

    @property
    def per_wall(self) -> float:
        return self.records / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def mb_per_core(self) -> float:
        return self.json_bytes / self.cpu_s / 1e6 if self.cpu_s > 0 else 0.0

    @property
    def us_per_record(self) -> float:
        return self.cpu_s / self.records * 1e6 if self.records else 0.0


@contextmanager
def process_gc(tuned: bool) -> Iterator[None]:
    """The collector as the bridge process sets it (``bridge.gctune``), or CPython's default."""
    if not tuned:
        yield
        return
    previous = tune_for_throughput()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*previous)


@contextmanager
def clocks() -> Iterator[list[float]]:
    """Yields [wall_s, cpu_s] filled in on exit."""
    out = [0.0, 0.0]
    w, c = time.perf_counter(), time.process_time()
    yield out
    out[0], out[1] = time.perf_counter() - w, time.process_time() - c


def median(results: list[Result]) -> Result:
    """Of interleaved runs, the one with the median per-core rate."""
    return sorted(results, key=lambda r: r.per_core)[len(results) // 2]


def best(results: list[Result]) -> Result:
    """Of repeated runs, the one with the best per-core rate (least disturbed by neighbours)."""
    return max(results, key=lambda r: r.per_core)


# --------------------------------------------------------------------------- pages


@dataclass
class Pages:
    """A workload's distinct page bodies; a run cycles through them."""

    workload: Workload
    bodies: list[bytes]  # each with a NextShardIterator
    finals: list[bytes]  # the same records without one: a shard's last page
    per_page: int
    messages: list[int]  # Kafka messages per page (REMOVE adds a tombstone)

    @classmethod
    def make(cls, workload: Workload, distinct: int, per_page: int = 1000, seed: int = 7) -> Pages:
        bodies, finals, messages = [], [], []
        for i in range(distinct):
            recs = page_records(workload, i, per_page, seed)
            bodies.append(page_body(recs, f"it-{i + 1}"))
            finals.append(page_body(recs, None))
            messages.append(per_page + sum(r["eventName"] == "REMOVE" for r in recs))
        return cls(workload, bodies, finals, per_page, messages)

    @property
    def bytes_per_record(self) -> float:
        return sum(map(len, self.bodies)) / (len(self.bodies) * self.per_page)

    def cycle(self, n: int) -> Iterator[bytes]:
        for i in range(n):
            yield self.bodies[i % len(self.bodies)]


def prepare(serializer: RecordSerializer, topic: str) -> None:
    """Register the workload table's schemas for ``topic`` (the worker would on its first record)."""
    serializer.prepare(change_record(topic, envelope_schema(TABLE, KEY_FIELDS), {}, "c", None, None, {}, 0))


def transcoder(shard_id: str = "shardId-bench-0", impl: Any = None) -> Any:
    return (impl or Transcoder or PyTranscoder)(KEYS, TABLE, REGION, STREAM_ARN, shard_id)


def context(topic: str, shard_id: str = "shardId-bench-0", typed: Any = None) -> StreamContext:
    return StreamContext(topic, TABLE, REGION, KEY_FIELDS, STREAM_ARN, shard_id, typed=typed)


def typed_table(pages: Pages) -> TypedTable:
    """The workload table with ``value: {shape: typed}`` (one per bridge process, as there),
    started as the bridge starts one (connectors/dynamodb/typed/start.py): from a sample of the
    table's items, here the first page's. ``widen``: the wide items' lists mix records,
    strings, booleans and lists."""
    t = TypedTable(TABLE, KEY_FIELDS, TypedValueConfig.model_validate({"shape": "typed", "on_conflict": "widen"}))
    t.absorb_items(r["dynamodb"].get("NewImage") or r["dynamodb"]["OldImage"]
                   for r in orjson.loads(pages.bodies[0])["Records"])
    return t


# --------------------------------------------------------------------------- ceiling


def encoded_messages(pages: Pages, serializer: RecordSerializer, topic: str) -> list[list[tuple[bytes, bytes | None]]]:
    """Exactly the (key, value) messages the bridge produces for each distinct page."""
    reader = PageReader(context(topic))
    out = []
    for body in pages.bodies:
        recs, _, _ = reader.read(body)
        out.append([serializer.serialize(r) for r in recs])
    return out


def ceiling(
    pages: Pages, n_pages: int, messages: list[list[tuple[bytes, bytes | None]]], conf: dict[str, Any], topic: str,
    *, callbacks: bool = False,
) -> Result:
    """librdkafka alone: produce the pre-encoded messages, no per-message Python work."""
    producer = Producer(producer_config(conf))
    producer.list_topics(topic, timeout=10)
    acked = [0]

    def on_delivery(err: Any, msg: Any) -> None:
        acked[0] += 1

    produce = producer.produce
    with clocks() as t:
        for i in range(n_pages):
            for key, value in messages[i % len(messages)]:
                while True:
                    try:
                        if callbacks:
                            produce(topic, value, key, on_delivery=on_delivery)
                        else:
                            produce(topic, value, key)
                        break
                    except BufferError:
                        producer.poll(0.005)
            producer.poll(0)
        left = producer.flush(60)
    assert left == 0, f"{left} messages not delivered"
    json_bytes = sum(len(pages.bodies[i % len(pages.bodies)]) for i in range(n_pages))
    name = "ceiling + per-message callback" if callbacks else "ceiling: librdkafka, pre-encoded"
    return Result(name, n_pages * pages.per_page, json_bytes, t[0], t[1])


# --------------------------------------------------------------------------- naive baseline


def naive(pages: Pages, n_pages: int, conf: dict[str, Any], registry_url: str, topic: str) -> Result:
    """What a user writes by hand: boto's parser, confluent-kafka's AvroSerializer, Producer."""
    from botocore.parsers import create_parser
    from botocore.session import get_session
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    model = get_session().get_service_model("dynamodbstreams")
    shape = model.operation_model("GetRecords").output_shape
    parser = create_parser(model.metadata["protocol"])
    registry = SchemaRegistryClient({"url": registry_url})
    schemas = table_schemas(TABLE, KEY_FIELDS)
    key_ser = AvroSerializer(registry, schemas.key_schema)
    value_ser = AvroSerializer(registry, schemas.value_schema)
    kctx, vctx = SerializationContext(topic, MessageField.KEY), SerializationContext(topic, MessageField.VALUE)
    producer = Producer(producer_config(conf))
    producer.list_topics(topic, timeout=10)
    types = ("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS")
    ops = {"INSERT": "c", "MODIFY": "u", "REMOVE": "d"}

    def attribute(av: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = dict.fromkeys(types)
        for t, v in av.items():
            if t == "M":
                v = {k: attribute(x) for k, x in v.items()}
            elif t == "L":
                v = [attribute(x) for x in v]
            out[t] = v
        return out

    def item(image: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if image is None else {k: attribute(v) for k, v in image.items()}

    def run(bodies: Iterator[bytes]) -> None:
        for body in bodies:
            resp = parser.parse({"body": body, "headers": {}, "status_code": 200}, shape)
            for r in resp.get("Records", []):
                d = r["dynamodb"]
                ident = r.get("userIdentity") or {}
                key = {kf.name: d["Keys"][kf.name][kf.type] for kf in KEY_FIELDS}
                source = {
                    "connector": "dynamodb", "table": TABLE, "region": r.get("awsRegion"),
                    "stream_arn": STREAM_ARN, "shard_id": "shardId-naive", "sequence_number": d["SequenceNumber"],
                    "event_id": r.get("eventID"), "snapshot": None, "segment": None, "total_segments": None,
                    "approximate_creation_ms": int(d["ApproximateCreationDateTime"].timestamp() * 1000),
                    "ttl_delete": ident.get("Type") == "Service",
                }
                value = {
                    "op": ops[r["eventName"]], "before": item(d.get("OldImage")), "after": item(d.get("NewImage")),
                    "source": source, "ts_ms": int(time.time() * 1000),
                }
                k = key_ser(key, kctx)
                producer.produce(topic, value_ser(value, vctx), k)
                if r["eventName"] == "REMOVE":
                    producer.produce(topic, None, k)
                producer.poll(0)
        producer.flush(60)

    run(iter(pages.bodies[:1]))  # registers the schemas and warms up
    with clocks() as t:
        run(pages.cycle(n_pages))
    json_bytes = sum(len(b) for b in pages.cycle(n_pages))
    return Result("naive: botocore + AvroSerializer", n_pages * pages.per_page, json_bytes, t[0], t[1])


# --------------------------------------------------------------------------- the bridge


class MemoryStreams:
    """Stands in for the Streams client of one shard: pages from memory, no HTTP.

    ``count`` GetRecords calls return the workload's pages in turn, the last one without a
    NextShardIterator (shard end). With ``pace_s`` each call first waits for its slot, like
    a reader polling a shard that receives a page every ``pace_s`` seconds (the first slot
    ``phase_s`` after the first call, so that shards do not all deliver at once).
    """

    arrival = 0.0  # perf_counter when the latest page was handed to a reader (any shard)

    def __init__(self, pages: Pages, count: int, pace_s: float | None = None, phase_s: float = 0.0) -> None:
        self.pages = pages
        self.count = count
        self.pace_s = pace_s
        self.phase_s = phase_s
        self.served = 0
        self.bytes = 0
        self._next_slot: float | None = None

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert operation == "GetShardIterator", operation
        return {"ShardIterator": "it-0"}

    async def call_once_raw(self, operation: str, payload: dict[str, Any]) -> bytes:
        assert operation == "GetRecords", operation
        if self.pace_s is not None:
            now = time.perf_counter()
            if self._next_slot is None:
                self._next_slot = now + self.phase_s - self.pace_s
            self._next_slot = max(now, self._next_slot + self.pace_s)
            await asyncio.sleep(self._next_slot - now)
        i = self.served
        self.served += 1
        j = i % len(self.pages.bodies)
        body = self.pages.finals[j] if i == self.count - 1 else self.pages.bodies[j]
        self.bytes += len(body)
        MemoryStreams.arrival = time.perf_counter()
        return body


class BenchConnector(SourceConnector):
    """Starts the given readers; stops the worker once every one has reached its shard end."""

    def __init__(self, tasks: list[SourceTask]) -> None:
        self.name = "bench"
        self.tasks = tasks
        self.worker: Worker | None = None
        self.finished = 0
        self.done: list[float] = []  # [wall, cpu] at the last shard end

    async def validate(self) -> None:
        return None

    async def run(self, runtime: TaskRuntime) -> None:
        for t in self.tasks:
            runtime.start_task(t)
        await asyncio.Event().wait()

    def task_finished(self, task: SourceTask, batch: Batch) -> None:
        self.finished += 1
        if self.finished == len(self.tasks):
            self.done = [time.perf_counter(), time.process_time()]
            assert self.worker is not None
            self.worker.stop()


@dataclass
class BridgeRun:
    worker: Worker
    connector: BenchConnector
    sources: list[MemoryStreams]
    wall_s: float
    cpu_s: float


def make_worker(
    conf: dict[str, Any], serializer: RecordSerializer, tasks: list[SourceTask], *, producer: Any = None,
    max_in_flight_records: int = 20000, max_in_flight_records_total: int = 100000,
    buffer_max_bytes: int = 256 * 1024 * 1024, offsets_topic: str = "bench-offsets",
) -> tuple[Worker, BenchConnector]:
    """A worker set up as ``bridge_app.app`` sets it up (librdkafka's queue limits from the bounds)."""
    connector = BenchConnector(tasks)
    if producer is None:
        producer = Producer(producer_config(conf, max_in_flight_records=max_in_flight_records_total,
                                            buffer_max_bytes=buffer_max_bytes))
    worker = Worker(
        WorkerSettings(
            connector_name="bench", flush_interval_s=1.0, max_in_flight_records=max_in_flight_records,
            max_in_flight_records_total=max_in_flight_records_total, buffer_max_bytes=buffer_max_bytes,
        ),
        [connector],
        producer,
        OffsetStore(conf, offsets_topic, "bench"),
        serializer,
    )
    connector.worker = worker
    return worker, connector


def shard_readers(pages: Pages, pages_per_shard: int, shards: int, topic: str, *, pace_s: float | None = None,
                  config: StreamConfig | None = None, typed: Any = None) -> tuple[list[ShardReader], list[MemoryStreams]]:
    readers, sources = [], []
    for s in range(shards):
        sid = f"shardId-bench-{s}"
        src = MemoryStreams(pages, pages_per_shard, pace_s, phase_s=(pace_s or 0.0) * s / shards)
        readers.append(
            ShardReader(
                streams=src,  # type: ignore[arg-type]
                ctx=context(topic, sid, typed),
                shard=Shard(sid, (), None, None),
                start=("TRIM_HORIZON", None),
                config=config or StreamConfig(),
            )
        )
        sources.append(src)
    return readers, sources


def run_bridge(
    pages: Pages, pages_per_shard: int, shards: int, conf: dict[str, Any], serializer: RecordSerializer, topic: str,
    *, producer: Any = None, pace_s: float | None = None, on_start: Callable[[Worker], None] | None = None,
    gc_tuned: bool = True, typed: Any = None, transforms: Any = None, **settings: Any,
) -> BridgeRun:
    """The real path: ShardReader.poll (page → records) → Worker (serialize → produce → ack → offsets),
    with the collector set as ``ddb-kafka-bridge run`` sets it unless ``gc_tuned`` is false."""
    readers, sources = shard_readers(pages, pages_per_shard, shards, topic, pace_s=pace_s, typed=typed)
    worker, connector = make_worker(conf, serializer, list(readers), producer=producer, **settings)
    connector.transforms = transforms  # the table's chain, as the connector hands it to the worker
    worker.producer.list_topics(topic, timeout=10)

    async def main() -> None:
        if on_start is not None:
            on_start(worker)
        await worker.run()

    gc.collect()
    with process_gc(gc_tuned):
        w, c = time.perf_counter(), time.process_time()
        asyncio.run(main())
    assert connector.done, "the bridge stopped before every shard ended"
    return BridgeRun(worker, connector, sources, connector.done[0] - w, connector.done[1] - c)


def bridge(pages: Pages, n_pages: int, shards: int, conf: dict[str, Any], serializer: RecordSerializer, topic: str,
           *, pure_python: bool = False, gc_tuned: bool = True, typed: bool = False, chain: Any = None) -> Result:
    """The real path end to end; ``typed``: the table's values as typed records (``topic`` should
    be its own: its subject holds other schemas than the envelope's); ``chain``: with that
    transform chain (YAML's list) as the table's, on typed values."""
    per_shard = max(1, n_pages // shards)
    saved = records_module.Transcoder
    if pure_python:  # as where the C extension was not built: the general path
        records_module.Transcoder = None
    try:
        stage = None
        if chain is not None:
            from bridge.transforms import TransformStage, parse_transforms
            from connectors.dynamodb.transforms import expand, fast_plan, layout

            stage = TransformStage(parse_transforms(expand(chain)), layout(True), fast=fast_plan)
        run = run_bridge(pages, per_shard, shards, conf, serializer, topic, gc_tuned=gc_tuned,
                         typed=typed_table(pages) if typed or chain is not None else None, transforms=stage)
    finally:
        records_module.Transcoder = saved
    records = per_shard * shards * pages.per_page
    json_bytes = sum(s.bytes for s in run.sources)
    produced = run.worker.records_produced
    expected = sum(pages.messages[i % len(pages.messages)] for i in range(per_shard)) * shards
    if chain is None:  # a chain's filter drops some
        assert produced == expected, f"bridge produced {produced} messages, expected {expected}"
    else:
        assert 0 < produced <= expected, f"bridge with a chain produced {produced} messages of {expected}"
    if pure_python or Transcoder is None:
        name = "bridge, pure Python (no C extension)"
    else:
        name = "bridge (C transcoder)"
    if typed or chain is not None:
        name = name.replace("bridge", "bridge, typed values", 1)
    if chain is not None:
        name += " + filter/select/rename chain"
    if not gc_tuned:
        name += ", CPython's default GC"
    return Result(name, records, json_bytes, run.wall_s, run.cpu_s, note=f"{shards} shards")


# --------------------------------------------------------------------------- stages


def _timed(name: str, records: int, json_bytes: int, fn: Callable[[], Any], min_s: float, reps: int = 3) -> Result:
    """Run ``fn`` (one pass over the pages) until ``min_s`` of CPU time, ``reps`` times; the best."""
    fn()  # warm
    runs = []
    for _ in range(reps):
        passes = 0
        w, c = time.perf_counter(), time.process_time()
        while True:
            fn()
            passes += 1
            if time.process_time() - c >= min_s:
                break
        runs.append(Result(name, records * passes, json_bytes * passes, time.perf_counter() - w,
                           time.process_time() - c))
    return best(runs)


def stages(pages: Pages, serializer: RecordSerializer, conf: dict[str, Any], topic: str,
           messages: list[list[tuple[bytes, bytes | None]]], min_s: float = 0.6) -> list[Result]:
    """Each step of both paths alone, single-threaded, on the distinct pages, GC as in the bridge."""
    bodies = pages.bodies
    n = len(bodies) * pages.per_page
    nbytes = sum(map(len, bodies))
    ctx = context(topic)
    parsed = [orjson.loads(b) for b in bodies]
    general = [from_stream_records(p["Records"], ctx) for p in parsed]
    reader = PageReader(ctx)
    py_impl = PyTranscoder(KEYS, TABLE, REGION, STREAM_ARN, ctx.shard_id, records=(topic, envelope_schema(TABLE, KEY_FIELDS)))
    producer = Producer(producer_config(conf))
    producer.list_topics(topic, timeout=10)

    def produce_all() -> None:
        def cb(err: Any, msg: Any) -> None:
            pass

        for page in messages:
            for key, value in page:
                while True:
                    try:
                        producer.produce(topic, value, key, on_delivery=cb)
                        break
                    except BufferError:
                        producer.poll(0.005)
            producer.poll(0)
        producer.flush(60)

    steps: list[tuple[str, Callable[[], Any]]] = [
        ("general: parse (orjson.loads)", lambda: [orjson.loads(b) for b in bodies]),
        ("general: convert (from_stream_records)", lambda: [from_stream_records(p["Records"], ctx) for p in parsed]),
        ("general: Avro encode + frame (avro.py)", lambda: [serializer.serialize(r) for rs in general for r in rs]),
        ("fast: PageReader.read (C transcoder: parse, convert, Avro, records)", lambda: [reader.read(b) for b in bodies]),
        ("fast: the same with the pure-Python transcoder", lambda: [py_impl.page(b, 0) for b in bodies]),
        # fresh records each pass: the C records are framed in place once, so framing them again costs nothing
        ("fast: PageReader.read + serialize_batch (framing)",
         lambda: [serializer.serialize_batch(reader.read(b)[0]) for b in bodies]),
        ("produce + delivery callback + flush", produce_all),
    ]
    if Transcoder is None:  # no C extension: the reader takes the general path
        steps = [s for s in steps if not s[0].startswith("fast:") or "pure-Python" in s[0]]
    out = []
    with process_gc(True):  # as in the bridge process; also keeps the inputs above out of every pass
        for name, fn in steps:
            pure = "pure-Python" in name  # slow: one pass is long enough
            out.append(_timed(name, n, nbytes, fn, min_s / 3 if pure else min_s, reps=1 if pure else 3))
    return out
