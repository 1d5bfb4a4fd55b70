"""Bad config files, as a careless or hostile user writes them: one line, key and fix, no secret.

Each row is a change to a good config and the words the one-line error must contain.
The same table is run through the real CLI, with a broker, in tests/e2e/test_bad_input.py;
here it runs in-process, without a stack, so every row is checked on every change.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.config import check_topic_name
from bridge.errors import ConfigError
from bridge.redact import redact, register_secret
from connectors.dynamodb.config import load_config, parse_config

SECRET = "Sup3rS3cretPw"

GOOD: dict[str, Any] = {
    "name": "b",
    "kafka": {"bootstrap.servers": "localhost:9092"},
    "schema_registry": {"url": "http://localhost:8081"},
    "aws": {"region": "us-east-1"},
    "tables": [{"name": "orders"}],
}


def with_(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """GOOD with ``value`` at a dotted path ('tables.0.topic'); kafka keys keep their dots."""
    cfg = copy.deepcopy(base or GOOD)
    parts = path.split(".")
    if parts[0] == "kafka":
        cfg["kafka"][".".join(parts[1:])] = value
        return cfg
    node: Any = cfg
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
    last = parts[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return cfg


# (id, config, words the line must contain: the key and a hint of the fix)
CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("registry-url-typo-with-secret", with_("schema_registry.url", f"htps://user:{SECRET}@host:8081"),
     ["schema_registry.url", "not an http(s) URL", "use e.g."]),
    ("registry-url-no-scheme", with_("schema_registry.url", "localhost:8081"), ["schema_registry.url", "http"]),
    ("basic-auth-and-bearer", with_("schema_registry.bearer_token", SECRET,
                                    with_("schema_registry.basic_auth", {"username": "u", "password": SECRET})),
     ["schema_registry", "basic_auth and bearer_token", "keep the one"]),
    ("timeout-inf", with_("schema_registry.timeout_s", float("inf")), ["schema_registry.timeout_s", "finite"]),
    ("timeout-nan", with_("schema_registry.timeout_s", float("nan")), ["schema_registry.timeout_s", "finite"]),
    ("timeout-huge", with_("schema_registry.timeout_s", 1e9), ["schema_registry.timeout_s", "less than or equal to 600"]),
    ("timeout-zero", with_("schema_registry.timeout_s", 0), ["schema_registry.timeout_s", "greater than 0"]),
    ("retries-negative", with_("schema_registry.max_retries", -1), ["schema_registry.max_retries", "greater than or equal to 0"]),
    ("poll-interval-huge", with_("tables.0.stream", {"poll_interval_ms": 10**12}),
     ["tables[0].stream.poll_interval_ms", "less than or equal to 300000"]),
    ("discovery-too-fast", with_("tables.0.stream", {"discovery_interval_ms": 1}),
     ["tables[0].stream.discovery_interval_ms", "greater than or equal to 100"]),
    ("segments-zero", with_("tables.0.snapshot", {"mode": "only", "segments": 0}),
     ["tables[0].snapshot.segments", "greater than or equal to 1"]),
    ("segments-huge", with_("tables.0.snapshot", {"mode": "only", "segments": 100000}),
     ["tables[0].snapshot.segments", "less than or equal to 1000"]),
    ("partitions-zero", with_("topic_creation", {"partitions": 0}), ["topic_creation.partitions", "greater than or equal to 1"]),
    ("replication-zero", with_("topic_creation", {"replication_factor": 0}), ["topic_creation.replication_factor", "-1"]),
    ("flush-interval-huge", with_("offsets", {"flush_interval_ms": 10**10}), ["offsets.flush_interval_ms", "less than"]),
    ("shutdown-inf", with_("shutdown_timeout_s", float("inf")), ["shutdown_timeout_s", "finite"]),
    ("metrics-port-range", with_("metrics", {"port": 70000}), ["metrics.port", "65535"]),
    ("rest-token-empty", with_("rest", {"port": 8083, "bearer_token": ""}), ["rest.bearer_token", "empty"]),
    ("rest-token-blank", with_("rest", {"port": 8083, "bearer_token": " \t"}), ["rest.bearer_token", "empty"]),
    ("rest-open-without-token", with_("rest", {"port": 8083, "host": "0.0.0.0"}),
     ["rest.bearer_token", "'0.0.0.0'", "not a loopback", "allow_unauthenticated"]),
    ("rest-every-interface-without-token", with_("rest", {"port": 8083, "host": ""}),
     ["rest.bearer_token", "every interface"]),
    ("rest-port-is-metrics-port", with_("rest", {"port": 9400}, with_("metrics", {"port": 9400})),
     ["rest.port", "metrics.port", "own port"]),
    ("in-flight-zero", with_("max_in_flight_records", 0), ["max_in_flight_records", "greater than or equal to 1"]),
    ("stall-order", with_("stall", {"warn_after_s": 60, "fail_after_s": 30}), ["stall", "fail_after_s", "greater than warn_after_s"]),
    ("topic-bad-char", with_("tables.0.topic", "orders/cdc"), ["tables[0].topic", "'/'", "letters, digits"]),
    ("topic-space", with_("tables.0.topic", "my topic"), ["tables[0].topic", "' '"]),
    ("topic-dot", with_("tables.0.topic", ".."), ["tables[0].topic", "not a legal Kafka topic name"]),
    ("topic-too-long", with_("tables.0.topic", "t" * 250), ["tables[0].topic", "at most 249"]),
    ("prefix-plus-name-too-long", with_("tables.0.name", "t" * 247), ["tables[0].name", "at most 249", "tables[].topic"]),
    ("topic-is-offsets", with_("tables.0.topic", "b-offsets"), ["tables[0].topic", "offsets.topic", "own topic"]),
    ("topic-is-dlq", with_("tables.0.topic", "b-dlq", with_("errors", {"tolerance": "all"})),
     ["tables[0].topic", "dead_letter_topic"]),
    ("topic-is-schemas", with_("tables.0.topic", "_schemas"), ["tables[0].topic", "Schema Registry"]),
    ("topic-internal", with_("tables.0.topic", "__consumer_offsets"), ["tables[0].topic", "internal"]),
    ("topics-dot-underscore", with_("tables", [{"name": "orders", "topic": "a.b"}, {"name": "other", "topic": "a_b"}]),
     ["tables[1].topic", "collides", "rename one"]),
    ("offsets-topic-bad", with_("offsets", {"topic": "bad topic"}), ["offsets.topic"]),
    ("dlq-equals-offsets", with_("errors", {"tolerance": "all", "dead_letter_topic": "b-offsets"}),
     ["errors.dead_letter_topic", "offsets topic"]),
    ("name-too-long", with_("name", "n" * 250), ["name", "at most 241"]),
    ("endpoint-not-url", with_("aws.endpoint_url", "localhost:8000"), ["aws.endpoint_url", "http"]),
    ("region-typo", with_("aws.region", "us-east1"), ["aws.region"]),
    ("at-timestamp-without-time", with_("tables.0.start_position", "at_timestamp"),
     ["tables[0]", "start_timestamp"]),
    ("timestamp-without-zone", with_("tables.0", {"name": "orders", "start_position": "at_timestamp",
                                                  "start_timestamp": "2024-05-01T12:00:00"}),
     ["tables[0].start_timestamp", "no time zone"]),
    ("timestamp-garbage", with_("tables.0", {"name": "orders", "start_position": "at_timestamp",
                                             "start_timestamp": "yesterday"}),
     ["tables[0].start_timestamp", "ISO 8601"]),
    ("kafka-linger-not-number", with_("kafka.linger.ms", "notanumber"), ["kafka.linger.ms", "librdkafka refuses"]),
    ("kafka-unknown-property", with_("kafka.foo.bar", 1), ["kafka.foo.bar", "No such configuration property"]),
    ("kafka-out-of-range", with_("kafka.linger.ms", 99999999), ["kafka.linger.ms", "outside allowed range"]),
    ("kafka-bad-enum", with_("kafka.compression.type", "zip"), ["kafka.compression.type", "Invalid value"]),
    ("kafka-sasl-incomplete", with_("kafka.sasl.password", SECRET,
                                    with_("kafka.sasl.mechanisms", "PLAIN", with_("kafka.security.protocol", "SASL_SSL"))),
     ["kafka", "sasl.username"]),
    ("kafka-bootstrap-empty", with_("kafka.bootstrap.servers", " "), ["kafka", "bootstrap.servers", "empty"]),
    ("kafka-owned-key", with_("kafka.acks", "1"), ["kafka", "remove 'acks'"]),
]


@pytest.mark.parametrize(("cfg", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_is_one_line_with_key_and_fix(cfg: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(cfg)
    line = str(e.value)
    assert "\n" not in line
    for w in words:
        assert w in line, line
    assert SECRET not in line
    assert SECRET not in redact(line)


def test_good_config_passes() -> None:
    parse_config(GOOD)


def test_at_timestamp_reads_iso_and_epoch_ms() -> None:
    cfg = parse_config(with_("tables.0", {"name": "orders", "start_position": "at_timestamp",
                                          "start_timestamp": "2024-05-01T12:00:00Z"}))
    assert cfg.tables[0].start_ms == 1714564800000
    cfg = parse_config(with_("tables.0", {"name": "orders", "start_position": "at_timestamp",
                                          "start_timestamp": 1714564800000}))
    assert cfg.tables[0].start_ms == 1714564800000


# ------------------------------------------------------------------ files


def write(tmp_path: Path, text: str | bytes) -> Path:
    p = tmp_path / "bridge.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


GOOD_YAML = """name: b
kafka: {bootstrap.servers: "localhost:9092"}
schema_registry: {url: "http://localhost:8081"}
tables: [{name: orders}]
"""


def file_error(path: Path) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    line = str(e.value)
    assert "\n" not in line
    return line


def test_file_not_utf8(tmp_path: Path) -> None:
    line = file_error(write(tmp_path, GOOD_YAML.encode().replace(b"orders", b"ord\xe9rs")))
    assert "not UTF-8" in line and "save the file as UTF-8" in line


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    line = file_error(write(tmp_path, GOOD_YAML + "kafka: {bootstrap.servers: other:9092}\n"))
    assert "'kafka' appears twice" in line and "line 5" in line


def test_nested_duplicate_keys_are_refused(tmp_path: Path) -> None:
    line = file_error(write(tmp_path, GOOD_YAML.replace("{name: orders}", "{name: orders, name: other}")))
    assert "'name' appears twice" in line


def test_aliases_are_refused(tmp_path: Path) -> None:
    text = GOOD_YAML + "topic_creation: &tc {partitions: 3}\noffsets: *tc\n"
    assert "aliases (*tc) are not allowed" in file_error(write(tmp_path, text))


def test_billion_laughs_is_refused_fast(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    started = time.monotonic()
    line = file_error(write(tmp_path, "\n".join(lines) + "\n"))
    assert "aliases" in line
    assert time.monotonic() - started < 2


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    assert "nested too deeply" in file_error(write(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n"))


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    assert "cannot read config file" in file_error(tmp_path / "nope.yaml")


def test_yaml_error_does_not_echo_a_secret(tmp_path: Path) -> None:
    register_secret(SECRET)
    line = file_error(write(tmp_path, f"name: b\nschema_registry: {{url: 'http://u:{SECRET}@h'\n"))
    assert SECRET not in line


# ------------------------------------------------------------------ redaction


@pytest.mark.parametrize(
    "text",
    [
        f"https://user:{SECRET}@host:8081",
        f"htps://user:{SECRET}@host",
        f"'http://bridge:{SECRET}@registry.example:8081/x' is not",
        f"broker user:{SECRET}@10.0.0.1:9092 down",
    ],
)
def test_urls_lose_their_passwords(text: str) -> None:
    assert SECRET not in redact(text)
    assert "***" in redact(text)


def test_configured_secrets_are_masked_anywhere(tmp_path: Path) -> None:
    secret = "kafka-pw-7781"
    parse_config(with_("kafka.sasl.password", secret, with_("kafka.sasl.username", "u", with_(
        "kafka.sasl.mechanisms", "PLAIN", with_("kafka.security.protocol", "SASL_PLAINTEXT")))))
    assert redact(f"auth failed for password {secret}") == "auth failed for password ***"


def test_topic_names() -> None:
    assert check_topic_name("ddb.orders-v1_x") is None
    assert check_topic_name("") is not None
    assert check_topic_name("a" * 249) is None
    assert check_topic_name("a" * 250) is not None


def test_log_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from bridge.redact import RedactingFilter

    register_secret("token-zz-991")
    logger = logging.getLogger("test.redact")
    f = RedactingFilter()
    logger.addFilter(f)
    try:
        with caplog.at_level("INFO", logger="test.redact"):
            logger.warning("registry %s failed with token %s", f"https://u:{SECRET}@r:8081", "token-zz-991")
    finally:
        logger.removeFilter(f)
    text = caplog.text
    assert SECRET not in text and "token-zz-991" not in text and "https://u:***@r:8081" in text


@pytest.mark.parametrize("rest", [
    {"port": 8083}, {"port": 8083, "host": "::1"}, {"port": 8083, "host": "localhost"},
    {"port": 8083, "host": "127.0.0.2"}, {"port": 8083, "host": "0.0.0.0", "bearer_token": SECRET},
    {"port": 8083, "host": "0.0.0.0", "allow_unauthenticated": True}, {"host": "0.0.0.0"},
])
def test_rest_settings_that_start(rest: dict[str, Any]) -> None:
    """Loopback without a token, any host with one, or an explicit opt-out; no port, no server."""
    parse_config(with_("rest", rest), check_kafka=False)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        # An unencoded '@' in the password: clients split user-info at the last '@'.
        ("http://u:p@ssW0rdTail9@localhost:8081", "ssW0rdTail9"),
        # A space in the password: the registry client takes it; the shape of a URL ends there.
        ("http://u:PASS W0rd5x@localhost:8081", "W0rd5x"),
        # A token as the whole user-info.
        ("http://T0kenOnly6abcdef@localhost:8081", "T0kenOnly6abcdef"),
        # Percent-encoded, and echoed decoded.
        ("http://u:PASS%40W0rd4@localhost:8081", "PASS@W0rd4"),
    ],
)
def test_registry_url_user_info_is_masked_wherever_printed(url: str, secret: str) -> None:
    """validate --connect prints the registry URL it reached: none of its user-info shows."""
    parse_config(with_("schema_registry.url", url), check_kafka=False)
    assert secret not in redact(f"ok       schema_registry: {url} answers (2 subjects)")
    assert secret not in redact(f"could not reach {url.replace('%40', '@')}")


def test_a_plain_registry_user_name_is_not_masked_everywhere() -> None:
    parse_config(with_("schema_registry.url", "http://bridge@localhost:8081"), check_kafka=False)
    assert redact("ddb-kafka-bridge running") == "ddb-kafka-bridge running"


@pytest.mark.parametrize("raw", ["tok-7fa1c9e2\n", "  tok-7fa1c9e2  ", "\ttok-7fa1c9e2\r\n"])
def test_rest_token_is_the_one_a_client_can_send(raw: str) -> None:
    """A token from an env variable whose secret file ends in a newline: HTTP strips the spaces
    around a header value, so the server must compare the stripped token (else every request
    is refused with 401), and mask that too."""
    cfg = parse_config(with_("rest", {"port": 8083, "bearer_token": raw}), check_kafka=False)
    assert cfg.rest.bearer_token is not None
    assert cfg.rest.bearer_token.get_secret_value() == "tok-7fa1c9e2"
    assert redact("got tok-7fa1c9e2") == "got ***"


def test_rest_token_with_a_line_break_inside_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"rest.bearer_token: holds a line break"):
        parse_config(with_("rest", {"port": 8083, "bearer_token": "tok-one\ntok-two"}), check_kafka=False)
