#!/usr/bin/env python
"""Snapshots at stream speed (issue 22): the stream path, Scan pages and export files, on the
same wide items, in one run; and one process on a multi-file export with all its cores.

    python -m bench.snapshot_bench              # about a minute; --markdown for docs/snapshots.md
    python -m bench.snapshot_bench --quick      # a CI-sized run (numbers dominated by noise)

What runs is the bridge's own code from the source's bytes to the framed Kafka messages (what
the worker hands librdkafka), with the sources served from memory:

- **stream**: ``PageReader.read`` on GetRecords bodies (the C transcoder) + ``serialize_batch``;
  two workloads: the bench's usual mix (``bench.workload``: 25% INSERT / 65% MODIFY / 10%
  REMOVE, NEW_AND_OLD_IMAGES, two images per record) and INSERTs of the very items the
  snapshot rows carry (NEW_IMAGE: one image per record, as a snapshot row);
- **Scan**: ``ScanSegmentTask.poll`` on 1 MB Scan response bodies (``call_raw`` answered from
  memory) + ``serialize_batch``; the pages parsed in the decode pool;
- **export**: ``ExportFileTask.poll`` on gzip data files as AWS writes them (``{"Item": ...}``
  per line, DYNAMODB_JSON) served by an in-memory S3 + ``serialize_batch``;
- the same two snapshot paths with the C writer switched off (the general path: orjson,
  ``snapshot_records``, the Python Avro encoder), which is what main did before issue 22;
- **export, all cores**: one process reading ``--files`` data files, ``parallel_files`` at once,
  with ``decode_threads`` 1 and then one per core: wall-clock records/s.

Rates: records/s per core = records per CPU-second of this process (all threads); MB/s per
core = item JSON (DynamoDB JSON of the items, without the Scan/export framing) per CPU-second.
Producing to Kafka is not included (no broker here: see ``bench/run.py`` for produce's cost,
about 6 µs per record on the reference machine). The machine's load is printed: other work on
the same cores lowers the multi-core number first.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib
import io
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench.workload import KEYS, REGION, STREAM_ARN, TABLE, WORKLOADS, make_pages, wide_item  # noqa: E402
from bridge.gctune import tune_for_throughput  # noqa: E402
from bridge.serde.serializer import NotPrepared, RecordSerializer  # noqa: E402
from connectors.dynamodb import export as export_module  # noqa: E402
from connectors.dynamodb import transcode  # noqa: E402
from connectors.dynamodb.config import SnapshotConfig  # noqa: E402
from connectors.dynamodb.envelope import envelope_schema  # noqa: E402
from connectors.dynamodb.export import ExportFileTask  # noqa: E402
from connectors.dynamodb.records import PageReader, StreamContext  # noqa: E402
from connectors.dynamodb.scan import ScanSegmentTask, _Shared  # noqa: E402
from connectors.dynamodb.schemas import KeyField  # noqa: E402
from connectors.dynamodb.table import TableInfo  # noqa: E402

TOPIC = "bench.snapshot"
KEY_FIELDS = tuple(KeyField(n, t) for n, t in KEYS)  # type: ignore[arg-type]
TABLE_INFO = TableInfo(TABLE, REGION, KEY_FIELDS, None, None, 0)
PAGE_BYTES = 1024 * 1024  # a Scan page stops at 1 MB
TB = 10**12


@dataclass
class Row:
    name: str
    records: int
    item_bytes: int
    wall_s: float
    cpu_s: float
    nogil_s: float = 0.0  # of cpu_s: the C writer's parsing and encoding with the GIL released

    @property
    def per_core(self) -> float:
        return self.records / self.cpu_s

    @property
    def mb_per_core(self) -> float:
        return self.item_bytes / self.cpu_s / 1e6

    @property
    def wall_rate(self) -> float:
        return self.records / self.wall_s


class _Registry:
    """Schema ids without a registry: the serializer only needs two numbers per topic."""

    def register(self, subject: str, schema_str: str) -> int:
        return 1 if subject.endswith("-key") else 2

    def lookup(self, subject: str, schema_str: str) -> Any:
        return None


def serializer() -> RecordSerializer:
    return RecordSerializer(_Registry(), frame_encoded=transcode.frame_records)


def frame(ser: RecordSerializer, records: list[Any]) -> int:
    if not records:
        return 0
    try:
        return ser.serialize_batch(records).payload
    except NotPrepared:  # as the worker does: prepare only when framing says so
        for r in ser.unprepared(records):
            ser.prepare(r)
        return ser.serialize_batch(records).payload


# --------------------------------------------------------------------------- inputs


def items(n: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [wide_item(rng, i, 2) for i in range(n)]


def item_bytes(rows: list[dict[str, Any]]) -> int:
    return sum(len(orjson.dumps(it)) for it in rows)


def scan_pages(rows: list[dict[str, Any]]) -> list[bytes]:
    """Scan response bodies of up to 1 MB, as DynamoDB pages them."""
    pages, page, size = [], [], 0
    for it in rows:
        n = len(orjson.dumps(it)) + 1
        if page and size + n > PAGE_BYTES:
            pages.append(page)
            page, size = [], 0
        page.append(it)
        size += n
    if page:
        pages.append(page)
    bodies = []
    for i, p in enumerate(pages):
        doc: dict[str, Any] = {"Count": len(p), "Items": p, "ScannedCount": len(p)}
        if i < len(pages) - 1:
            doc["LastEvaluatedKey"] = {"pk": p[-1]["pk"], "sk": p[-1]["sk"]}
        bodies.append(orjson.dumps(doc))
    return bodies


def export_file(rows: list[dict[str, Any]]) -> bytes:
    """A DYNAMODB_JSON data file: one {"Item": ...} per line, gzip (AWS's level is not
    documented; 6 is gzip's default)."""
    return gzip.compress(b"".join(orjson.dumps({"Item": it}) + b"\n" for it in rows), 6)


def stream_insert_pages(rows: list[dict[str, Any]], per_page: int = 1000) -> list[bytes]:
    """GetRecords bodies whose records are INSERTs of exactly these items (NEW_IMAGE)."""
    bodies = []
    for p in range(0, len(rows), per_page):
        recs = []
        for i, it in enumerate(rows[p:p + per_page]):
            recs.append({
                "awsRegion": REGION,
                "dynamodb": {"ApproximateCreationDateTime": 1_700_000_000, "Keys": {"pk": it["pk"], "sk": it["sk"]},
                             "NewImage": it, "SequenceNumber": str(10**20 + p + i), "SizeBytes": 0,
                             "StreamViewType": "NEW_IMAGE"},
                "eventID": f"{p + i:032x}", "eventName": "INSERT", "eventSource": "aws:dynamodb", "eventVersion": "1.1",
            })
        bodies.append(orjson.dumps({"Records": recs, "NextShardIterator": "it"}))
    return bodies


# --------------------------------------------------------------------------- measuring


def _nogil_ns() -> int:
    """CPU ns the C item writer and the C inflater spent with the GIL released, so far."""
    total = 0
    for name in ("_transcode", "_inflate"):
        try:
            module = importlib.import_module(f"connectors.dynamodb.{name}")
        except ImportError:
            continue
        total += int(getattr(module, "nogil_cpu_ns", lambda: 0)())
    return total


def zlib_cpu_s(files: dict[str, bytes]) -> float:
    """CPU seconds to inflate the files as the export task does (zlib releases the GIL for it)."""
    import zlib

    c = time.process_time()
    for body in files.values():
        d = zlib.decompressobj(wbits=31)
        for i in range(0, len(body), 1 << 20):
            data = body[i:i + (1 << 20)]
            while data:
                d.decompress(data, 4 << 20)
                data = d.unconsumed_tail
    return time.process_time() - c


def on_one_core(fn: Callable[[], int]) -> Callable[[], int]:
    """``fn`` with this thread, and the threads it starts (its pools), on one CPU: the
    single-core rate of exactly the same work, hand-offs between threads included."""

    def run() -> int:
        cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(cpus)})
        try:
            return fn()
        finally:
            os.sched_setaffinity(0, cpus)

    return run


def amdahl(free: float, cores: int) -> float:
    """The speed-up on ``cores`` when the share ``free`` of the work runs in parallel."""
    return 1 / ((1 - free) + free / cores)


@dataclass
class Timed:
    """A row to time: ``fn`` run ``per_round`` times in each of the first ``rounds`` rounds
    (None: every round); the best run by ``by`` (CPU or wall seconds) counts, the fastest being
    the one least disturbed by neighbours."""

    name: str
    records: int
    nbytes: int
    fn: Callable[[], Any]
    by: str = "cpu_s"
    per_round: int = 1
    rounds: int | None = None
    best: Row | None = None
    runs: list[Row] = field(default_factory=list)

    def once(self) -> None:
        g, w, c = _nogil_ns(), time.perf_counter(), time.process_time()
        self.fn()
        row = Row(self.name, self.records, self.nbytes, time.perf_counter() - w, time.process_time() - c,
                  (_nogil_ns() - g) / 1e9)
        self.runs.append(row)
        if self.best is None or getattr(row, self.by) < getattr(self.best, self.by):
            self.best = row


def paired(num: Timed, den: Timed, by: str) -> float:
    """The median over rounds of num's rate ÷ den's (records per ``by`` second), each run set
    against den's run of the same round: steadier than a ratio of two bests when the machine's
    speed drifts during the run."""
    return statistics.median((x.records / getattr(x, by)) / (y.records / getattr(y, by))
                             for x, y in zip(num.runs, den.runs, strict=True))


def interleaved(rows: list[Timed], rounds: int) -> list[Timed]:
    """Every row once per round, round after round: a change in the machine's speed during the
    run (other work, a neighbour VM) then touches every row alike, so ratios between rows of
    one run hold where back-to-back repetitions of each row would not."""
    for r in range(rounds):
        for t in rows:
            if t.rounds is None or r < t.rounds:
                for _ in range(t.per_round):
                    t.once()
    return rows


def stream_path(bodies: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        ser = serializer()
        reader = PageReader(StreamContext(TOPIC, TABLE, REGION, KEY_FIELDS, STREAM_ARN, "shardId-bench-0"))
        n = 0
        for b in bodies:
            records = reader.read(b)[0]
            frame(ser, records)
            n += len(records)
        return n

    return run


class _MemoryDynamo:
    """Scan answered from memory: the pages in order (the task sends ExclusiveStartKey)."""

    def __init__(self, bodies: list[bytes]) -> None:
        self._bodies = bodies
        self._i = 0

    async def call_raw(self, operation: str, payload: dict[str, Any]) -> bytes:
        body = self._bodies[self._i]
        self._i += 1
        return body


class _MemoryS3:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {"Body": io.BytesIO(self.files[Key])}


def scan_path(bodies: list[bytes], *, one_pass: bool, segments: int = 1, decode_threads: int = 1) -> Callable[[], int]:
    """``segments`` segment tasks at once, each reading its share of the pages, decoded in a
    pool of ``decode_threads``; the worker's part (serialize_batch) on the event loop."""

    def run() -> int:
        async def main() -> int:
            pool = ThreadPoolExecutor(decode_threads)
            ser = serializer()
            counts: list[int] = []

            async def segment(i: int) -> None:
                share = bodies[i::segments]
                shared = _Shared(ddb=_MemoryDynamo(share), table=TABLE_INFO, topic=TOPIC,  # type: ignore[arg-type]
                                 schema=envelope_schema(TABLE, KEY_FIELDS), config=SnapshotConfig(), request={"TableName": TABLE}, items_limiter=None,
                                 rcu_limiter=None, concurrency=segments, progress=None, gate=None, pool=pool)
                task = ScanSegmentTask(shared, i, segments, pass_no=0, resume=None)
                if not one_pass:
                    task._rows._writer = None  # the general path, as main read Scan pages before issue 22
                for _ in share:
                    batch = await task.poll()
                    frame(ser, batch.records)
                    counts.append(len(batch.records))

            await asyncio.gather(*(segment(i) for i in range(segments)))
            pool.shutdown()
            return sum(counts)

        return asyncio.run(main())

    return run


def export_path(files: dict[str, bytes], *, one_pass: bool = True, parallel_files: int = 1,
                decode_threads: int = 1) -> Callable[[], int]:
    """The files, ``parallel_files`` at once (as UnitRun runs them), decoded in a pool of
    ``decode_threads``; the worker's part (serialize_batch) on the event loop."""

    def run() -> int:
        async def main() -> int:
            pool = ThreadPoolExecutor(decode_threads)
            s3 = _MemoryS3(files)
            todo = list(files)
            ser = serializer()
            counts: list[int] = []

            async def reader() -> None:
                while todo:
                    key = todo.pop(0)
                    task = ExportFileTask(s3=s3, bucket="bench", key=key, export_id="e", table=TABLE_INFO, topic=TOPIC,
                                          resume=None, progress=None, pool=pool)
                    if not one_pass:
                        task._rows._writer = None
                    while True:
                        batch = await task.poll()
                        frame(ser, batch.records)
                        counts.append(len(batch.records))
                        if batch.final:
                            break
                    await task.close()

            await asyncio.gather(*(reader() for _ in range(parallel_files)))
            pool.shutdown()
            return sum(counts)

        return asyncio.run(main())

    return run


# --------------------------------------------------------------------------- report


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def table(rows: list[Row], base: Row, markdown: bool) -> str:
    head = ["path", "records", "wall s", "CPU s", "rec/s (wall)", "rec/s per core", "MB/s per core",
            "µs CPU/record", "vs stream (rec/s per core)"]
    body = [[r.name, f"{r.records:,}", f"{r.wall_s:.2f}", f"{r.cpu_s:.2f}", f"{r.wall_rate:,.0f}",
             f"{r.per_core:,.0f}", f"{r.mb_per_core:.1f}", f"{1e6 / r.per_core:.1f}",
             f"{r.per_core / base.per_core:.2f}×"] for r in rows]
    return render(head, body, markdown)


def render(head: list[str], body: list[list[str]], markdown: bool) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    right = [False] + [True] * (len(head) - 1)

    def line(cells: list[str]) -> str:
        out = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return ("| " + " | ".join(out) + " |") if markdown else "  ".join(out)

    lines = [line(head)]
    lines.append("|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right, strict=True)) + "|"
                 if markdown else "  ".join("-" * w for w in widths))
    lines.extend(line(b) for b in body)
    return "\n".join(lines)


def sizing(scan: Row, export: Row, export_all: float, bytes_per_record: float, ncores: int, markdown: bool) -> str:
    """Table size → cores and processes → time, at this run's rates (source side).

    Cores come from the CPU-second rates (what neighbours on the machine do not change);
    processes and the one-process time from the wall-clock rate of one process with all its
    cores on the multi-file export (what they do change)."""
    scan_core = scan.item_bytes / scan.cpu_s
    export_core = export.item_bytes / export.cpu_s
    export_bps = export_all * bytes_per_record
    head = ["table size (item JSON)", "Scan: cores of CPU for 1 h", "export: cores of CPU for 1 h",
            f"export: processes ({ncores} cores) for 1 h", "export: time with 1 process"]
    body = []
    for label, size in (("10 GB", 10**10), ("100 GB", 10**11), ("1 TB", TB), ("20 TB", 20 * TB)):
        body.append([label, f"{size / 3600 / scan_core:,.2f}", f"{size / 3600 / export_core:,.2f}",
                     f"{math.ceil(size / 3600 / export_bps):,}", hours(size / export_bps)])
    return render(head, body, markdown)


def hours(s: float) -> str:
    if s < 3600:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=60_000, help="wide items per path (default 60,000: ~44 MB of item JSON)")
    ap.add_argument("--files", type=int, default=8, help="data files in the multi-file export")
    ap.add_argument("--parallel-files", type=int, default=4, help="export.parallel_files for the multi-file run")
    ap.add_argument("--reps", type=int, default=5,
                    help="rounds: every row runs once per round (the wall-clock rows twice); each row's fastest counts")
    ap.add_argument("--quick", action="store_true", help="small and once: a CI smoke run")
    ap.add_argument("--markdown", action="store_true", help="tables in markdown (docs/snapshots.md)")
    args = ap.parse_args()
    if args.quick:
        args.items, args.reps, args.files = 6_000, 1, 4
    n = args.items
    say = print
    ncores = cores()
    c_inflater = export_module.Inflater is not export_module._Inflater
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    say(f"# snapshot bench: {ncores} cores for this process, load average {load:.2f} at the start, "
        f"Python {sys.version.split()[0]}, C writer {'built' if transcode.ItemWriter is not None else 'NOT built'}, "
        f"C inflater {'built' if c_inflater else 'NOT built'}")
    if transcode.ItemWriter is None or transcode.Transcoder is None:
        say("(without the C extension every path is the general one; the ratios mean little)")

    rows_ = items(n)
    nbytes = item_bytes(rows_)
    mix = make_pages(WORKLOADS["wide"], max(1, n // 1000))
    mix_records = len(mix) * 1000 + sum(b.count(b'"REMOVE"') for b in mix)  # each REMOVE adds its tombstone
    mix_bytes = sum(len(b) for b in mix)  # the pages' JSON (two images per record)
    inserts = stream_insert_pages(rows_)
    pages = scan_pages(rows_)
    per_file = max(1, n // args.files)
    files = {f"data/{i:03d}.json.gz": export_file(rows_[i * per_file:(i + 1) * per_file]) for i in range(args.files)}
    one_file = {"data/all.json.gz": export_file(rows_)}
    files_records = per_file * args.files
    files_bytes = item_bytes(rows_[:files_records])
    gz = sum(len(v) for v in one_file.values())
    say(f"# {n:,} wide items (11 attributes), {nbytes / n:,.0f} bytes of item JSON each; {len(pages)} Scan pages of "
        f"≤1 MB; export {nbytes / gz:.1f}:1 gzip; stream mix {mix_bytes / (len(mix) * 1000):,.0f} bytes/record")

    few = max(1000, n // 6)  # the general path is slow: a sixth of the items is enough to time it
    few_pages = scan_pages(rows_[:few])
    few_file = {"data/few.json.gz": export_file(rows_[:few])}
    few_bytes = item_bytes(rows_[:few])

    previous = tune_for_throughput()  # the collector as `ddb-kafka-bridge run` sets it
    try:
        wall = {"by": "wall_s", "per_round": 2}
        t_stream = Timed("stream: GetRecords, usual mix (2 images/record)", mix_records, mix_bytes, stream_path(mix))
        t_scan = Timed("Scan pages (one pass, C writer)", n, nbytes, scan_path(pages, one_pass=True))
        t_export = Timed("export file (gzip + one pass, C writer)", n, nbytes, export_path(one_file))
        t_pinned = Timed(f"export, {args.files} files, decode_threads={ncores}, pinned to 1 core", files_records,
                         files_bytes, on_one_core(export_path(files, parallel_files=args.parallel_files,
                                                              decode_threads=ncores)), **wall)
        t_multi = Timed(f"export, {args.files} files, decode_threads={ncores}", files_records, files_bytes,
                        export_path(files, parallel_files=args.parallel_files, decode_threads=ncores), **wall)
        timed = interleaved([
            t_stream,
            Timed("stream: GetRecords, INSERTs of these items", n, nbytes, stream_path(inserts)),
            t_scan,
            t_export,
            Timed("Scan pages, general path (before issue 22)", few, few_bytes, scan_path(few_pages, one_pass=False),
                  rounds=1),
            Timed("export file, general path (before issue 22)", few, few_bytes,
                  export_path(few_file, one_pass=False), rounds=1),
            Timed("Scan, 4 segments, decode_threads=1", n, nbytes,
                  scan_path(pages, one_pass=True, segments=4, decode_threads=1), **wall),
            Timed(f"Scan, 4 segments, decode_threads={ncores}", n, nbytes,
                  scan_path(pages, one_pass=True, segments=4, decode_threads=ncores), **wall),
            t_pinned,
            Timed(f"export, {args.files} files, decode_threads=1", files_records, files_bytes,
                  export_path(files, parallel_files=args.parallel_files, decode_threads=1), **wall),
            t_multi,
        ], args.reps)
        (stream_mix, stream_ins, scan, export, scan_old, export_old, scan_1, scan_n, multi_pinned, multi_1,
         multi_n) = (t.best for t in timed)
        scan_vs_stream, export_vs_stream = paired(t_scan, t_stream, "cpu_s"), paired(t_export, t_stream, "cpu_s")
        all_vs_one = paired(t_multi, t_pinned, "wall_s")
        # Python's zlib, timed alone: only the fallback's share of GIL-free work needs it
        inflate_s = 0.0 if c_inflater else min(zlib_cpu_s(one_file) for _ in range(args.reps))
    finally:
        import gc

        gc.unfreeze()
        gc.set_threshold(*previous)

    rows = [stream_mix, stream_ins, scan, export, scan_old, export_old]
    say("\n## one core: source bytes → framed Kafka messages\n")
    say(table(rows, stream_mix, args.markdown))
    say("")
    say(f"Scan / stream (usual mix) **{scan_vs_stream:.2f}×**, export / stream (usual mix) "
        f"**{export_vs_stream:.2f}×** records/s per core (target ≥ 0.80; the median over the {args.reps} rounds of "
        f"each round's ratio; the best rows above give {scan.per_core / stream_mix.per_core:.2f}× and "
        f"{export.per_core / stream_mix.per_core:.2f}×); "
        f"against INSERTs of the same items: Scan {scan.per_core / stream_ins.per_core:.2f}×, "
        f"export {export.per_core / stream_ins.per_core:.2f}×. One pass vs the general path: "
        f"Scan {scan.per_core / scan_old.per_core:.1f}×, export {export.per_core / export_old.per_core:.1f}×.")

    say(f"\n## one process with all its cores (wall clock): a {args.files}-file export, {args.parallel_files} "
        f"files at a time; a 4-segment Scan\n")
    head = ["path", "records", "wall s", "CPU s", "rec/s (wall)", "MB/s (wall)", "cores busy",
            "vs one-core rate"]
    body = [[r.name, f"{r.records:,}", f"{r.wall_s:.2f}", f"{r.cpu_s:.2f}", f"{r.wall_rate:,.0f}",
             f"{r.item_bytes / r.wall_s / 1e6:.1f}", f"{r.cpu_s / r.wall_s:.2f}", f"{r.wall_rate / one.per_core:.2f}×"]
            for r, one in ((multi_pinned, export), (multi_1, export), (multi_n, export), (scan_1, scan), (scan_n, scan))]
    say(render(head, body, args.markdown))
    say("")
    say(f"export, all cores / the same export on one core: **{all_vs_one:.2f}×** "
        f"(wall rec/s with {ncores} decode threads, the process free to use its {ncores} cores ÷ the same run pinned "
        f"to one core, the median over the rounds; the best rows give "
        f"{multi_n.wall_rate / multi_pinned.wall_rate:.2f}×; target ≥ 1.6 on 2 cores). Against the one-core CPU rate of the single-file row above (records "
        f"per CPU-second): export {multi_n.wall_rate / export.per_core:.2f}×, Scan {scan_n.wall_rate / scan.per_core:.2f}×. "
        f"Load average now {os.getloadavg()[0]:.2f} on {ncores} cores: other processes on these cores lower this "
        "number first (\"cores busy\" = CPU s ÷ wall s of this process).")
    # Without the C inflater, Python's zlib releases the GIL too: counted whole (its output joins hold it).
    free_export = min(1.0, (export.nogil_s + inflate_s) / export.cpu_s)
    free_scan = min(1.0, scan.nogil_s / scan.cpu_s)
    how = "C writer and C inflater" if c_inflater else f"C writer, and zlib {inflate_s / export.cpu_s:.0%} counted whole"
    say(f"Share of the one-core CPU that runs with the GIL released (contention does not change it; as the C code counts it, so kernel time and the like, which run without the GIL too, are left out): export "
        f"{free_export:.0%} ({how}), Scan {free_scan:.0%}; the most "
        f"{ncores} cores can give by Amdahl's law by that share alone: export "
        f"{amdahl(free_export, ncores):.2f}×, Scan {amdahl(free_scan, ncores):.2f}×.")

    per_record = nbytes / n
    say("\n## sizing at these rates (source side; Kafka's produce cost and the network not included)\n")
    say(sizing(scan, export, multi_n.wall_rate, per_record, ncores, args.markdown))
    export_procs = math.ceil(TB / 3600 / (multi_n.wall_rate * per_record))
    cores_tb = TB / 3600 / (export.item_bytes / export.cpu_s)
    say("")
    say(f"1 TB of item JSON in one hour: **{export_procs} export processes** of {ncores} cores at this run's "
        f"wall-clock rate ({multi_n.wall_rate * per_record / 1e6:.0f} MB/s each); {cores_tb:.1f} cores of CPU, i.e. "
        f"{math.ceil(cores_tb / (ncores * 0.8))} process(es) of {ncores} cores at 80% use of each core. A Scan is "
        "bounded by read capacity and segments long before CPU (docs/snapshots.md).")


if __name__ == "__main__":
    main()
