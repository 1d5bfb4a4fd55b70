"""Many tables in one process: listed ones, ones found by name prefix or by tag while the
bridge runs, and a deleted one that stops alone (moto, Apache Kafka, the registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.faults.support import wait_until
from tests.helpers import (
    BridgeProcess,
    TopicReader,
    bridge_config,
    create_table,
    dynamodb_client,
    unique,
)

pytestmark = pytest.mark.slow


def _item(pk: str, sk: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}, "v": {"S": f"{pk}:{sk}"}}


def _read(stack: Any, table: str, n: int, bridge: BridgeProcess) -> list[Any]:
    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, f"ddb.{table}")
    try:
        reader.read_count(n, timeout=60, check=bridge.check)
        reader.drain(0.5)
        return [e for e in reader.events if e.value is not None]
    finally:
        reader.close()


def test_three_tables_and_one_found_by_prefix_while_running(kafka_stack, tmp_path: Path) -> None:
    ddb = dynamodb_client(kafka_stack.dynamodb_endpoint)
    p = unique("mt")
    listed = [f"{p}-a", f"{p}-b", f"{p}-c"]
    for t in listed:
        create_table(ddb, t)
    cfg = bridge_config(kafka_stack, listed,
                        table_discovery={"name_prefix": f"{p}-new-", "interval_ms": 1000,
                                         "template": {"stream": {"poll_interval_ms": 100}}})
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        bridge.wait_for_log(" running: ", 60)
        for i, t in enumerate(listed):
            for k in range(5 + i):
                ddb.put_item(TableName=t, Item=_item(f"{t}#{k}", k))
        new = f"{p}-new-1"
        create_table(ddb, new)
        bridge.wait_for_log(f"table_discovery: table {new} found", 30)
        for k in range(4):
            ddb.put_item(TableName=new, Item=_item(f"n#{k}", k))
        for i, t in enumerate(listed):
            got = _read(kafka_stack, t, 5 + i, bridge)
            assert sorted(e.key["pk"] for e in got) == sorted(f"{t}#{k}" for k in range(5 + i)), t
        got = _read(kafka_stack, new, 4, bridge)
        assert sorted(e.key["pk"] for e in got) == [f"n#{k}" for k in range(4)]
        # A deleted table stops alone: its line, and the others carry on.
        ddb.delete_table(TableName=listed[0])
        wait_until(lambda: f"table {listed[0]!r} was deleted" in bridge.log(), 30, "the deleted table's line")
        assert "the other tables carry on" in bridge.log()
        ddb.put_item(TableName=listed[1], Item=_item("after-delete", 99))
        got = _read(kafka_stack, listed[1], 5 + 1 + 1, bridge)
        assert "after-delete" in {e.key["pk"] for e in got}
        assert bridge.proc is not None and bridge.proc.poll() is None, bridge.log()[-3000:]
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]


def test_table_found_by_tag_while_running(kafka_stack, tmp_path: Path) -> None:
    ddb = dynamodb_client(kafka_stack.dynamodb_endpoint)
    team = unique("team")
    first = unique("tagged")
    create_table(ddb, first)
    cfg = bridge_config(kafka_stack, [], table_discovery={"tags": {"cdc": team}, "interval_ms": 1000,
                                                          "template": {"stream": {"poll_interval_ms": 100}}})
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    try:
        bridge.wait_for_log(" running: ", 60)
        untagged = unique("untagged")
        create_table(ddb, untagged)
        tagged = unique("tagged")
        create_table(ddb, tagged)
        arn = ddb.describe_table(TableName=tagged)["Table"]["TableArn"]
        ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "cdc", "Value": team}])
        bridge.wait_for_log(f"table_discovery: table {tagged} found", 30)
        for k in range(3):
            ddb.put_item(TableName=tagged, Item=_item(f"t#{k}", k))
        got = _read(kafka_stack, tagged, 3, bridge)
        assert sorted(e.key["pk"] for e in got) == [f"t#{k}" for k in range(3)]
        assert f"table {untagged} found" not in bridge.log() and f"table {first} found" not in bridge.log()
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
