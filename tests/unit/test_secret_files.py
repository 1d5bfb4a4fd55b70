"""Secrets from files (``${file:/path}``, ``${file:/path:key}``), nested defaults and ``$${`` escapes.

A Kubernetes or Docker secret arrives as a file; Kafka Connect users know
``${file:/path:key}``. The value must work in every string field, be masked in every line
the bridge prints, and a missing file or key must stop the start with one line naming the
config key and the fix (exit 2 through the real CLI).
"""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.errors import ConfigError
from bridge.interpolate import Interpolator
from bridge.redact import redact
from connectors.dynamodb.config import parse_config
from tests.helpers import ROOT, bridge_env

GOOD: dict[str, Any] = {
    "name": "b",
    "kafka": {"bootstrap.servers": "localhost:9092"},
    "schema_registry": {"url": "http://localhost:8081"},
    "aws": {"region": "us-east-1"},
    "tables": [{"name": "orders"}],
}


def secret_file(tmp_path: Path, name: str, content: str, mode: int = 0o600) -> Path:
    p = tmp_path / name
    p.write_text(content)
    p.chmod(mode)
    return p


def resolve(text: str, env: dict[str, str] | None = None) -> tuple[str, list[str], list[str]]:
    warnings: list[str] = []
    it = Interpolator(environ=env or {}, warn=warnings.append)
    out = it.value({"k": text})["k"]
    return out, it.problems, warnings


def test_whole_file_is_the_value_without_its_trailing_newline(tmp_path: Path) -> None:
    f = secret_file(tmp_path, "pw", "file-pw-8812\n")
    out, problems, warnings = resolve(f"${{file:{f}}}")
    assert (out, problems, warnings) == ("file-pw-8812", [], [])
    assert redact("auth failed: file-pw-8812") == "auth failed: ***"


def test_properties_key_as_kafka_connect_reads_it(tmp_path: Path) -> None:
    f = secret_file(tmp_path, "creds.properties", "# comment\nuser = bridge\npassword=pa\\=ss-77\\\n  31\nother: x\n")
    out, problems, _ = resolve(f"${{file:{f}:user}}/${{file:{f}:password}}")
    assert problems == []
    assert out == "bridge/pa=ss-7731"
    assert "pa=ss-7731" not in redact("got pa=ss-7731")


def test_file_values_work_in_every_string_field(tmp_path: Path) -> None:
    pw = secret_file(tmp_path, "pw", "kafka-file-pw-1\n")
    props = secret_file(tmp_path, "reg.properties", "url=http://registry.internal:8081\nuser=ru\npass=reg-file-pw-2\n")
    cfg = copy.deepcopy(GOOD)
    cfg["kafka"] |= {"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
                     "sasl.username": "bridge", "sasl.password": f"${{file:{pw}}}"}
    cfg["schema_registry"] = {"url": f"${{file:{props}:url}}",
                              "basic_auth": {"username": f"${{file:{props}:user}}", "password": f"${{file:{props}:pass}}"}}
    cfg["tables"] = [{"name": f"${{file:{props}:user}}-orders"}]
    c = parse_config(cfg)
    assert c.kafka["sasl.password"] == "kafka-file-pw-1"
    assert c.schema_registry.url == "http://registry.internal:8081"
    assert c.schema_registry.basic_auth.password.get_secret_value() == "reg-file-pw-2"
    assert c.tables[0].name == "ru-orders"
    assert "reg-file-pw-2" not in repr(c) and "kafka-file-pw-1" not in redact(str(c.kafka))


def test_nested_default() -> None:
    assert resolve("${A:-${B}}", {"B": "b"})[:2] == ("b", [])
    assert resolve("${A:-${B}}", {"A": "a"})[:2] == ("a", [])  # the default is not even looked at
    assert resolve("${A:-${B:-c}}x", {})[:2] == ("cx", [])
    assert resolve("${A:-pre-${B}-post}", {"B": "b"})[:2] == ("pre-b-post", [])
    out, problems, _ = resolve("${A:-${B}}", {})
    assert out == "" and len(problems) == 1 and "environment variable B is not set" in problems[0]


def test_dollar_dollar_escapes_a_literal_reference() -> None:
    assert resolve("$${x}", {"x": "no"})[:2] == ("${x}", [])
    assert resolve("a$${A:-${B}}b", {})[:2] == ("a${A:-${B}}b", [])
    assert resolve("cost $5 ${A}", {"A": "1"})[:2] == ("cost $5 1", [])
    assert resolve("${not a var} and ${", {})[:2] == ("${not a var} and ${", [])


def test_env_values_are_not_interpolated_again() -> None:
    assert resolve("${A}", {"A": "${B}", "B": "no"})[:2] == ("${B}", [])


@pytest.mark.parametrize("mode,warned", [(0o600, False), (0o400, False), (0o640, True), (0o644, True)])
def test_too_open_permissions_warn_naming_the_file_never_the_value(tmp_path: Path, mode: int, warned: bool) -> None:
    f = secret_file(tmp_path, "pw", "perm-secret-55", mode)
    _, _, warnings = resolve(f"${{file:{f}}} ${{file:{f}}}")
    if not warned:
        assert warnings == []
        return
    assert len(warnings) == 1  # once per file, however often it is named
    assert str(f) in warnings[0] and f"{mode:04o}" in warnings[0] and "chmod 600" in warnings[0]
    assert "perm-secret-55" not in warnings[0]


def test_missing_file_and_missing_key_name_the_config_key(tmp_path: Path) -> None:
    props = secret_file(tmp_path, "c.properties", "user=u\n")
    cfg = copy.deepcopy(GOOD)
    cfg["kafka"]["sasl.password"] = f"${{file:{tmp_path}/nope}}"
    cfg["schema_registry"]["bearer_token"] = f"${{file:{props}:token}}"
    with pytest.raises(ConfigError) as e:
        parse_config(cfg)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"kafka.sasl.password: cannot read secret file {tmp_path}/nope (No such file or directory)" in msg
    assert f"schema_registry.bearer_token: key 'token' is not in properties file {props}" in msg


def test_non_utf8_secret_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "bin"
    f.write_bytes(b"\xff\xfe")
    f.chmod(0o600)
    _, problems, _ = resolve(f"${{file:{f}}}")
    assert len(problems) == 1 and "not UTF-8" in problems[0] and "save it as UTF-8" in problems[0]


def _cli(tmp_path: Path, cfg: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "bridge_app.cli", "validate", "-c", str(path)], capture_output=True,
                          text=True, env=bridge_env(), cwd=ROOT, timeout=60)


def test_cli_missing_secret_file_exits_2_with_one_line(tmp_path: Path) -> None:
    cfg = copy.deepcopy(GOOD)
    cfg["kafka"]["sasl.password"] = "${file:/run/secrets/does-not-exist}"
    r = _cli(tmp_path, cfg)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "kafka.sasl.password: cannot read secret file /run/secrets/does-not-exist" in lines[0]


def test_cli_masks_a_file_value_that_a_library_echoes_and_warns_about_the_mode(tmp_path: Path) -> None:
    # librdkafka echoes an unsupported value back; the file's content must come out masked.
    f = secret_file(tmp_path, "mech", "FILE-SECRET-MECH-93\n", 0o644)
    cfg = copy.deepcopy(GOOD)
    cfg["kafka"] |= {"security.protocol": "SASL_SSL", "sasl.mechanisms": f"${{file:{f}}}"}
    r = _cli(tmp_path, cfg)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "FILE-SECRET-MECH-93" not in out
    assert "***" in out
    assert f"WARNING bridge.interpolate: secret file {f} is readable by group and others (mode 0644)" in out


def test_warning_goes_to_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = secret_file(tmp_path, "pw", "x-secret-1", 0o644)
    cfg = copy.deepcopy(GOOD)
    cfg["kafka"]["sasl.password"] = f"${{file:{f}}}"
    with caplog.at_level(logging.WARNING, logger="bridge.interpolate"):
        parse_config(cfg)
    assert f"secret file {f} is readable" in caplog.text and "x-secret-1" not in caplog.text
