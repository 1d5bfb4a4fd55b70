"""An export data file read through the decode pool: the records, their order and the line
offsets are those of a plain line-by-line reading, however the gzip stream and the decompressed
text are cut into chunks, with blank lines, a last line without its newline, several gzip
members, a restart at any stored line; and a cut-off file or a bad line stops with one line."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bridge.errors import ConnectorError
from connectors.dynamodb.export import ExportFileTask
from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.table import TableInfo

TABLE = TableInfo("t", "us-east-1", (KeyField("pk", "S"),), None, None, 0)


class FakeS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {"Body": io.BytesIO(self.objects[Key])}


def text(n: int) -> tuple[bytes, list[tuple[int, str | None]]]:
    """n lines, some blank, the last without its newline; with each line's (number, key)."""
    lines, want = [], []
    for i in range(n):
        if i % 97 == 5:
            lines.append(b" \t")
            want.append((i + 1, None))
        else:
            lines.append(json.dumps({"Item": {"pk": {"S": f"k{i}"}, "v": {"N": str(i)}}}).encode())
            want.append((i + 1, f"k{i}"))
    return b"\n".join(lines), want


def read_all(body: bytes, *, resume: dict[str, Any] | None = None, raw_chunk: int = 1 << 20,
             inflate_chunk: int = 4 << 20, pool: Any = None) -> list[Any]:
    async def main() -> list[Any]:
        task = ExportFileTask(s3=FakeS3({"f.gz": body}), bucket="b", key="f.gz", export_id="e", table=TABLE, topic="t",
                              resume=resume, progress=None, pool=pool)
        task.raw_chunk, task.inflate_chunk = raw_chunk, inflate_chunk
        batches = []
        while True:
            b = await task.poll()
            batches.append(b)
            if b.final:
                break
        await task.close()
        return batches

    return asyncio.run(main())


@pytest.mark.parametrize(("raw_chunk", "inflate_chunk"), [(1 << 20, 4 << 20), (7, 13), (1000, 97), (1, 1 << 20)])
def test_records_and_line_offsets_do_not_depend_on_chunking(raw_chunk: int, inflate_chunk: int) -> None:
    data, want = text(2345)
    body = gzip.compress(data[:40_000]) + gzip.compress(data[40_000:])  # two gzip members
    with ThreadPoolExecutor(2) as pool:
        batches = read_all(body, raw_chunk=raw_chunk, inflate_chunk=inflate_chunk, pool=pool)
    keys = [r.key["pk"]["S"] for b in batches for r in b.records]
    assert keys == [k for _, k in want if k is not None], "every item once, in file order"
    # each batch's offset is the line of its last record (or the file's end)
    seen = 0
    for b in batches:
        seen += len(b.records)
        if b.records and not b.final:
            last_key = b.records[-1].key["pk"]["S"]
            assert b.offset["line"] == next(n for n, k in want if k == last_key)
            assert len(b.records) == 1000
        assert b.offset["items"] == seen
    assert batches[-1].offset == {"line": 2345, "items": len(keys), "done": True}


@pytest.mark.parametrize("stored", [0, 1, 5, 6, 999, 1000, 1001, 2344, 2345])
def test_a_restart_at_any_stored_line_publishes_exactly_the_rest(stored: int) -> None:
    data, want = text(2345)
    items_before = sum(1 for n, k in want if k is not None and n <= stored)
    batches = read_all(gzip.compress(data), resume={"line": stored, "items": items_before, "done": False},
                       raw_chunk=333, inflate_chunk=1024)
    keys = [r.key["pk"]["S"] for b in batches for r in b.records]
    assert keys == [k for n, k in want if k is not None and n > stored]
    assert batches[-1].offset == {"line": 2345, "items": items_before + len(keys), "done": True}


def test_a_cut_off_file_and_a_bad_line_stop_with_one_line() -> None:
    data, _ = text(50)
    with pytest.raises(ConnectorError, match=r"s3://b/f.gz at line \d+: Compressed file ended"):
        read_all(gzip.compress(data)[:-9])
    bad = data.replace(b'{"Item": {"pk": {"S": "k7"}', b'{"Itm": {"pk": {"S": "k7"}', 1)
    with pytest.raises(ConnectorError, match=r"s3://b/f.gz line 8: not DYNAMODB_JSON"):
        read_all(gzip.compress(bad))


def test_an_empty_file_is_done_at_once() -> None:
    assert [(b.records, b.offset) for b in read_all(b"")] == [([], {"line": 0, "items": 0, "done": True})]
    assert [(b.records, b.offset) for b in read_all(gzip.compress(b""))] == [([], {"line": 0, "items": 0, "done": True})]


def test_decode_threads_is_checked_at_start() -> None:
    from pydantic import ValidationError

    from connectors.dynamodb.config import SnapshotConfig

    assert SnapshotConfig().decode_threads is None  # default: the cores the process may use
    assert SnapshotConfig(decode_threads=3).decode_threads == 3
    for bad in (0, 65, "many"):
        with pytest.raises(ValidationError, match="decode_threads"):
            SnapshotConfig(decode_threads=bad)
