"""A stream record whose attribute value is not an AttributeValue, end to end through moto
(issue 18, bug 12).

moto writes an item holding a map key ``""`` to its stream as ``{"M": {"S": "v"}}`` (the
attribute's name where its type belongs). The bridge stopped with ``unexpected TypeError ...
(a bug in the bridge)``. Now the record is a conversion error: on the dead-letter topic with
the reason in headers under ``errors.tolerance: all`` (its neighbours arrive), one line naming
its shard and sequence number and a non-zero exit under ``none``.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.faults.support import read_dead_letters
from tests.helpers import BridgeProcess, TopicReader, bridge_config, create_table, dynamodb_client, unique

pytestmark = pytest.mark.slow

KEY = {"sk": {"N": "1"}}


def _write(stack: Any) -> tuple[str, str, str]:
    """A table with a good item, the item moto streams wrongly, and a good one: (table, shard, bad seq)."""
    ddb = dynamodb_client(stack.dynamodb_endpoint)
    table = unique("malformed")
    create_table(ddb, table)
    ddb.put_item(TableName=table, Item={"pk": {"S": "good-1"}, **KEY, "v": {"S": "a"}})
    ddb.put_item(TableName=table, Item={"pk": {"S": "bad"}, **KEY, "m": {"M": {"": {"S": "v"}}}})
    ddb.put_item(TableName=table, Item={"pk": {"S": "good-2"}, **KEY, "v": {"S": "b"}})
    streams = boto3.client("dynamodbstreams", endpoint_url=stack.dynamodb_endpoint, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
    # boto3 cannot parse the page either; read it as JSON (moto takes any signature)
    req = urllib.request.Request(stack.dynamodb_endpoint, data=json.dumps({"ShardIterator": it["ShardIterator"]}).encode(),
                                 headers={"X-Amz-Target": "DynamoDBStreams_20120810.GetRecords",
                                          "Content-Type": "application/x-amz-json-1.0",
                                          "Authorization": "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/"
                                                           "dynamodb/aws4_request, SignedHeaders=host, Signature=0"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=30) as resp:
        records = json.loads(resp.read())["Records"]
    bad = next(r for r in records if r["dynamodb"]["Keys"]["pk"]["S"] == "bad")
    # What this test is about: moto still writes the malformed image (else it proves nothing).
    assert bad["dynamodb"]["NewImage"]["m"] == {"M": {"S": "v"}}, bad["dynamodb"]["NewImage"]
    return table, shard["ShardId"], bad["dynamodb"]["SequenceNumber"]


def test_malformed_record_goes_to_the_dead_letter_topic_and_the_others_arrive(stack: Any, tmp_path: Path) -> None:
    table, shard, bad_seq = _write(stack)
    cfg = bridge_config(stack, [table], errors={"tolerance": "all"})
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, f"ddb.{table}")
    try:
        letters = read_dead_letters(stack.kafka_bootstrap, f"{cfg['name']}-dlq", 1, 90, bridge)
        reader.read_count(2, timeout=60, check=bridge.check)
        reader.drain(1.0)
        assert sorted(e.key["pk"] for e in reader.events) == ["good-1", "good-2"]
        (letter,) = letters
        h = letter.headers
        assert h["__connect.errors.exception.class.name"] == "ConversionError"
        assert "NewImage['m']['S']: attribute value must be an object" in h["__connect.errors.exception.message"], h
        position = json.loads(h["__bridge.source.position"])
        assert (position["shard_id"], position["sequence_number"]) == (shard, bad_seq)
        kept = json.loads(letter.value)  # the record as read, nothing lost
        assert kept["key"]["pk"] == {"S": "bad"} and kept["after"]["m"] == {"M": {"S": "v"}}
        assert bridge.proc is not None and bridge.proc.poll() is None, bridge.log()[-3000:]
        assert "a bug in the bridge" not in bridge.log()
    finally:
        reader.close()
        assert bridge.stop() == 0, bridge.log()[-3000:]


def test_malformed_record_with_tolerance_none_stops_with_one_line(stack: Any, tmp_path: Path) -> None:
    table, shard, bad_seq = _write(stack)
    cfg = bridge_config(stack, [table], errors={"tolerance": "none"})
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        code = bridge.wait(90)
    finally:
        bridge.stop()
    log = bridge.log()
    assert code not in (0, None), log[-3000:]
    assert "a bug in the bridge" not in log and "Traceback" not in log, log[-3000:]
    lines = [ln for ln in log.splitlines() if ln.strip()]
    why = "NewImage['m']['S']: attribute value must be an object"
    named = [ln for ln in lines if shard in ln and bad_seq in ln and why in ln and "errors.tolerance: all" in ln]
    assert named, lines[-5:]
