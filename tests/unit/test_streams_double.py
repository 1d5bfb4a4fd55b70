"""The Streams double, driven the way production drives DynamoDB Streams: a real
boto3 client (SigV4, JSON protocol, keep-alive HTTP/1.1) against its endpoint, or
raw signed HTTP where the wire shape itself is under test."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError, ReadTimeoutError

from tests.doubles.streams_double import ManualClock, StreamsDouble

TARGET = "DynamoDBStreams_20120810."
_session = boto3.session.Session()


def make_client(double: StreamsDouble, **config: Any) -> Any:
    # total_max_attempts=1: botocore's legacy ``max_attempts`` counts *retries*, so
    # {"max_attempts": 1} would still retry once and hide a single scripted fault.
    config.setdefault("retries", {"total_max_attempts": 1})
    return _session.client(
        "dynamodbstreams",
        endpoint_url=double.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(**config),
    )


def signed(double: StreamsDouble, op: str, params: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(params).encode()
    req = AWSRequest(
        method="POST",
        url=double.endpoint_url + "/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": TARGET + op},
    )
    SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "dynamodb", "us-east-1").add_auth(req)
    return body, dict(req.headers.items())


def raw_call(double: StreamsDouble, op: str, params: dict[str, Any]) -> httpx.Response:
    body, headers = signed(double, op, params)
    return httpx.post(double.endpoint_url + "/", content=body, headers=headers)


def key(i: int | str) -> dict[str, Any]:
    return {"pk": {"S": f"item-{i}"}}


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def describe_all(client: Any, double: StreamsDouble) -> dict[str, dict[str, Any]]:
    shards: dict[str, dict[str, Any]] = {}
    start = None
    while True:
        kw = {"ExclusiveStartShardId": start} if start else {}
        desc = client.describe_stream(StreamArn=double.stream_arn, **kw)["StreamDescription"]
        for s in desc["Shards"]:
            assert s["ShardId"] not in shards
            shards[s["ShardId"]] = s
        start = desc.get("LastEvaluatedShardId")
        if not start:
            return shards


def iterator(client: Any, double: StreamsDouble, shard: str, kind: str = "TRIM_HORIZON", **kw: Any) -> str:
    return client.get_shard_iterator(
        StreamArn=double.stream_arn, ShardId=shard, ShardIteratorType=kind, **kw
    )["ShardIterator"]


def seqs(records: list[dict[str, Any]]) -> list[str]:
    return [r["dynamodb"]["SequenceNumber"] for r in records]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def double(clock: ManualClock) -> Iterator[StreamsDouble]:
    with StreamsDouble(clock=clock) as d:
        yield d


@pytest.fixture
def client(double: StreamsDouble) -> Any:
    return make_client(double)


@pytest.fixture
def root(double: StreamsDouble) -> str:
    (only,) = double.open_shard_ids()
    return only


# --------------------------------------------------------------------------- DescribeStream


@pytest.mark.parametrize(("n_shards", "page_sizes"), [(5, [2, 2, 1]), (4, [2, 2, 0])])
def test_describe_stream_pages_through_every_shard_once(
    clock: ManualClock, n_shards: int, page_sizes: list[int]
) -> None:
    with StreamsDouble(shards=n_shards, clock=clock) as d:
        d.describe_page_size = 2
        c = make_client(d)
        sizes, ids, start = [], [], None
        while True:
            kw = {"ExclusiveStartShardId": start} if start else {}
            desc = c.describe_stream(StreamArn=d.stream_arn, **kw)["StreamDescription"]
            sizes.append(len(desc["Shards"]))
            ids += [s["ShardId"] for s in desc["Shards"]]
            start = desc.get("LastEvaluatedShardId")
            if start is None:
                break
        assert sizes == page_sizes  # a full page always carries a marker, even the last
        assert ids == [s.shard_id for s in d.shards]
        assert d.calls["DescribeStream"] == len(page_sizes)


def test_describe_stream_limit_overrides_page_size_and_is_bounded(clock: ManualClock) -> None:
    with StreamsDouble(shards=5, clock=clock) as d:
        d.describe_page_size = 2
        c = make_client(d)
        first = c.describe_stream(StreamArn=d.stream_arn, Limit=3)["StreamDescription"]
        assert len(first["Shards"]) == 3
        rest = c.describe_stream(
            StreamArn=d.stream_arn, Limit=3, ExclusiveStartShardId=first["LastEvaluatedShardId"]
        )["StreamDescription"]
        assert len(rest["Shards"]) == 2 and "LastEvaluatedShardId" not in rest
        with pytest.raises(ClientError) as exc:
            c.describe_stream(StreamArn=d.stream_arn, Limit=101)
        assert error_code(exc) == "ValidationException"


def test_describe_stream_describes_the_table_and_rejects_other_arns(clock: ManualClock) -> None:
    with StreamsDouble("orders", [("pk", "S"), ("sk", "N")], "NEW_IMAGE", clock=clock) as d:
        c = make_client(d)
        desc = c.describe_stream(StreamArn=d.stream_arn)["StreamDescription"]
        assert desc["TableName"] == "orders"
        assert desc["StreamViewType"] == "NEW_IMAGE"
        assert desc["StreamStatus"] == "ENABLED"
        assert desc["KeySchema"] == [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ]
        assert d.stream_arn.startswith("arn:aws:dynamodb:us-east-1:") and "/stream/" in d.stream_arn
        with pytest.raises(ClientError) as exc:
            c.describe_stream(StreamArn=d.stream_arn.replace("orders", "other"))
        assert error_code(exc) == "ResourceNotFoundException"


def test_list_streams_finds_the_table_stream(double: StreamsDouble, client: Any) -> None:
    streams = client.list_streams()["Streams"]
    assert streams == [
        {"StreamArn": double.stream_arn, "TableName": "t", "StreamLabel": double.stream_label}
    ]
    assert client.list_streams(TableName="other")["Streams"] == []


# --------------------------------------------------------------------------- lineage


def test_split_closes_parent_and_children_name_it(double: StreamsDouble, client: Any, root: str) -> None:
    before = [double.put(key(i)) for i in range(20)]
    c1, c2 = double.split(root)
    shards = describe_all(client, double)

    parent = shards[root]["SequenceNumberRange"]
    assert parent["EndingSequenceNumber"] == before[-1].sequence_number
    for child in (c1, c2):
        assert shards[child]["ParentShardId"] == root
        assert "EndingSequenceNumber" not in shards[child]["SequenceNumberRange"]
        assert int(shards[child]["SequenceNumberRange"]["StartingSequenceNumber"]) > int(
            parent["EndingSequenceNumber"]
        )
    assert len(shards[c1]["ShardId"]) == len("shardId-00000001700000000000-abcdef12")

    after = [double.put(key(i), event="MODIFY") for i in range(20)]
    assert {p.shard_id for p in after} == {c1, c2}
    again = [double.put(key(i), event="MODIFY") for i in range(20)]
    assert [p.shard_id for p in again] == [p.shard_id for p in after]
    assert min(int(p.sequence_number) for p in after) > int(parent["EndingSequenceNumber"])


def test_split_of_an_empty_shard_ends_at_its_start(double: StreamsDouble, root: str) -> None:
    double.split(root)
    view = double.shard(root)
    assert view.ending_sequence_number == view.starting_sequence_number
    with pytest.raises(ValueError):
        double.split(root)


def test_merge_names_both_parents_on_the_wire(clock: ManualClock) -> None:
    with StreamsDouble(shards=2, clock=clock) as d:
        a, b = d.open_shard_ids()
        child = d.merge(a, b)
        c = make_client(d)
        shards = describe_all(c, d)
        assert shards[child]["ParentShardId"] == a
        assert "EndingSequenceNumber" in shards[a]["SequenceNumberRange"]
        assert "EndingSequenceNumber" in shards[b]["SequenceNumberRange"]

        wire = raw_call(d, "DescribeStream", {"StreamArn": d.stream_arn}).json()
        by_id = {s["ShardId"]: s for s in wire["StreamDescription"]["Shards"]}
        assert by_id[child]["AdjacentParentShardId"] == b

        d.expose_adjacent_parent = False
        wire = raw_call(d, "DescribeStream", {"StreamArn": d.stream_arn}).json()
        by_id = {s["ShardId"]: s for s in wire["StreamDescription"]["Shards"]}
        assert "AdjacentParentShardId" not in by_id[child]
        assert {d.put(key(i)).shard_id for i in range(10)} == {child}


def test_rollover_hands_every_key_to_one_successor(double: StreamsDouble, client: Any, root: str) -> None:
    double.put(key(1))
    child = double.rollover(root)
    shards = describe_all(client, double)
    assert shards[child]["ParentShardId"] == root
    assert {double.put(key(i)).shard_id for i in range(10)} == {child}


def test_child_shards_filter_returns_only_that_shards_children(
    double: StreamsDouble, client: Any, root: str
) -> None:
    c1, c2 = double.split(root)
    g1, g2 = double.split(c1)

    def children(of: str) -> set[str]:
        desc = client.describe_stream(
            StreamArn=double.stream_arn, ShardFilter={"Type": "CHILD_SHARDS", "ShardId": of}
        )["StreamDescription"]
        return {s["ShardId"] for s in desc["Shards"]}

    assert children(root) == {c1, c2}
    assert children(c1) == {g1, g2}
    assert children(c2) == set()
    assert double.calls["DescribeStream", c1] == 1


def test_sequence_numbers_rise_within_shards_and_down_lineage(double: StreamsDouble, root: str) -> None:
    first = [int(double.put(key(i)).sequence_number) for i in range(5)]
    assert {y - x for x, y in zip(first, first[1:])} != {1}  # "next = previous + 1" is never safe
    a, b = double.split(root)
    for i in range(30):
        double.put(key(i))
    _, a2 = double.split(a)
    merged = double.merge(a2, b)
    double.rollover(merged)
    for i in range(30):
        double.put(key(i), event="MODIFY")
    views = {v.shard_id: v for v in double.shards}
    for v in views.values():
        numbers = [int(v.starting_sequence_number), *map(int, v.sequence_numbers)]
        assert numbers == sorted(set(numbers))
        assert all(len(n) >= 21 and n.isdigit() for n in v.sequence_numbers)
        if v.ending_sequence_number is not None:
            assert int(v.ending_sequence_number) >= numbers[-1]
        for parent in (v.parent_shard_id, v.adjacent_parent_shard_id):
            if parent is not None:
                assert int(v.starting_sequence_number) > int(views[parent].ending_sequence_number)


# --------------------------------------------------------------------------- GetRecords


def test_closed_shard_read_to_its_end_has_no_next_iterator(
    double: StreamsDouble, client: Any, root: str
) -> None:
    puts = [double.put(key(i)) for i in range(3)]
    double.rollover(root)
    page1 = client.get_records(ShardIterator=iterator(client, double, root), Limit=2)
    assert seqs(page1["Records"]) == [p.sequence_number for p in puts[:2]]
    page2 = client.get_records(ShardIterator=page1["NextShardIterator"], Limit=2)
    assert seqs(page2["Records"]) == [puts[2].sequence_number]
    assert "NextShardIterator" not in page2


def test_closed_shard_can_end_with_a_separate_empty_page(
    double: StreamsDouble, client: Any, root: str
) -> None:
    double.closed_shard_final_empty_page = True
    put = double.put(key(1))
    double.rollover(root)
    page = client.get_records(ShardIterator=iterator(client, double, root))
    assert seqs(page["Records"]) == [put.sequence_number]
    last = client.get_records(ShardIterator=page["NextShardIterator"])
    assert last["Records"] == [] and "NextShardIterator" not in last


def test_idle_open_shard_returns_empty_pages_and_each_costs_a_call(clock: ManualClock) -> None:
    with StreamsDouble(shards=2, clock=clock) as d:
        idle, other = d.open_shard_ids()
        c = make_client(d)
        it = iterator(c, d, idle)
        for _ in range(3):
            page = c.get_records(ShardIterator=it)
            assert page["Records"] == []
            it = page["NextShardIterator"]
        assert d.calls["GetRecords", idle] == 3
        assert d.calls["GetRecords", other] == 0
        put = d.put(key("late"), shard=idle)
        assert seqs(c.get_records(ShardIterator=it)["Records"]) == [put.sequence_number]


def test_scripted_empty_pages_come_before_waiting_records(
    double: StreamsDouble, client: Any, root: str
) -> None:
    double.empty_pages_before_data = 2
    put = double.put(key(1))
    it = iterator(client, double, root)
    for _ in range(2):
        page = client.get_records(ShardIterator=it)
        assert page["Records"] == []
        it = page["NextShardIterator"]
    assert seqs(client.get_records(ShardIterator=it)["Records"]) == [put.sequence_number]
    assert double.calls["GetRecords", root] == 3


def test_after_and_at_sequence_number_position_exactly(double: StreamsDouble, client: Any, root: str) -> None:
    puts = [double.put(key(i)) for i in range(5)]
    all_seqs = [p.sequence_number for p in puts]
    after = iterator(client, double, root, "AFTER_SEQUENCE_NUMBER", SequenceNumber=all_seqs[1])
    assert seqs(client.get_records(ShardIterator=after)["Records"]) == all_seqs[2:]
    at = iterator(client, double, root, "AT_SEQUENCE_NUMBER", SequenceNumber=all_seqs[1])
    assert seqs(client.get_records(ShardIterator=at)["Records"]) == all_seqs[1:]
    last = iterator(client, double, root, "AFTER_SEQUENCE_NUMBER", SequenceNumber=all_seqs[-1])
    page = client.get_records(ShardIterator=last)
    assert page["Records"] == [] and "NextShardIterator" in page


@pytest.mark.parametrize("bad", ["not-a-number-at-all-xyz", "before-start", "beyond-end"])
def test_sequence_numbers_outside_the_shard_are_rejected(
    double: StreamsDouble, client: Any, root: str, bad: str
) -> None:
    put = double.put(key(1))
    start = int(double.shard(root).starting_sequence_number)
    value = {"before-start": str(start - 1), "beyond-end": str(int(put.sequence_number) + 1)}.get(bad, bad)
    with pytest.raises(ClientError) as exc:
        iterator(client, double, root, "AT_SEQUENCE_NUMBER", SequenceNumber=value)
    assert error_code(exc) == "ValidationException"


def test_latest_sees_only_later_records(double: StreamsDouble, client: Any, root: str) -> None:
    double.put(key(1))
    it = iterator(client, double, root, "LATEST")
    page = client.get_records(ShardIterator=it)
    assert page["Records"] == []
    put = double.put(key(2))
    assert seqs(client.get_records(ShardIterator=page["NextShardIterator"])["Records"]) == [put.sequence_number]


def test_at_timestamp_starts_at_first_record_not_older(
    double: StreamsDouble, client: Any, clock: ManualClock, root: str
) -> None:
    double.put(key(1))
    clock.advance(10)
    later = double.put(key(2))
    it = iterator(client, double, root, "AT_TIMESTAMP", Timestamp=clock() - 5)
    assert seqs(client.get_records(ShardIterator=it)["Records"]) == [later.sequence_number]
    with pytest.raises(ClientError) as exc:
        iterator(client, double, root, "AT_TIMESTAMP", Timestamp=clock() + 60)
    assert error_code(exc) == "ValidationException"


def test_get_records_limit_and_page_bytes(double: StreamsDouble, client: Any, root: str) -> None:
    for i in range(5):
        double.put(key(i), new_image={**key(i), "blob": {"S": "x" * 400}})
    with pytest.raises(ClientError) as exc:
        client.get_records(ShardIterator=iterator(client, double, root), Limit=1001)
    assert error_code(exc) == "ValidationException"
    double.max_page_bytes = 1000  # about two of these records
    page = client.get_records(ShardIterator=iterator(client, double, root))
    assert 1 <= len(page["Records"]) < 5
    double.max_page_bytes = 1
    assert len(client.get_records(ShardIterator=iterator(client, double, root))["Records"]) == 1


# --------------------------------------------------------------------------- trimming, ageing


def test_trim_moves_the_horizon_under_readers(double: StreamsDouble, client: Any, root: str) -> None:
    all_seqs = [double.put(key(i)).sequence_number for i in range(5)]
    old = iterator(client, double, root)
    assert double.trim(root, count=2) == 2

    with pytest.raises(ClientError) as exc:
        client.get_records(ShardIterator=old)
    assert error_code(exc) == "TrimmedDataAccessException"
    assert seqs(client.get_records(ShardIterator=iterator(client, double, root))["Records"]) == all_seqs[2:]
    with pytest.raises(ClientError) as exc:
        iterator(client, double, root, "AT_SEQUENCE_NUMBER", SequenceNumber=all_seqs[0])
    assert error_code(exc) == "TrimmedDataAccessException"
    # A reader that committed the last trimmed record lost nothing: it may resume.
    resumed = iterator(client, double, root, "AFTER_SEQUENCE_NUMBER", SequenceNumber=all_seqs[1])
    assert seqs(client.get_records(ShardIterator=resumed)["Records"]) == all_seqs[2:]

    assert double.trim(root, before=all_seqs[4]) == 2
    assert seqs(double.records(root)) == all_seqs[4:]


def test_removed_shard_leaves_describe_but_children_keep_naming_it(
    double: StreamsDouble, client: Any, root: str
) -> None:
    with pytest.raises(ValueError):
        double.remove_shard(root)
    child = double.rollover(root)
    double.remove_shard(root)
    shards = describe_all(client, double)
    assert set(shards) == {child}
    assert shards[child]["ParentShardId"] == root
    with pytest.raises(ClientError) as exc:
        iterator(client, double, root)
    assert error_code(exc) == "ResourceNotFoundException"


# --------------------------------------------------------------------------- iterator expiry


def test_expire_iterators_expires_every_iterator_issued_so_far(
    double: StreamsDouble, client: Any, root: str
) -> None:
    double.put(key(1))
    first = iterator(client, double, root)
    chained = client.get_records(ShardIterator=first)["NextShardIterator"]
    double.expire_iterators()
    for it in (first, chained):
        with pytest.raises(ClientError) as exc:
            client.get_records(ShardIterator=it)
        assert error_code(exc) == "ExpiredIteratorException"
    assert len(client.get_records(ShardIterator=iterator(client, double, root))["Records"]) == 1


def test_iterators_expire_after_their_ttl_and_next_iterators_are_fresh(
    double: StreamsDouble, client: Any, clock: ManualClock, root: str
) -> None:
    it = iterator(client, double, root)
    clock.advance(14 * 60)
    it = client.get_records(ShardIterator=it)["NextShardIterator"]
    clock.advance(14 * 60)
    it = client.get_records(ShardIterator=it)["NextShardIterator"]
    clock.advance(15 * 60 + 1)
    with pytest.raises(ClientError) as exc:
        client.get_records(ShardIterator=it)
    assert error_code(exc) == "ExpiredIteratorException"


# --------------------------------------------------------------------------- scripted faults


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ProvisionedThroughputExceededException", 400),
        ("LimitExceededException", 400),
        ("ThrottlingException", 400),
        ("ExpiredIteratorException", 400),
        ("TrimmedDataAccessException", 400),
        ("InternalServerError", 500),
    ],
)
def test_scripted_aws_errors_reach_boto3_with_code_and_status(
    double: StreamsDouble, client: Any, root: str, code: str, status: int
) -> None:
    it = iterator(client, double, root)
    rule = double.faults.add(code, op="GetRecords")
    with pytest.raises(ClientError) as exc:
        client.get_records(ShardIterator=it)
    assert error_code(exc) == code
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert rule.fired == 1 and double.faults.pending == []
    assert "NextShardIterator" in client.get_records(ShardIterator=it)  # times=1: gone


def test_error_documents_have_the_aws_json_shape(double: StreamsDouble) -> None:
    double.faults.add("ExpiredIteratorException", op="DescribeStream", message="too old")
    resp = raw_call(double, "DescribeStream", {"StreamArn": double.stream_arn})
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/x-amz-json-1.0"
    assert resp.headers["x-amzn-requestid"]
    assert resp.json() == {
        "__type": "com.amazonaws.dynamodb.v20120810#ExpiredIteratorException",
        "message": "too old",
    }


@pytest.mark.parametrize(("fault", "code"), [("http500", "500"), ("http503", "503")])
def test_bare_5xx_reaches_boto3_as_the_status_code(
    double: StreamsDouble, client: Any, root: str, fault: str, code: str
) -> None:
    it = iterator(client, double, root)
    double.faults.add(fault, op="GetRecords")
    with pytest.raises(ClientError) as exc:
        client.get_records(ShardIterator=it)
    assert error_code(exc) == code
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == int(code)
    client.get_records(ShardIterator=it)


@pytest.mark.parametrize("fault", ["drop", "reset"])
def test_dropped_connections_reach_boto3_as_connection_closed(
    double: StreamsDouble, client: Any, root: str, fault: str
) -> None:
    it = iterator(client, double, root)
    double.faults.add(fault, op="GetRecords")
    with pytest.raises(ConnectionClosedError):
        client.get_records(ShardIterator=it)
    client.get_records(ShardIterator=it)  # the endpoint itself survives
    assert double.calls["GetRecords", root] == 2


@pytest.mark.parametrize(("fault", "expect_reset"), [("drop", False), ("reset", True)])
def test_drop_closes_cleanly_and_reset_aborts(double: StreamsDouble, fault: str, expect_reset: bool) -> None:
    double.faults.add(fault, op="ListStreams")
    body, headers = signed(double, "ListStreams", {})
    host, port = double.endpoint_url.removeprefix("http://").split(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        if expect_reset:
            with pytest.raises(ConnectionResetError):
                sock.recv(1024)
        else:
            assert sock.recv(1024) == b""


def test_slow_calls_trip_client_read_timeouts(double: StreamsDouble, root: str) -> None:
    impatient = make_client(double, read_timeout=0.3)
    double.faults.add("slow", op="GetShardIterator", delay=5)
    with pytest.raises(ReadTimeoutError):
        iterator(impatient, double, root)
    assert iterator(impatient, double, root)


def test_faults_are_scoped_by_operation_shard_and_skip(clock: ManualClock) -> None:
    with StreamsDouble(shards=2, clock=clock) as d:
        a, b = d.open_shard_ids()
        c = make_client(d)
        it_a, it_b = iterator(c, d, a), iterator(c, d, b)
        rule = d.faults.add("LimitExceededException", op="GetRecords", shard=a, times=None, skip=1)
        c.get_records(ShardIterator=it_a)  # skipped
        for _ in range(2):
            with pytest.raises(ClientError):
                c.get_records(ShardIterator=it_a)
            c.get_records(ShardIterator=it_b)
        iterator(c, d, a)  # other operations on shard a are untouched
        assert rule.fired == 2 and rule in d.faults.pending
        d.faults.clear()
        c.get_records(ShardIterator=it_a)


def test_unknown_fault_names_fail_loudly(double: StreamsDouble) -> None:
    with pytest.raises(ValueError):
        double.faults.add("ExpiredIterator")
    with pytest.raises(ValueError):
        double.faults.add("drop", op="PutRecord")


# --------------------------------------------------------------------------- protocol


def test_unsigned_requests_are_rejected(double: StreamsDouble) -> None:
    anonymous = make_client(double, signature_version=UNSIGNED)
    with pytest.raises(ClientError) as exc:
        anonymous.list_streams()
    assert error_code(exc) == "MissingAuthenticationTokenException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    resp = httpx.post(
        double.endpoint_url,
        content=b"{}",
        headers={"X-Amz-Target": TARGET + "ListStreams", "Authorization": "Bearer x"},
    )
    assert resp.json()["__type"].endswith("#MissingAuthenticationTokenException")
    assert double.calls.count() == 0


def test_unknown_operations_and_bad_bodies_are_rejected(double: StreamsDouble) -> None:
    resp = raw_call(double, "PutRecord", {})
    assert resp.status_code == 400 and resp.json()["__type"].endswith("#UnknownOperationException")
    body, headers = signed(double, "ListStreams", {})
    resp = httpx.post(double.endpoint_url, content=b"{not json", headers=headers)
    assert resp.status_code == 400 and resp.json()["__type"].endswith("#SerializationException")


def test_records_have_the_streams_wire_shape(double: StreamsDouble, clock: ManualClock, root: str) -> None:
    item = {**key(1), "n": {"N": "1"}}
    double.put(key(1), new_image=item)
    double.put(key(1), new_image={**item, "n": {"N": "2"}}, old_image=item, event="MODIFY")
    double.put(key(1), old_image=item, event="REMOVE", ttl=True)
    it = raw_call(
        double,
        "GetShardIterator",
        {"StreamArn": double.stream_arn, "ShardId": root, "ShardIteratorType": "TRIM_HORIZON"},
    ).json()["ShardIterator"]
    records = raw_call(double, "GetRecords", {"ShardIterator": it}).json()["Records"]

    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    assert [sorted(k for k in r["dynamodb"] if k.endswith("Image")) for r in records] == [
        ["NewImage"],
        ["NewImage", "OldImage"],
        ["OldImage"],
    ]
    for r in records:
        assert r["eventVersion"] == "1.1" and r["eventSource"] == "aws:dynamodb"
        assert r["awsRegion"] == "us-east-1"
        assert len(r["eventID"]) == 32
        ddb = r["dynamodb"]
        assert ddb["ApproximateCreationDateTime"] == int(clock())  # a JSON number
        assert ddb["Keys"] == key(1)
        assert isinstance(ddb["SequenceNumber"], str) and ddb["SequenceNumber"].isdigit()
        assert isinstance(ddb["SizeBytes"], int) and ddb["SizeBytes"] > 0
        assert ddb["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert len({r["eventID"] for r in records}) == 3
    assert "userIdentity" not in records[0]
    assert records[2]["userIdentity"] == {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


def test_ttl_identity_in_model_style_is_what_boto3_can_parse(
    double: StreamsDouble, client: Any, root: str
) -> None:
    double.put(key(1), event="REMOVE", ttl=True)
    double.ttl_identity_style = "model"
    double.put(key(2), event="REMOVE", ttl=True)
    records = client.get_records(ShardIterator=iterator(client, double, root))["Records"]
    assert records[0]["userIdentity"] == {}  # boto3 drops the documented lowercase keys
    assert records[1]["userIdentity"] == {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}


@pytest.mark.parametrize(
    ("view", "images"),
    [("KEYS_ONLY", []), ("NEW_IMAGE", ["NewImage"]), ("OLD_IMAGE", ["OldImage"])],
)
def test_view_type_decides_which_images_are_sent(clock: ManualClock, view: str, images: list[str]) -> None:
    with StreamsDouble(view_type=view, clock=clock) as d:  # type: ignore[arg-type]
        item = {**key(1), "n": {"N": "1"}}
        put = d.put(key(1), new_image=item, old_image=item, event="MODIFY")
        assert sorted(k for k in put.record["dynamodb"] if k.endswith("Image")) == images
        assert put.record["dynamodb"]["StreamViewType"] == view


def test_put_rejects_impossible_changes(double: StreamsDouble, root: str) -> None:
    with pytest.raises(ValueError):
        double.put({"id": {"S": "x"}})
    with pytest.raises(ValueError):
        double.put({"pk": {"N": "1"}})
    with pytest.raises(ValueError):
        double.put(key(1), old_image=key(1))
    with pytest.raises(ValueError):
        double.put(key(1), ttl=True)
    with pytest.raises(ValueError):
        double.put(key(1), new_image=key(2), event="MODIFY")
    double.rollover(root)
    with pytest.raises(ValueError):
        double.put(key(1), shard=root)


def test_keep_alive_serves_several_requests_on_one_connection(double: StreamsDouble) -> None:
    host, port = double.endpoint_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        socks = []
        for _ in range(3):
            body, headers = signed(double, "ListStreams", {})
            conn.request("POST", "/", body=body, headers=headers)
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read())["Streams"]
            socks.append(conn.sock)
        assert socks[0] is not None and all(s is socks[0] for s in socks)
    finally:
        conn.close()


def test_concurrent_readers_on_one_client_each_get_their_shard(clock: ManualClock) -> None:
    with StreamsDouble(shards=8, clock=clock) as d:
        shard_ids = d.open_shard_ids()
        expected = {s: [d.put(key(f"{s}-{i}"), shard=s).sequence_number for i in range(25)] for s in shard_ids}
        for s in shard_ids:
            d.rollover(s)
        c = make_client(d, max_pool_connections=8)

        def drain(shard: str) -> list[str]:
            got, it = [], iterator(c, d, shard)
            while it:
                page = c.get_records(ShardIterator=it, Limit=4)
                got += seqs(page["Records"])
                it = page.get("NextShardIterator")
            return got

        with ThreadPoolExecutor(8) as pool:
            results = dict(zip(shard_ids, pool.map(drain, shard_ids)))
        assert results == expected
        assert all(d.calls["GetRecords", s] == 7 for s in shard_ids)  # ceil(25/4)
        assert d.server_errors == []


def test_stop_cuts_keep_alive_connections(clock: ManualClock) -> None:
    d = StreamsDouble(clock=clock).start()
    c = make_client(d)
    c.list_streams()
    d.stop()
    with pytest.raises(BotoCoreError):
        c.list_streams()


def test_async_httpx_client_shares_keep_alive_connections_and_sees_faults(double: StreamsDouble) -> None:
    """The bridge's own path: one httpx.AsyncClient, many requests in flight, and
    the exceptions its error translation must expect for dropped connections."""

    async def scenario() -> tuple[set[int], type[Exception], type[Exception]]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=4)) as http:

            async def call() -> httpx.Response:
                body, headers = signed(double, "ListStreams", {})
                return await http.post(double.endpoint_url + "/", content=body, headers=headers)

            statuses = {r.status_code for r in await asyncio.gather(*(call() for _ in range(40)))}
            failures = []
            for fault in ("drop", "reset"):
                double.faults.add(fault)
                try:
                    await call()
                except httpx.TransportError as e:
                    failures.append(type(e))
            assert (await call()).status_code == 200
            return statuses, failures[0], failures[1]

    statuses, dropped, reset = asyncio.run(scenario())
    assert statuses == {200}
    assert dropped is httpx.RemoteProtocolError
    assert reset is httpx.ReadError
    assert double.calls["ListStreams"] == 43
    assert double.server_errors == []


def test_forged_or_foreign_iterators_are_invalid(double: StreamsDouble, client: Any, root: str) -> None:
    real = iterator(client, double, root)
    for bad in (real[:-4] + "AAAA", "arn:aws:dynamodb:us-east-1:1:table/x/stream/y|1|abc", "x"):
        with pytest.raises(ClientError) as exc:
            client.get_records(ShardIterator=bad)
        assert error_code(exc) == "ValidationException"
    assert double.calls["GetRecords", None] == 3
