"""Parallel Scan throughput: 1, 4 and 8 segments, and a skewed table with and without
straggler splitting, in one run.

    python -m bench.scan_bench                 # service model only (about a minute)
    python -m bench.scan_bench --moto 4000     # also against a moto server, 4000 items

What runs is the bridge's own ScanConnector and ScanSegmentTask code, over AwsJsonClient
(SigV4 signing, orjson, retries), driven by a minimal in-memory runtime that polls tasks
as the worker does but drops the records instead of producing them (Kafka is not what is
measured here).

Two backends:

- **model** (default): an in-process stand-in for DynamoDB's Scan, reached through
  ``httpx.MockTransport``. Segments are contiguous ranges of the partition-key hash space
  (as DynamoDB's partitions are), pages stop at 1 MB or ``Limit``, and every call costs
  ``CALL_MS`` plus the page's bytes at ``SEGMENT_MB_S`` (a segment reads from one
  partition at a time, so its throughput is bounded no matter how many run). Above a few
  tens of thousands of items/s the bridge's own CPU (JSON decoding, records) is the limit
  on one core, and the numbers stop scaling with segments. Parallel
  segments overlap their waits, as they do against the service.
- **moto** (``--moto N``): a real moto server on loopback. moto does all the work on one
  CPU, walks the whole table on every Scan call and spends most of its time serializing,
  so its numbers show moto's cost, not DynamoDB's; more segments mean more calls and are
  *slower* there. Its skew is built for moto's segment function (first MD5 byte modulo
  TotalSegments).

The skewed table puts 70% of the items in the first quarter of the hash space: with four
segments, segment 0 holds 70% of the table and alone sets the run time. With straggler
splitting the same four scanners take 32 fine segments from one queue, and the heavy
quarter is spread over eight of them.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import hashlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from bridge.task import Batch, SourceConnector, SourceTask
from connectors.dynamodb.client import make_clients
from connectors.dynamodb.config import SnapshotConfig
from connectors.dynamodb.scan import ScanConnector

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

HASH_SPACE = 1 << 128
PAGE_BYTES = 1024 * 1024
CALL_MS = 10.0  # request round trip and service overhead per Scan call
SEGMENT_MB_S = 2.0  # what one segment reads per second (one partition at a time)


def _hash(pk: str) -> int:
    return int.from_bytes(hashlib.md5(pk.encode()).digest(), "big")


def _item(i: int, pk: str) -> dict[str, Any]:
    return {
        "pk": {"S": pk},
        "sk": {"N": str(i % 5)},
        "status": {"S": random.choice(("new", "paid", "shipped"))},
        "amount": {"N": f"{random.randint(1, 99999)}.{random.randint(0, 99):02d}"},
        "note": {"S": "x" * random.randint(20, 200)},
    }


def make_items(n: int, *, skew: float | None, moto: bool = False) -> list[dict[str, Any]]:
    """``skew``: the share of items whose key falls in the first quarter of the segments."""
    rng = random.Random(7)
    random.seed(7)
    items = []
    i = 0
    while len(items) < n:
        pk = f"user#{rng.getrandbits(48):012x}"
        in_first = (hashlib.md5(pk.encode()).digest()[0] % 4 == 0) if moto else (_hash(pk) < HASH_SPACE // 4)
        if skew is not None:
            want_first = (len(items) % 100) < skew * 100
            if in_first != want_first:
                continue
        items.append(_item(i, pk))
        i += 1
    return items


class ScanModel:
    """DynamoDB's Scan semantics on a sorted list, with a per-segment throughput model."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        rows = []
        for it in items:
            pk, sk = it["pk"]["S"], int(it["sk"]["N"])
            rows.append(((_hash(pk), pk, sk), it, len(orjson.dumps(it))))
        rows.sort(key=lambda r: r[0])
        self.keys = [r[0] for r in rows]
        self.rows = rows
        self.calls = 0

    def describe(self) -> dict[str, Any]:
        return {
            "Table": {
                "TableName": "bench",
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
                "ItemCount": len(self.rows),
            }
        }

    async def scan(self, req: Mapping[str, Any]) -> dict[str, Any]:
        self.calls += 1
        seg, total = req.get("Segment", 0), req.get("TotalSegments", 1)
        lo, hi = seg * HASH_SPACE // total, (seg + 1) * HASH_SPACE // total
        start = bisect.bisect_left(self.keys, (lo, "", -1))
        if "ExclusiveStartKey" in req:
            esk = req["ExclusiveStartKey"]
            pk = esk["pk"]["S"]
            start = max(start, bisect.bisect_right(self.keys, (_hash(pk), pk, int(esk["sk"]["N"]))))
        limit = req.get("Limit") or 1 << 30
        out, size, i = [], 0, start
        while i < len(self.rows) and self.keys[i][0] < hi and len(out) < limit and size < PAGE_BYTES:
            out.append(self.rows[i][1])
            size += self.rows[i][2]
            i += 1
        await asyncio.sleep((CALL_MS + size / (SEGMENT_MB_S * 1024 * 1024) * 1000) / 1000)
        resp: dict[str, Any] = {"Items": out, "Count": len(out), "ScannedCount": len(out)}
        if i < len(self.rows) and self.keys[i][0] < hi:
            last = out[-1]
            resp["LastEvaluatedKey"] = {"pk": last["pk"], "sk": last["sk"]}
        return resp

    async def handle(self, request: httpx.Request) -> httpx.Response:
        op = request.headers["X-Amz-Target"].split(".")[1]
        body = orjson.loads(request.content)
        if op == "DescribeTable":
            payload = self.describe()
        elif op == "Scan":
            payload = await self.scan(body)
        else:
            return httpx.Response(400, json={"__type": "ValidationException", "message": op})
        return httpx.Response(200, content=orjson.dumps(payload))


class _Offsets:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def offset(self, partition: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.data.get(orjson.dumps(dict(partition), option=orjson.OPT_SORT_KEYS).decode())


class BenchRuntime:
    """Polls tasks like the worker does; counts records instead of producing them."""

    def __init__(self) -> None:
        self.offsets = _Offsets()
        self.connector: SourceConnector | None = None
        self.records = 0
        self.tasks: list[asyncio.Task[None]] = []

    def start_task(self, task: SourceTask) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(self._run(task)))

    def running(self, partition: Mapping[str, Any]) -> bool:
        return False

    async def _run(self, task: SourceTask) -> None:
        while True:
            batch: Batch = await task.poll()
            self.records += len(batch.records)
            if batch.offset is not None:
                key = orjson.dumps(task.partition, option=orjson.OPT_SORT_KEYS).decode()
                self.offsets.data[key] = batch.offset
            if batch.final:
                assert self.connector is not None
                self.connector.task_finished(task, batch)
                return


async def run_scan(client_kw: dict[str, Any], *, segments: int, split: bool, n: int) -> tuple[float, int, int]:
    """(items/s, records, Scan calls) of one complete snapshot."""
    endpoint = client_kw.pop("_endpoint", "http://model")
    async with httpx.AsyncClient(**client_kw) as http:
        ddb, _ = make_clients(region="us-east-1", profile=None, endpoint_url=endpoint, streams_endpoint_url=None, http=http)
        cfg = SnapshotConfig(mode="only", segments=segments, straggler_split=split, split_factor=8, progress_interval_s=3600)
        conn = ScanConnector(table="bench", topic="bench", ddb=ddb, config=cfg, progress_stream=open(os.devnull, "w"))
        rt = BenchRuntime()
        rt.connector = conn
        await conn.validate()
        started = time.perf_counter()
        await conn.run(rt)
        elapsed = time.perf_counter() - started
        await asyncio.gather(*rt.tasks)
        assert rt.records == n, f"read {rt.records} records of {n}"
        return n / elapsed, rt.records, ddb.calls.get("Scan", 0)


def model_client(items: list[dict[str, Any]]) -> dict[str, Any]:
    model = ScanModel(items)
    # The modelled table lives in this process; keep the collector from walking it on
    # every generation-2 collection the bridge's allocations trigger (not a bridge cost).
    gc.collect()
    gc.freeze()
    return {"transport": httpx.MockTransport(model.handle), "_endpoint": "http://model"}


def line(label: str, rate: float, calls: int, base: float | None = None) -> str:
    speed = f"  x{rate / base:4.1f}" if base else ""
    return f"  {label:<44} {rate:>10,.0f} items/s  {calls:>5} Scan calls{speed}"


async def bench_model(n: int) -> None:
    print(f"\nservice model: {n:,} items, {CALL_MS:.0f} ms per call + {SEGMENT_MB_S:.0f} MB/s per segment, 1 MB pages")
    uniform = make_items(n, skew=None)
    base = None
    for seg in (1, 4, 8):
        rate, _, calls = await run_scan(model_client(uniform), segments=seg, split=False, n=n)
        base = base or rate
        print(line(f"uniform table, {seg} segment(s)", rate, calls, base))
    skewed = make_items(n, skew=0.7)
    r_plain, _, c_plain = await run_scan(model_client(skewed), segments=4, split=False, n=n)
    print(line("skewed table (70% in 1/4), 4 segments", r_plain, c_plain, base))
    r_split, _, c_split = await run_scan(model_client(skewed), segments=4, split=True, n=n)
    print(line("skewed table, 4 scanners, straggler split (32)", r_split, c_split, base))
    print(f"  straggler splitting: x{r_split / r_plain:.2f} on the skewed table")


def _moto(port: int) -> subprocess.Popen[bytes]:
    exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
    return subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def bench_moto(n: int) -> None:
    import boto3

    from devtools.devstack import free_port

    port = free_port()
    proc = _moto(port)
    url = f"http://127.0.0.1:{port}"
    try:
        ddb = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1")
        for _ in range(100):
            try:
                ddb.list_tables()
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        print(f"\nmoto server: {n:,} items (moto walks the whole table on every call; see the module doc)")
        for name, skew in (("bench", None), ("bench-skew", 0.7)):
            ddb.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
                BillingMode="PAY_PER_REQUEST",
            )
            items = make_items(n, skew=skew, moto=True)
            for i in range(0, n, 25):
                ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": x}} for x in items[i : i + 25]]})
        base = None

        async def one(table: str, seg: int, split: bool) -> tuple[float, int]:
            async with httpx.AsyncClient(timeout=120) as http:
                c, _ = make_clients(region="us-east-1", profile=None, endpoint_url=url, streams_endpoint_url=None, http=http)
                cfg = SnapshotConfig(mode="only", segments=seg, straggler_split=split, split_factor=8,
                                     page_size=500, progress_interval_s=3600)
                conn = ScanConnector(table=table, topic=table, ddb=c, config=cfg, progress_stream=open(os.devnull, "w"))
                rt = BenchRuntime()
                rt.connector = conn
                await conn.validate()
                t = time.perf_counter()
                await conn.run(rt)
                rate = n / (time.perf_counter() - t)
                await asyncio.gather(*rt.tasks)
                assert rt.records == n
                return rate, c.calls.get("Scan", 0)

        for seg in (1, 4, 8):
            rate, calls = await one("bench", seg, False)
            base = base or rate
            print(line(f"uniform table, {seg} segment(s)", rate, calls, base))
        rp, cp = await one("bench-skew", 4, False)
        print(line("skewed table (70% in 1/4), 4 segments", rp, cp, base))
        rs, cs = await one("bench-skew", 4, True)
        print(line("skewed table, 4 scanners, straggler split (32)", rs, cs, base))
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=100_000, help="items in the modelled table")
    ap.add_argument("--moto", type=int, default=0, metavar="N", help="also run against a moto server with N items")
    ap.add_argument("--segment-mb-s", type=float, default=SEGMENT_MB_S, help="modelled read rate of one segment")
    args = ap.parse_args()
    globals()["SEGMENT_MB_S"] = args.segment_mb_s
    asyncio.run(bench_model(args.items))
    if args.moto:
        asyncio.run(bench_moto(args.moto))


if __name__ == "__main__":
    main()
