"""``table_discovery.name_regex`` is RE2: refused at start where RE2 cannot run it in linear
time, and matched by RE2 (issue 18, bug 9; the end-to-end test is tests/e2e/test_name_regex_e2e.py)."""

from __future__ import annotations

import pytest

from bridge.errors import ConfigError
from connectors.dynamodb.config import name_pattern, parse_config

BASE = {"name": "b", "kafka": {"bootstrap.servers": "localhost:9092"},
        "schema_registry": {"url": "http://localhost:8081"}}


def discovery(pattern: str) -> dict:
    return {**BASE, "table_discovery": {"name_regex": pattern}}


@pytest.mark.parametrize("pattern", ["(a+)\\1", "(?P<x>a)(?P=x)", "orders-(?!test)", "(?<=x)y", "a{1001}", "(", "[z-a]"])
def test_patterns_re2_refuses_are_one_line_naming_the_field_and_the_fix(pattern: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(discovery(pattern))
    msg = str(e.value)
    assert "\n" not in msg and "table_discovery.name_regex" in msg and "RE2" in msg and "rewrite it" in msg, msg


def test_whole_name_matching_with_re2() -> None:
    cfg = parse_config(discovery("(a+)+")).table_discovery
    assert cfg is not None
    assert type(name_pattern("(a+)+")).__module__.startswith("re2")
    assert cfg.matches_name("aaa") and not cfg.matches_name("aab") and not cfg.matches_name("xaaa")
    assert not cfg.matches_name("a" * 34 + "b")  # RE2: linear in the name; Python's re backtracks 2**34 ways
    cfg = parse_config({**BASE, "table_discovery": {"name_regex": "orders-(eu|us)", "exclude": ["orders-us"]}})
    assert cfg.table_discovery.matches_name("orders-eu") and not cfg.table_discovery.matches_name("orders-us")
    assert not cfg.table_discovery.matches_name("orders-eu-2")
