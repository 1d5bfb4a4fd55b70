"""A stored shard position past the end of its (open) shard, on the local stack's moto
(issue 18, bug 4): the run refuses with one line naming the key and ``offsets reset``,
instead of reading nothing for ever and exiting 0 as caught up. The line's command then
fixes it, and the next run reads the shard from its start.

moto alone would hand out an iterator there; the local stack runs it with DynamoDB's check
of stream positions (devtools/devstack_moto.py). The closed-shard and before-the-start cases
need shards moto does not make: tests/faults/test_stored_position.py.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT, bridge_config, bridge_env, create_table, unique

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge_app.cli", *args], capture_output=True, text=True,
                          env=bridge_env(), cwd=ROOT, timeout=timeout, input=stdin)


def test_a_position_past_the_end_of_the_shard_is_refused_and_reset_fixes_it(
        stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    table = unique("past")
    create_table(dynamodb, table)
    for i in range(3):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}})
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    streams = __import__("boto3").client("dynamodbstreams", endpoint_url=stack.dynamodb_endpoint,
                                          region_name="us-east-1", aws_access_key_id="test",
                                          aws_secret_access_key="test")
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    past = str(int(shard["SequenceNumberRange"]["StartingSequenceNumber"]) + 1000)
    cfg_path = tmp_path / "bridge.yaml"
    cfg_path.write_text(yaml.safe_dump(bridge_config(stack, [table])))
    line = json.dumps({"partition": {"table": table, "shard": shard["ShardId"]}, "offset": {"seq": past, "ended": False}})
    # The offsets topic exists once a run made it; the first run reads the three changes.
    first = cli("run", "-c", str(cfg_path), "--until-caught-up")
    assert first.returncode == 0, first.stderr[-3000:]
    imp = cli("offsets", "import", "-c", str(cfg_path), "-i", "-", stdin=line + "\n")
    assert imp.returncode == 0, imp.stderr
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "later"}, "sk": {"N": "9"}})

    run = cli("run", "-c", str(cfg_path), "--until-caught-up")
    said = run.stderr.strip().splitlines()[-1]
    assert run.returncode == 2, run.stderr[-3000:]
    assert shard["ShardId"] in said and f"(sequence number {past}) is not in the shard" in said, said
    fix = re.search(r"(ddb-kafka-bridge offsets reset -c <config> --key '[^']+')", said)
    assert fix is not None, said

    args = shlex.split(fix.group(1).replace("<config>", shlex.quote(str(cfg_path))))[1:]
    reset = cli(*args)
    assert reset.returncode == 0, reset.stderr
    again = cli("run", "-c", str(cfg_path), "--until-caught-up")
    assert again.returncode == 0, again.stderr[-3000:]
    tail = [json.loads(x) for x in cli("tail", "-c", str(cfg_path)).stdout.splitlines()]
    # The three first read, then the whole shard again from its start (at-least-once after a reset).
    assert [x["key"]["pk"] for x in tail] == ["k0", "k1", "k2", "k0", "k1", "k2", "later"]


def test_ended_stored_for_a_shard_still_open_does_not_leave_it_unread(
        stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    """``"ended": true`` for a shard DescribeStream still lists as open (an edited or imported
    offset: only a reader that saw a closed shard's end writes it). Trusted, the shard was
    never read again: 0 records, exit 0, later changes lost. It is read after its sequence
    number instead, with a warning naming the shard."""
    from tests.helpers import BridgeProcess

    table = unique("endedopen")
    create_table(dynamodb, table)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "k0"}, "sk": {"N": "0"}})
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    streams = __import__("boto3").client("dynamodbstreams", endpoint_url=stack.dynamodb_endpoint,
                                          region_name="us-east-1", aws_access_key_id="test",
                                          aws_secret_access_key="test")
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    assert "EndingSequenceNumber" not in shard["SequenceNumberRange"]
    cfg_path = tmp_path / "bridge.yaml"
    cfg_path.write_text(yaml.safe_dump(bridge_config(stack, [table])))
    first = cli("run", "-c", str(cfg_path), "--until-caught-up")
    assert first.returncode == 0, first.stderr[-3000:]
    (stored,) = [json.loads(x) for x in cli("offsets", "export", "-c", str(cfg_path)).stdout.splitlines()]
    line = json.dumps({"partition": stored["partition"], "offset": stored["offset"] | {"ended": True}})
    imp = cli("offsets", "import", "-c", str(cfg_path), "-i", "-", stdin=line + "\n")
    assert imp.returncode == 0, imp.stderr
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "later"}, "sk": {"N": "9"}})

    bridge = BridgeProcess(cfg_path, tmp_path / "second.log").start()
    try:
        bridge.wait_for_log("still open", timeout=120)
        keys: list[str] = []
        for _ in range(120):
            keys = [json.loads(x)["key"]["pk"] for x in cli("tail", "-c", str(cfg_path)).stdout.splitlines()]
            if "later" in keys:
                break
            __import__("time").sleep(1)  # a condition polled: the record arrives when the reader reads it
    finally:
        bridge.stop()
    assert keys == ["k0", "later"], keys
    assert shard["ShardId"] in [x for x in bridge.log().splitlines() if "still open" in x][0]
