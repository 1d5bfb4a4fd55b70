#!/usr/bin/env python
"""Per-table overhead: one bridge process reading 1 table vs N tables, same shards and records.

    python bench/workers.py --tables 50              # 1 vs 50 tables, 100 shards, 30,000 records, 3 rounds
    python bench/tables.py --tables 50 --reps 5

Each run serves its tables from one Streams double endpoint in this process (``add_table``)
and starts ``ddb-kafka-bridge run`` (its own process) on them; the total shard count is the
same for both sides (``--table-shards`` split evenly over the tables), and so is the backlog
(``--table-records`` changes, spread evenly over the tables' keys). Measured from outside:

- **start-up**: spawn until every shard had its first GetRecords, and the CPU it took;
- **first change**: one change per table, until all are acknowledged: each table's first
  record registers its topic's key and value schemas (two registry round trips, once);
- **idle**: the bridge's CPU over ``--idle-s`` seconds with every shard polled and empty;
- **catch-up**: the backlog appears at once (written while every table's lock is held, so
  no reader sees half of it) and the clock runs until the bridge's own metrics say every
  record was produced and acknowledged: records/s, CPU seconds, records per CPU second;
- **RSS** at the end (and its peak, VmHWM).

Runs alternate 1 table / N tables (and swap the order every round), and the table prints
medians and the N-table/1-table ratio, so the overhead is read against a baseline measured
in the same run on the same (shared) machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.endpoints import add_endpoint_arguments, endpoints
from bench.scale import Bridge, _free_port, cpu_seconds
from tests.doubles.streams_double import StreamsDouble


def _rss_mib(pid: int) -> tuple[float, float]:
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line[:5]] = int(line.split()[1]) / 1024
    return out["VmRSS"], out["VmHWM"]


def _config(name: str, bootstrap: str, registry: str, double: StreamsDouble, tables: list[StreamsDouble],
            port: int, partitions: int) -> dict[str, Any]:
    stream = {"poll_interval_ms": 250, "discovery_interval_ms": 5000}
    return {
        "name": name,
        "kafka": {"bootstrap.servers": bootstrap},
        "schema_registry": {"url": registry},
        "aws": {"region": "us-east-1", "endpoint_url": double.endpoint_url,
                "streams_endpoint_url": double.endpoint_url},
        "topic_prefix": name,
        "tables": [{"name": t.table, "stream": dict(stream)} for t in tables],
        "topic_creation": {"partitions": partitions},
        "offsets": {"flush_interval_ms": 1000},
        "metrics": {"port": port, "host": "127.0.0.1"},
        "log_level": "WARNING",
        "shutdown_timeout_s": 20,
    }


def _first_reads_done(double: StreamsDouble, shard_ids: set[str]) -> float | None:
    first: dict[str, float] = {}
    for t, op, shard, _ in list(double.request_log):
        if op == "GetRecords" and shard in shard_ids and shard not in first:
            first[shard] = t
    return max(first.values()) if len(first) == len(shard_ids) else None


def _wait_acked(bridge: Bridge, n: int, deadline: float, what: str) -> None:
    """Until the bridge's metrics say ``n`` records were produced and none is unacknowledged."""
    while not (bridge.metric("bridge_records_produced_total") >= n and bridge.metric("bridge_records_in_flight") == 0):
        bridge.check()
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not finish in time")
        time.sleep(0.05)


def run_once(n_tables: int, args: argparse.Namespace, bootstrap: str, registry: str, tmp: Path) -> dict[str, Any]:
    """One bridge process on ``n_tables`` tables holding ``args.table_shards`` shards between them."""
    if args.table_shards % n_tables:
        raise SystemExit(f"--table-shards {args.table_shards} is not a multiple of {n_tables} tables")
    uid = uuid.uuid4().hex[:6]
    per = args.table_shards // n_tables
    double = StreamsDouble(table=f"tb{uid}-000", shards=per, seed=1).start()
    tables = [double] + [double.add_table(f"tb{uid}-{i:03d}", shards=per) for i in range(1, n_tables)]
    port = _free_port()
    # Partitions per topic: --table-partitions, or with --same-partitions as many as keep the total
    # equal to the widest run's, so a difference is the tables', not the partitions' count.
    partitions = args.table_partitions
    if args.same_partitions:
        partitions = args.table_partitions * int(args.tables) // n_tables
    cfg = _config(f"tables-{n_tables}-{uid}", bootstrap, registry, double, tables, port, partitions)
    bridge = Bridge.start(cfg, tmp, ROOT)
    pid = bridge.proc.pid
    shard_ids = {s.shard_id for t in tables for s in t.shards}
    try:
        deadline = time.monotonic() + 120
        while (done := _first_reads_done(double, shard_ids)) is None:
            bridge.check()
            if time.monotonic() > deadline:
                raise SystemExit("not every shard was read within 120 s of start")
            time.sleep(0.1)
        startup_s, startup_cpu = done - bridge.spawned, cpu_seconds(pid)
        c0, t0 = cpu_seconds(pid), time.monotonic()
        for t in tables:
            t.put({"pk": {"S": "first"}}, new_image={"pk": {"S": "first"}})
        _wait_acked(bridge, n_tables, t0 + 120, "the first change of every table")
        first_s, first_cpu = time.monotonic() - t0, cpu_seconds(pid) - c0
        time.sleep(1.0)  # past the start-up burst (topic creation, first listings)
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle_s)
        idle_pct = 100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)

        body = "x" * args.table_value_bytes
        keys_per_table = max(1, 5000 // n_tables)
        with contextlib.ExitStack() as held:  # the backlog appears at once, to every reader
            for t in tables:
                held.enter_context(t._lock)
            for i in range(args.table_records):
                t = tables[i % n_tables]
                pk = f"k{(i // n_tables) % keys_per_table:05d}"
                t.put({"pk": {"S": pk}}, new_image={"pk": {"S": pk}, "n": {"N": str(i)}, "body": {"S": body}})
            c0, t0 = cpu_seconds(pid), time.monotonic()
        _wait_acked(bridge, n_tables + args.table_records, t0 + 600, f"the catch-up ({n_tables} tables)")
        wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - c0
        rss, hwm = _rss_mib(pid)
        return {"tables": n_tables, "partitions": partitions * n_tables, "shards": args.table_shards, "records": args.table_records, "startup_s": startup_s,
                "startup_cpu_s": startup_cpu, "first_s": first_s, "first_cpu_s": first_cpu, "idle_pct": idle_pct, "wall_s": wall, "cpu_s": cpu,
                "rate": args.table_records / wall, "per_cpu_s": args.table_records / cpu, "rss_mib": rss, "hwm_mib": hwm}
    finally:
        bridge.stop()
        double.stop()


COLUMNS = [  # (key, heading, format)
    ("rate", "records/s", "{:,.0f}"),
    ("cpu_s", "catch-up CPU s", "{:.2f}"),
    ("per_cpu_s", "records per CPU s", "{:,.0f}"),
    ("startup_s", "start-up s", "{:.1f}"),
    ("startup_cpu_s", "start-up CPU s", "{:.2f}"),
    ("first_s", "first change of every table s", "{:.2f}"),
    ("first_cpu_s", "its CPU s", "{:.2f}"),
    ("idle_pct", "idle, % of a core", "{:.1f}"),
    ("rss_mib", "RSS MiB", "{:.0f}"),
    ("hwm_mib", "peak RSS MiB", "{:.0f}"),
]


def summary(results: list[dict[str, Any]], counts: list[int]) -> list[str]:
    """A markdown table: medians per table count, then each count's ratio to the first."""
    med = {n: {k: statistics.median(r[k] for r in results if r["tables"] == n) for k, _, _ in COLUMNS}
           for n in counts}
    runs = {n: sum(1 for r in results if r["tables"] == n) for n in counts}
    lines = ["| tables (shards each, partitions in all) | runs | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in COLUMNS) + " |"]
    shards = results[0]["shards"]
    for n in counts:
        parts = results[[r["tables"] for r in results].index(n)]["partitions"]
        lines.append(f"| {n} ({shards // n}, {parts}) | {runs[n]} | " + " | ".join(f.format(med[n][k]) for k, _, f in COLUMNS) + " |")
    base = counts[0]
    for n in counts[1:]:
        lines.append(f"| {n} / {base} | | " + " | ".join(
            f"{med[n][k] / med[base][k]:.2f}×" if med[base][k] else "-" for k, _, _ in COLUMNS) + " |")
    return lines


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    counts = [1, int(args.tables)]
    results: list[dict[str, Any]] = []
    with endpoints(args, "bench-tables-") as (bootstrap, registry):
        print(f"tables: 1 vs {counts[1]} tables, {args.table_shards} shards and {args.table_records:,} changes, "
              f"{args.table_partitions} partition(s) per topic"
              f"{' (the 1-table topic as many as all N have)' if args.same_partitions else ''} "
              f"({args.table_value_bytes} B values) in both, {args.reps} interleaved rounds, broker {args.broker}; "
              f"{os.cpu_count()} CPUs shared by the bridge, the double, the broker and anything else running",
              flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-tables-") as tmp:
            for rnd in range(args.reps):
                for n in counts if rnd % 2 == 0 else counts[::-1]:
                    r = run_once(n, args, bootstrap, registry, Path(tmp))
                    results.append(r)
                    print(f"  round {rnd + 1}, {n:>3} table(s): {r['rate']:>7,.0f} records/s, {r['cpu_s']:.2f} CPU s "
                          f"({r['per_cpu_s']:,.0f}/CPU s); start-up {r['startup_s']:.1f} s / {r['startup_cpu_s']:.2f} "
                          f"CPU s; first change per table {r['first_s']:.2f} s / {r['first_cpu_s']:.2f} CPU s; "
                          f"idle {r['idle_pct']:.1f}% of a core; RSS {r['rss_mib']:.0f} MiB "
                          f"(peak {r['hwm_mib']:.0f})", flush=True)
    print("\n".join(summary(results, counts)))
    return results


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--tables", type=int, help="compare 1 table with this many (same shards and records)")
    ap.add_argument("--table-shards", dest="table_shards", type=int, default=100)
    ap.add_argument("--table-records", dest="table_records", type=int, default=30_000)
    ap.add_argument("--table-value-bytes", dest="table_value_bytes", type=int, default=200)
    ap.add_argument("--table-partitions", type=int, default=2, help="partitions per table's topic")
    ap.add_argument("--same-partitions", action="store_true",
                    help="give the 1-table run as many partitions as the N tables have between them")
    ap.add_argument("--idle-s", type=float, default=5.0)
    ap.add_argument("--reps", type=int, default=3, help="interleaved rounds (medians are reported)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    add_endpoint_arguments(ap)
    args = ap.parse_args()
    if not args.tables:
        ap.error("--tables N is required")
    run(args)


if __name__ == "__main__":
    main()
