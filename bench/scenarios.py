"""Bounded memory under a backlog, and latency: busy (added by the bridge) and idle (polling).

- ``backlog``: a million records wait in the shards (the reader is far ahead of the broker,
  which is paused for the first seconds); the worker's bounds must stop reading, so RSS
  levels off instead of growing with the backlog. Runs in its own process (bench/run.py
  --backlog-child) so its peak RSS is its own.
- ``added_latency``: pages arrive at a steady pace on several shards; for every record, the
  time from its page's arrival at the reader to its acknowledgement by the broker. The
  same schedule with pre-encoded messages and librdkafka alone gives the floor.
- ``idle``: the real HTTP client against the Streams test double: GetRecords calls an idle
  shard costs per second, and how long a new change takes from the table to the broker.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import signal
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from confluent_kafka import Producer

from bench.variants import KEY_FIELDS, MemoryStreams, Pages, encoded_messages, make_worker, prepare, run_bridge
from bench.workload import KEYS, REGION, TABLE, WORKLOADS
from bridge.kafka import producer_config
from bridge.serde.serializer import RecordSerializer
from connectors.dynamodb.client import make_clients
from connectors.dynamodb.config import StreamConfig
from connectors.dynamodb.records import StreamContext
from connectors.dynamodb.streams import ShardReader, list_shards


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"n": 0}
    s = sorted(samples)
    q = statistics.quantiles(s, n=100, method="inclusive") if len(s) > 1 else [s[0]] * 99
    return {"n": len(s), "p50": q[49], "p99": q[98], "max": s[-1]}


class TimedProducer:
    """The worker's producer with a stopwatch: for each message to ``topic``, the time from
    ``start_of(key)`` (taken when it is produced) to its delivery callback."""

    def __init__(self, producer: Producer, topic: str, start_of: Callable[[bytes], float | None]) -> None:
        self._p = producer
        self._topic = topic
        self._start_of = start_of
        self.samples: list[float] = []
        self.keys: list[bytes] = []

    def produce(self, topic: str, value: Any = None, key: Any = None, on_delivery: Any = None, **kw: Any) -> None:
        t0 = self._start_of(key) if topic == self._topic and on_delivery is not None else None
        if t0 is None:
            return self._p.produce(topic, value, key, on_delivery=on_delivery, **kw)

        def timed(err: Any, msg: Any) -> None:
            if err is None:
                self.samples.append(time.perf_counter() - t0)
                self.keys.append(key)
            on_delivery(err, msg)

        return self._p.produce(topic, value, key, on_delivery=timed, **kw)

    def __len__(self) -> int:  # the lane's poll loop asks how many messages wait (dunders skip __getattr__)
        return len(self._p)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._p, name)


# --------------------------------------------------------------------------- memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak RSS (VmHWM; unlike ru_maxrss it starts afresh at exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def backlog(
    conf: dict[str, Any], serializer: RecordSerializer, topic: str, *, records: int, shards: int,
    max_in_flight_records: int, buffer_max_bytes: int, pause_pid: int | None, pause_s: float,
) -> dict[str, Any]:
    pages = Pages.make(WORKLOADS["small"], distinct=8)
    per_shard = max(1, -(-records // (shards * pages.per_page)))
    gc.collect()
    baseline = _rss_bytes()
    peaks = {"rss": baseline, "rss_paused": baseline, "in_flight": 0, "buffered": 0}
    paused = threading.Event()
    stop = threading.Event()
    holder: dict[str, Any] = {}

    def sample() -> None:
        while not stop.wait(0.02):
            rss = _rss_bytes()
            peaks["rss"] = max(peaks["rss"], rss)
            if paused.is_set():
                peaks["rss_paused"] = max(peaks["rss_paused"], rss)
            w = holder.get("worker")
            if w is not None:
                peaks["in_flight"] = max(peaks["in_flight"], w.in_flight())
                peaks["buffered"] = max(peaks["buffered"], w._buffered_bytes)

    def resume() -> None:
        if paused.is_set() and pause_pid is not None:
            os.kill(pause_pid, signal.SIGCONT)
        paused.clear()

    def on_start(worker: Any) -> None:
        holder["worker"] = worker
        if pause_pid is not None:
            os.kill(pause_pid, signal.SIGSTOP)
            paused.set()
            threading.Timer(pause_s, resume).start()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run = run_bridge(
            pages, per_shard, shards, conf, serializer, topic, on_start=on_start,
            max_in_flight_records=max_in_flight_records, buffer_max_bytes=buffer_max_bytes,
        )
    finally:
        resume()
        stop.set()
        sampler.join()
    return {
        "records": per_shard * shards * pages.per_page,
        "shards": shards,
        "wall_s": run.wall_s,
        "cpu_s": run.cpu_s,
        "paused_s": pause_s if pause_pid is not None else 0.0,
        "max_in_flight_records": max_in_flight_records,
        "buffer_max_bytes": buffer_max_bytes,
        "rss_baseline": baseline,
        "rss_peak": max(peaks["rss"], peak_rss_bytes()),
        "rss_peak_paused": peaks["rss_paused"],
        "in_flight_peak": peaks["in_flight"],
        "buffered_peak": peaks["buffered"],
        "json_bytes_per_record": pages.bytes_per_record,
    }


# --------------------------------------------------------------------------- busy latency


def added_latency(
    conf: dict[str, Any], serializer: RecordSerializer, topic: str, *, shards: int, per_page: int, pace_s: float,
    duration_s: float,
) -> dict[str, Any]:
    """Page arrival → broker ack for every record, at a steady load; and librdkafka's floor."""
    pages = Pages.make(WORKLOADS["wide"], distinct=4, per_page=per_page, seed=11)
    per_shard = max(2, int(duration_s / pace_s))
    prepare(serializer, topic)
    messages = encoded_messages(pages, serializer, topic)

    def warm(producer: Producer) -> Producer:
        """Steady state: the idempotent producer gets its id before the clock runs."""
        producer.list_topics(topic, timeout=10)
        producer.produce(topic, messages[0][0][1], messages[0][0][0])
        producer.flush(10)
        return producer

    timed = TimedProducer(warm(Producer(producer_config(conf))), topic, lambda key: MemoryStreams.arrival)
    run_bridge(pages, per_shard, shards, conf, serializer, topic, producer=timed, pace_s=pace_s)
    bridge = percentiles(timed.samples)
    bridge["rate"] = shards * per_page / pace_s

    # The floor: the same bursts of pre-encoded messages, produced the moment they "arrive".
    producer = warm(Producer(producer_config(conf)))
    samples: list[float] = []
    interval = pace_s / shards
    nxt = time.perf_counter()
    for i in range(per_shard * shards):
        while (now := time.perf_counter()) < nxt:
            producer.poll(min(0.002, nxt - now))
        nxt += interval
        t0 = time.perf_counter()

        def cb(err: Any, msg: Any, t0: float = t0) -> None:
            samples.append(time.perf_counter() - t0)

        for key, value in messages[i % len(messages)]:
            producer.produce(topic, value, key, on_delivery=cb)
        producer.poll(0)
    producer.flush(30)
    return {"bridge": bridge, "floor": percentiles(samples), "shards": shards, "per_page": per_page, "pace_s": pace_s}


# --------------------------------------------------------------------------- idle shards


def _pk_of(key: bytes) -> str | None:
    """The pk of a framed Key record (magic, id, then the Avro string pk)."""
    if not key or len(key) < 6:
        return None
    n = key[5] >> 1  # short strings: a one-byte zig-zag length
    return key[6 : 6 + n].decode()


def idle(conf: dict[str, Any], serializer: RecordSerializer, topic: str, *, poll_interval_ms: int, shards: int,
         idle_s: float, changes: int, spread_s: float) -> dict[str, Any]:
    from tests.doubles import StreamsDouble

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    double = StreamsDouble(table=TABLE, key_schema=KEYS, shards=shards, seed=3).start()
    put_at: dict[str, float] = {}
    timed = TimedProducer(Producer(producer_config(conf)), topic, lambda key: put_at.get(_pk_of(key) or ""))
    result: dict[str, Any] = {"poll_interval_ms": poll_interval_ms, "shards": shards}

    async def main() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0)) as http:
            _, streams = make_clients(region=REGION, profile=None, endpoint_url=double.endpoint_url,
                                      streams_endpoint_url=None, http=http)
            found, _ = await list_shards(streams, double.stream_arn)
            config = StreamConfig(poll_interval_ms=poll_interval_ms)
            readers = [
                ShardReader(streams=streams, shard=shard, start=("TRIM_HORIZON", None), config=config,
                            ctx=StreamContext(topic, TABLE, REGION, KEY_FIELDS, double.stream_arn, sid))
                for sid, shard in found.items()
            ]
            worker, _ = make_worker(conf, serializer, list(readers), producer=timed)
            running = asyncio.create_task(worker.run())
            await asyncio.sleep(0.5)
            ids = list(found)
            before = sum(double.calls.count("GetRecords", shard=s) for s in ids)
            t0 = time.perf_counter()
            await asyncio.sleep(idle_s)
            calls = sum(double.calls.count("GetRecords", shard=s) for s in ids) - before
            result["getrecords_per_shard_s"] = calls / len(ids) / (time.perf_counter() - t0)
            rng = random.Random(5)
            for i in range(changes):
                await asyncio.sleep(rng.uniform(0, 2 * spread_s / changes))
                pk = f"idle-{i}"
                put_at[pk] = time.perf_counter()
                item = {"pk": {"S": pk}, "sk": {"N": "1"}, "v": {"S": "x"}}
                double.put({"pk": item["pk"], "sk": item["sk"]}, new_image=item)
            deadline = time.perf_counter() + 5 + 3 * poll_interval_ms / 1000
            while len(timed.samples) < changes and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
            worker.stop()
            await running

    try:
        asyncio.run(main())
    finally:
        double.stop()
    result["seen"] = percentiles(timed.samples)
    result["changes"] = changes
    return result
