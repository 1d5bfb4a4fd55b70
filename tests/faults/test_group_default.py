"""Every process of a name is a group member (issue 18, bug 6): a second process of the same
name shares the work instead of publishing every change again, with no group settings at all
and in a mixed pair (one with ``group.enabled: true``, one without); and a process that must
run alone (``snapshot.mode: concurrent``, ``group.enabled: false``) makes any second process
of its name refuse to start, while it reads on. On tansu and on Apache Kafka.

Before, two processes without ``group`` both read every shard: every change arrived twice.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.support import (
    ChangeLog,
    ChangeReader,
    assert_exact,
    double_config,
    last_line,
    shards_of_assignment,
    spread_over_slots,
    topic_of,
    wait_until,
)

pytestmark = pytest.mark.slow

BROKERS = ["tansu", "apache-kafka"]


def _stack(request: pytest.FixtureRequest, broker: str) -> Any:
    return request.getfixturevalue("stack" if broker == "tansu" else "kafka_stack")


def _cfg(stack: Any, double: Any, **extra: Any) -> dict[str, Any]:
    return double_config(stack, double, offsets={"flush_interval_ms": 200}, metrics=False, shutdown_timeout_s=10,
                         **extra)


@pytest.mark.parametrize("pair", ["no group settings", "mixed"])
@pytest.mark.parametrize("broker", BROKERS)
def test_two_processes_of_one_name_deliver_each_change_once(request, broker, pair, make_double, bridges,
                                                             make_reader, measured) -> None:
    """At-least-once, neither crashes: the second process takes part of the shards through a
    committed hand-over, so every change arrives exactly once (not twice, as before)."""
    stack = _stack(request, broker)
    d = make_double(shards=6, seed=18)
    spread_over_slots(d)
    log = ChangeLog(d)
    cfg_a = _cfg(stack, d)
    del cfg_a["group"]  # no group settings at all (the test helpers shorten the session timeout)
    cfg_b = {**cfg_a, "group": {"enabled": True}} if pair == "mixed" else dict(cfg_a)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg_a))
    a = bridges.start(cfg_a, instance="a", env={"AWS_ACCESS_KEY_ID": "a"})
    log.write_many(150, keys=30)
    reader.wait_for_log(log, 90)
    b = bridges.start(cfg_b, instance="b", env={"AWS_ACCESS_KEY_ID": "b"})
    wait_until(lambda: "group: assigned" in b.log(), 90, "the second process's assignment")
    theirs = shards_of_assignment(d, b.log())
    log.write_many(300, keys=30)
    reader.wait_for_log(log, 90)
    readers = {who for _, op, shard, who in list(d.request_log) if op == "GetRecords" and shard in theirs}
    reader.drain(1.5)
    assert b.stop() == 0 and a.stop() == 0
    assert_exact(reader.events, log)
    assert "b" in readers, f"the second process's shards {theirs} were read only by {readers}"
    measured(f"{broker}, two processes ({pair}): {log.writes} changes, each once")


@pytest.mark.parametrize("broker", BROKERS)
def test_a_second_process_refuses_to_start_beside_one_that_must_run_alone(request, broker, make_double,
                                                                           bridges) -> None:
    """``snapshot.mode: concurrent`` runs in one process (a group of one); a second process of
    its name, whatever its config, stops with one line before it reads, and the first reads on."""
    stack = _stack(request, broker)
    d = make_double(shards=2, seed=7)
    log = ChangeLog(d)
    log.write_many(20, keys=10)
    alone = _cfg(stack, d)
    alone["tables"][0]["snapshot"] = {"mode": "concurrent"}
    # Not tied to the newest bridge process: the newest are the refused ones.
    reader = ChangeReader(stack.kafka_bootstrap, stack.registry_url, topic_of(alone), None)
    request.addfinalizer(reader.close)
    a = bridges.start(alone, instance="alone", env={"AWS_ACCESS_KEY_ID": "alone"})
    wait_until(lambda: "group: alone in group" in a.log(), 60, "the first process alone in its group")
    for i, second in enumerate([{k: v for k, v in alone.items() if k != "tables"} | {"tables": [
            {**alone["tables"][0], "snapshot": {"mode": "never"}}]}, alone]):
        b = bridges.start(second, instance=f"second-{i}", wait_running=False, env={"AWS_ACCESS_KEY_ID": "second"})
        assert b.wait(90) == 2, b.log()[-3000:]
        line = last_line(b.log())
        assert line.startswith("ddb-kafka-bridge: error: group: "), line
        assert "stops before reading anything" in line, line
        assert ("running alone" in line) if i == 0 else ("must run alone (tables: " in line), line
        assert "Traceback" not in b.log()
    assert a.proc.poll() is None, "the running process must read on"
    log.write_many(30, keys=10)
    reader.wait_for_log(log, 90)  # every change, from the one process (the snapshot's rows beside them)
    readers = {who for _, op, shard, who in list(d.request_log) if op == "GetRecords" and shard is not None}
    assert readers == {"alone"}, f"only the running process reads: {readers}"
    assert a.stop() == 0


def test_a_process_with_group_disabled_refuses_to_start_beside_a_group(stack, make_double, bridges) -> None:
    """The opt-out (``group.enabled: false``) joins too, with another assignor: beside a running
    group member it stops with one line, before reading; beside another opted-out process too."""
    d = make_double(shards=2, seed=3)
    cfg = _cfg(stack, d)
    a = bridges.start(cfg, instance="a", env={"AWS_ACCESS_KEY_ID": "a"})
    wait_until(lambda: "group: assigned" in a.log(), 60, "the first process's assignment")
    b = bridges.start({**cfg, "group": {"enabled": False}}, instance="b", wait_running=False,
                      env={"AWS_ACCESS_KEY_ID": "b"})
    assert b.wait(90) == 2, b.log()[-3000:]
    line = last_line(b.log())
    assert line.startswith("ddb-kafka-bridge: error: group: this process must run alone (group.enabled: false)"), line
    assert a.stop() == 0


@pytest.mark.parametrize("broker", BROKERS)
def test_deleting_the_coordination_topic_stops_the_bridge_with_one_line(request, broker, make_double,
                                                                        bridges) -> None:
    """Deleting ``<name>-workers`` while the bridge runs used to end it with SIGSEGV and no log
    line (tansu, 2 of 2): librdkafka crashed on a fetch answer for the deleted topic. Now the
    group consumer fetches nothing, and the bridge notices the deletion and stops, exit 1."""
    from confluent_kafka.admin import AdminClient

    stack = _stack(request, broker)
    d = make_double(shards=2, seed=8)
    cfg = _cfg(stack, d)
    a = bridges.start(cfg, env={"AWS_ACCESS_KEY_ID": "a"})
    wait_until(lambda: "group: assigned" in a.log(), 60, "the assignment")
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    for f in admin.delete_topics([f"{cfg['name']}-workers"]).values():
        f.result(30)
    code = a.wait(60)
    assert code == 1, f"exit {code} (-11 is SIGSEGV): {a.log()[-3000:]}"
    line = last_line(a.log())
    assert line.startswith("ddb-kafka-bridge: error: group: the coordination topic"), line
    assert "is gone (deleted, or the broker lost its data)" in line or "partitions, not" in line, line
    assert "Traceback" not in a.log()


def test_a_second_exactly_once_process_that_must_run_alone_never_fences_the_running_one(
        request, stack, make_double, bridges) -> None:
    """Exactly-once, alone (``group.enabled: false``: one transactional producer,
    ``<name>-bridge``): the second process is refused by the group before it makes its
    producer, so its init_transactions never fences the running one, which reads on."""
    d = make_double(shards=2, seed=11)
    log = ChangeLog(d)
    cfg = _cfg(stack, d, delivery="exactly-once", group={"enabled": False, "session_timeout_ms": 3000})
    reader = ChangeReader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg), None)
    request.addfinalizer(reader.close)
    a = bridges.start(cfg, instance="a", env={"AWS_ACCESS_KEY_ID": "a"})
    wait_until(lambda: "group: alone in group" in a.log(), 60, "the first process alone in its group")
    log.write_many(20, keys=10)
    reader.wait_for_log(log, 60)
    b = bridges.start(cfg, instance="b", wait_running=False, env={"AWS_ACCESS_KEY_ID": "b"})
    assert b.wait(90) == 2, b.log()[-3000:]
    assert "must run alone (group.enabled: false)" in last_line(b.log()), last_line(b.log())
    log.write_many(20, keys=10)
    reader.wait_for_log(log, 60)  # the running process was not fenced: it still commits
    assert a.proc.poll() is None, a.log()[-3000:]
    assert a.stop() == 0, a.log()[-3000:]
