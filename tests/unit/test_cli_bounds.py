"""Command-line and config values out of bounds, and the one choke point for printed lines
(issue 18): each refused with one line naming the option and the bound, nothing wrapped or
silently accepted; no printed line carries a secret, however it was written."""

from __future__ import annotations

import io

import pytest

from bridge.errors import ConfigError
from bridge.redact import RedactingStream
from bridge_app.cli import build_parser, main
from connectors.dynamodb.config import parse_config

GOOD = {
    "name": "b",
    "kafka": {"bootstrap.servers": "localhost:9092"},
    "schema_registry": {"url": "http://localhost:8081"},
    "aws": {"region": "us-east-1"},
    "tables": [{"name": "orders"}],
}


@pytest.mark.parametrize("value", [100_000_000_000, "100000000000"])
def test_a_kafka_number_beyond_32_bits_is_named_as_written_with_its_range(value: object) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(GOOD | {"kafka": {"bootstrap.servers": "localhost:9092", "message.max.bytes": value}})
    text = str(e.value)
    assert "kafka.message.max.bytes: 100000000000 is out of range (librdkafka allows 1000..1000000000)" in text
    assert "1215752192" not in text and "\n" not in text


def test_digits_in_a_text_setting_are_not_a_number() -> None:
    parse_config(GOOD | {"kafka": {"bootstrap.servers": "localhost:9092", "client.id": "100000000000"}})


@pytest.mark.parametrize(("args", "words"), [
    (["tail", "-c", "x.yaml", "-n", "-1"], "argument -n/--max-records: -1 is not a positive number"),
    (["tail", "-c", "x.yaml", "-n", "0"], "argument -n/--max-records: 0 is not a positive number"),
    (["tail", "-c", "x.yaml", "-n", "many"], "argument -n/--max-records: 'many' is not a whole number"),
    (["verify", "-c", "x.yaml", "--settle-s", "nan"], "argument --settle-s: 'nan' is not a finite, non-negative"),
    (["verify", "-c", "x.yaml", "--settle-s", "inf"], "argument --settle-s: 'inf' is not a finite, non-negative"),
    (["verify", "-c", "x.yaml", "--settle-s", "-1"], "argument --settle-s: '-1' is not a finite, non-negative"),
    (["verify", "-c", "x.yaml", "--settle-s", "1e9"], "more than a day"),
])
def test_out_of_bounds_arguments_are_one_line(args: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err


def test_good_bounds_pass() -> None:
    assert build_parser().parse_args(["tail", "-c", "x.yaml", "-n", "3"]).max_records == 3
    assert build_parser().parse_args(["verify", "-c", "x.yaml", "--settle-s", "2.5"]).settle_s == 2.5


def test_a_secret_split_over_writes_is_still_masked() -> None:
    out = io.StringIO()
    stream = RedactingStream(out)
    for part in ("ok registry: https://u:pass", "word123@host", ":8081\nnext ", "line"):
        stream.write(part)
    stream.flush()
    assert out.getvalue() == "ok registry: https://u:***@host:8081\nnext line"


def test_every_line_the_cli_prints_goes_through_the_masking(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """A command's own print(), an error line and argparse's usage error alike."""
    path = tmp_path / "c.yaml"
    path.write_text("name: b\nkafka: {bootstrap.servers: 'localhost:9092'}\n"
                    "schema_registry: {url: 'http://u:Hunter2Secret@localhost:8081'}\n"
                    "aws: {region: us-east-1}\ntables: [{name: orders}]\n")
    assert main(["validate", "-c", str(path)]) == 0
    with pytest.raises(SystemExit):
        main(["verify", "-c", "http://u:Hunter2Secret@x", "--settle-s", "http://u:Hunter2Secret@x"])
    captured = capsys.readouterr()
    assert "Hunter2Secret" not in captured.out + captured.err, captured
    assert "u:***@x" in captured.err
