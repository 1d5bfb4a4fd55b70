"""Every command block in README.md runs as written (issue 14).

The blocks are read from README.md when the tests run, so an edit that stops one working
fails here, and ``test_every_command_block_has_a_runner`` fails when a ```sh or ```python
block appears that no test here runs (or a fence has no language, or one this file does
not know). Output, illustrations and Docker instructions are ```text / ```console; config is
```yaml. Where each command block runs:

- ``make demo`` / ``make test`` (Two commands): ``make demo`` itself runs, from the repository,
  with ``DEVSTACK_DIR`` (a temp dir) and ``DEV_UP_ARGS`` (free ports) from the environment and
  ``-o $(VENV)/.installed`` with ``VENV`` = the suite's own venv: in CI ``make test`` has just
  made that stamp, so ``-o`` changes nothing there; in a checkout that borrows another's venv
  it keeps make from reinstalling that venv from here. What it prints is checked against the
  README's ```text block. ``make test`` cannot run inside the suite it runs: CI runs it
  (``.ci/run``), and the test checks that ``.ci/run`` runs exactly that command and that the
  target runs ``pytest tests`` as the README says.
- ``pip install .`` / ``ddb-kafka-bridge run`` (Running it): ``pip install .`` runs as written
  in a copy of the source tree, into a fresh venv first on ``PATH``. It takes about 20 s on 2
  cores (the C extension is compiled; dependencies come from pip's cache once ``make
  install`` has run), under the 60 s allowed for it, and nothing else proves that the package installs, builds its
  transcoder and gives a working ``ddb-kafka-bridge`` outside the dev venv. It runs beside
  ``dev up``. The bridge then runs from that venv until the changes are in Kafka; SIGTERM
  must give exit 0.
- The "Operating it" block: every line, from the installed venv, exit 0 and its output shape.
- The kcat block (Local stack): ``dev up --broker kafka`` as written, on the default ports,
  in the temp copy (state in its ``./.devstack``), then both kcat lines. The ports must be
  free: a stack left running there fails the test with that cause.
- The consumer example (Consuming): as written, against that stack; it stops by itself
  after 10 s without a record.

``bridge.yaml`` is what the README says it is: the connection part ``dev up`` prints, as
printed, plus ``name`` and ``tables`` from the README's YAML config block (tables ``orders``
and ``customers``, created in moto with a few changes to ``orders``). No AWS credentials are
given to the README's commands: the README says none are needed for a loopback endpoint.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import _need_apache_kafka
from tests.e2e.test_kcat import _kcat
from tests.helpers import ROOT, TopicReader, dynamodb_client

README = ROOT / "README.md"
KNOWN_LANGUAGES = {"sh", "python", "yaml", "text", "console"}
COMMAND_LANGUAGES = {"sh", "python"}
DEFAULT_PORTS = {19092: "broker", 19093: "broker's controller", 18000: "moto", 18081: "registry"}


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int  # of the opening fence, 1-based

    @property
    def commands(self) -> list[str]:
        return [ln for ln in self.text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def readme_blocks() -> list[Block]:
    text = README.read_text()
    return [
        Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in re.finditer(r"^```(\S*)\n(.*?)^```[ \t]*$", text, re.M | re.S)
    ]


def block(lang: str, first_line: str) -> Block:
    """The one README block of ``lang`` whose first line starts with ``first_line``."""
    found = [b for b in readme_blocks() if b.lang == lang and b.text.lstrip().startswith(first_line)]
    assert len(found) == 1, f"README.md: expected one ```{lang} block starting {first_line!r}, found {len(found)}"
    return found[0]


# Each command block, by language and first line, and the test that runs it.
RUNNERS = {
    ("sh", "make demo"): "test_make_demo_block, test_make_test_is_what_ci_runs",
    ("sh", "pip install ."): "test_readme_walkthrough",
    ("sh", "ddb-kafka-bridge validate -c bridge.yaml --connect"): "test_readme_walkthrough",
    ("sh", "ddb-kafka-bridge dev up --broker kafka"): "test_readme_walkthrough",
    ("python", "from confluent_kafka import DeserializingConsumer"): "test_readme_walkthrough",
}


def test_every_command_block_has_a_runner() -> None:
    blocks = readme_blocks()
    unknown = [f"line {b.line}: ```{b.lang}" for b in blocks if b.lang not in KNOWN_LANGUAGES]
    assert not unknown, f"README fences without a known language (commands are sh or python): {unknown}"
    commands = {b for b in blocks if b.lang in COMMAND_LANGUAGES}
    claimed = {block(lang, first) for lang, first in RUNNERS}
    assert commands == claimed, "README command blocks no test runs: " + ", ".join(
        f"line {b.line}: {b.text.splitlines()[0]!r}" for b in sorted(commands - claimed, key=lambda b: b.line)
    )


def _argv(line: str, env: dict[str, str]) -> list[str]:
    """A README line as the shell would split it, its program found on ``env``'s PATH."""
    argv = shlex.split(line, comments=True)
    program = shutil.which(argv[0], path=env["PATH"])
    assert program, f"{argv[0]!r} (README: {line!r}) not on PATH {env['PATH']}"
    return [program, *argv[1:]]


def _run(line: str, cwd: Path, env: dict[str, str], timeout: float = 120, extra: list[str] = ()) -> str:
    proc = subprocess.run([*_argv(line, env), *extra], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"README line {line!r}: exit {proc.returncode}\n{out[-3000:]}"
    return out


def _env(path_first: Path, pythonpath: Path | None) -> dict[str, str]:
    """The caller's environment without AWS credentials (none are needed on loopback)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{path_first}{os.pathsep}{env.get('PATH', '')}"
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def _fragments_in_order(expected: str, actual: str) -> bool:
    """``expected`` is a README line where ``...`` stands for any text."""
    at = 0
    for fragment in (f.strip() for f in expected.split("...")):
        at = actual.find(fragment, at)
        if at < 0:
            return False
        at += len(fragment)
    return True


def test_readme_config_block_is_a_valid_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The YAML config the README shows loads as written, given the variables it names."""
    from connectors.dynamodb.config import load_config

    path = tmp_path / "bridge.yaml"
    path.write_text(block("yaml", "name: orders-cdc").text)
    monkeypatch.setenv("KAFKA_PASSWORD", "kafka-secret")
    monkeypatch.setenv("REGISTRY_PASSWORD", "registry-secret")
    cfg = load_config(path)
    assert cfg.name == "orders-cdc" and [t.name for t in cfg.tables] == ["orders", "customers"]


# --- Two commands: make demo / make test ---------------------------------------------


def test_make_test_is_what_ci_runs() -> None:
    lines = [shlex.split(ln, comments=True) for ln in block("sh", "make demo").commands]
    assert lines == [["make", "demo"], ["make", "test"]], lines
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    makes = [shlex.split(ln, comments=True) for ln in ci if re.match(r"\s*make\b", ln)]
    assert len(makes) == 1 and makes[0][:2] == ["make", "test"], f".ci/run must run `make test`: {makes}"
    assert all(a.startswith("PYTEST_ARGS=") for a in makes[0][2:]), makes[0]
    target = re.search(r"^test:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert target and "-m pytest tests " in target.group(1) + " ", "README: `make test` runs `pytest tests`"


@pytest.mark.slow
def test_make_demo_block(tmp_path: Path) -> None:
    venv = Path(sys.prefix)
    assert (venv / "bin" / "ddb-kafka-bridge").exists(), f"the suite's venv {venv} has no ddb-kafka-bridge"
    env = _env(venv / "bin", ROOT)
    env.update(
        VENV=str(venv),
        DEVSTACK_DIR=str(tmp_path / ".devstack"),
        DEV_UP_ARGS="--kafka-port 0 --dynamodb-port 0 --registry-port 0",
    )
    line = block("sh", "make demo").commands[0]
    try:
        out = _run(line, ROOT, env, timeout=240, extra=["-o", str(venv / ".installed")])
    finally:
        _run("make dev-down", ROOT, env, timeout=60)
    names = ("INSERT", "MODIFY", "REMOVE", "TOMBSTONE")
    events = [ln.strip() for ln in out.splitlines() if ln.strip().split(" ", 1)[0] in names]
    expected = [ln for ln in block("text", "INSERT").text.splitlines() if ln.strip()]
    assert len(events) == len(expected), f"make demo printed {len(events)} events, README shows {len(expected)}:\n{out}"
    for want, got in zip(expected, events):
        assert _fragments_in_order(want, got), f"README shows\n  {want}\nmake demo printed\n  {got}"
    assert "demo done: 5 events" in out, out[-2000:]


# --- Running it, Operating it, the kcat recipe and the consumer, on one stack -----------


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _write_changes(ddb) -> int:
    for name, key in (("orders", "order_id"), ("customers", "customer_id")):
        ddb.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
    ddb.put_item(TableName="orders", Item={"order_id": {"S": "order#1"}, "status": {"S": "NEW"}, "total": {"N": "19.99"}})
    ddb.update_item(TableName="orders", Key={"order_id": {"S": "order#1"}}, UpdateExpression="SET #s = :s",
                    ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "SHIPPED"}})
    ddb.put_item(TableName="orders", Item={"order_id": {"S": "order#2"}, "status": {"S": "NEW"}})
    ddb.delete_item(TableName="orders", Key={"order_id": {"S": "order#2"}})
    return 5  # insert, modify, insert, remove, tombstone


def _tail_lines(out: str) -> bool:
    records = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    return len(records) == 5 and all(r["topic"] == "ddb.orders" for r in records)


# What each "Operating it" line must print besides exiting 0, by subcommand.
OPERATING_OUTPUT: dict[str, Callable[[str], bool]] = {
    "validate": lambda out: "bridge.yaml: ok" in out and "table orders: may read the stream" in out,
    "run": lambda out: "caught up" in out and "stopped" in out,
    "status": lambda out: "connector orders-cdc:" in out and re.search(r"^orders:shardId-\S+ ", out, re.M) is not None,
    "tail": _tail_lines,
    "offsets": lambda out: re.search(r'^orders\s+shardId-\S+\s+\{"ended": false, "seq": "\d+"\}', out, re.M) is not None,
    "verify": lambda out: "table 'orders' vs topic 'ddb.orders': 1 items, 1 live keys in 5 records: clean" in out
    and "table 'customers' vs topic 'cdc.customers': 0 items" in out,
}


@pytest.mark.slow
def test_readme_walkthrough(tmp_path: Path) -> None:
    _need_apache_kafka()
    _kcat()
    taken = [f"{port} ({what})" for port, what in DEFAULT_PORTS.items() if _port_taken(port)]
    assert not taken, (
        f"the README's kcat block runs `dev up --broker kafka` on the default ports, but {', '.join(taken)} "
        "in use: a `ddb-kafka-bridge dev up` left running? stop it with `ddb-kafka-bridge dev down`"
    )
    running = block("sh", "pip install .").commands
    operating = block("sh", "ddb-kafka-bridge validate -c bridge.yaml --connect").commands
    kcat_block = block("sh", "ddb-kafka-bridge dev up --broker kafka").commands
    consumer = block("python", "from confluent_kafka import DeserializingConsumer").text
    config = yaml.safe_load(block("yaml", "name: orders-cdc").text)
    assert len(running) == 2 and len(kcat_block) == 3 and len(operating) >= 6

    src = tmp_path / "src"  # a clean copy of the checkout: the README's commands run in it
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", ".devstack", "*.egg-info", "__pycache__", "*.so", ".pytest_cache",
        ".hypothesis", "test-artifacts"))
    venv = tmp_path / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True, timeout=120)
    installed = _env(venv / "bin", None) | {"VIRTUAL_ENV": str(venv)}
    dev = _env(Path(sys.executable).parent, ROOT)  # `dev up` needs the dev extras (moto)

    pip_log = tmp_path / "pip.log"
    with pip_log.open("wb") as log:
        pip = subprocess.Popen(_argv(running[0], installed), cwd=src, env=installed, stdout=log, stderr=subprocess.STDOUT)
    bridge: subprocess.Popen[bytes] | None = None
    try:
        printed = _run(kcat_block[0], src, dev, timeout=180)
        snippet = yaml.safe_load(printed)
        assert set(snippet) == {"kafka", "schema_registry", "aws"} <= set(config), printed
        ddb = dynamodb_client(snippet["aws"]["endpoint_url"])
        expected = _write_changes(ddb)
        (src / "bridge.yaml").write_text(
            printed + yaml.safe_dump({"name": config["name"], "tables": config["tables"]}, sort_keys=False)
        )
        assert pip.wait(timeout=240) == 0, f"README line {running[0]!r} failed:\n{pip_log.read_text()[-3000:]}"

        # Running it: the bridge from the installed package, stopped by SIGTERM.
        bridge_log = tmp_path / "bridge.log"
        with bridge_log.open("wb") as log:
            bridge = subprocess.Popen(_argv(running[1], installed), cwd=src, env=installed, stdout=log,
                                      stderr=subprocess.STDOUT)

        def alive() -> None:
            assert bridge is not None
            if bridge.poll() is not None:
                raise AssertionError(f"{running[1]!r} exited {bridge.returncode}:\n{bridge_log.read_text()[-3000:]}")

        reader = TopicReader(snippet["kafka"]["bootstrap.servers"], snippet["schema_registry"]["url"], "ddb.orders")
        try:
            reader.read_count(expected, timeout=90, check=alive)
        finally:
            reader.close()
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=60) == 0, bridge_log.read_text()[-3000:]

        # Operating it.
        for line in operating:
            out = _run(line, src, installed)
            check = OPERATING_OUTPUT[shlex.split(line)[1]]
            assert check(out), f"README line {line!r} printed:\n{out[-3000:]}"

        # The kcat recipe: one line per record (partition, offset, value size; -1 a tombstone).
        listing = _run(kcat_block[1], src, dev, timeout=60)
        assert 'topic "ddb.orders" with 1 partitions' in listing, listing
        records = [ln.split() for ln in _run(kcat_block[2], src, dev, timeout=60).splitlines()]
        assert [r[:2] for r in records] == [["0", str(i)] for i in range(expected)], records
        sizes = [int(r[2]) for r in records]
        assert sizes[-1] == -1 and all(s > 5 for s in sizes[:-1]), sizes

        # The consumer, as written: it stops by itself after 10 s without a record.
        (src / "consumer.py").write_text(consumer)
        out = _run("python consumer.py", src, dev, timeout=120)
        lines = out.splitlines()
        assert [ln.split(" ", 1)[0] for ln in lines] == ["c", "u", "c", "d", "tombstone"], out
        assert lines[0].startswith("c {'order_id': 'order#1'} None {'order_id': {'S': 'order#1'}"), out
        assert lines[-1] == "tombstone {'order_id': 'order#2'}", out
    finally:
        for proc in (pip, bridge):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(30)
        down = subprocess.run(_argv("ddb-kafka-bridge dev down", dev), cwd=src, env=dev, capture_output=True,
                              text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [p for p in DEFAULT_PORTS if _port_taken(p)], "dev down left a part of the stack listening"
