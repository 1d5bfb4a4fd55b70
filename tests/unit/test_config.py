"""A bad config fails at start with one line naming every problem and its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import ConfigError
from connectors.dynamodb.config import load_config, parse_config

GOOD = {
    "name": "b",
    "kafka": {
        "bootstrap.servers": "localhost:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "bridge",
        "sasl.password": "s3cr3t-pw",
    },
    "schema_registry": {"url": "http://localhost:8081"},
    "tables": [{"name": "orders"}],
}


def problems(data: dict) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_defaults_are_sensible() -> None:
    cfg = parse_config(GOOD)
    assert cfg.topic_for(cfg.tables[0]) == "ddb.orders"
    assert cfg.offsets_topic == "b-offsets"
    assert cfg.dead_letter_topic == "b-dlq"
    assert cfg.tables[0].start_position == "trim_horizon"
    assert cfg.kafka["security.protocol"] == "SASL_SSL"


def test_unknown_key_suggests_the_right_one() -> None:
    msg = problems({**GOOD, "tables": [{"name": "orders", "start_postion": "latest"}]})
    assert "tables[0].start_postion: unknown key; did you mean 'start_position'?" in msg


def test_every_problem_is_listed_at_once() -> None:
    msg = problems({"name": "b", "kafka": {}, "schema_registry": {"url": "localhost"}, "tables": []})
    assert "bootstrap.servers" in msg and "schema_registry.url" in msg and "tables" in msg


@pytest.mark.parametrize("key", ["enable.idempotence", "acks", "transactional.id", "partitioner"])
def test_settings_the_bridge_owns_are_refused(key: str) -> None:
    assert f"remove {key!r}" in problems({**GOOD, "kafka": {"bootstrap.servers": "x", key: "1"}})


def test_bad_enum_value_names_the_choices() -> None:
    msg = problems({**GOOD, "tables": [{"name": "orders", "start_position": "earliest"}]})
    assert "tables[0].start_position" in msg and "trim_horizon" in msg


def test_duplicate_table() -> None:
    assert "listed twice" in problems({**GOOD, "tables": [{"name": "orders"}, {"name": "orders"}]})


def test_environment_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REG_PW", "s3cret")
    cfg = parse_config(
        {**GOOD, "schema_registry": {"url": "http://r:8081", "basic_auth": {"username": "u", "password": "${REG_PW}"}}}
    )
    assert cfg.schema_registry.basic_auth.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(cfg)
    assert "MISSING_VAR" in problems({**GOOD, "name": "${MISSING_VAR}"})
    assert parse_config({**GOOD, "name": "${MISSING_VAR:-fallback}"}).name == "fallback"


def test_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
