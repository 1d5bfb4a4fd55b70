"""``kafka_auth.aws_msk_iam``: settings checked at load, region found, tokens shaped as MSK's.

The broker side (tokens attached, refreshed, refused) is tests/secure/test_msk_iam.py.
"""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bridge.errors import ConfigError
from bridge.kafka import client_config, producer_config
from bridge.msk_iam import region_from_bootstrap
from bridge.redact import redact
from connectors.dynamodb.config import parse_config

MSK = "b-1.orders.abc123.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.orders.abc123.c2.kafka.eu-west-1.amazonaws.com:9098"


def cfg(**kafka: Any) -> dict[str, Any]:
    return {"name": "b", "kafka": {"bootstrap.servers": MSK, "security.protocol": "SASL_SSL",
                                   "sasl.mechanism": "OAUTHBEARER"} | kafka,
            "kafka_auth": {"aws_msk_iam": True}, "schema_registry": {"url": "http://r:8081"},
            "tables": [{"name": "orders"}]}


@pytest.mark.parametrize("bootstrap,region", [
    (MSK, "eu-west-1"),
    ("boot-abc.c1.kafka-serverless.us-east-2.amazonaws.com:9098", "us-east-2"),
    ("b-1.x.y.c3.kafka.cn-north-1.amazonaws.com.cn:9098", "cn-north-1"),
    ("localhost:9092,b-1.x.kafka.ap-south-1.amazonaws.com:9098", "ap-south-1"),
    ("kafka.internal:9092", None),
])
def test_region_from_the_bootstrap_host(bootstrap: str, region: str | None) -> None:
    assert region_from_bootstrap(bootstrap) == region


def test_every_client_gets_a_token_callback_signing_msk_iam_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNITTEST00000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    c = parse_config(cfg() | {"kafka_auth": {"aws_msk_iam": True, "token_lifetime_s": 60}})
    cb = c.kafka["oauth_cb"]
    assert client_config(c.kafka)["oauth_cb"] is cb and producer_config(c.kafka)["oauth_cb"] is cb
    token, expiry = cb("")
    url = urlsplit(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    q = parse_qs(url.query)
    assert url.hostname == "kafka.eu-west-1.amazonaws.com"
    assert q["Action"] == ["kafka-cluster:Connect"]
    assert q["X-Amz-Credential"][0].startswith("AKIAUNITTEST00000001/")
    assert q["X-Amz-Credential"][0].endswith("/eu-west-1/kafka-cluster/aws4_request")
    assert 50 < expiry - time.time() <= 60  # token_lifetime_s: librdkafka renews at 80 % of it
    assert token not in redact(f"auth failed with {token}")


@pytest.mark.parametrize("kafka,words", [
    ({"security.protocol": "SSL"}, "kafka.security.protocol: kafka_auth.aws_msk_iam needs SASL_SSL"),
    ({"sasl.mechanism": "SCRAM-SHA-512"}, "kafka.sasl.mechanism: kafka_auth.aws_msk_iam signs OAUTHBEARER"),
    ({"sasl.oauthbearer.method": "oidc"}, "kafka.sasl.oauthbearer.method: oidc"),
])
def test_settings_msk_iam_cannot_work_with_are_refused(kafka: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_config(cfg(**kafka))


def test_no_region_anywhere_is_refused() -> None:
    with pytest.raises(ConfigError, match="kafka_auth.region: no region for MSK IAM tokens"):
        parse_config(cfg(**{"bootstrap.servers": "kafka.internal:9098"}))
    c = parse_config(cfg(**{"bootstrap.servers": "kafka.internal:9098"}) | {"aws": {"region": "us-west-2"}})
    assert c.kafka["oauth_cb"].region == "us-west-2"
