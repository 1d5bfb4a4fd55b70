"""The doubles the fault tests stand on: the Streams double's table API (DescribeTable, Scan,
ListTables, ListTagsOfResource, many tables on one endpoint) through real boto3 clients,
and the TCP proxy's cut and restore. Fast: no bridge process, no broker."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.doubles.streams_double import StreamsDouble
from tests.doubles.tcp_proxy import TcpProxy


@pytest.fixture
def double() -> Iterator[StreamsDouble]:
    d = StreamsDouble("orders", (("pk", "S"), ("sk", "N")), shards=2).start()
    yield d
    d.stop()


def ddb(double: StreamsDouble) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=double.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )


def key(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"p{i}"}, "sk": {"N": str(i)}}


def test_describe_table_names_the_stream_and_key_schema(double: StreamsDouble) -> None:
    client = ddb(double)
    double.put(key(1), new_image={**key(1), "a": {"S": "x"}})
    double.put(key(2))
    double.put(key(1), old_image={**key(1), "a": {"S": "x"}}, event="REMOVE")
    t = client.describe_table(TableName="orders")["Table"]
    assert t["TableStatus"] == "ACTIVE" and t["TableName"] == "orders"
    assert t["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert {a["AttributeName"]: a["AttributeType"] for a in t["AttributeDefinitions"]} == {"pk": "S", "sk": "N"}
    assert t["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert t["LatestStreamArn"] == double.stream_arn
    assert t["ItemCount"] == 1
    assert client.describe_table(TableName=double.table_arn)["Table"]["TableName"] == "orders"
    assert double.calls.count("DescribeTable") == 2

    double.stream_enabled = False
    t = client.describe_table(TableName="orders")["Table"]
    assert t["StreamSpecification"] == {"StreamEnabled": False} and "LatestStreamArn" not in t


def test_describe_table_errors_and_faults(double: StreamsDouble) -> None:
    client = ddb(double)
    with pytest.raises(ClientError) as exc:
        client.describe_table(TableName="nope")
    assert exc.value.response["Error"]["Code"] == "ResourceNotFoundException"
    rule = double.faults.add("InternalServerError", op="DescribeTable")
    with pytest.raises(ClientError) as exc:
        client.describe_table(TableName="orders")
    assert exc.value.response["Error"]["Code"] == "InternalServerError" and rule.fired == 1
    with pytest.raises(ClientError) as exc:
        client.put_item(TableName="orders", Item=key(1))  # the double serves no writes
    assert exc.value.response["Error"]["Code"] == "UnknownOperationException"


def test_scan_serves_the_table_the_stream_built(double: StreamsDouble) -> None:
    client = ddb(double)
    for i in range(25):
        double.put(key(i), new_image={**key(i), "v": {"N": "1"}})
    double.put(key(3), new_image={**key(3), "v": {"N": "2"}}, old_image={**key(3), "v": {"N": "1"}}, event="MODIFY")
    double.put(key(4), old_image={**key(4), "v": {"N": "1"}}, event="REMOVE")

    items = client.get_paginator("scan").paginate(TableName="orders", PaginationConfig={"PageSize": 7})
    rows = [it for page in items for it in page["Items"]]
    assert len(rows) == 24
    by_pk = {r["pk"]["S"]: r for r in rows}
    assert by_pk["p3"]["v"] == {"N": "2"} and "p4" not in by_pk

    segments = []
    for seg in range(3):
        pages = client.get_paginator("scan").paginate(
            TableName="orders", Segment=seg, TotalSegments=3, PaginationConfig={"PageSize": 5}
        )
        segments.append({it["pk"]["S"] for page in pages for it in page["Items"]})
    assert sum(len(s) for s in segments) == 24 and set().union(*segments) == set(by_pk)


def streams(double: StreamsDouble) -> Any:
    return boto3.client(
        "dynamodbstreams",
        endpoint_url=double.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )


def _read_all(client: Any, d: StreamsDouble) -> dict[str, list[str]]:
    """Every shard of ``d``'s stream read from TRIM_HORIZON: shard id -> partition keys."""
    shards = client.describe_stream(StreamArn=d.stream_arn)["StreamDescription"]["Shards"]
    out: dict[str, list[str]] = {}
    for s in shards:
        it = client.get_shard_iterator(StreamArn=d.stream_arn, ShardId=s["ShardId"],
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        page = client.get_records(ShardIterator=it)
        out[s["ShardId"]] = [r["dynamodb"]["Keys"]["pk"]["S"] for r in page["Records"]]
    return out


def test_one_endpoint_serves_many_tables_each_with_its_own_stream(double: StreamsDouble) -> None:
    """add_table: ListTables pages through every live table, and each table's DescribeTable,
    tags, shard tree, iterators and records are its own, all on the first table's endpoint."""
    client, sc = ddb(double), streams(double)
    others = [double.add_table(f"t{i:03d}", shards=1 + i % 3, tags={"cdc": "on" if i % 2 else "off"})
              for i in range(120)]
    assert all(t.endpoint_url == double.endpoint_url for t in others)
    assert len({s.shard_id for t in double.tables for s in t.shards}) == sum(len(t.shards) for t in double.tables)
    names = [n for page in client.get_paginator("list_tables").paginate(PaginationConfig={"PageSize": 50})
             for n in page["TableNames"]]
    assert names == sorted(["orders"] + [t.table for t in others])

    a, b = others[4], others[5]
    assert client.describe_table(TableName=a.table)["Table"]["LatestStreamArn"] == a.stream_arn
    assert client.describe_table(TableName=b.table_arn)["Table"]["TableName"] == b.table
    assert client.list_tags_of_resource(ResourceArn=b.table_arn)["Tags"] == [{"Key": "cdc", "Value": "on"}]
    assert client.list_tags_of_resource(ResourceArn=double.table_arn)["Tags"] == []
    left, right = a.split(a.open_shard_ids()[0])
    for i in range(20):
        a.put({"pk": {"S": f"a{i}"}})
        b.put({"pk": {"S": f"b{i}"}})
    got_a, got_b = _read_all(sc, a), _read_all(sc, b)
    assert sorted(k for ks in got_a.values() for k in ks) == sorted(f"a{i}" for i in range(20))
    assert set(got_a) == {s.shard_id for s in a.shards} and {left, right} <= set(got_a)
    assert sorted(k for ks in got_b.values() for k in ks) == sorted(f"b{i}" for i in range(20))
    assert double.records_served.total() == 0  # the first table served nothing of theirs
    assert double.calls.count("GetRecords") == len(got_a) + len(got_b)  # one endpoint's counts

    b.delete_table()
    assert b.table not in client.list_tables()["TableNames"] and a.table in client.list_tables()["TableNames"]
    for call in (lambda: client.describe_table(TableName=b.table),
                 lambda: client.list_tags_of_resource(ResourceArn=b.table_arn),
                 lambda: sc.describe_stream(StreamArn=b.stream_arn)):
        with pytest.raises(ClientError) as exc:
            call()
        assert exc.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert sc.describe_stream(StreamArn=a.stream_arn)["StreamDescription"]["TableName"] == a.table
    assert {s["TableName"] for s in sc.list_streams(Limit=100)["Streams"]} <= {t.table for t in double.tables}
    assert [s["StreamArn"] for s in sc.list_streams(TableName=a.table)["Streams"]] == [a.stream_arn]
    with pytest.raises(ValueError, match="already served"):
        double.add_table(a.table)
    with pytest.raises(RuntimeError, match="first table's endpoint"):
        a.start()


def test_a_table_added_while_a_client_runs_is_listed_and_readable(double: StreamsDouble) -> None:
    client, sc = ddb(double), streams(double)
    assert client.list_tables()["TableNames"] == ["orders"]
    late = double.add_table("late", (("id", "N"),), shards=2)
    assert client.list_tables()["TableNames"] == ["late", "orders"]
    late.put({"id": {"N": "7"}})
    desc = client.describe_table(TableName="late")["Table"]
    assert desc["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}] and desc["ItemCount"] == 1
    shards = sc.describe_stream(StreamArn=late.stream_arn)["StreamDescription"]["Shards"]
    assert len(shards) == 2
    rule = double.faults.add("ThrottlingException", op="DescribeStream")  # one fault plan per endpoint
    with pytest.raises(ClientError):
        sc.describe_stream(StreamArn=late.stream_arn)
    assert rule.fired == 1


def test_tcp_proxy_forwards_cuts_and_restores() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server_port = server.getsockname()[1]

    def echo() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: _echo(c), daemon=True).start()

    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    proxy = TcpProxy(("127.0.0.1", server_port)).start()
    try:
        c = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        c.sendall(b"ping")
        assert c.recv(16) == b"ping"

        proxy.cut("refuse")
        with pytest.raises(OSError):  # the open connection was reset
            c.sendall(b"x")
            if not c.recv(16):
                raise ConnectionResetError("closed")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        proxy.restore()
        c = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        c.sendall(b"back")
        assert c.recv(16) == b"back"

        proxy.cut("blackhole")
        c.sendall(b"lost")
        c.settimeout(0.5)
        with pytest.raises(TimeoutError):
            c.recv(16)
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)  # accepted, never answered
        held.settimeout(0.5)
        held.sendall(b"hello?")
        with pytest.raises(TimeoutError):
            held.recv(16)
        assert proxy.accepted_while_cut >= 1 and proxy.bytes_dropped >= 4
        proxy.restore()
        deadline = time.monotonic() + 2
        with pytest.raises(OSError):  # blackholed connections are reset on restore
            while time.monotonic() < deadline:
                held.settimeout(0.2)
                try:
                    if held.recv(16) == b"":
                        raise ConnectionResetError("closed")
                except TimeoutError:
                    continue
        c = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        c.sendall(b"again")
        assert c.recv(16) == b"again"
    finally:
        proxy.stop()
        server.close()
