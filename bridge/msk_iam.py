"""Amazon MSK IAM authentication: OAUTHBEARER tokens signed with the AWS credential chain.

MSK's IAM mechanism, as its non-Java clients use it, is SASL/OAUTHBEARER where the token is a
SigV4-presigned ``kafka-cluster:Connect`` URL (base64url), valid 15 minutes. librdkafka
asks for a token through confluent-kafka's ``oauth_cb`` when a client starts and again at
80 % of the token's lifetime, so a token is always replaced before it expires; Kafka's
re-authentication (KIP-368) hands the new one to open connections. The signing is AWS's
own ``aws-msk-iam-sasl-signer-python``; the credentials are the connector's (standard chain,
``aws.profile``, ``aws.role_arn``: ``connectors/dynamodb/credentials.py``), read fresh for
each token. This module holds no AWS SDK: it is handed a signing function.

Every Kafka client the bridge makes gets the callback because it is put into the
``kafka`` settings (``oauth_cb``) that ``bridge.kafka.client_config`` and
``producer_config`` pass on.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

from bridge.redact import register_secret

__all__ = ["MskIamTokens", "default_chain_signer", "region_from_bootstrap"]

log = logging.getLogger(__name__)

# b-1.mycluster.abc123.c2.kafka.us-east-1.amazonaws.com:9098, boot-xyz.c1.kafka-serverless.eu-west-1.amazonaws.com
_MSK_HOST = re.compile(r"\.kafka(?:-serverless)?\.([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?(?::\d+)?$")


def region_from_bootstrap(bootstrap: str) -> str | None:
    """The AWS region in an MSK broker's host name (the first one that has it)."""
    for server in bootstrap.split(","):
        m = _MSK_HOST.search(server.strip().split("://")[-1])
        if m:
            return m.group(1)
    return None


class MskIamTokens:
    """confluent-kafka's ``oauth_cb`` for MSK IAM: ``(token, expiry in epoch seconds)``.

    ``sign`` makes one token: ``(token, expiry in epoch milliseconds)``, as AWS's signer
    returns it (the connector's credentials sign it: ``connectors/dynamodb/credentials.py``;
    :func:`default_chain_signer` where there is no connector). ``lifetime_s`` reports a
    shorter lifetime than the signer's 15 minutes, so librdkafka asks again sooner.
    """

    def __init__(self, region: str, sign: Callable[[], tuple[str, int]], *, lifetime_s: int | None = None) -> None:
        self.region = region
        self._sign = sign
        self._lifetime_s = lifetime_s
        self._lock = threading.Lock()
        self.tokens_made = 0

    def __call__(self, _oauthbearer_config: str | None = None) -> tuple[str, float]:
        token, expiry_ms = self._sign()
        register_secret(token)  # a bearer credential for 15 minutes: never in a log line
        expiry = expiry_ms / 1000
        if self._lifetime_s is not None:
            expiry = min(expiry, time.time() + self._lifetime_s)
        with self._lock:
            self.tokens_made += 1
            n = self.tokens_made
        log.debug("MSK IAM token %d for %s, valid until %.0f", n, self.region, expiry)
        return token, expiry


def default_chain_signer(region: str) -> Callable[[], tuple[str, int]]:
    """Tokens signed with the AWS default credential chain (the bundled registry's use)."""

    def sign() -> tuple[str, int]:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return token, int(expiry_ms)

    return sign
