"""The snapshot section of a table: defaults, and every wrong combination named with its fix."""

from __future__ import annotations

import pytest

from bridge.errors import ConfigError
from connectors.dynamodb.config import parse_config
from connectors.dynamodb.scan import scan_request
from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.table import TableInfo

BASE = {"name": "b", "kafka": {"bootstrap.servers": "x:1"}, "schema_registry": {"url": "http://r:1"}}


def table(**snapshot):
    return parse_config({**BASE, "tables": [{"name": "orders", "snapshot": snapshot}]}).tables[0].snapshot


def problem(**snapshot) -> str:
    with pytest.raises(ConfigError) as e:
        table(**snapshot)
    return str(e.value)


def test_defaults() -> None:
    s = parse_config({**BASE, "tables": [{"name": "orders"}]}).tables[0].snapshot
    assert s.mode == "never" and s.method == "scan" and s.segments == 4 and s.repeat == "once"
    assert s.total_segments == 32, "straggler splitting is on by default: 4 scanners x 8 fine segments"
    assert table(mode="only").reads_consistent is False
    assert table(mode="initial").reads_consistent is True and table(mode="concurrent").reads_consistent is True
    assert table(mode="only", straggler_split=False, segments=6).total_segments == 6


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        ({"mode": "concurrent", "method": "export", "export": {"export_arn": "arn:x"}}, "mode: concurrent reads the table in chunks"),
        ({"mode": "concurrent", "consistent_read": False}, "needs consistent_read: true"),
        ({"mode": "initial", "method": "export", "export": {"export_arn": "arn:x"}}, "needs export.trigger: true"),
        ({"mode": "initial", "repeat": "continuous"}, "repeat: continuous needs mode: only"),
        ({"mode": "only", "method": "export"}, "method: export needs an 'export' section"),
        ({"mode": "only", "export": {"s3_bucket": "b"}}, "only read with method: export"),
        ({"mode": "only", "method": "export", "export": {"s3_bucket": "b"}, "filter_expression": "a = :a"}, "method: scan only"),
        ({"mode": "only", "method": "export", "export": {"trigger": True, "s3_bucket": "b"}}, "needs s3_bucket and s3_prefix"),
        ({"mode": "only", "method": "export", "export": {"trigger": True, "export_arn": "a", "s3_bucket": "b", "s3_prefix": "p"}}, "not both"),
        ({"mode": "only", "method": "export", "export": {}}, "name the export"),
        ({"mode": "only", "expression_attribute_values": {"v": {"N": "1"}}}, "start with ':'"),
        ({"mode": "only", "expression_attribute_values": {":v": {"INT": "1"}}}, "DynamoDB JSON"),
        ({"mode": "only", "expression_attribute_names": {"n": "name"}}, "start with '#'"),
        ({"mode": "sometimes"}, "tables[0].snapshot.mode"),
        ({"mode": "only", "segmnts": 2}, "did you mean 'segments'"),
        ({"mode": "only", "segments": 0}, "tables[0].snapshot.segments"),
        ({"mode": "only", "max_rcu_per_second": 0}, "max_rcu_per_second"),
    ],
)
def test_wrong_combinations_are_named(snapshot, expected) -> None:
    msg = problem(**snapshot)
    assert expected in msg and "\n" not in msg


def test_scan_request_always_projects_the_key() -> None:
    info = TableInfo("orders", "r", (KeyField("pk", "S"), KeyField("sk", "N")), None, None, 0)
    s = table(mode="only", projection_expression="#n, price", expression_attribute_names={"#n": "name"},
              filter_expression="price > :p", expression_attribute_values={":p": {"N": "5"}}, max_rcu_per_second=10)
    req = scan_request(s, info)
    assert req["ProjectionExpression"] == "#n, price, #bridgekey0, #bridgekey1"
    assert req["ExpressionAttributeNames"] == {"#n": "name", "#bridgekey0": "pk", "#bridgekey1": "sk"}
    assert req["FilterExpression"] == "price > :p" and req["ExpressionAttributeValues"] == {":p": {"N": "5"}}
    assert req["ReturnConsumedCapacity"] == "TOTAL" and req["ConsistentRead"] is False
    s2 = table(mode="only", projection_expression="pk, #s, v", expression_attribute_names={"#s": "sk"})
    assert scan_request(s2, info)["ProjectionExpression"] == "pk, #s, v"


def _grouped(**snapshot):
    return parse_config({**BASE, "group": {"enabled": True},
                         "tables": [{"name": "orders", "snapshot": snapshot}]})


def test_a_group_shares_snapshots_with_mode_only_and_initial() -> None:
    """mode: only (Scan, continuous Scan, export) and initial are shared between the processes of a group."""
    assert _grouped(mode="only").tables[0].snapshot.mode == "only"
    assert _grouped(mode="only", repeat="continuous").tables[0].snapshot.repeat == "continuous"
    export = {"s3_bucket": "b", "s3_prefix": "p"}
    assert _grouped(mode="only", method="export", export=export).tables[0].snapshot.method == "export"
    assert _grouped(mode="initial").tables[0].snapshot.mode == "initial"


def test_what_one_process_must_do_alone_runs_alone_instead_of_being_refused() -> None:
    """Every process is a group member now; what cannot be shared (mode: concurrent,
    resnapshot under exactly-once) runs alone: the config names why (the group's refusal of a
    second process quotes it), and the process reads every unit itself."""
    c = _grouped(mode="concurrent")
    assert c.solo_reason() == "tables: orders.snapshot.mode: concurrent" and not c.shares_work
    d = parse_config({**BASE, "tables": [], "table_discovery": {"name_prefix": "o", "template": {"snapshot": {
        "mode": "concurrent"}}}})
    assert d.solo_reason() == "tables: (table_discovery.template).snapshot.mode: concurrent"
    table = {"name": "orders", "stream": {"trimmed_policy": "resnapshot"}}
    assert parse_config({**BASE, "tables": [table]}).shares_work, "at-least-once resnapshots are shared"
    eos = parse_config({**BASE, "delivery": "exactly-once", "tables": [table]})
    assert eos.solo_reason() == "tables: orders.stream.trimmed_policy: resnapshot under exactly-once"
    assert parse_config({**BASE, "group": {"enabled": False}, "tables": [table]}).solo_reason() == "group.enabled: false"
    assert parse_config({**BASE, "tables": [table]}).group.enabled, "every process is in a group by default"
