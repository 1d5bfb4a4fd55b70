"""Bad input through the real CLI, as one table of cases: config, librdkafka settings,
ports, services that are not what they claim, table and attribute names, offsets-topic
contents, signals.

Every start-up failure must: exit with the expected code (2), print exactly ONE line
(nothing else on stdout or stderr) that names the key and the fix, show no secret (each
config carries one), and leave nothing behind: none of the topics the config would
create exists afterwards.
"""

from __future__ import annotations

import http.server
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.helpers import ROOT, BridgeProcess, bridge_config, bridge_env, create_table, unique

pytestmark = pytest.mark.slow

SECRET = "Hunter2-Sup3rS3cret"


# ----------------------------------------------------------------------------- plumbing


@dataclass
class Ctx:
    """What a case may use: the stack, a table with a stream, a temp dir, helpers."""

    stack: Any
    table: str
    tmp: Path
    dynamodb: Any
    extra_tables: list[str] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def config(self, **extra: Any) -> dict[str, Any]:
        cfg = bridge_config(self.stack, [self.table], name=unique("bad"), **extra)
        # Every config carries a secret; none may ever be printed.
        cfg["schema_registry"]["basic_auth"] = {"username": "bridge", "password": SECRET}
        return cfg


def topics_of(cfg: dict[str, Any]) -> set[str]:
    """The topics a start of ``cfg`` would create."""
    prefix = cfg.get("topic_prefix", "ddb")
    out = {t.get("topic") or f"{prefix}.{t['name']}" for t in cfg.get("tables", []) if isinstance(t, dict)}
    out.add((cfg.get("offsets") or {}).get("topic") or f"{cfg['name']}-offsets")
    out.add((cfg.get("errors") or {}).get("dead_letter_topic") or f"{cfg['name']}-dlq")
    return out


def produce_raw(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 1, config={"cleanup.policy": "compact"})]).values():
        fut.result(30)
    p = Producer({"bootstrap.servers": bootstrap})
    for k, v in records:
        p.produce(topic, v, k)
    assert p.flush(30) == 0


def offset_key(cfg: dict[str, Any], partition: dict[str, Any]) -> bytes:
    return json.dumps([cfg["name"], partition], sort_keys=True, separators=(",", ":")).encode()


class Http405(http.server.BaseHTTPRequestHandler):
    """An endpoint that is not DynamoDB: answers every POST with 405 and an HTML page."""

    def do_POST(self) -> None:  # noqa: N802
        body = b"<html><body><h1>405 Not Allowed</h1></body></html>\n"
        self.send_response(405)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve_405(ctx: Ctx) -> str:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Http405)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ctx.cleanups.append(server.shutdown)
    return f"http://127.0.0.1:{server.server_address[1]}"


def busy_port(ctx: Ctx) -> int:
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen(1)
    ctx.cleanups.append(s.close)
    return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- cases


@dataclass
class Case:
    id: str
    # Returns the config (dict, or raw bytes/str of the file); may prepare the stack.
    make: Callable[[Ctx], dict[str, Any] | str | bytes]
    words: list[str]  # the line must contain each
    code: int = 2
    prefix: str = "ddb-kafka-bridge: config error:"
    argv: list[str] | None = None  # default: run -c FILE


def cfg_with(**changes: Any) -> Callable[[Ctx], dict[str, Any]]:
    def make(ctx: Ctx) -> dict[str, Any]:
        cfg = ctx.config()
        for path, value in changes.items():
            node: Any = cfg
            parts = path.split("__")
            for p in parts[:-1]:
                node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
            node[parts[-1]] = value
        return cfg

    return make


def kafka_with(key: str, value: Any) -> Callable[[Ctx], dict[str, Any]]:
    def make(ctx: Ctx) -> dict[str, Any]:
        cfg = ctx.config()
        cfg["kafka"][key] = value
        return cfg

    return make


def raw(transform: Callable[[str], str | bytes]) -> Callable[[Ctx], str | bytes]:
    def make(ctx: Ctx) -> str | bytes:
        return transform(yaml.safe_dump(ctx.config()))

    return make


def offsets_holding(value: bytes | None, *, key: Callable[[dict[str, Any], str], bytes | None] | None = None
                    ) -> Callable[[Ctx], dict[str, Any]]:
    """A config whose offsets topic holds, for the table's shard, ``value`` under ``key``."""

    def make(ctx: Ctx) -> dict[str, Any]:
        cfg = ctx.config()
        shard = ctx.dynamodb_shard()
        k = key(cfg, shard) if key is not None else offset_key(cfg, {"table": ctx.table, "shard": shard})
        produce_raw(ctx.stack.kafka_bootstrap, f"{cfg['name']}-offsets", [(k, value)])
        return cfg

    return make


def shared_topic_different_keys(ctx: Ctx) -> dict[str, Any]:
    other = unique("otherkey")
    create_table(ctx.dynamodb, other, hash_key=("id", "N"), range_key=None)
    topic = unique("shared")
    cfg = ctx.config()
    cfg["tables"] = [{"name": ctx.table, "topic": topic}, {"name": other, "topic": topic}]
    return cfg


def ddb_405(ctx: Ctx) -> dict[str, Any]:
    cfg = ctx.config()
    cfg["aws"]["endpoint_url"] = serve_405(ctx)
    return cfg


def endpoint_on_kafka_port(what: str) -> Callable[[Ctx], dict[str, Any]]:
    """A URL that answers, but not HTTP: the broker's port."""

    def make(ctx: Ctx) -> dict[str, Any]:
        cfg = ctx.config()
        url = f"http://{ctx.stack.kafka_bootstrap}"
        if what == "registry":
            cfg["schema_registry"] |= {"url": url, "max_retries": 1}
        else:
            cfg["aws"]["endpoint_url"] = url
        return cfg

    return make


def registry_is_moto(ctx: Ctx) -> dict[str, Any]:
    cfg = ctx.config()
    cfg["schema_registry"] |= {"url": ctx.stack.dynamodb_endpoint, "max_retries": 0}
    return cfg


def metrics_port_busy(ctx: Ctx) -> dict[str, Any]:
    return ctx.config(metrics={"port": busy_port(ctx), "host": "0.0.0.0"})


def rest_port_busy(ctx: Ctx) -> dict[str, Any]:
    return ctx.config(rest={"port": busy_port(ctx)})


def rest_port_is_metrics_port(ctx: Ctx) -> dict[str, Any]:
    port = busy_port(ctx)  # any fixed number: the clash is in the config
    return ctx.config(rest={"port": port}, metrics={"port": port})


def billion_laughs(ctx: Ctx) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 12)]
    return yaml.safe_dump(ctx.config()) + "\n".join(lines) + "\n"


CASES: list[Case] = [
    # --- the config file itself
    Case("file-not-utf8", raw(lambda t: t.encode() + b"# caf\xe9\n"), ["not UTF-8", "save the file as UTF-8"]),
    Case("duplicate-key", raw(lambda t: t + "name: other\n"), ["'name' appears twice", "keep one"]),
    Case("billion-laughs", billion_laughs, ["aliases", "write the value out"]),
    Case("empty-file", raw(lambda t: ""), ["expected a YAML mapping"]),
    Case("top-level-list", raw(lambda t: "- a\n- b\n"), ["expected a YAML mapping"]),
    Case("env-missing", cfg_with(name="${BRIDGE_TEST_NO_SUCH_VAR}"), ["BRIDGE_TEST_NO_SUCH_VAR", "set it"]),
    Case("unknown-key", cfg_with(tables__0__strat_position="latest"), ["tables[0].strat_position", "did you mean"]),
    # --- values
    Case("registry-url-typo-with-password", cfg_with(schema_registry__url=f"htps://bridge:{SECRET}@localhost:8081"),
         ["schema_registry.url", "not an http(s) URL"]),
    Case("basic-auth-and-bearer", cfg_with(schema_registry__bearer_token=SECRET), ["basic_auth and bearer_token"]),
    Case("timeout-inf", cfg_with(schema_registry__timeout_s=float("inf")), ["schema_registry.timeout_s", "finite"]),
    Case("timeout-huge", cfg_with(schema_registry__timeout_s=1e12), ["schema_registry.timeout_s", "600"]),
    Case("poll-interval-huge", cfg_with(tables__0__stream={"poll_interval_ms": 10**9}),
         ["tables[0].stream.poll_interval_ms", "300000"]),
    Case("shutdown-negative", cfg_with(shutdown_timeout_s=-1), ["shutdown_timeout_s", "greater than 0"]),
    Case("at-timestamp-missing", cfg_with(tables__0__start_position="at_timestamp"), ["start_timestamp"]),
    Case("stall-order", cfg_with(stall={"warn_after_s": 10, "fail_after_s": 5}), ["stall", "fail_after_s"]),
    # --- topic and table names
    Case("topic-illegal-chars", cfg_with(tables__0__topic="orders cdc/v1"), ["tables[0].topic", "letters, digits"]),
    Case("topic-too-long", cfg_with(tables__0__topic="t" * 250), ["tables[0].topic", "249"]),
    Case("topic-is-offsets-topic", cfg_with(offsets={"topic": "shared-x"}, tables__0__topic="shared-x"),
         ["tables[0].topic", "offsets.topic"]),
    Case("topic-is-schemas", cfg_with(tables__0__topic="_schemas"), ["tables[0].topic", "Schema Registry"]),
    Case("table-name-makes-long-topic", cfg_with(tables__0__name="t" * 250), ["tables[0].name"]),
    Case("table-name-illegal", cfg_with(tables__0__name="orders/v1"), ["tables[0].name", "letters, digits"]),
    Case("bridge-name-illegal", cfg_with(name="my bridge"), ["name:", "letters, digits"]),
    Case("no-tables", cfg_with(tables=[]), ["tables", "at least one table", "table_discovery"]),
    Case("table-listed-twice", lambda ctx: ctx.config() | {"tables": [{"name": ctx.table}, {"name": ctx.table}]},
         ["listed twice", "list each table once"]),
    Case("yaml-syntax", raw(lambda t: t + "kafka: [unclosed\n"), ["not valid YAML", "line"]),
    Case("kafka-value-a-map", kafka_with("linger.ms", {"ms": 5}), ["kafka.linger.ms"]),
    Case("region-not-a-name", cfg_with(aws__region="us east 1"), ["aws.region", "us-east-1"]),
    Case("shared-topic-different-keys", shared_topic_different_keys, ["both write to topic", "give each its own topic"]),
    # --- librdkafka settings
    Case("kafka-not-a-number", kafka_with("linger.ms", "notanumber"), ["kafka.linger.ms", "librdkafka refuses"]),
    Case("kafka-unknown-property", kafka_with("lingr.ms", 5), ["kafka.lingr.ms", "No such configuration property"]),
    Case("kafka-out-of-range", kafka_with("batch.num.messages", 0), ["kafka.batch.num.messages", "outside allowed range"]),
    Case("kafka-owned-key", kafka_with("enable.idempotence", False), ["remove 'enable.idempotence'"]),
    # --- ports and services
    Case("metrics-port-in-use", metrics_port_busy, ["metrics.port", "already in use", "choose another port"]),
    Case("rest-token-empty", cfg_with(rest={"port": 0, "bearer_token": ""}),
         ["rest.bearer_token", "empty", "set a token"]),
    Case("rest-token-blank", cfg_with(rest={"port": 0, "bearer_token": "  "}),
         ["rest.bearer_token", "empty", "set a token"]),
    Case("rest-token-unset-variable", cfg_with(rest={"port": 0, "bearer_token": "${BRIDGE_TEST_EMPTY_TOKEN:-}"}),
         ["rest.bearer_token", "empty", "set a token"]),
    Case("rest-open-without-token", cfg_with(rest={"port": 0, "host": "0.0.0.0"}),
         ["rest.bearer_token", "0.0.0.0", "not a loopback", "allow_unauthenticated"]),
    Case("rest-port-in-use", rest_port_busy, ["rest.port", "already in use", "choose another port"]),
    Case("rest-port-is-metrics-port", rest_port_is_metrics_port, ["rest.port", "metrics.port", "its own port"]),
    Case("validate-rest-port-in-use", rest_port_busy, ["rest.port", "already in use"], argv=["validate", "-c", "{file}"]),
    Case("validate-rest-port-is-metrics-port", rest_port_is_metrics_port, ["rest.port", "metrics.port"],
         argv=["validate", "-c", "{file}"]),
    Case("metrics-host-unresolvable", cfg_with(metrics={"port": 0, "host": "no-such-host.invalid"}),
         ["metrics.host", "cannot resolve"]),
    Case("dynamodb-endpoint-405", ddb_405, ["aws: DynamoDB at", "HTTP405", "aws.endpoint_url"]),
    Case("aws-profile-missing", cfg_with(aws__profile="no-such-profile-x"), ["aws.profile", "no-such-profile-x"]),
    Case("registry-not-http", endpoint_on_kafka_port("registry"), ["schema_registry.url"]),
    Case("registry-is-not-a-registry", registry_is_moto, ["schema_registry.url", "Schema Registry"]),
    Case("dynamodb-endpoint-not-http", endpoint_on_kafka_port("dynamodb"), ["cannot reach DynamoDB", "aws"]),
    Case("registry-ca-missing", cfg_with(schema_registry__ssl_ca_location="/nonexistent/ca.pem"),
         ["schema_registry.ssl_", "ssl_ca_location"]),
    Case("auto-register-off-subject-missing", cfg_with(schema_registry__auto_register=False),
         ["auto_register is false", "-key'", "register it first"]),
    # --- offsets-topic contents
    Case("offset-ended-no", offsets_holding(b'{"seq": "12345", "ended": "no"}'),
         ['"ended" must be true or false', "offsets reset", "partition 0 offset 0"], prefix="ddb-kafka-bridge: error:"),
    Case("offset-value-not-utf8", offsets_holding(b"\xff\xfe\xfd"), ["value is not UTF-8", "offsets reset"],
         prefix="ddb-kafka-bridge: error:"),
    Case("offset-value-list", offsets_holding(b"[1, 2, 3]"), ["a JSON list", "offsets reset"],
         prefix="ddb-kafka-bridge: error:"),
    Case("offset-value-not-json", offsets_holding(b"seq=1"), ["value is not JSON"], prefix="ddb-kafka-bridge: error:"),
    Case("offset-seq-number", offsets_holding(b'{"seq": 12345, "ended": false}'), ['"seq" must be a sequence number'],
         prefix="ddb-kafka-bridge: error:"),
    Case("offset-key-not-json", offsets_holding(b'{"seq": "1", "ended": false}', key=lambda c, s: b"not json"),
         ["key is not JSON", "--key 'not json'"], prefix="ddb-kafka-bridge: error:"),
    Case("offset-segment-done-string",
         offsets_holding(b'{"pass": 0, "last_key": null, "done": "yes", "items": 1, "scanned": 1}',
                         key=lambda c, s: offset_key(c, {"segment": 0, "table": "x", "total_segments": 4})),
         ['"done" must be true or false', "offsets reset"], prefix="ddb-kafka-bridge: error:"),
    Case("offset-unknown-field", offsets_holding(b'{"seq": "1", "ended": false, "skip": true}'),
         ['unknown field "skip"'], prefix="ddb-kafka-bridge: error:"),
    Case("offset-unknown-partition",
         offsets_holding(b'{"seq": "1"}', key=lambda c, s: offset_key(c, {"table": "x", "stream": "y"})),
         ["none this bridge writes"], prefix="ddb-kafka-bridge: error:"),
    Case("offset-no-key", offsets_holding(b'{"seq": "1", "ended": false}', key=lambda c, s: None),
         ["no key", "new offsets.topic"], prefix="ddb-kafka-bridge: error:"),
    Case("offset-key-not-utf8", offsets_holding(b'{"seq": "1", "ended": false}', key=lambda c, s: b"\xfe\xff"),
         ["key is not UTF-8", "--key-hex feff"], prefix="ddb-kafka-bridge: error:"),
    # --- the command line
    Case("run-without-config", lambda ctx: ctx.config(), ["-c/--config", "--help"], prefix="ddb-kafka-bridge run: error:",
         argv=["run"]),
    Case("config-is-a-directory", lambda ctx: ctx.config(), ["cannot read config file"], argv=["run", "-c", "{tmp}"]),
    Case("validate-bad-librdkafka", kafka_with("linger.ms", "soon"), ["kafka.linger.ms"], argv=["validate", "-c", "{file}"]),
]


# ----------------------------------------------------------------------------- the run


@pytest.fixture(scope="module")
def good_table(stack: Any) -> str:
    from tests.helpers import dynamodb_client

    name = unique("badinput")
    create_table(dynamodb_client(stack.dynamodb_endpoint), name)
    return name


@pytest.fixture
def ctx(stack: Any, good_table: str, dynamodb: Any, tmp_path: Path) -> Iterator[Ctx]:
    c = Ctx(stack, good_table, tmp_path, dynamodb)

    def shard() -> str:
        arn = dynamodb.describe_table(TableName=good_table)["Table"]["LatestStreamArn"]
        import boto3

        streams = boto3.client("dynamodbstreams", endpoint_url=stack.dynamodb_endpoint, region_name="us-east-1",
                               aws_access_key_id="test", aws_secret_access_key="test")
        return streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]

    c.dynamodb_shard = shard  # type: ignore[attr-defined]
    yield c
    for f in c.cleanups:
        f()


def run_cli(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge_app.cli", *argv], capture_output=True, text=True,
                          env=bridge_env(), cwd=ROOT, timeout=timeout)


def existing_topics(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, ctx: Ctx, stack: Any) -> None:
    made = case.make(ctx)
    path = ctx.tmp / "bridge.yaml"
    if isinstance(made, dict):
        path.write_text(yaml.safe_dump(made))
        cfg = made
    else:
        path.write_bytes(made if isinstance(made, bytes) else made.encode())
        cfg = None
    before = existing_topics(stack.kafka_bootstrap)
    argv = [a.format(file=path, tmp=ctx.tmp) for a in (case.argv or ["run", "-c", "{file}"])]
    started = time.monotonic()
    proc = run_cli(argv)
    took = time.monotonic() - started
    out = (proc.stdout + proc.stderr).strip()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert proc.returncode == case.code, f"exit {proc.returncode}, want {case.code}:\n{out}"
    assert "Traceback" not in out, out
    assert len(lines) == 1, f"want one line, got {len(lines)}:\n{out}"
    line = lines[0]
    assert line.startswith(case.prefix), line
    for w in case.words:
        assert w in line, f"{w!r} not in: {line}"
    assert SECRET not in out, f"secret printed: {out}"
    assert took < 60, f"took {took:.0f}s"
    if cfg is not None:
        created = (existing_topics(stack.kafka_bootstrap) - before) & topics_of(cfg)
        assert not created, f"topics created before the start-up failure: {created}"


def test_the_printed_offsets_fix_works(ctx: Ctx, stack: Any, tmp_path: Path) -> None:
    """The fix the error line names (``offsets reset`` with the key) lets the next start go."""
    cfg = offsets_holding(b'{"seq": "12345", "ended": "no"}')(ctx)
    path = tmp_path / "fix.yaml"
    path.write_text(yaml.safe_dump(cfg))
    first = run_cli(["run", "-c", str(path)])
    assert first.returncode == 2, first.stderr
    line = first.stderr.strip().splitlines()[-1]
    fix = line.split("ddb-kafka-bridge offsets reset -c <config> ", 1)[1].split(" (that source", 1)[0]
    assert fix.startswith("--key '") and fix.endswith("'"), fix
    reset = run_cli(["offsets", "reset", "-c", str(path), "--key", fix[len("--key '"):-1]])
    assert reset.returncode == 0, reset.stderr
    assert "tombstone written" in reset.stdout
    # "ended": "no" must never have skipped the shard: after the fix its changes arrive.
    pk = unique("fixed")
    ctx.dynamodb.put_item(TableName=ctx.table, Item={"pk": {"S": pk}, "sk": {"N": "1"}})
    b = BridgeProcess.write(tmp_path / "run", cfg).start()
    from tests.helpers import TopicReader

    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, f"ddb.{ctx.table}")
    try:
        reader.read_until(lambda ev: any(e.key.get("pk") == pk for e in ev), 60, check=b.check)
    finally:
        reader.close()
        assert b.stop() == 0, b.log()[-2000:]


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT], ids=["SIGHUP", "SIGTERM", "SIGINT"])
def test_stop_signals_stop_gracefully(ctx: Ctx, tmp_path: Path, sig: signal.Signals) -> None:
    """SIGHUP stops like SIGTERM: drain, commit, exit 0 with the 'stopped' line, no traceback."""
    cfg = ctx.config()
    b = BridgeProcess.write(tmp_path, cfg).start()
    b.wait_for_log(" running: ", 60)
    assert b.stop(sig) == 0, b.log()[-2000:]
    log = b.log()
    assert "Traceback" not in log
    assert f"bridge {cfg['name']} stopped:" in [ln for ln in log.splitlines() if ln.strip()][-1]
    assert SECRET not in log


def test_dev_up_snippet_works_as_printed(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    """`dev up` prints a config snippet; with a name and a table added it must run against
    moto on a machine without any AWS credentials (it said "no AWS credentials found")."""
    from devtools.devstack import config_snippet
    from tests.helpers import TopicReader

    table = unique("snippet")
    create_table(dynamodb, table)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
    name = unique("snippet")
    path = tmp_path / "bridge.yaml"
    path.write_text(config_snippet(stack) + f"name: {name}\ntables:\n  - name: {table}\n")
    env = {k: v for k, v in bridge_env().items() if not k.startswith("AWS_")}
    env |= {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true"}
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "bridge_app.cli", "run", "-c", str(path)], stdout=log,
                            stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, f"ddb.{table}")
    try:
        def alive() -> None:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "run.log").read_text()[-2000:])

        events = reader.read_count(1, 60, check=alive)
        assert events[0].key == {"pk": "a", "sk": "1"}
    finally:
        reader.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "run.log").read_text()[-2000:]


def test_a_stop_signal_during_start_up_stops_cleanly(ctx: Ctx, tmp_path: Path) -> None:
    """SIGTERM while the start-up checks wait on a DynamoDB endpoint that never answers:
    exit 0 at once, no traceback, nothing created."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)  # accepts connections (the kernel does) and never answers
    ctx.cleanups.append(hole.close)
    cfg = ctx.config()
    cfg["aws"]["endpoint_url"] = f"http://127.0.0.1:{hole.getsockname()[1]}"
    before = existing_topics(ctx.stack.kafka_bootstrap)
    b = BridgeProcess.write(tmp_path, cfg).start()
    deadline = time.monotonic() + 30
    while len(hole.accept()[0:1]) == 0 and time.monotonic() < deadline:  # the bridge's first DescribeTable
        pass
    assert b.stop(signal.SIGTERM, timeout=15) == 0, b.log()[-2000:]
    log = b.log()
    assert "Traceback" not in log
    assert "stopped during start-up" in [ln for ln in log.splitlines() if ln.strip()][-1]
    assert not (existing_topics(ctx.stack.kafka_bootstrap) - before) & topics_of(cfg)
