"""An export data file read through the decode pool: the records, their order and the line
offsets are those of a plain line-by-line reading, however the gzip stream and the decompressed
text are cut into chunks, with blank lines, a last line without its newline, several gzip
members, a restart at any stored line; a cut-off file stops with one line, a bad line is one
record that does not convert."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import ConnectorError
from bridge.task import UnreadableRecord
from connectors.dynamodb import export
from connectors.dynamodb.export import ExportFileTask
from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.table import TableInfo

TABLE = TableInfo("t", "us-east-1", (KeyField("pk", "S"),), None, None, 0)

C_INFLATER = None if export.Inflater is export._Inflater else export.Inflater


def test_the_c_inflater_is_built() -> None:
    """Where the C transcoder builds, so does the inflater (zlib's headers come with Python's
    build needs): without it every test below would only read the Python one."""
    from connectors.dynamodb import transcode

    assert transcode.ItemWriter is None or C_INFLATER is not None


@pytest.fixture(params=["C", "Python"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A reading test marked ``with_both_inflaters`` runs with each (C: zlib without the GIL;
    Python: the zlib module)."""
    cls = C_INFLATER if request.param == "C" else export._Inflater
    if cls is None:
        pytest.fail("the C inflater is not built (see test_the_c_inflater_is_built)")
    monkeypatch.setattr(export, "Inflater", cls)
    return cls


with_both_inflaters = pytest.mark.usefixtures("inflater")


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


@with_both_inflaters
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


@with_both_inflaters
@pytest.mark.parametrize("stored", [0, 1, 5, 6, 999, 1000, 1001, 2344, 2345])
def test_a_restart_at_any_stored_line_publishes_exactly_the_rest(stored: int) -> None:
    data, want = text(2345)
    items_before = sum(1 for n, k in want if k is not None and n <= stored)
    batches = read_all(gzip.compress(data), resume={"line": stored, "items": items_before, "done": False},
                       raw_chunk=333, inflate_chunk=1024)
    keys = [r.key["pk"]["S"] for b in batches for r in b.records]
    assert keys == [k for n, k in want if k is not None and n > stored]
    assert batches[-1].offset == {"line": 2345, "items": items_before + len(keys), "done": True}


@with_both_inflaters
def test_a_cut_off_file_stops_with_one_line() -> None:
    data, _ = text(50)
    with pytest.raises(ConnectorError, match=r"s3://b/f.gz at line \d+: Compressed file ended"):
        read_all(gzip.compress(data)[:-9])


@with_both_inflaters
@pytest.mark.parametrize(("line", "why"), [
    (b'{"Itm": {"pk": {"S": "k7"}}}', "not a DYNAMODB_JSON line"),
    (b'{"Item": [1]}', "not a DYNAMODB_JSON line"),
    (b"[1, 2]", "not a DYNAMODB_JSON line"),
    (b'{"Item": {"pk": {"S": "k7"', "not JSON"),
    (b'{"Item": {}}', "without key attribute 'pk'"),
    (b'{"Item": {"v": {"N": "1"}}}', "without key attribute 'pk'"),
])
def test_a_bad_line_is_one_unreadable_record_and_the_file_goes_on(line: bytes, why: str) -> None:
    """A corrupt line is that line's problem: a record that does not convert (errors.tolerance
    decides: dead letter or stop, naming the line), never the end of the snapshot, and never
    blamed on a projection_expression, which an export does not have."""
    data, want = text(50)
    lines = data.split(b"\n")
    lines[7] = line
    batches = read_all(gzip.compress(b"\n".join(lines)))
    records = [r for b in batches for r in b.records]
    bad = [r for r in records if isinstance(r, UnreadableRecord)]
    assert len(bad) == 1 and "s3://b/f.gz line 8" in bad[0].reason and why in bad[0].reason, [r.reason for r in bad]
    assert bad[0].raw == line.decode()
    good = [r.key["pk"]["S"] for r in records if not isinstance(r, UnreadableRecord)]
    assert good == [k for n, k in want if k is not None and n != 8]
    assert batches[-1].offset["done"] and batches[-1].offset["line"] == 50


@with_both_inflaters
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


def _drain(cls: Any, body: bytes, raw: int, limit: int) -> bytes:
    inf, out = cls(), b""
    for i in range(0, len(body), raw):
        inf.feed(body[i:i + raw])
        while not inf.hungry:
            out += inf.inflate_after(b"", 0, limit)
    inf.finish()
    return out


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(st.binary(max_size=3000), min_size=1, max_size=4), raw=st.integers(1, 4000),
       limit=st.integers(1, 4000), keep=st.binary(max_size=50))
def test_c_and_python_inflaters_give_the_same_bytes(parts: list[bytes], raw: int, limit: int, keep: bytes) -> None:
    body = b"".join(gzip.compress(p, 1 + len(p) % 9) for p in parts)
    want = b"".join(parts)
    assert _drain(export._Inflater, body, raw, limit) == want
    if C_INFLATER is not None:
        assert _drain(C_INFLATER, body, raw, limit) == want
        # the unread tail goes in front of the new bytes
        inf = C_INFLATER()
        inf.feed(body)
        got = inf.inflate_after(b"x" + keep, 1, limit)
        assert got == keep + want[:limit]


@pytest.mark.parametrize("cut", [1, 9, 20])
def test_a_member_cut_short_and_garbage_after_a_member_are_errors(cut: int) -> None:
    import zlib

    body = gzip.compress(b"abc" * 1000)
    for cls in filter(None, (export._Inflater, C_INFLATER)):
        with pytest.raises(EOFError):
            _drain(cls, body[:-cut], 7, 100)
        with pytest.raises(zlib.error):
            _drain(cls, body + b"not gzip", 7, 100)
