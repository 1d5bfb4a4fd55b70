"""The commands that write offsets (``offsets import`` and ``offsets reset``) and what every
command prints, as users run them against the broker, moto and the registry (issue 18).

- import checks the whole file as the start would and writes all of it or nothing, flow
  controlled (200,000 lines);
- a running bridge (its status heartbeat is fresh) makes both refuse with one line; a
  SIGKILLed one stops counting once its heartbeat is stale, a cleanly stopped one at once;
- no command prints a password from a URL (one choke point: bridge/redact.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT, BridgeProcess, bridge_config, bridge_env, create_table, unique

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 300, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "bridge_app.cli", *args], capture_output=True, env=bridge_env(),
                          cwd=ROOT, timeout=timeout, input=stdin)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                       proc.stderr.decode(errors="replace"))


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


def stored(cfg_path: Path) -> list[dict[str, Any]]:
    shown = cli("offsets", "show", "-c", str(cfg_path), "--json")
    assert shown.returncode == 0, shown.stderr
    return [json.loads(x) for x in shown.stdout.splitlines()]


def make_offsets_topic(kafka_admin: Any, cfg: dict[str, Any]) -> None:
    from bridge.kafka import ensure_topics

    ensure_topics(kafka_admin, {f"{cfg['name']}-offsets": {"cleanup.policy": "compact"}}, partitions=1,
                  replication_factor=1)


def shard_line(table: str, shard: str, offset: Any) -> str:
    return json.dumps({"partition": {"table": table, "shard": shard}, "offset": offset})


def test_import_checks_the_whole_file_first_and_writes_nothing_on_a_bad_line(
        stack: Any, kafka_admin: Any, tmp_path: Path) -> None:
    table = unique("imp")
    cfg = bridge_config(stack, [table])
    cfg_path = tmp_path / "bridge.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    make_offsets_topic(kafka_admin, cfg)
    good = shard_line(table, "shardId-1", {"seq": "100", "ended": False})
    cases = {
        "ended": ('"ended" must be true or false', shard_line(table, "shardId-2", {"seq": "5", "ended": "no"})),
        "table": ("not in the config's tables", shard_line("some-other-table", "shardId-3", {"seq": "5", "ended": True})),
        "shape": ("lacks \"seq\"", shard_line(table, "shardId-4", {"ended": True})),
        "duplicate": ("the same partition as line 1", good),
    }
    for name, (expected, bad) in cases.items():
        r = cli("offsets", "import", "-c", str(cfg_path), "-i", "-", stdin=f"{good}\n{bad}\n".encode())
        assert r.returncode == 2, (name, r.stdout, r.stderr)
        line = last_line(r.stderr)
        assert "line 2: " in line and expected in line and "nothing written" in line, (name, line)
        assert "Traceback" not in r.stderr
    # A file that is not UTF-8: one line naming the line and the byte, no traceback.
    r = cli("offsets", "import", "-c", str(cfg_path), "-i", "-", stdin=good.encode() + b"\n\xff\xfe{}\n")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "line 2: not UTF-8 (byte 0xff" in last_line(r.stderr)
    assert stored(cfg_path) == []  # nothing of any of those files was written
    r = cli("offsets", "import", "-c", str(cfg_path), "-i", "-", stdin=f"{good}\n".encode())
    assert r.returncode == 0, r.stderr
    assert stored(cfg_path) == [json.loads(good)]


def test_import_of_200000_lines_writes_them_all(stack: Any, kafka_admin: Any, tmp_path: Path,
                                                  measured: Any) -> None:
    table = unique("imp-big")
    cfg = bridge_config(stack, [table])
    cfg_path = tmp_path / "bridge.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    make_offsets_topic(kafka_admin, cfg)
    n = 200_000
    path = tmp_path / "big.jsonl"
    path.write_text("".join(shard_line(table, f"shardId-{i:07d}", {"seq": str(1000 + i), "ended": i % 2 == 0})
                            + "\n" for i in range(n)))
    started = time.monotonic()
    r = cli("offsets", "import", "-c", str(cfg_path), "-i", str(path), timeout=600)
    took = time.monotonic() - started
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"imported {n} offsets" in r.stdout
    measured(f"offsets import of {n} lines: {took:.1f} s")
    back = stored(cfg_path)
    assert len(back) == n
    assert {b["partition"]["shard"]: b["offset"]["seq"] for b in back} == {
        f"shardId-{i:07d}": str(1000 + i) for i in range(n)}


def test_reset_and_import_refuse_while_the_bridge_runs(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    table = unique("live")
    create_table(dynamodb, table)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
    interval_ms = 2000  # stale after 3 x 2 s + 5 s = 11 s: room for a slow CLI start on a busy machine
    cfg = bridge_config(stack, [table], status={"interval_ms": interval_ms})
    first = BridgeProcess.write(tmp_path, cfg).start()
    cfg_path = first.config_path
    try:
        first.wait_for_log("running: 1 table(s)")
        deadline = time.monotonic() + 60
        while not stored(cfg_path):  # the bridge committed its first offset
            first.check()
            assert time.monotonic() < deadline, first.log()[-3000:]
            time.sleep(0.1)
        before = stored(cfg_path)
        for args in (("--all",), ("--table", table), ("--key", json.dumps([cfg["name"], {"table": table}])),):
            r = cli("offsets", "reset", "-c", str(cfg_path), *args)
            assert r.returncode == 2, (args, r.stdout, r.stderr)
            assert f"bridge {cfg['name']!r} is running" in last_line(r.stderr) and "stop it first" in r.stderr
        imp = cli("offsets", "import", "-c", str(cfg_path), "-i", "-",
                  stdin=(shard_line(table, "shardId-x", {"seq": "1", "ended": True}) + "\n").encode())
        assert imp.returncode == 2 and "is running" in last_line(imp.stderr), imp.stderr
        assert stored(cfg_path) == before
        # SIGKILL: the heartbeat stays behind; it counts until it is stale, then no more.
        first.stop(signal.SIGKILL)
        killed = time.monotonic()
        r = cli("offsets", "reset", "-c", str(cfg_path), "--all")
        assert r.returncode == 2 and "is running" in r.stderr, r.stderr
        stale_after_s = (3 * interval_ms + 5000) / 1000
        while True:
            r = cli("offsets", "reset", "-c", str(cfg_path), "--all")
            if r.returncode == 0:
                break
            assert "is running" in r.stderr, r.stderr
            assert time.monotonic() - killed < stale_after_s + 30, r.stderr
            time.sleep(0.5)
        # the last heartbeat came at most one interval before the kill
        assert time.monotonic() - killed >= stale_after_s - interval_ms / 1000 - 0.5
        assert stored(cfg_path) == []
    finally:
        first.stop()
    # A bridge that stops cleanly removes its heartbeat: reset works at once.
    second = BridgeProcess(cfg_path, tmp_path / "second.log").start()
    try:
        second.wait_for_log("running: 1 table(s)")
        deadline = time.monotonic() + 60
        while not stored(cfg_path):
            second.check()
            assert time.monotonic() < deadline, second.log()[-3000:]
            time.sleep(0.1)
    finally:
        assert second.stop() == 0, second.log()[-3000:]
    r = cli("offsets", "reset", "-c", str(cfg_path), "--all")
    assert r.returncode == 0, r.stderr


def test_no_command_prints_a_password_from_a_url(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    table = unique("mask")
    create_table(dynamodb, table)
    password = "Sup3rSecretPw"
    cfg = bridge_config(stack, [table])
    host = cfg["schema_registry"]["url"].split("://", 1)[1]
    cfg["schema_registry"]["url"] = f"http://reader:{password}@{host}"
    cfg_path = tmp_path / "bridge.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    outputs = {
        "validate --connect": cli("validate", "-c", str(cfg_path), "--connect"),
        "verify": cli("verify", "-c", str(cfg_path)),
        "status": cli("status", "-c", str(cfg_path)),
        "tail": cli("tail", "-c", str(cfg_path), "--topic", f"{cfg['name']}-nothing"),
    }
    assert "reader:***@" in outputs["validate --connect"].stdout, outputs["validate --connect"].stdout
    for name, r in outputs.items():
        assert password not in r.stdout + r.stderr, (name, r.stdout, r.stderr)


def test_import_and_reset_write_each_key_to_the_partition_the_bridge_does(stack: Any, kafka_admin: Any,
                                                                          tmp_path: Path) -> None:
    """An offsets topic of several partitions (made beforehand, as Kafka Connect's often are, or
    auto-created by a broker): the tools must partition keys as the bridge's producer does
    (murmur2), or a key's reset lands in one partition while the bridge's record of it stays
    in another, and the start's reading order decides which counts."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import NewTopic

    from bridge.offsets import encode_offset_key
    from tests.murmur2 import java_partition

    table = unique("parts")
    cfg = bridge_config(stack, [table])
    topic = f"{cfg['name']}-offsets"
    kafka_admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1,
                                        config={"cleanup.policy": "compact"})])[topic].result(30)
    cfg_path = tmp_path / "bridge.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    shards = [f"shardId-0000000{i}-{i:08x}" for i in range(8)]
    lines = "".join(shard_line(table, s, {"seq": "1", "ended": False}) + "\n" for s in shards)
    imp = cli("offsets", "import", "-c", str(cfg_path), "-i", "-", stdin=lines.encode())
    assert imp.returncode == 0, imp.stderr
    reset = cli("offsets", "reset", "-c", str(cfg_path), "--all")
    assert reset.returncode == 0, reset.stderr

    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": unique("g"), "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    try:
        where: dict[bytes, set[int]] = {}
        for p in range(4):
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            consumer.assign([TopicPartition(topic, p, lo)])
            seen = 0
            deadline = time.monotonic() + 60
            while seen < hi - lo and time.monotonic() < deadline:
                m = consumer.poll(1)
                if m is None or m.error():
                    continue
                seen += 1
                where.setdefault(m.key(), set()).add(m.partition())
    finally:
        consumer.close()
    expected = {encode_offset_key(cfg["name"], {"table": table, "shard": s}): {java_partition(
        encode_offset_key(cfg["name"], {"table": table, "shard": s}), 4)} for s in shards}
    assert where == expected
