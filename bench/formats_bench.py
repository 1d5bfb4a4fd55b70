"""Record formats beside the Avro envelope: GetRecords pages → framed key and value bytes, per core.

    python -m bench.formats_bench [--quick]

Every format reads the same pages through the Streams reader's PageReader (the one-pass C
transcoder writes the envelope's Avro; typed values come from the typed writer), then writes
each record as the serializer does for that format: ``avro`` frames the bodies as they are; ``json``, ``json_schema`` and
``protobuf`` convert them (``bridge/serde/formats``: decode the Avro, write the format).
Runs are interleaved; medians of records per CPU second are printed with the ratio to Avro
and the CPU seconds spent. No broker: producing costs every format the same per byte; the
bytes per record are printed beside, since they differ.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.workload import KEYS, REGION, STREAM_ARN, TABLE, WORKLOADS, make_pages  # noqa: E402
from bridge.gctune import tune_for_throughput  # noqa: E402
from bridge.serde.formats import FORMATS, FormatOptions, TopicFormats  # noqa: E402
from bridge.serde.serializer import RecordSerializer  # noqa: E402
from connectors.dynamodb.records import PageReader, StreamContext  # noqa: E402
from connectors.dynamodb.schemas import KeyField  # noqa: E402
from connectors.dynamodb.transcode import IMPLEMENTATION, frame_records  # noqa: E402

KEY_FIELDS = tuple(KeyField(n, t) for n, t in KEYS)  # type: ignore[arg-type]
TOPIC = "bench.formats"


class _Ids:
    """A registry that hands out ids without a server (what is measured is the writing)."""

    def register(self, subject: str, schema: str, schema_type: str = "AVRO") -> int:
        return 1

    def lookup(self, subject: str, schema: str, schema_type: str = "AVRO") -> Any:
        return None


def _serializer(fmt: str) -> RecordSerializer:
    options = FormatOptions(fmt)  # type: ignore[arg-type]
    formats = TopicFormats(options, options)
    return RecordSerializer(_Ids(), frame_encoded=frame_records, formats=lambda topic: formats)


def _run(reader: PageReader, serializer: RecordSerializer, bodies: list[bytes], n_pages: int) -> tuple[int, float, int]:
    count = size = 0
    t0 = time.process_time()
    for i in range(n_pages):
        records, _, _ = reader.read(bodies[i % len(bodies)])
        for r in serializer.unprepared(records):
            serializer.prepare(r)
        framed = serializer.serialize_batch(records)
        count += len(records) - len(framed.errors)
        size += framed.payload
    return count, time.process_time() - t0, size


def _reader(shape: str) -> PageReader:
    typed = None
    if shape == "typed":
        from connectors.dynamodb.typed import TypedTable, TypedValueConfig

        # widen: the wide items' lists mix records, strings, booleans and lists
        typed = TypedTable(TABLE, KEY_FIELDS, TypedValueConfig.model_validate({"shape": "typed",
                                                                              "on_conflict": "widen"}))
    return PageReader(StreamContext(TOPIC, TABLE, REGION, KEY_FIELDS, STREAM_ARN, "shardId-bench-0", typed=typed))


def measure(name: str, shape: str, n_pages: int, reps: int) -> dict[str, Any]:
    bodies = make_pages(WORKLOADS[name], 4)
    reader = _reader(shape)
    serializers = {fmt: _serializer(fmt) for fmt in FORMATS}
    for s in serializers.values():  # warm: schemas converted once, caches filled
        _run(reader, s, bodies, len(bodies))
    rates: dict[str, list[float]] = {f: [] for f in FORMATS}
    cpu = dict.fromkeys(FORMATS, 0.0)
    size = dict.fromkeys(FORMATS, 0.0)
    for _ in range(reps):
        for fmt, s in serializers.items():
            n, secs, b = _run(reader, s, bodies, n_pages)
            rates[fmt].append(n / secs)
            cpu[fmt] += secs
            size[fmt] = b / n
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"workload": name, "rates": med, "cpu": cpu, "bytes": size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workload", action="append", choices=sorted(WORKLOADS))
    args = ap.parse_args()
    tune_for_throughput()  # as the bridge process does (bridge_app/cli.py)
    pages, reps = (2, 3) if args.quick else (6, 5)
    print(f"transcoder {IMPLEMENTATION}; {reps} interleaved runs of {pages} pages of 1,000 records, medians; key and "
          "value in the format; 'vs avro': against the same shape in Avro")
    print(f"  {'workload':8s} {'shape':8s} {'format':12s} {'rec/s per core':>15s} {'vs avro':>8s} {'CPU s':>7s} "
          f"{'bytes/rec':>10s}")
    for name in args.workload or ["wide"]:
        for shape in ("envelope", "typed"):
            r = measure(name, shape, pages, reps)
            for fmt in FORMATS:
                print(f"  {name:8s} {shape:8s} {fmt:12s} {r['rates'][fmt]:>15,.0f} "
                      f"{r['rates'][fmt] / r['rates']['avro']:>8.2f} {r['cpu'][fmt]:>7.2f} {r['bytes'][fmt]:>10,.0f}")


if __name__ == "__main__":
    main()
