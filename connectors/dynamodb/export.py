"""Snapshots from a DynamoDB export to S3 (``DYNAMODB_JSON``, gzip), one task per data file.

Where the files are:
- ``export_arn``: DescribeExport names the bucket, the prefix and the manifest
  (``manifest-summary.json`` → ``manifest-files.json`` → one ``dataFileS3Key`` per line);
- ``s3_bucket``/``s3_prefix``: a ``manifest-files.json`` under the prefix if there is one,
  otherwise every ``AWSDynamoDB/<export id>/data/*.gz`` object under it (moto writes no
  manifest); two exports under one prefix without manifests are refused as ambiguous;
- ``trigger``: the bridge requests ``ExportTableToPointInTime`` itself (the table needs
  point-in-time recovery), stores the export ARN as an offset before waiting for it, so a
  restart waits for the same export instead of requesting another, and then reads it as
  above. The request carries a ``ClientToken`` derived from the bridge, table and prefix,
  so a crash between the request and storing its ARN repeats the same request (DynamoDB
  treats it as the same export for 8 hours).

Each data file is a task with source partition ``{"table", "export", "file"}`` and offset
``{"line", "items", "done"}``; a restart skips the lines already acknowledged (gzip cannot
seek, so the file is read again from its start but nothing before ``line`` is published).
Up to ``parallel_files`` files are read at once; S3 reads run in threads (boto3), gzip,
parsing and encoding in a small pool (``snapshot.decode_threads``) with the GIL released
(zlib, the C item writer), so one process reads an export on more than one core.

In a group (``bridge.group``) every file is a unit read by whoever owns it, and the
triggered request is one too (only its owner requests the export and stores the ARN); the
export is complete when every file's ``done`` offset is committed, whoever read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import zlib
from concurrent.futures import Executor
from typing import Any

import orjson
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from bridge.errors import ConfigError, ConnectorError
from bridge.progress import SnapshotProgress
from bridge.task import Batch, SourceConnector, SourceRecord, SourceTask, TaskRuntime
from connectors.dynamodb.client import AwsApiError, AwsJsonClient
from connectors.dynamodb.config import SnapshotConfig
from connectors.dynamodb.credentials import boto3_session
from connectors.dynamodb.envelope import EnvelopeSchema, RecordFormat, envelope_schema
from connectors.dynamodb.marks import OffsetTask
from connectors.dynamodb.snapshot_rows import SnapshotRows, decode_pool
from connectors.dynamodb.table import TableInfo, describe_table
from connectors.dynamodb.units import UnitRun

__all__ = ["ExportConnector", "ExportFileTask", "ExportLocation", "find_data_files"]

log = logging.getLogger(__name__)

LINES_PER_BATCH = 1000


class ExportLocation:
    def __init__(self, bucket: str, prefix: str, export_arn: str | None = None, manifest_key: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.export_arn = export_arn
        self.manifest_key = manifest_key

    @property
    def id(self) -> str:
        return self.export_arn or f"s3://{self.bucket}/{self.prefix}"


def _s3_error(what: str, e: Exception) -> ConnectorError:
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return ConnectorError(f"{what}: {err.get('Code')}: {err.get('Message')}")
    return ConnectorError(f"{what}: {type(e).__name__}: {e}")


def _lines(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


def find_data_files(s3: Any, loc: ExportLocation) -> list[tuple[str, int | None]]:
    """Data files of one export, with item counts when a manifest gives them (blocking)."""
    try:
        manifest_files = None
        if loc.manifest_key:
            summary = orjson.loads(s3.get_object(Bucket=loc.bucket, Key=loc.manifest_key)["Body"].read())
            manifest_files = summary.get("manifestFilesS3Key")
        keys: list[str] = []
        if manifest_files is None:
            paginator = s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=loc.bucket, Prefix=loc.prefix + "/" if loc.prefix else ""):
                keys.extend(o["Key"] for o in page.get("Contents", []))
            manifests = [k for k in keys if k.endswith("/manifest-files.json")]
            if len(manifests) > 1:
                raise ConfigError(
                    f"s3://{loc.bucket}/{loc.prefix} holds {len(manifests)} exports; set export.export_arn "
                    "or an s3_prefix that ends at one export's directory"
                )
            manifest_files = manifests[0] if manifests else None
        if manifest_files is not None:
            body = s3.get_object(Bucket=loc.bucket, Key=manifest_files)["Body"].read()
            return [(m["dataFileS3Key"], m.get("itemCount")) for m in _lines(body)]
        data = sorted(k for k in keys if "/data/" in k and k.endswith(".gz"))
        exports = {k.split("/data/")[0] for k in data}
        if len(exports) > 1:
            raise ConfigError(
                f"s3://{loc.bucket}/{loc.prefix} holds data of {len(exports)} exports and no manifest; "
                "set export.export_arn or narrow export.s3_prefix to one export"
            )
        if not data:
            raise ConfigError(f"no export data files (…/data/*.gz) under s3://{loc.bucket}/{loc.prefix}")
        return [(k, None) for k in data]
    except (ClientError, BotoCoreError) as e:
        raise _s3_error(f"listing export files under s3://{loc.bucket}/{loc.prefix}", e) from None


class _Inflater:
    """gzip members → bytes, a bounded amount per call (zlib releases the GIL while it works).

    AWS writes one gzip member per data file; later members are read too, as gzip.GzipFile does.
    """

    def __init__(self) -> None:
        self._d = zlib.decompressobj(wbits=31)
        self._pending = b""
        self._drained = True  # zlib holds no output back (a call filled its limit: it may)
        self._started = False  # a member has begun: its end must come before the input's

    @property
    def hungry(self) -> bool:
        """Nothing more comes out without more input."""
        return not self._pending and self._drained

    def feed(self, raw: bytes) -> None:
        self._pending = raw

    def inflate(self, limit: int) -> bytes:
        if self.hungry:
            return b""
        self._started = True
        out = self._d.decompress(self._pending, limit)
        self._pending = self._d.unconsumed_tail
        self._drained = len(out) < limit
        if self._d.eof:  # a member ended: anything after it is the next member
            self._pending = self._d.unused_data  # all of the input after the member (not unconsumed_tail)
            self._d = zlib.decompressobj(wbits=31)
            self._drained = True
            self._started = bool(self._pending)
        return out

    def inflate_after(self, buf: bytes, pos: int, limit: int) -> bytes:
        """``buf[pos:]`` (a line not complete yet) followed by up to ``limit`` new bytes."""
        return buf[pos:] + self.inflate(limit)

    def finish(self) -> None:
        """The input ended: a member cut short is an error (gzip.GzipFile raises EOFError)."""
        if self._started and not self._d.eof:
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")


try:  # the same contract in C, copying without the GIL (connectors/dynamodb/_inflate.c)
    from connectors.dynamodb._inflate import Inflater
except ImportError:  # not built (no zlib headers where it was installed): the same bytes, in Python
    Inflater = _Inflater  # type: ignore[misc,assignment]

RAW_CHUNK = 1 << 20  # compressed bytes per S3 read
INFLATE_CHUNK = 4 << 20  # decompressed bytes buffered per file at most (plus one line)


class ExportFileTask(SourceTask):
    """Reads one gzip data file, ``LINES_PER_BATCH`` items per poll, skipping stored lines.

    S3 reads run in asyncio's default threads (network); decompression, parsing and encoding in
    ``pool`` (CPU; zlib and the C writer release the GIL), so files read at the same time use
    more than one core. A batch ends at a line boundary and the offset counts every line read
    (blank ones too), so a restart resumes exactly after the last acknowledged line.
    """

    def __init__(
        self,
        *,
        s3: Any,
        bucket: str,
        key: str,
        export_id: str,
        table: TableInfo,
        topic: str,
        resume: dict[str, Any] | None,
        progress: SnapshotProgress | None,
        pool: Executor | None = None,
        schema: EnvelopeSchema | None = None,
    ) -> None:
        self.partition = {"table": table.name, "export": export_id, "file": key}
        self.key = key
        self._s3 = s3
        self._bucket = bucket
        self._table = table
        self._topic = topic
        self._progress = progress
        self._pool = pool
        resume = resume or {}
        self.skip = int(resume.get("line", 0))
        self.line = 0
        self.items = int(resume.get("items", 0))
        self.items_this_run = 0
        self._body: Any = None
        self.raw_chunk, self.inflate_chunk = RAW_CHUNK, INFLATE_CHUNK
        self._raw_eof = False
        self._inflater = Inflater()
        self._buf = b""  # decompressed, not yet read from self._pos on
        self._pos = 0
        self._source = {
            "connector": "dynamodb",
            "table": table.name,
            "region": table.region,
            "snapshot": "export",
            "ttl_delete": False,
        }
        self._rows = SnapshotRows(topic=topic, table=table, schema=schema or envelope_schema(table.name, table.key_fields), source=self._source, where=f"s3://{bucket}/{key}")

    def _open(self) -> None:
        try:
            self._body = self._s3.get_object(Bucket=self._bucket, Key=self.key)["Body"]
        except (ClientError, BotoCoreError) as e:
            raise _s3_error(f"reading s3://{self._bucket}/{self.key}", e) from None

    def _read_raw(self) -> bytes:
        """The next compressed bytes from S3, b"" at its end (blocking: runs in a thread)."""
        if self._body is None:
            self._open()
        try:
            return bytes(self._body.read(self.raw_chunk))
        except (OSError, BotoCoreError) as e:
            raise ConnectorError(f"reading s3://{self._bucket}/{self.key} at line {self.line}: {e}") from None

    def _skip_lines(self, final: bool) -> None:
        """Past the lines already published (a restart): counted, not parsed."""
        buf, pos = self._buf, self._pos
        while self.line < self.skip and pos < len(buf):
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if not final:
                    break
                nl = len(buf) - 1
            pos = nl + 1
            self.line += 1
        self._pos = pos

    def _step(self, raw: bytes | None, want: int) -> tuple[list[SourceRecord], bool, bool]:
        """Up to ``want`` records from what is buffered (blocking CPU work: runs in the pool).

        Returns (records, end of file, needs the next compressed bytes first).
        """
        if raw is not None:
            if raw:
                self._inflater.feed(raw)
            else:
                self._raw_eof = True
        records: list[SourceRecord] = []
        try:
            while True:
                final = self._raw_eof and self._inflater.hungry
                if self.line < self.skip:
                    self._skip_lines(final)
                if self.line >= self.skip:
                    got, self._pos, n = self._rows.lines(self._buf, self._pos, want - len(records), final, self.line)
                    self.line += n
                    records.extend(got)
                if final and self._pos >= len(self._buf):
                    self._inflater.finish()
                    return records, True, False
                if len(records) >= want:
                    return records, False, False
                if self._inflater.hungry:
                    if not self._raw_eof:
                        return records, False, True
                    continue  # final now: the last line may lack its newline
                self._buf = self._inflater.inflate_after(self._buf, self._pos, self.inflate_chunk)
                self._pos = 0
        except (zlib.error, EOFError) as e:
            raise ConnectorError(f"reading s3://{self._bucket}/{self.key} at line {self.line}: {e}") from None

    async def poll(self) -> Batch:
        loop = asyncio.get_running_loop()
        records: list[SourceRecord] = []
        raw: bytes | None = None
        while True:
            got, eof, hungry = await loop.run_in_executor(self._pool, self._step, raw, LINES_PER_BATCH - len(records))
            records.extend(got)
            if not hungry:
                break
            raw = await asyncio.to_thread(self._read_raw)
        self.items += len(records)
        self.items_this_run += len(records)
        if self._progress is not None and records:
            self._progress.add(len(records))
        offset = {"line": self.line, "items": self.items, "done": eof}
        if eof:
            return Batch(records, offset, final=True, reason="file-done")
        return Batch(records, offset)

    async def close(self) -> None:
        if self._body is not None:
            await asyncio.to_thread(self._body.close)


class ExportConnector(SourceConnector):
    """Publishes every item of one export; ``done`` is set once all files are durable."""

    record_format = RecordFormat()  # the table's; set by table_connectors

    def __init__(
        self,
        *,
        table: str,
        topic: str,
        ddb: AwsJsonClient,
        config: SnapshotConfig,
        bridge_name: str,
        region: str,
        profile: str | None = None,
        role: Any = None,
        s3_endpoint_url: str | None = None,
        s3: Any = None,
        start_after: asyncio.Event | None = None,
        progress_stream: Any = None,
    ) -> None:
        assert config.export is not None
        self.name = f"export:{table}"
        self.table_name = table
        self.topic = topic
        self._ddb = ddb
        self._config = config
        self._export = config.export
        self._bridge_name = bridge_name
        # aws.role_arn: the assumed role's refreshable credentials sign S3 reads too.
        self._s3 = s3 or boto3_session(region=region, profile=profile, role=role).client(
            "s3",
            endpoint_url=self._export.s3_endpoint_url or s3_endpoint_url,
            config=BotoConfig(retries={"mode": "standard", "max_attempts": 8}, s3={"addressing_style": "path"}),
        )
        self._progress_stream = progress_stream
        self._start_after = start_after  # a handoff lets the snapshot start once stream positions are held
        self.table: TableInfo | None = None
        self.done = asyncio.Event()
        self.progress: SnapshotProgress | None = None
        self.location: ExportLocation | None = None
        self.items_this_run = 0
        self._units: UnitRun | None = None
        self._marked = asyncio.Event()
        self._mark_stopped = False
        self._wake = asyncio.Event()
        self._runtime: TaskRuntime | None = None
        self._pool: Executor | None = None

    @property
    def _request_partition(self) -> dict[str, Any]:
        return {"table": self.table_name, "export": "request"}

    async def validate(self) -> None:
        self.table = await describe_table(self._ddb, self.table_name)
        if self._export.trigger:
            cb = await self._ddb.call("DescribeContinuousBackups", {"TableName": self.table_name})
            pitr = cb.get("ContinuousBackupsDescription", {}).get("PointInTimeRecoveryDescription", {})
            if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
                raise ConfigError(
                    f"tables: {self.table_name}.snapshot.export.trigger needs point-in-time recovery on the table; "
                    "enable it (UpdateContinuousBackups PointInTimeRecoveryEnabled=true) or name an existing export"
                )

    # ---- finding the export ------------------------------------------------------------

    async def _describe(self, arn: str) -> dict[str, Any]:
        try:
            return (await self._ddb.call("DescribeExport", {"ExportArn": arn}))["ExportDescription"]
        except AwsApiError as e:
            if e.code in ("ExportNotFoundException", "ValidationException"):
                raise ConfigError(f"tables: {self.table_name}.snapshot.export.export_arn: {e}") from None
            raise

    async def _wait_for(self, arn: str) -> dict[str, Any]:
        started = time.monotonic()
        while True:
            desc = await self._describe(arn)
            status = desc.get("ExportStatus")
            if status == "COMPLETED":
                return desc
            if status == "FAILED":
                raise ConnectorError(
                    f"export {arn} of {self.table_name} failed: {desc.get('FailureCode')}: {desc.get('FailureMessage')}"
                )
            log.info("export of %s %s for %.0fs; waiting", self.table_name, status, time.monotonic() - started)
            await asyncio.sleep(self._export.poll_interval_s)

    async def _request(self, runtime: TaskRuntime) -> str:
        """The export's ARN: stored by whoever requested it, or requested here.

        In a group the request is a unit too: only the owner of its partition requests the
        export and stores the ARN; the others wait until they see it stored. An owner that
        dies before storing it leaves the request to the next owner, whose repeated request
        carries the same ``ClientToken`` and so names the same export.
        """
        owns = getattr(runtime, "owns", None) or (lambda p: True)
        waiting_logged = False
        while True:
            self._wake.clear()
            stored = runtime.offsets.offset(self._request_partition)
            if stored and stored.get("export_arn"):
                log.info("export of %s already requested: %s", self.table_name, stored["export_arn"])
                return str(stored["export_arn"])
            if owns(self._request_partition):
                arn = await self._request_here(runtime, owns)
                if arn is not None:
                    return arn
                continue  # the request's partition moved away before its ARN was stored
            if not waiting_logged:
                log.info("export of %s: waiting for another worker of this name to request it", self.table_name)
                waiting_logged = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)

    async def _request_here(self, runtime: TaskRuntime, owns: Any) -> str | None:
        desc = (await self._ddb.call("DescribeTable", {"TableName": self.table_name}))["Table"]
        token = hashlib.sha256(f"{self._bridge_name}/{self.table_name}/{self._export.s3_prefix}".encode()).hexdigest()[:32]
        resp = await self._ddb.call(
            "ExportTableToPointInTime",
            {
                "TableArn": desc["TableArn"],
                "S3Bucket": self._export.s3_bucket,
                "S3Prefix": f"{(self._export.s3_prefix or '').strip('/')}/{self.table_name}-{token[:8]}",
                "ExportFormat": "DYNAMODB_JSON",
                "ClientToken": token,
            },
        )
        arn = resp["ExportDescription"]["ExportArn"]
        log.info("requested export of %s: %s", self.table_name, arn)
        if not owns(self._request_partition):
            return None  # moved to another worker during the request: its owner stores the ARN
        mark = OffsetTask(self._request_partition, {"export_arn": arn, "requested_ms": int(time.time() * 1000)}, "export-requested")
        self._marked.clear()
        self._mark_stopped = False
        runtime.start_task(mark)
        while not self._marked.is_set() and not self._mark_stopped:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
        return str(arn) if self._marked.is_set() else None

    async def _locate(self, runtime: TaskRuntime) -> ExportLocation:
        e = self._export
        arn = await self._request(runtime) if e.trigger else e.export_arn
        if arn is None:
            assert e.s3_bucket is not None
            return ExportLocation(e.s3_bucket, e.s3_prefix or "")
        desc = await self._wait_for(arn)
        return ExportLocation(desc["S3Bucket"], desc.get("S3Prefix") or "", arn, desc.get("ExportManifest"))

    # ---- running -----------------------------------------------------------------------

    async def run(self, runtime: TaskRuntime) -> None:
        if self.table is None:
            await self.validate()
        assert self.table is not None
        self._runtime = runtime
        if self._start_after is not None:
            await self._start_after.wait()
        loc = self.location = await self._locate(runtime)
        files = await asyncio.to_thread(find_data_files, self._s3, loc)
        expected = sum(c for _, c in files if c is not None) if all(c is not None for _, c in files) else None
        progress = self.progress = SnapshotProgress(
            self.table_name,
            kind="export",
            units="files",
            total_units=len(files),
            expected_items=expected if expected is not None else (self.table.item_count or None),
            interval_s=self._config.progress_interval_s,
            stream=self._progress_stream,
        )
        resumed = 0
        todo: list[dict[str, Any]] = []
        for key, _ in files:
            o = runtime.offsets.offset(self._partition(loc, key))
            if o and o.get("done"):
                progress.resumed(int(o.get("items", 0)), units_done=1)
                resumed += int(o.get("items", 0))
                continue
            if o:
                progress.resumed(int(o.get("items", 0)))
                resumed += int(o.get("items", 0))
            todo.append(self._partition(loc, key))
        log.info(
            "snapshot of %s from export %s: %d of %d files to read (%d at a time), %d items already published",
            self.table_name, loc.id, len(todo), len(files), self._export.parallel_files, resumed,
        )
        finished_here = 0
        if todo:
            run = self._units = UnitRun(
                runtime, todo, complete=lambda o: bool(o and o.get("done")), start=self._task,
                concurrency=self._export.parallel_files,
            )
            self._pool = decode_pool(self._config.decode_threads, f"export-{self.table_name}")
            try:
                await run.run()
            finally:
                self._units = None
                self._pool.shutdown(wait=False, cancel_futures=True)
            finished_here = run.finished_here
        progress.finish()
        log.info(
            "snapshot of %s complete: export %s, %d items read in this run, %d resumed from stored offsets; "
            "%d of %d files finished by this process",
            self.table_name, loc.id, self.items_this_run, resumed, finished_here, len(todo),
        )
        self.done.set()

    def _partition(self, loc: ExportLocation, key: str) -> dict[str, Any]:
        return {"table": self.table_name, "export": loc.id, "file": key}

    def _task(self, unit: dict[str, Any], resume: dict[str, Any] | None) -> ExportFileTask:
        assert self.location is not None and self.table is not None
        return ExportFileTask(
            s3=self._s3,
            bucket=self.location.bucket,
            key=str(unit["file"]),
            export_id=self.location.id,
            table=self.table,
            topic=self.topic,
            schema=self.record_format.schema(self.table.name, self.table.key_fields),
            resume=resume,
            progress=self.progress,
            pool=self._pool,
        )

    def task_finished(self, task: SourceTask, batch: Batch) -> None:
        if isinstance(task, OffsetTask):
            self._marked.set()
            self._wake.set()
            return
        assert isinstance(task, ExportFileTask)
        self.items_this_run += task.items_this_run
        if self.progress is not None:
            self.progress.unit_done()
        if self._units is not None:
            self._units.finished(task)

    def task_stopped(self, task: SourceTask) -> None:
        """The file (or the export request) moved to another worker of this name."""
        if isinstance(task, OffsetTask):
            self._mark_stopped = True
            self._wake.set()
            return
        assert isinstance(task, ExportFileTask)
        self.items_this_run += task.items_this_run
        if self._units is not None:
            self._units.stopped(task)

    def wake(self) -> None:
        """Ownership changed or another worker committed an offset."""
        self._wake.set()
        if self._units is not None:
            self._units.wake()
