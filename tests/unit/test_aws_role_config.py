"""``aws.role_arn`` and friends: checked at load, one line naming the key (the refresh itself
is tests/faults/test_assumed_role.py)."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.errors import ConfigError
from connectors.dynamodb.config import parse_config

BASE: dict[str, Any] = {"name": "b", "kafka": {"bootstrap.servers": "k:9092"},
                        "schema_registry": {"url": "http://r:8081"}, "tables": [{"name": "orders"}]}
ROLE = "arn:aws:iam::111122223333:role/path/ddb-reader"


def aws(**kw: Any) -> dict[str, Any]:
    return BASE | {"aws": {"region": "eu-west-1"} | kw}


def test_role_settings_become_the_role_to_assume() -> None:
    role = parse_config(aws(role_arn=ROLE, external_id="x-1", session_name="orders-cdc", duration_s=1800)).aws.assume_role()
    assert (role.role_arn, role.external_id, role.session_name, role.duration_s) == (ROLE, "x-1", "orders-cdc", 1800)
    assert role.advisory_s == 600  # a third of the session
    assert parse_config(aws(role_arn=ROLE)).aws.assume_role().advisory_s == 900  # botocore's 15 min
    assert parse_config(aws()).aws.assume_role() is None


@pytest.mark.parametrize("kw,words", [
    ({"role_arn": "ddb-reader"}, "is not an IAM role ARN"),
    ({"role_arn": "arn:aws:iam::1111:role/x"}, "is not an IAM role ARN"),
    ({"role_arn": ROLE, "duration_s": 60}, "aws.duration_s"),
    ({"role_arn": ROLE, "duration_s": 900, "refresh_before_expiry_s": 900}, "must be less than aws.duration_s"),
    ({"role_arn": ROLE, "session_name": "has spaces"}, "aws.session_name"),
])
def test_bad_role_settings_are_one_line(kw: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as e:
        parse_config(aws(**kw))
    assert "\n" not in str(e.value)
