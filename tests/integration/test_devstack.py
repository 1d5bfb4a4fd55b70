"""The local stack works end to end: each part answers like the real service would, a part
comes back on the same port after a restart, and ``dev up|status|down`` manage detached
processes through the state file alone."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.errors import BridgeError
from devtools import devstack
from devtools.devstack import LocalStack, StackEndpoints

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str) -> tuple[int, Any]:
    with _NO_PROXY.open(url, timeout=10) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _roundtrip(bootstrap: str, value: bytes) -> bytes:
    """Produce one record to a new topic and read it back with assign() (no group join)."""
    from confluent_kafka.admin import AdminClient

    topic = f"devstack-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive its futures
    admin.create_topics([NewTopic(topic, 1)])[topic].result(timeout=10)
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"k", value=value)
    assert producer.flush(10) == 0
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "devstack-test", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        for _ in range(50):  # bounded: 50 polls of at most 0.2 s each
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            return msg.value()
    finally:
        consumer.close()
    raise AssertionError(f"record produced to {topic} never came back")


def test_broker_produces_and_consumes(stack: StackEndpoints, kafka_admin: Any) -> None:
    assert kafka_admin.list_topics(timeout=10).brokers
    assert _roundtrip(stack.kafka_bootstrap, b"hello") == b"hello"


def test_dynamodb_stream_shows_a_put(stack: StackEndpoints, dynamodb: Any) -> None:
    table = f"devstack_{uuid.uuid4().hex[:8]}"
    created = dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    stream_arn = created["TableDescription"]["LatestStreamArn"]
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "n": {"N": "1"}})

    streams = boto3.client(
        "dynamodbstreams",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        endpoint_url=stack.dynamodb_endpoint,
    )
    shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    assert shards
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shards[0]["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    assert [r["eventName"] for r in records] == ["INSERT"]
    assert records[0]["dynamodb"]["NewImage"] == {"pk": {"S": "a"}, "n": {"N": "1"}}


def test_registry_lists_subjects(stack: StackEndpoints) -> None:
    status, body = _get(f"{stack.registry_url}/subjects")
    assert status == 200
    assert isinstance(body, list)


def test_kafka_restarts_on_the_same_port(local_stack_factory: Callable[..., LocalStack]) -> None:
    local = local_stack_factory()
    local.start_one("kafka")  # the broker alone is enough here
    port = local.port("kafka")
    bootstrap = f"127.0.0.1:{port}"
    assert _roundtrip(bootstrap, b"before") == b"before"

    local.stop_one("kafka")
    assert not local.is_running("kafka")
    assert not _listening(port)

    local.start_one("kafka")
    assert local.port("kafka") == port
    assert _roundtrip(bootstrap, b"after") == b"after"


def test_registry_restarts_on_the_same_port(local_stack_factory: Callable[..., LocalStack]) -> None:
    local = local_stack_factory()
    endpoints = local.start()
    port = local.port("registry")

    local.stop_one("registry")
    assert not _listening(port)

    local.start_one("registry")
    assert local.endpoints == endpoints
    assert _get(f"{endpoints.registry_url}/subjects")[0] == 200


def test_failed_start_names_the_part_and_its_log(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        local = LocalStack(tmp_path, moto_port=taken.getsockname()[1])
        with pytest.raises(BridgeError, match=r"moto: port \d+ on 127\.0\.0\.1 is already in use"):
            local.start()
        assert not local.is_running("kafka")  # what did start was stopped again
    finally:
        taken.close()


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ddb-kafka-bridge")
    devstack.add_dev_subcommands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_dev_up_status_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    workdir = tmp_path / "devstack"
    ports = ["--kafka-port", "0", "--dynamodb-port", "0", "--registry-port", "0"]
    args = _cli(["dev", "up", "--dir", str(workdir), *ports])
    try:
        assert args.func(args) == 0
        printed = capsys.readouterr().out
        snippet = yaml.safe_load(printed)  # human lines are comments: stdout is valid YAML
        state = json.loads((workdir / "state.json").read_text())
        endpoints = StackEndpoints.from_dict(state["endpoints"])
        assert snippet == {
            "kafka": {"bootstrap.servers": endpoints.kafka_bootstrap},
            "schema_registry": {"url": endpoints.registry_url},
            "aws": {"region": "us-east-1", "endpoint_url": endpoints.dynamodb_endpoint},
        }
        pids = [p["pid"] for p in state["processes"].values()]
        assert sorted(state["processes"]) == ["kafka", "moto", "registry"]
        assert (workdir / "logs" / "kafka.log").is_file()

        status = devstack.dev_status(workdir)
        assert status["running"], status
        assert all(p["alive"] and p["reachable"] for p in status["parts"].values())
        assert devstack.dev_up(workdir, 0, 0, 0) == endpoints  # already up: same stack

        args = _cli(["dev", "status", "--dir", str(workdir), "--json"])
        assert args.func(args) == 0
        assert json.loads(capsys.readouterr().out)["running"] is True
    finally:
        args = _cli(["dev", "down", "--dir", str(workdir)])
        assert args.func(args) == 0

    assert all(_pid_gone(pid) for pid in pids)
    assert not (workdir / "state.json").exists()
    assert devstack.dev_status(workdir)["running"] is False
    devstack.dev_down(workdir)  # idempotent
    args = _cli(["dev", "status", "--dir", str(workdir)])
    assert args.func(args) == 1


def test_dev_up_apache_kafka_keeps_its_data_across_down_and_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dev up --broker kafka`: a record written before `dev down` is there after `dev up`;
    `dev down --wipe` removes the data."""
    from tests.conftest import _need_apache_kafka

    _need_apache_kafka()
    workdir = tmp_path / "devstack"
    up = ["dev", "up", "--broker", "kafka", "--dir", str(workdir),
          "--kafka-port", "0", "--dynamodb-port", "0", "--registry-port", "0"]
    topic = f"kept-{uuid.uuid4().hex[:8]}"
    try:
        args = _cli(up)
        assert args.func(args) == 0
        assert "Apache Kafka" in capsys.readouterr().out
        bootstrap = devstack.dev_status(workdir)["endpoints"]["kafka_bootstrap"]
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, 1)])[topic].result(timeout=30)
        producer = Producer({"bootstrap.servers": bootstrap})
        producer.produce(topic, b"survives")
        assert producer.flush(30) == 0

        args = _cli(["dev", "down", "--dir", str(workdir)])
        assert args.func(args) == 0
        assert (workdir / "kafka-data" / "kafka" / "meta.properties").is_file()

        args = _cli(up)
        assert args.func(args) == 0
        bootstrap = devstack.dev_status(workdir)["endpoints"]["kafka_bootstrap"]
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kept", "enable.auto.commit": False})
        try:
            consumer.assign([TopicPartition(topic, 0, 0)])
            got = None
            for _ in range(100):  # bounded: 100 polls of at most 0.3 s
                msg = consumer.poll(0.3)
                if msg is not None and not msg.error():
                    got = msg.value()
                    break
        finally:
            consumer.close()
        assert got == b"survives"
    finally:
        args = _cli(["dev", "down", "--wipe", "--dir", str(workdir)])
        assert args.func(args) == 0
    assert not (workdir / "kafka-data").exists()


def test_apache_kafka_without_java_or_maven_says_what_to_install(tmp_path: Path) -> None:
    """No `java` or `mvn` on PATH and no cached jars: one line naming both and the fix."""
    import subprocess
    import sys

    bare = tmp_path / "bin"
    bare.mkdir()
    env = dict(os.environ, PATH=str(bare), DDB_BRIDGE_CACHE=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, "-m", "bridge_app.cli", "dev", "up", "--broker", "kafka", "--dir", str(tmp_path / "stack"),
         "--kafka-port", "0", "--dynamodb-port", "0", "--registry-port", "0"],
        capture_output=True, text=True, timeout=60, env=env, cwd=Path(__file__).resolve().parents[2],
    )
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, done.stderr
    assert "java and mvn" in lines[0] and "apt-get install openjdk-17-jre-headless maven" in lines[0], lines[0]
    assert "--broker tansu" in lines[0]
    assert not (tmp_path / "stack" / "state.json").exists()


def test_dev_up_brings_back_a_part_that_died(tmp_path: Path) -> None:
    """Issue 11: `dev up` on a stack with a dead part restarted nothing and refused ("only
    partly running"). Now the dead part comes back on its port; the others keep running."""
    workdir = tmp_path / "devstack"
    endpoints = devstack.dev_up(workdir, 0, 0, 0)
    try:
        state = json.loads((workdir / "state.json").read_text())
        moto, kafka = state["processes"]["moto"], state["processes"]["kafka"]
        os.killpg(int(moto["pgid"]), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while devstack.dev_status(workdir)["parts"]["moto"]["alive"]:
            assert time.monotonic() < deadline, "moto did not die"
            time.sleep(0.05)
        assert devstack.dev_status(workdir)["running"] is False
        assert devstack.dev_up(workdir, 0, 0, 0) == endpoints
        status = devstack.dev_status(workdir)
        assert status["running"], status
        after = json.loads((workdir / "state.json").read_text())["processes"]
        assert after["moto"]["port"] == moto["port"] and after["moto"]["pid"] != moto["pid"]
        assert after["kafka"]["pid"] == kafka["pid"], "a live part must not be restarted"
    finally:
        devstack.dev_down(workdir)
    assert devstack.dev_status(workdir)["running"] is False


def test_dev_down_leaves_a_recycled_pid_alone(tmp_path: Path) -> None:
    """The state names a pid that now belongs to another process (its start time differs):
    `dev down` must not signal it."""
    workdir = tmp_path / "devstack"
    workdir.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        fake = {"pid": other.pid, "pgid": other.pid, "start_ticks": 1, "port": 1, "log": "x"}
        (workdir / "state.json").write_text(json.dumps({
            "version": devstack.STATE_VERSION, "started_at": "", "endpoints": {},
            "processes": {"kafka": fake, "moto": fake, "registry": fake},
        }))
        devstack.dev_down(workdir)
        assert other.poll() is None, "dev down signalled a process it did not start"
    finally:
        other.kill()
        other.wait()
