#!/usr/bin/env python
"""Scale-out: throughput of 1, 2, 3 ... bridge processes sharing one stream, in one run.

    python bench/workers.py --workers 1,2,3          # own local stack (Apache Kafka: groups need it)
    python bench/run.py --workers 1,2,3              # the same, from the main bench
    python bench/workers.py --tables 50              # one process: 1 table vs 50 (bench/tables.py)

For each worker count: a fresh Streams double (``--shards`` shards, served from this process),
that many ``ddb-kafka-bridge run`` processes with ``group.enabled`` and one name; once the
group has settled (every coordination partition owned), ``--records`` changes are written
to the double before the processes start, and its GetRecords answers are held back
(a "slow" fault) until the group has settled (every coordination partition owned); then the
clock runs until the topic holds all of them (the sum of its partitions' high watermarks).
Prints records/s and the time the group took to settle.

The double answers from one Python thread in this process and the machine's cores are
shared by everything, so the numbers say how the bridge spreads, not its ceiling: compare
them with each other and with the cores available (``os.cpu_count()``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, TopicPartition

from bench.endpoints import add_endpoint_arguments, endpoints
from tests.doubles.streams_double import StreamsDouble

PARTITIONS = 12


def _config(name: str, bootstrap: str, registry: str, double: StreamsDouble, delivery: str) -> dict[str, Any]:
    return {
        "name": name,
        "kafka": {"bootstrap.servers": bootstrap},
        "schema_registry": {"url": registry},
        "aws": {"region": "us-east-1", "endpoint_url": double.endpoint_url,
                "streams_endpoint_url": double.endpoint_url},
        "tables": [{"name": double.table, "stream": {"poll_interval_ms": 100, "discovery_interval_ms": 1000}}],
        "topic_creation": {"partitions": 6},
        "offsets": {"flush_interval_ms": 500},
        "delivery": delivery,
        "group": {"enabled": True, "partitions": PARTITIONS, "session_timeout_ms": 6000},
        "log_level": "INFO",
    }


def _topic_records(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:6]}"})
    try:
        meta = c.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                   for p in meta.partitions)
    finally:
        c.close()


def _owned(logs: list[Path]) -> int:
    """Coordination partitions owned across the workers, from their newest 'owning N of P' lines."""
    total = 0
    for log in logs:
        lines = re.findall(r"owning (\d+) of \d+", log.read_text(errors="replace")) if log.exists() else []
        total += int(lines[-1]) if lines else 0
    return total


def run_count(workers: int, args: argparse.Namespace, bootstrap: str, registry: str, tmp: Path) -> dict[str, Any]:
    env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    double = StreamsDouble(table=f"scale-{uuid.uuid4().hex[:6]}", shards=args.shards).start()
    name = f"scale-{workers}-{uuid.uuid4().hex[:6]}"
    cfg_path = tmp / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(name, bootstrap, registry, double, args.delivery)))
    logs = [tmp / f"{name}-{i}.log" for i in range(workers)]
    procs = []
    body = "x" * args.value_bytes
    t0 = time.monotonic()
    for i in range(args.records):
        pk = f"k{i % 5000:05d}"
        double.put({"pk": {"S": pk}}, new_image={"pk": {"S": pk}, "n": {"N": str(i)}, "body": {"S": body}},
                   event="INSERT")
    written = time.monotonic() - t0
    topic = f"ddb.{double.table}"
    hold = double.faults.add("slow", op="GetRecords", times=None, delay=0.2)
    t_start = time.monotonic()
    try:
        for log in logs:
            with log.open("ab") as out:
                procs.append(subprocess.Popen([sys.executable, "-m", "bridge_app.cli", "run", "-c", str(cfg_path)],
                                              stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT))
        while _owned(logs) < PARTITIONS or any("owning" not in log.read_text(errors="replace") for log in logs):
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a worker exited: {[log.read_text()[-2000:] for log in logs]}")
            if time.monotonic() - t_start > 120:
                raise SystemExit(f"the group did not settle in 120 s (owned {_owned(logs)} of {PARTITIONS})")
            time.sleep(0.2)
        settled = time.monotonic() - t_start
        double.faults.clear()
        del hold
        t0 = time.monotonic()
        before = _topic_records(bootstrap, topic)
        while (n := _topic_records(bootstrap, topic)) < args.records:
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a worker exited: {[log.read_text()[-2000:] for log in logs]}")
            if time.monotonic() - t0 > 600:
                raise SystemExit(f"only {n} of {args.records} records arrived in 600 s")
            time.sleep(0.1)
        took = time.monotonic() - t0
        counted = args.records - before
        return {"workers": workers, "records": counted, "seconds": took, "rate": counted / took,
                "settled_s": settled, "write_s": written, "before": before}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        double.stop()


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.broker == "tansu" and not (args.bootstrap and args.registry):
        # Records are counted by the high watermark, which tansu leaves short of a batch.
        raise SystemExit("bench/workers.py: tansu's high watermark stops short of multi-record batches, so the "
                         "count never completes; run it on Apache Kafka (--broker kafka, the default)")
    counts = [int(x) for x in str(args.workers).split(",")]
    results = []
    with endpoints(args, "bench-workers-") as (bootstrap, registry):
        print(f"scale-out: {args.records:,} changes over {args.shards} shards, {args.delivery}, "
              f"{PARTITIONS} coordination partitions, {os.cpu_count()} CPUs shared by everything", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
            for k in counts:
                r = run_count(k, args, bootstrap, registry, Path(tmp))
                results.append(r)
                print(f"  {k} worker(s): {r['rate']:>8,.0f} records/s  ({r['records']:,} read after the group "
                      f"settled, in {r['seconds']:.1f} s; {r['before']:,} before; group settled in "
                      f"{r['settled_s']:.1f} s)", flush=True)
    base = results[0]["rate"] if results else 0
    if base:
        print("  speed-up: " + ", ".join(f"{r['workers']}: {r['rate'] / base:.2f}x" for r in results))
    return results


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--workers", default="1,2,3", help="worker counts to run, e.g. 1,2,3")
    ap.add_argument("--scale-records", dest="records", type=int, default=60_000)
    ap.add_argument("--scale-shards", dest="shards", type=int, default=16)
    ap.add_argument("--scale-value-bytes", dest="value_bytes", type=int, default=200)
    ap.add_argument("--delivery", choices=("at-least-once", "exactly-once"), default="at-least-once")
    from bench import tables

    tables.add_arguments(ap)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    add_endpoint_arguments(ap)
    args = ap.parse_args()
    if args.tables:
        from bench import tables

        tables.run(args)
        return
    run(args)


if __name__ == "__main__":
    main()
