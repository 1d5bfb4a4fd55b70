"""Export reading without S3: finding the data files, and resuming a file at its stored line."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from typing import Any

import pytest

from bridge.errors import ConfigError
from connectors.dynamodb.export import ExportFileTask, ExportLocation, find_data_files
from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.table import TableInfo

TABLE = TableInfo("t", "us-east-1", (KeyField("pk", "S"),), None, None, 0)


class FakeS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.gets: list[str] = []

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self.gets.append(Key)
        return {"Body": io.BytesIO(self.objects[Key])}

    def get_paginator(self, name: str) -> Any:
        objects = self.objects

        class P:
            def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, Any]]:  # noqa: N803
                return [{"Contents": [{"Key": k} for k in sorted(objects) if k.startswith(Prefix)]}]

        return P()


def data(n: int, start: int = 0) -> bytes:
    return gzip.compress("".join(json.dumps({"Item": {"pk": {"S": f"k{i}"}}}) + "\n" for i in range(start, start + n)).encode())


def test_manifest_from_describe_export_names_the_files() -> None:
    d = "p/AWSDynamoDB/0001-a"
    s3 = FakeS3({
        f"{d}/manifest-summary.json": json.dumps({"manifestFilesS3Key": f"{d}/manifest-files.json"}).encode(),
        f"{d}/manifest-files.json": (json.dumps({"itemCount": 3, "dataFileS3Key": f"{d}/data/a.json.gz"}) + "\n"
                                     + json.dumps({"itemCount": 4, "dataFileS3Key": f"{d}/data/b.json.gz"})).encode(),
    })
    files = find_data_files(s3, ExportLocation("b", "p", "arn:x", f"{d}/manifest-summary.json"))
    assert files == [(f"{d}/data/a.json.gz", 3), (f"{d}/data/b.json.gz", 4)]


def test_listing_finds_a_manifest_or_the_data_files_and_refuses_two_exports() -> None:
    d = "p/AWSDynamoDB/0001-a"
    with_manifest = FakeS3({f"{d}/manifest-files.json": json.dumps({"dataFileS3Key": f"{d}/data/x.json.gz"}).encode(),
                            f"{d}/data/x.json.gz": b""})
    assert find_data_files(with_manifest, ExportLocation("b", "p")) == [(f"{d}/data/x.json.gz", None)]
    moto_like = FakeS3({f"{d}/data/2.gz": b"", f"{d}/data/1.gz": b"", "p/other.txt": b""})
    assert [k for k, _ in find_data_files(moto_like, ExportLocation("b", "p"))] == [f"{d}/data/1.gz", f"{d}/data/2.gz"]
    two = FakeS3({f"{d}/data/1.gz": b"", "p/AWSDynamoDB/0002-b/data/1.gz": b""})
    with pytest.raises(ConfigError, match="2 exports"):
        find_data_files(two, ExportLocation("b", "p"))
    with pytest.raises(ConfigError, match="no export data files"):
        find_data_files(FakeS3({}), ExportLocation("b", "p"))


def test_a_file_resumes_after_its_stored_line() -> None:
    async def main() -> None:
        s3 = FakeS3({"f.gz": data(2500)})
        task = ExportFileTask(s3=s3, bucket="b", key="f.gz", export_id="e", table=TABLE, topic="t",
                              resume={"line": 1800, "items": 1800, "done": False}, progress=None)
        batches = []
        while True:
            b = await task.poll()
            batches.append(b)
            if b.final:
                break
        keys = [r.key["pk"]["S"] for b in batches for r in b.records]
        assert keys == [f"k{i}" for i in range(1800, 2500)], "nothing before the stored line is published again"
        assert batches[-1].offset == {"line": 2500, "items": 2500, "done": True}
        assert task.items_this_run == 700
        assert all(r.op == "r" and r.before is None and r.source["snapshot"] == "export" for b in batches for r in b.records)
        await task.close()

    asyncio.run(main())
