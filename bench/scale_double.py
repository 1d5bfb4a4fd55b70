#!/usr/bin/env python
"""A lean DynamoDB Streams endpoint for the scale benchmark: N idle shards, N with a backlog.

Why not ``tests/doubles/streams_double.py``: that double models faults and lineage with a
thread per connection and a lock around a full model; at thousands of GetRecords a second
it would be the bottleneck and make the bridge look slow (or, worse, fast, because a slow
endpoint slows the bridge's request rate). This one runs in its own process on asyncio and
speaks only what a reader at scale needs: DescribeTable, DescribeStream (pages of 100),
GetShardIterator and GetRecords over HTTP/1.1 keep-alive, with the real JSON bodies and
iterator tokens of realistic length. It keeps the timestamps of every GetRecords per shard
and of every DescribeStream listing, so the benchmark can judge per-shard poll intervals,
start-up and discovery from the server's side (CLOCK_MONOTONIC is one clock for every
process on the machine).

    python -m bench.scale_double --idle 1000                     # prints "PORT <n>", serves until killed
    python -m bench.scale_double --backlog-shards 256 --backlog-records 128000

Control (plain HTTP on the same port): ``GET /stats?since=T`` (JSON summary of the calls
since monotonic time T), ``POST /release`` (the backlog shards receive their records now),
``GET /ready``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench.workload import KEYS, REGION, TABLE, WORKLOADS, page_records  # noqa: E402

ACCOUNT = "123456789012"
STREAM_LABEL = "2024-01-01T00:00:00.000"
STREAM_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}/stream/{STREAM_LABEL}"
_PAD = "A" * 220  # real iterators are ~300 characters of opaque base64


class Shard:
    __slots__ = ("id", "pages", "asks", "iterators")

    def __init__(self, sid: str) -> None:
        self.id = sid
        self.pages: list[bytes] = []  # the records of each page, pre-encoded as the "Records" array's inside
        self.asks: list[float] = []  # monotonic time of every GetRecords
        self.iterators = 0


class ScaleStream:
    """One table's stream: ``idle`` shards that never receive a record and ``backlog`` shards
    that receive ``backlog_records`` between them when released (pages of ``per_page``)."""

    def __init__(self, idle: int, backlog_shards: int, backlog_records: int, per_page: int, workload: str) -> None:
        self.shards: list[Shard] = []
        for i in range(backlog_shards):
            self.shards.append(Shard(f"shardId-00000001700000000000-b{i:07d}"))
        for i in range(idle):
            self.shards.append(Shard(f"shardId-00000001700000000000-i{i:07d}"))
        self.by_id = {s.id: s for s in self.shards}
        self.backlog = self.shards[:backlog_shards]
        self.backlog_records = backlog_records
        self.per_page = per_page
        self.workload = WORKLOADS[workload]
        self.listings: list[tuple[float, float | None]] = []  # (start of a listing, end)
        self.describe_calls = 0
        self.records_served = 0
        self.messages_released = 0
        self.released_at: float | None = None
        self.started = time.monotonic()

    # ---- control

    def release(self) -> dict[str, Any]:
        """Give every backlog shard its share of the records: pages cycled from a few distinct ones."""
        if not self.backlog:
            return {"records": 0}
        per_shard = self.backlog_records // len(self.backlog)
        distinct = []
        messages = []
        for p in range(4):
            recs = page_records(self.workload, p, self.per_page, seed=13)
            distinct.append(orjson.dumps(recs)[1:-1])
            messages.append(sum(2 if r["eventName"] == "REMOVE" else 1 for r in recs))
        total = 0
        for s in self.backlog:
            pages = -(-per_shard // self.per_page)
            s.pages = [distinct[i % len(distinct)] for i in range(pages)]
            total += pages * self.per_page
            self.messages_released += sum(messages[i % len(messages)] for i in range(pages))
        self.released_at = time.monotonic()
        return {"records": total, "messages": self.messages_released}

    def stats(self, since: float) -> dict[str, Any]:
        now = time.monotonic()
        firsts = [s.asks[0] for s in self.shards if s.asks]
        per_shard_mean: list[float] = []
        intervals: list[float] = []
        calls = 0
        for s in self.shards:
            win = [t for t in s.asks if t >= since]
            calls += len(win)
            gaps = [b - a for a, b in zip(win, win[1:])]
            intervals.extend(gaps)
            if gaps:
                per_shard_mean.append(sum(gaps) / len(gaps))
        listings = [(a, b) for a, b in self.listings if a >= since]
        starts = [a for a, _ in listings]
        return {
            "now": now,
            "since": since,
            "shards": len(self.shards),
            "asked": len(firsts),
            "first_ask_min": min(firsts) if firsts else None,
            "first_ask_max": max(firsts) if len(firsts) == len(self.shards) else None,
            "getrecords": calls,
            "per_shard_mean_interval": _summary(per_shard_mean),
            "intervals": _summary(intervals),
            "shards_with_two_asks": len(per_shard_mean),
            "listing_starts": starts,
            "listing_durations": [b - a for a, b in listings if b is not None],
            "listing_periods": [b - a for a, b in zip(starts, starts[1:])],
            "describe_calls": self.describe_calls,
            "records_served": self.records_served,
            "messages_released": self.messages_released,
            "released_at": self.released_at,
            "iterators": sum(s.iterators for s in self.shards),
        }

    # ---- the API

    def handle(self, target: str, body: bytes) -> tuple[int, bytes]:
        op = target.rsplit(".", 1)[-1]
        params = orjson.loads(body) if body else {}
        if op == "GetRecords":
            return 200, self.get_records(params)
        if op == "GetShardIterator":
            sid = params["ShardId"]
            shard = self.by_id.get(sid)
            if shard is None:
                return _error("ResourceNotFoundException", "Shard does not exist")
            shard.iterators += 1
            kind = params.get("ShardIteratorType")
            pos = 0
            if kind == "LATEST":
                pos = len(shard.pages)
            return 200, orjson.dumps({"ShardIterator": self._token(shard, pos)})
        if op == "DescribeStream":
            return 200, self.describe(params)
        if op == "DescribeTable":
            return 200, orjson.dumps({"Table": {
                "TableName": TABLE, "TableStatus": "ACTIVE", "ItemCount": 0,
                "TableArn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}",
                "KeySchema": [{"AttributeName": n, "KeyType": "HASH" if i == 0 else "RANGE"}
                              for i, (n, _) in enumerate(KEYS)],
                "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in KEYS],
                "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
                "LatestStreamArn": STREAM_ARN, "LatestStreamLabel": STREAM_LABEL,
            }})
        return _error("UnknownOperationException", f"Unknown operation {target}")

    def _token(self, shard: Shard, pos: int) -> str:
        return f"{STREAM_ARN}|1|{shard.id}|{pos}|{_PAD}"

    def get_records(self, params: dict[str, Any]) -> bytes:
        _, _, sid, pos_text, _ = params["ShardIterator"].split("|", 4)
        shard = self.by_id[sid]
        shard.asks.append(time.monotonic())
        pos = int(pos_text)
        nxt = self._token(shard, pos + 1 if pos < len(shard.pages) else pos)
        if pos < len(shard.pages):
            self.records_served += self.per_page
            return b'{"Records":[' + shard.pages[pos] + b'],"NextShardIterator":"' + nxt.encode() + b'"}'
        return b'{"Records":[],"NextShardIterator":"' + nxt.encode() + b'"}'

    def describe(self, params: dict[str, Any]) -> bytes:
        self.describe_calls += 1
        start = params.get("ExclusiveStartShardId")
        now = time.monotonic()
        if start is None:
            self.listings.append((now, None))
            i = 0
        else:
            i = next((n + 1 for n, s in enumerate(self.shards) if s.id == start), len(self.shards))
        page = self.shards[i : i + 100]
        desc: dict[str, Any] = {
            "StreamArn": STREAM_ARN, "StreamLabel": STREAM_LABEL, "StreamStatus": "ENABLED",
            "StreamViewType": "NEW_AND_OLD_IMAGES", "TableName": TABLE,
            "KeySchema": [{"AttributeName": n, "KeyType": "HASH" if k == 0 else "RANGE"} for k, (n, _) in enumerate(KEYS)],
            "Shards": [{"ShardId": s.id, "SequenceNumberRange": {"StartingSequenceNumber": "100000000000000000000"}}
                       for s in page],
        }
        if i + 100 < len(self.shards):
            desc["LastEvaluatedShardId"] = page[-1].id
        elif self.listings and self.listings[-1][1] is None:
            self.listings[-1] = (self.listings[-1][0], now)
        return orjson.dumps({"StreamDescription": desc})


def _error(code: str, message: str) -> tuple[int, bytes]:
    return 400, orjson.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})


def _summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    s = sorted(values)
    q = statistics.quantiles(s, n=100, method="inclusive") if len(s) > 1 else [s[0]] * 99
    return {"n": len(s), "min": s[0], "p1": q[0], "p50": q[49], "p99": q[98], "max": s[-1], "mean": sum(s) / len(s)}


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}


class _Http(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; requests are read whole (Content-Length bodies only)."""

    def __init__(self, stream: ScaleStream) -> None:
        self.stream = stream
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            method, path, _ = head[0].split(" ", 2)
            self.respond(*self.dispatch(method, path, headers, body))

    def dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        target = headers.get("x-amz-target")
        if target:
            if not headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 Credential="):
                return _error("MissingAuthenticationTokenException", "Request is missing Authentication Token")
            return self.stream.handle(target, body)
        url = urlsplit(path)
        if url.path == "/stats":
            since = float(parse_qs(url.query).get("since", ["0"])[0])
            return 200, json.dumps(self.stream.stats(since)).encode()
        if url.path == "/release" and method == "POST":
            return 200, json.dumps(self.stream.release()).encode()
        if url.path == "/ready":
            return 200, b"{}"
        return 404, b"{}"

    def respond(self, status: int, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: %d\r\n"
            b"x-amzn-RequestId: BENCH\r\n\r\n%s" % (status, _REASONS.get(status, b"?"), len(body), body)
        )


async def serve(stream: ScaleStream, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Http(stream), "127.0.0.1", port, backlog=4096)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle", type=int, default=0, help="open shards that never receive a record")
    ap.add_argument("--backlog-shards", type=int, default=0)
    ap.add_argument("--backlog-records", type=int, default=0, help="records over all backlog shards, on /release")
    ap.add_argument("--per-page", type=int, default=500, help="records per GetRecords page (wide: ~0.8 MB)")
    ap.add_argument("--workload", default="wide", choices=sorted(WORKLOADS))
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    if args.idle + args.backlog_shards < 1:
        ap.error("at least one shard")
    stream = ScaleStream(args.idle, args.backlog_shards, args.backlog_records, args.per_page, args.workload)
    try:
        asyncio.run(serve(stream, args.port))
    except KeyboardInterrupt:
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
