"""The doubles the fault tests stand on: the Streams double's table API (DescribeTable, Scan)
through a real boto3 DynamoDB client, and the TCP proxy's cut and restore. Fast: no
bridge process, no broker."""

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
