"""Snapshot-to-stream handoff, one test per snapshot.mode, with writes during the snapshot.

A writer thread updates, inserts and deletes items while the bridge snapshots the table.
Every write carries a per-key version that only grows, so the topic's order can be judged:
afterwards the latest value per key in the topic must equal the table (initial,
concurrent, never), and for concurrent no snapshot row may follow a newer change of its key.
"""

from __future__ import annotations

import http.client
import random
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.helpers import BridgeProcess, Event, TopicReader, bridge_config, create_table, dynamodb_client, unique

pytestmark = pytest.mark.slow

N = 3000


def row(i: int, version: int) -> dict[str, Any]:
    return {"pk": {"S": f"k{i:05d}"}, "sk": {"N": "0"}, "ver": {"N": str(version)}, "pad": {"S": "x" * 40}}


class Writer:
    """Writes while the snapshot runs and remembers what the table holds."""

    def __init__(self, endpoint: str, table: str) -> None:
        self.ddb = dynamodb_client(endpoint)
        self.table = table
        self.versions: dict[int, int] = {}
        self.next_key = N
        self.writes = 0
        self.stop = threading.Event()
        self.rng = random.Random(11)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def load(self) -> None:
        for i in range(0, N, 25):
            reqs = [{"PutRequest": {"Item": row(j, 1)}} for j in range(i, min(N, i + 25))]
            self.ddb.batch_write_item(RequestItems={self.table: reqs})
        self.versions = {i: 1 for i in range(N)}

    def write_one(self) -> None:
        r = self.rng.random()
        live = list(self.versions)
        if r < 0.75 and live:
            i = self.rng.choice(live)
            self.versions[i] += 1
            self.ddb.put_item(TableName=self.table, Item=row(i, self.versions[i]))
        elif r < 0.9:
            i = self.next_key
            self.next_key += 1
            self.versions[i] = 1
            self.ddb.put_item(TableName=self.table, Item=row(i, 1))
        elif live:
            i = self.rng.choice(live)
            self.versions.pop(i)  # deleted keys are never written again
            self.ddb.delete_item(TableName=self.table, Key={"pk": {"S": f"k{i:05d}"}, "sk": {"N": "0"}})
        self.writes += 1

    def _run(self) -> None:
        while not self.stop.is_set():
            self.write_one()

    def start(self) -> Writer:
        self.thread.start()
        return self

    def finish(self, extra: int = 50) -> None:
        self.stop.set()
        self.thread.join()
        for _ in range(extra):  # changes after the snapshot, too
            self.write_one()

    def table_state(self) -> dict[str, int]:
        out = {}
        for page in self.ddb.get_paginator("scan").paginate(TableName=self.table, ConsistentRead=True):
            for it in page["Items"]:
                out[it["pk"]["S"]] = int(it["ver"]["N"])
        assert out == {f"k{i:05d}": v for i, v in self.versions.items()}
        return out


class SlowScanProxy:
    """An HTTP proxy in front of moto that answers Scan calls ``delay_s`` late.

    Real Scan pages take time to come back; in that time a stream reader can publish a
    change made after the page was read. Without the proxy, moto answers so fast that a
    broken handoff would rarely be caught.
    """

    def __init__(self, upstream: str, delay_s: float) -> None:
        up = urlparse(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request("POST", self.path, body, headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if self.headers.get("X-Amz-Target", "").endswith(".Scan"):
                    proxy.scans += 1
                    time.sleep(delay_s)
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.scans = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> SlowScanProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def latest(events: list[Event]) -> dict[str, int | None]:
    """Latest version per key in topic order; None when the key's last event deletes it."""
    out: dict[str, int | None] = {}
    for e in events:
        k = e.key["pk"]
        if e.value is None or e.op == "d":
            out[k] = None
        else:
            out[k] = int(e.after["ver"]["N"])
    return out


class Matches:
    """read_until condition: the topic's latest value per key equals ``state`` (incremental)."""

    def __init__(self, state: dict[str, int]) -> None:
        self.state = state
        self.latest: dict[str, int | None] = {}
        self.seen = 0

    def __call__(self, events: list[Event]) -> bool:
        self.latest.update(latest(events[self.seen :]))
        self.seen = len(events)
        return {k: v for k, v in self.latest.items() if v is not None} == self.state


def run_mode(
    stack: Any, tmp_path: Path, mode: str, *, aws: dict[str, Any] | None = None,
    group: dict[str, Any] | None = None, **snap: Any
) -> tuple[Writer, list[Event], str]:
    table = unique(f"handoff-{mode}")
    create_table(dynamodb_client(stack.dynamodb_endpoint), table)
    w = Writer(stack.dynamodb_endpoint, table)
    w.load()
    tcfg = {
        "name": table,
        "start_position": snap.pop("start_position", "trim_horizon"),
        "stream": {"poll_interval_ms": 50, "discovery_interval_ms": 1000},
        "snapshot": {"mode": mode, "segments": 4, "page_size": 150, "progress_interval_s": 1, **snap},
    }
    cfg = bridge_config(stack, [tcfg], name=unique(mode))
    if group is not None:
        cfg["group"] = group
    if aws:
        cfg["aws"].update(aws)
    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, f"ddb.{table}")
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        if mode == "never":
            bridge.wait_for_log("starting reader", timeout=60)
            w.start()
            time.sleep(3)  # the stream has no snapshot to overlap with; write for a while
        else:
            bridge.wait_for_log("snapshot of", timeout=60)
            w.start()
            bridge.wait_for_log(f"snapshot of {table} complete", timeout=240)
        w.finish(extra=0 if mode == "only" else 50)
        state = w.table_state()
        if mode == "only":
            reader.read_until(lambda ev: len({e.key["pk"] for e in ev}) >= 1, timeout=60, check=bridge.check)
            reader.drain(2.0)
        else:
            reader.read_until(Matches(state), timeout=90, check=bridge.check)
            reader.drain(1.0)
    finally:
        w.stop.set()
        assert bridge.stop() == 0, bridge.log()[-3000:]
        reader.close()
    print(f"\n{mode}: {w.writes} writes during the run, {len(reader.events)} events, "
          f"{sum(1 for e in reader.events if e.op == 'r')} snapshot rows")
    return w, reader.events, bridge.log()


def test_initial_snapshots_then_streams_from_recorded_positions(stack, tmp_path: Path) -> None:
    """The path of a process that runs alone (``group.enabled: false``); in a group, a single
    process too, the stream is read from its trim horizon instead (test_group_snapshot.py)."""
    w, events, log = run_mode(stack, tmp_path, "initial", group={"enabled": False, "session_timeout_ms": 3000},
                              max_items_per_second=1500)
    assert w.writes > 20, "the writer must overlap the snapshot"
    ops = [e.op for e in events]
    first_change = next(i for i, op in enumerate(ops) if op != "r")
    assert all(op == "r" for op in ops[:first_change]) and "r" not in ops[first_change:], (
        "initial: the whole snapshot comes before every change"
    )
    assert sum(1 for op in ops if op == "r") >= N * 0.9
    assert "stream position recorded at" in log


def test_concurrent_never_publishes_a_row_after_a_newer_change(stack, tmp_path: Path) -> None:
    with SlowScanProxy(stack.dynamodb_endpoint, delay_s=0.4) as proxy:
        w, events, log = run_mode(
            stack, tmp_path, "concurrent", start_position="latest", clock_skew_ms=200,
            aws={"endpoint_url": proxy.url, "streams_endpoint_url": stack.dynamodb_endpoint},
        )
    assert proxy.scans >= 20
    assert w.writes > 20
    rows = sum(1 for e in events if e.op == "r")
    assert rows >= N * 0.5, f"only {rows} snapshot rows"
    newest: dict[str, int] = {}
    checked = 0
    for e in events:
        k = e.key["pk"]
        if e.value is None:
            continue
        if e.op == "r":
            v = int(e.after["ver"]["N"])
            assert v >= newest.get(k, 0), f"row {k} v{v} published after a change to v{newest[k]}"
            checked += 1
        elif e.op == "d":
            newest[k] = max(newest.get(k, 0), int(e.before["ver"]["N"]) + 1)
        else:
            newest[k] = max(newest.get(k, 0), int(e.after["ver"]["N"]))
    changed_during = {e.key["pk"] for e in events if e.op in ("c", "u", "d")}
    assert changed_during, "no change overlapped the snapshot"
    dropped = int(log.split("rows dropped")[0].rsplit(": ", 1)[1])
    assert dropped > 0, "no chunk window saw a change: the test did not exercise the handoff"
    print(f"concurrent: {dropped} rows dropped, {checked} rows checked against newer changes")
    assert "watermark" not in "".join(str(e.key) for e in events), "watermark items must not reach the topic"


def test_only_publishes_the_snapshot_and_no_changes(stack, tmp_path: Path) -> None:
    w, events, log = run_mode(stack, tmp_path, "only")
    assert {e.op for e in events} == {"r"}
    got = {e.key["pk"]: int(e.after["ver"]["N"]) for e in events}
    # Keys that existed throughout are all there, each with a version it had during the run.
    for i in range(N):
        k = f"k{i:05d}"
        if i in w.versions:
            assert k in got or w.versions[i] > 1, k
        if k in got:
            assert 1 <= got[k] <= w.versions.get(i, got[k])


def test_never_streams_only(stack, tmp_path: Path) -> None:
    w, events, log = run_mode(stack, tmp_path, "never")
    assert "r" not in {e.op for e in events}
    assert "snapshot of" not in log


def test_initial_sigkill_mid_snapshot_keeps_the_recorded_positions(stack, tmp_path: Path) -> None:
    from bridge.offsets import OffsetStore

    table = unique("handoff-restart")
    create_table(dynamodb_client(stack.dynamodb_endpoint), table)
    w = Writer(stack.dynamodb_endpoint, table)
    w.load()
    tcfg = {
        "name": table,
        "stream": {"poll_interval_ms": 50, "discovery_interval_ms": 1000},
        "snapshot": {"mode": "initial", "segments": 2, "page_size": 100, "max_items_per_second": 400},
    }
    # The recorded positions are the path of a process that runs alone (group.enabled: false).
    cfg = bridge_config(stack, [tcfg], name=unique("initial-kill"), group={"enabled": False, "session_timeout_ms": 3000})
    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, f"ddb.{table}")
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        bridge.wait_for_log("may start", timeout=60)
        w.start()
        bridge.wait_for_log("stream position recorded at", timeout=60)
        reader.read_until(lambda ev: len(ev) >= N // 3, timeout=60, check=bridge.check)
        bridge.stop(signal.SIGKILL)
        store = OffsetStore({"bootstrap.servers": stack.kafka_bootstrap}, f"{cfg['name']}-offsets", cfg["name"])
        store.load(timeout_s=10)
        shard_offsets = [store.offset(p) for p in store.partitions() if "shard" in p]
        assert shard_offsets and all(o.get("at") and o.get("seq") is None for o in shard_offsets), shard_offsets
        assert any("handoff" in p for p in store.partitions())

        bridge = BridgeProcess.write(tmp_path / "second", cfg).start()
        bridge.wait_for_log(f"snapshot of {table} complete", timeout=240)
        w.finish()
        state = w.table_state()
        reader.read_until(Matches(state), timeout=90, check=bridge.check)
        reader.drain(1.0)
    finally:
        w.stop.set()
        bridge.stop()
        reader.close()
    log = bridge.log()
    assert "at AT_SEQUENCE_NUMBER" in log, "the restart reads the shard from its recorded position"
    assert "positions were recorded at" in log
    ops = [e.op for e in reader.events]
    first_change = next(i for i, op in enumerate(ops) if op != "r")
    assert "r" not in ops[first_change:], "the snapshot still precedes every change after the restart"
