"""AWS credentials for every AWS client the connector makes, an assumed role included.

The standard chain (environment, profile, SSO, web identity for EKS service accounts via
``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``, container and instance roles) is
botocore's own. On top of it ``role_arn`` assumes a role through STS (cross-account access
is the usual reason) with botocore's ``AssumeRoleCredentialFetcher`` behind
``RefreshableCredentials``: a caller that asks for ``get_frozen_credentials()`` before each
request (the hand-written SigV4 signer does, as botocore's clients do) gets new keys well
before the old ones expire, so no request is ever signed with expired keys.

The refresh windows scale with the session's duration: botocore refreshes 15 minutes (and
insists at 10) before expiry, which would be every call for a session shorter than that;
``refresh_before_s`` sets the window outright (the tests use it to see refreshes in seconds).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

from bridge.errors import ConfigError

__all__ = ["AssumeRole", "assumed_session", "boto3_session", "msk_iam_signer", "role_credentials", "seconds_left"]

log = logging.getLogger(__name__)

_ADVISORY_S = 15 * 60  # botocore's own windows for a long session
_MANDATORY_S = 10 * 60


@dataclass(frozen=True)
class AssumeRole:
    """A role to assume with STS on top of the standard chain's credentials."""

    role_arn: str
    external_id: str | None = None
    session_name: str = "ddb-kafka-bridge"
    duration_s: int = 3600
    refresh_before_s: int | None = None  # default: a third of the session, at most 15 min

    @property
    def advisory_s(self) -> int:
        return self.refresh_before_s or min(_ADVISORY_S, self.duration_s // 3)


class _Fetcher(AssumeRoleCredentialFetcher):
    """Logs each assume (INFO, once an hour by default): a refresh shows in the log."""

    def fetch_credentials(self) -> dict[str, Any]:
        creds = super().fetch_credentials()
        log.info("assumed role %s (session %s); the keys expire at %s", self._role_arn,
                 self._role_session_name, creds.get("expiry_time"))
        return creds


def role_credentials(source: boto3.Session, role: AssumeRole) -> DeferredRefreshableCredentials:
    """Refreshable credentials of ``role``, assumed with ``source``'s credentials."""
    base = source.get_credentials()
    if base is None:
        raise ConfigError(
            f"aws.role_arn: no AWS credentials to assume {role.role_arn} with; give the process credentials "
            "(environment, profile, instance or pod role) that may call sts:AssumeRole"
        )
    advisory = role.advisory_s
    mandatory = min(_MANDATORY_S, advisory * 2 // 3)
    extra: dict[str, Any] = {"RoleSessionName": role.session_name, "DurationSeconds": role.duration_s}
    if role.external_id:
        extra["ExternalId"] = role.external_id
    fetcher = _Fetcher(
        client_creator=source._session.create_client,
        source_credentials=base,
        role_arn=role.role_arn,
        extra_args=extra,
        expiry_window_seconds=advisory,
    )
    creds = DeferredRefreshableCredentials(method="assume-role", refresh_using=fetcher.fetch_credentials)
    creds._advisory_refresh_timeout = advisory
    creds._mandatory_refresh_timeout = mandatory
    return creds


def boto3_session(*, region: str | None, profile: str | None, role: AssumeRole | None = None) -> boto3.Session:
    """A boto3 session on the standard chain (``profile`` if named), as ``role`` if given."""
    try:
        source = boto3.Session(profile_name=profile, region_name=region)
    except BotoCoreError as e:  # ProfileNotFound and friends
        raise ConfigError(f"aws.profile: {e}; name a profile from ~/.aws/config or remove aws.profile") from None
    return source if role is None else assumed_session(source, role)


def assumed_session(source: boto3.Session, role: AssumeRole) -> boto3.Session:
    """A boto3 session whose credentials are ``role``'s, assumed with ``source``'s.

    The first assume happens here, so a role that cannot be assumed (trust policy, external
    id, no permission) stops the start with one line.
    """
    creds = role_credentials(source, role)
    try:
        creds.get_frozen_credentials()
    except ClientError as e:
        err = e.response.get("Error", {})
        raise ConfigError(
            f"aws.role_arn: cannot assume {role.role_arn} ({err.get('Code')}: {err.get('Message')}); check the "
            "role's trust policy, aws.external_id and that the caller may call sts:AssumeRole"
        ) from None
    except BotoCoreError as e:
        raise ConfigError(f"aws.role_arn: cannot assume {role.role_arn} ({e}); check that STS is reachable") from None
    bs = botocore.session.Session()
    bs._credentials = creds
    if source.region_name:
        bs.set_config_variable("region", source.region_name)
    return boto3.Session(botocore_session=bs)


def seconds_left(creds: Any) -> float | None:
    """Seconds until ``creds`` expire (None for keys that do not)."""
    expiry = getattr(creds, "_expiry_time", None)
    if expiry is None:
        return None
    return (expiry - dt.datetime.now(dt.UTC)).total_seconds()


def msk_iam_signer(region: str, credentials: Any) -> Any:
    """MSK IAM token signing (``bridge.msk_iam.MskIamTokens``'s ``sign``) with ``credentials()``
    (botocore credentials, refreshable or not), read fresh for every token."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
    from botocore.credentials import CredentialProvider, Credentials

    def sign() -> tuple[str, int]:
        creds = credentials()
        if creds is None:
            raise ConfigError("kafka_auth.aws_msk_iam: no AWS credentials found to sign MSK IAM tokens; give the "
                              "process credentials (environment, profile, aws.role_arn, pod or instance role)")
        frozen = creds.get_frozen_credentials()

        class _Current(CredentialProvider):  # the signer takes a provider; this one has the keys already
            METHOD = "ddb-kafka-bridge"

            def load(self) -> Credentials:
                return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(region, _Current())
        return token, int(expiry_ms)

    return sign
