"""Typed values beside the envelope: GetRecords pages → records with Avro bodies, per core.

    python -m bench.typed_bench [--quick]

Both shapes read the same pages through the Streams reader's PageReader, both in the C
transcoder's one pass (JSON bytes → Avro): the envelope's images as maps of AttributeValues,
typed images as records by the field plan compiled from the table's schema (TypedPlan; a
record not plainly in it would go the general way, none does once the schema has grown from
the first pages). Key and value bodies are written for every record in both. A last row
does the same for snapshot rows from Scan pages of the same items (SnapshotRows, the C item
writer). Runs are interleaved; the medians of records per CPU second are printed, with the
ratio typed / envelope and the CPU seconds spent. No broker: this is the part of the
pipeline the shape changes (bench/run.py measures the bridge end to end). The collector is
tuned as in the bridge process (bridge.gctune).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.workload import KEYS, REGION, STREAM_ARN, TABLE, WORKLOADS, make_pages  # noqa: E402
from bridge.gctune import tune_for_throughput  # noqa: E402
from connectors.dynamodb.records import PageReader, StreamContext  # noqa: E402
from connectors.dynamodb.schemas import KeyField  # noqa: E402
from connectors.dynamodb.snapshot_rows import SnapshotRows  # noqa: E402
from connectors.dynamodb.table import TableInfo  # noqa: E402
from connectors.dynamodb.transcode import IMPLEMENTATION  # noqa: E402
from connectors.dynamodb.typed import TypedTable, TypedValueConfig  # noqa: E402
from connectors.dynamodb.typed.plan import STREAM_AVAILABLE  # noqa: E402

KEY_FIELDS = tuple(KeyField(n, t) for n, t in KEYS)  # type: ignore[arg-type]


def _typed(shape: str) -> TypedTable | None:
    # widen: the wide items' lists mix records, strings, booleans and lists
    cfg = TypedValueConfig.model_validate({"shape": "typed", "on_conflict": "widen"})
    return TypedTable(TABLE, KEY_FIELDS, cfg) if shape == "typed" else None


def _reader(shape: str) -> Callable[[bytes], list[Any]]:
    """Stream pages: GetRecords bodies → records (PageReader)."""
    reader = PageReader(StreamContext("bench.typed", TABLE, REGION, KEY_FIELDS, STREAM_ARN, "shardId-bench-0",
                                      typed=_typed(shape)))
    return lambda body: reader.read(body)[0]


def _scanner(shape: str) -> Callable[[bytes], list[Any]]:
    """Snapshot rows: Scan response bodies → records (SnapshotRows, one segment's)."""
    table = TableInfo(TABLE, REGION, KEY_FIELDS, STREAM_ARN, "NEW_AND_OLD_IMAGES", 0)
    source = {"connector": "dynamodb", "table": TABLE, "region": REGION, "snapshot": "scan", "segment": 0,
              "total_segments": 1, "ttl_delete": False}
    rows = SnapshotRows(topic="bench.typed", table=table, source=source, typed=_typed(shape))
    return lambda body: rows.scan_page(body)[0]


def _scan_pages(stream_pages: list[bytes]) -> list[bytes]:
    """The stream pages' items (new, else old images) as Scan response bodies."""
    out = []
    for body in stream_pages:
        items = [r["dynamodb"].get("NewImage") or r["dynamodb"]["OldImage"] for r in orjson.loads(body)["Records"]]
        out.append(orjson.dumps({"Count": len(items), "Items": items, "ScannedCount": len(items)}))
    return out


def _run(read: Callable[[bytes], list[Any]], bodies: list[bytes], n_pages: int) -> tuple[int, float]:
    count = 0
    t0 = time.process_time()
    for i in range(n_pages):
        records = read(bodies[i % len(bodies)])
        for r in records:
            key = r.encoded_key if r.encoded_key is not None else r.schema.encode_key(r)
            value = r.encoded_value
            if value is None and not r.tombstone:
                value = r.schema.encode_value(r)
            count += key is not None
    return count, time.process_time() - t0


def measure(name: str, n_pages: int, reps: int, scan: bool = False) -> dict[str, Any]:
    bodies = make_pages(WORKLOADS[name], 4)
    if scan:
        bodies = _scan_pages(bodies)
    readers = {shape: (_scanner if scan else _reader)(shape) for shape in ("envelope", "typed")}
    for r in readers.values():  # warm: the typed schema grows on the first pages
        _run(r, bodies, len(bodies))
    rates: dict[str, list[float]] = {"envelope": [], "typed": []}
    cpu: dict[str, float] = {"envelope": 0.0, "typed": 0.0}
    records: dict[str, int] = {"envelope": 0, "typed": 0}
    for _ in range(reps):
        for shape, reader in readers.items():
            n, s = _run(reader, bodies, n_pages)
            rates[shape].append(n / s)
            cpu[shape] += s
            records[shape] += n
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"workload": name, "rates": med, "cpu": cpu, "records": records, "ratio": med["typed"] / med["envelope"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    tune_for_throughput()  # as the bridge process does (bridge_app/cli.py)
    pages, reps = (4, 3) if args.quick else (12, 5)
    print(f"envelope: transcoder {IMPLEMENTATION}; typed: one-pass plan {'on' if STREAM_AVAILABLE else 'OFF (Python)'}; "
          f"{reps} interleaved runs of {pages} pages of 1,000 records, medians")
    print(f"  {'workload':12s} {'envelope rec/s/core':>20s} {'typed rec/s/core':>17s} {'ratio':>6s} "
          f"{'CPU s env':>10s} {'CPU s typed':>12s}")
    for label, name, scan in (("wide", "wide", False), ("small", "small", False), ("wide (Scan)", "wide", True)):
        r = measure(name, pages, reps, scan)
        print(f"  {label:12s} {r['rates']['envelope']:>20,.0f} {r['rates']['typed']:>17,.0f} {r['ratio']:>6.2f} "
              f"{r['cpu']['envelope']:>10.2f} {r['cpu']['typed']:>12.2f}")
    print("  target: typed >= 0.80 x envelope on the wide workload (issue 20; stream pages). (Scan): snapshot rows "
          "from Scan pages, no target")


if __name__ == "__main__":
    main()
