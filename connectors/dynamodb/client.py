"""DynamoDB and DynamoDB Streams calls over one async HTTP transport.

Why not boto3 for the data plane: a busy table has hundreds of shards, and botocore's
response parser plus a thread per shard costs more than the rest of the bridge. Requests
are signed by ``sigv4.SigV4Signer`` (botocore's signature, computed without botocore's
per-request objects; credentials from the standard boto3 chain, refreshed as needed), sent
by ``http.KeepAlivePool`` (httpx where a proxy is configured) and bodies are parsed
with orjson; DynamoDB JSON stays as-is (B as base64 text).

``lanes`` bound how many calls of an operation are in flight, per attempt (a call waiting
out its retry delay holds no place): the poll scheduler gives DescribeStream and
GetShardIterator their own, so they never queue behind GetRecords.

Errors are translated here, once: throttling, 5xx and dropped connections become
``RetriableError`` (retried with exponential backoff and full jitter), an expired iterator
``ExpiredIteratorError``, trimmed data ``TrimmedDataError``; anything else ``AwsApiError``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
import orjson

from bridge.errors import ConfigError, ConnectorError, RetriableError, TrimmedDataError
from bridge.metrics import METRICS
from connectors.dynamodb.credentials import AssumeRole, assumed_session, boto3_session
from connectors.dynamodb.http import HttpTransport, HttpTransportError, HttpxTransport, canonical_host
from connectors.dynamodb.sigv4 import SigV4Signer

__all__ = [
    "AwsApiError",
    "AwsJsonClient",
    "ExpiredIteratorError",
    "RetryPolicy",
    "ThrottledError",
    "make_clients",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

DYNAMODB_TARGET = "DynamoDB_20120810"
STREAMS_TARGET = "DynamoDBStreams_20120810"
# Both APIs sign as "dynamodb" (botocore's signing_name for dynamodbstreams too).
SIGNING_NAME = "dynamodb"

RETRIABLE_CODES = {
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
}


THROTTLE_CODES = {
    "ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException", "RequestLimitExceeded",
}


class AwsApiError(ConnectorError):
    def __init__(self, message: str, code: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class ThrottledError(RetriableError):
    """Throttling, a 5xx or a dropped connection; ``code`` says which."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class ExpiredIteratorError(ConnectorError):
    """The shard iterator is older than 15 minutes: get a new one after the last record."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 0.05
    cap_s: float = 10.0
    max_attempts: int | None = None  # None: retry for as long as the task runs

    def delay(self, attempt: int) -> float:
        """Full jitter (AWS architecture blog): spreads retries of many shards apart."""
        return random.uniform(0, min(self.cap_s, self.base_s * 2**attempt))


def _is_httpx(http: Any) -> bool:
    return type(http).__module__.startswith("httpx")


def _endpoint(service: str, region: str) -> str:
    host = "dynamodb" if service == DYNAMODB_TARGET else "streams.dynamodb"
    return f"https://{host}.{region}.amazonaws.com"


class AwsJsonClient:
    """One AWS JSON 1.0 API (DynamoDB or DynamoDB Streams) at one endpoint."""

    def __init__(
        self,
        target: str,
        *,
        region: str,
        endpoint_url: str | None,
        session: boto3.Session,
        http: HttpTransport | Any,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.target = target
        self.region = region
        self.url = (endpoint_url or _endpoint(target, region)).rstrip("/") + "/"
        self._session = session
        self._credentials = session.get_credentials()
        if self._credentials is None:
            raise ConfigError(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or an instance role"
            )
        self._http: HttpTransport = HttpxTransport(http) if _is_httpx(http) else http
        self._host = canonical_host(self.url)
        self._signer = SigV4Signer(self._credentials, region, SIGNING_NAME)
        self.retry = retry
        self.calls: dict[str, int] = {}
        # operation -> semaphore bounding its attempts in flight (set by the poll scheduler)
        self.lanes: dict[str, asyncio.Semaphore] = {}

    def _sign(self, operation: str, body: bytes) -> dict[str, str]:
        return self._signer.headers(self._host, f"{self.target}.{operation}", body)

    async def call_once(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One attempt; raises the translated error."""
        content = await self.call_once_raw(operation, payload)
        return orjson.loads(content) if content else {}

    async def call_once_raw(self, operation: str, payload: dict[str, Any]) -> bytes:
        """One attempt returning the response body unparsed; raises the translated error."""
        body = orjson.dumps(payload)
        self.calls[operation] = self.calls.get(operation, 0) + 1
        METRICS.inc("bridge_aws_requests_total", help="DynamoDB and Streams requests sent", operation=operation)
        lane = self.lanes.get(operation)
        try:
            if lane is None:
                status, content = await self._http.post(self.url, self._sign(operation, body), body)
            else:
                async with lane:
                    status, content = await self._http.post(self.url, self._sign(operation, body), body)
        except HttpTransportError as e:
            raise ThrottledError(f"{operation} to {self.url} failed: {e}", "Connection") from None
        if status == 200:
            return content
        return self._raise(operation, status, content)

    def _raise(self, operation: str, status: int, content: bytes) -> Any:
        code, message = f"HTTP{status}", content[:200].decode("utf-8", "replace")
        try:
            err = orjson.loads(content)
            code = str(err.get("__type", code)).rsplit("#", 1)[-1]
            message = err.get("message") or err.get("Message") or message
        except (orjson.JSONDecodeError, AttributeError):
            pass
        text = " ".join(f"{operation}: {code}: {message}".split())  # one line, even for HTML bodies
        if code in RETRIABLE_CODES or status >= 500:
            raise ThrottledError(text, code)
        if code == "ExpiredIteratorException":
            raise ExpiredIteratorError(text)
        if code == "TrimmedDataAccessException":
            raise TrimmedDataError(text)
        raise AwsApiError(text, code, status)

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Call with retries on ``RetriableError``, bounded by the retry policy."""
        return await self._retrying(self.call_once, operation, payload)

    async def call_raw(self, operation: str, payload: dict[str, Any]) -> bytes:
        """``call`` without parsing: the body as received, for one-pass decoding (GetRecords)."""
        return await self._retrying(self.call_once_raw, operation, payload)

    async def _retrying(self, once: Callable[[str, dict[str, Any]], Awaitable[T]], operation: str,
                        payload: dict[str, Any]) -> T:
        attempt = 0
        while True:
            try:
                return await once(operation, payload)
            except RetriableError as e:
                attempt += 1
                code = getattr(e, "code", "?")
                METRICS.inc("bridge_aws_retries_total", help="requests retried (throttling, 5xx, connection)",
                            operation=operation)
                if code in THROTTLE_CODES:
                    METRICS.inc("bridge_aws_throttles_total", help="requests throttled by AWS", operation=operation)
                if self.retry.max_attempts is not None and attempt >= self.retry.max_attempts:
                    raise
                delay = self.retry.delay(attempt)
                # A bounded policy (the start-up checks) ends in one error line that says it all.
                bounded = self.retry.max_attempts is not None
                level = logging.WARNING if not bounded and (attempt in (1, 10) or attempt % 100 == 0) else logging.DEBUG
                log.log(level, "%s (attempt %d, retrying in %.2fs)", e, attempt, delay)
                await asyncio.sleep(delay)


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def aws_session(
    *, region: str | None, profile: str | None, endpoint_url: str | None, streams_endpoint_url: str | None = None,
    role: AssumeRole | None = None,
) -> boto3.Session:
    """The boto3 session for the config's ``aws`` section (``role``: ``aws.role_arn``, assumed
    and refreshed by ``connectors.dynamodb.credentials``).

    With no credentials anywhere in the chain and every endpoint on this machine
    (``endpoint_url`` on loopback: moto or DynamoDB Local, which accept any key), it signs
    with the dummy key ``local``/``local``, so the config ``dev up`` prints works as printed
    for every command (run, validate --connect, verify). Against any other endpoint a
    missing credential stays an error.
    """
    session = boto3_session(region=region, profile=profile)
    endpoints = [u for u in (endpoint_url, streams_endpoint_url) if u]
    if endpoints and all(_is_loopback(u) for u in endpoints) and session.get_credentials() is None:
        log.info("no AWS credentials found; signing with a dummy key for the local endpoint %s", endpoint_url)
        session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name=session.region_name)
    return session if role is None else assumed_session(session, role)


def make_clients(
    *,
    region: str | None,
    profile: str | None,
    endpoint_url: str | None,
    streams_endpoint_url: str | None,
    http: HttpTransport | Any,
    retry: RetryPolicy = RetryPolicy(),
    role: AssumeRole | None = None,
) -> tuple[AwsJsonClient, AwsJsonClient]:
    """DynamoDB and Streams clients sharing one credential chain and one transport
    (``http.KeepAlivePool``, or an ``httpx.AsyncClient``).

    Credentials as ``aws_session`` finds them (a dummy key for loopback endpoints).
    """
    session = aws_session(
        region=region, profile=profile, endpoint_url=endpoint_url, streams_endpoint_url=streams_endpoint_url, role=role
    )
    region = session.region_name
    if not region:
        raise ConfigError("aws.region: no AWS region configured; set aws.region or AWS_REGION")
    ddb = AwsJsonClient(DYNAMODB_TARGET, region=region, endpoint_url=endpoint_url, session=session, http=http, retry=retry)
    streams = AwsJsonClient(
        STREAMS_TARGET,
        region=region,
        endpoint_url=streams_endpoint_url or endpoint_url,
        session=session,
        http=http,
        retry=retry,
    )
    return ddb, streams
