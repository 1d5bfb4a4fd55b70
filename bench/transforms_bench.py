"""Transforms beside the envelope and typed values: GetRecords pages → records with Avro bodies, per core.

    python -m bench.transforms_bench [--quick]

As ``bench/typed_bench.py`` (the same pages through the Streams reader's PageReader, key and
value bodies written for every record, runs interleaved, medians of records per CPU second),
with three more rows through the transform stage the worker runs (``bridge.transforms``):
typed + a filter/select/rename chain (written by the typed fast path from the images),
the same with a field inserted (the structured path: decode, steps, encode), and typed + a
user's Python transform (an identity function: the stage's cost around a user's code).
Ratios are against the envelope.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.typed_bench import _reader  # noqa: E402
from bench.workload import WORKLOADS, make_pages  # noqa: E402
from bridge.gctune import tune_for_throughput  # noqa: E402
from bridge.transforms import TransformStage, parse_transforms  # noqa: E402
from connectors.dynamodb.transforms import expand, fast_plan, layout  # noqa: E402

CHAINS = {  # filter + select + rename: the typed fast path writes these from the images
    "wide": [{"filter": {"op": ["c", "u"], "where": {"after.active": True}}},
             {"select": ["op as event", "after.pk as customer", "after.email", "after.balance", "after.name"]},
             {"rename": {"email": "customer_email"}}],
    "small": [{"filter": {"op": ["c", "u"], "where": {"after.count": {"gte": 1}}}},
              {"select": ["op as event", "after.pk as key", "after.count"]},
              {"rename": {"count": "n"}}],
}


def identity(record: Any) -> Any:
    return record


def _stage(chain: list[Any]) -> TransformStage:
    return TransformStage(parse_transforms(expand(chain)), layout(True), fast=fast_plan)


def _structured(name: str) -> list[Any]:
    """The same chain and a field added at its end: no fast writer takes it (decode, steps, encode)."""
    return [*CHAINS[name], {"insert_field": {"pipeline": "bench"}}]


def _run(read: Callable[[bytes], list[Any]], stage: TransformStage | None, bodies: list[bytes], n_pages: int
         ) -> tuple[int, float]:
    """Records read (before the chain's filter: the rate is of the input), CPU seconds."""
    count = 0
    t0 = time.process_time()
    for i in range(n_pages):
        records = read(bodies[i % len(bodies)])
        count += len(records)
        if stage is not None:
            records = asyncio.run(stage.apply(records))
        for r in records:
            key = r.encoded_key if r.encoded_key is not None else r.schema.encode_key(r)
            value = r.encoded_value
            if value is None and not r.tombstone:
                value = r.schema.encode_value(r)
            assert key is not None
    return count, time.process_time() - t0


def measure(name: str, n_pages: int, reps: int) -> dict[str, Any]:
    bodies = make_pages(WORKLOADS[name], 4)
    rows: dict[str, tuple[Callable[[bytes], list[Any]], TransformStage | None]] = {
        "envelope": (_reader("envelope"), None),
        "typed": (_reader("typed"), None),
        "typed+chain": (_reader("typed"), _stage(CHAINS[name])),
        "typed+structured": (_reader("typed"), _stage(_structured(name))),
        "typed+python": (_reader("typed"), _stage([{"python": "bench.transforms_bench:identity"}])),
    }
    for reader, stage in rows.values():  # warm: the typed schema grows on the first pages
        _run(reader, stage, bodies, len(bodies))
    rates: dict[str, list[float]] = {k: [] for k in rows}
    cpu = dict.fromkeys(rows, 0.0)
    for _ in range(reps):
        for k, (reader, stage) in rows.items():
            n, s = _run(reader, stage, bodies, n_pages)
            rates[k].append(n / s)
            cpu[k] += s
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"workload": name, "rates": med, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    tune_for_throughput()
    pages, reps = (2, 3) if args.quick else (6, 5)
    print(f"{reps} interleaved runs of {pages} pages of 1,000 records, medians of records (read) per CPU second")
    cols = ("envelope", "typed", "typed+chain", "typed+structured", "typed+python")
    print(f"  {'workload':8s} " + " ".join(f"{c + ' rec/s':>18s}" for c in cols) + "   ratios vs envelope")
    for name in ("wide", "small"):
        r = measure(name, pages, reps)
        env = r["rates"]["envelope"]
        print(f"  {name:8s} " + " ".join(f"{r['rates'][c]:>18,.0f}" for c in cols) + "   "
              + " ".join(f"{c}={r['rates'][c] / env:.2f}" for c in cols[1:]))
        python_us = 1e6 / r["rates"]["typed+python"] - 1e6 / r["rates"]["typed"]
        print(f"  {'':8s} CPU s: " + " ".join(f"{c}={r['cpu'][c]:.2f}" for c in cols)
              + f"; a Python transform costs {python_us:.1f} us per record over typed")
    print("  target: typed+chain >= 0.70 x envelope (issue 21 item 5)")


if __name__ == "__main__":
    main()
