"""The bridge's Schema Registry client (Confluent REST API, sync httpx).

Why our own rather than confluent_kafka's: the bridge needs errors in its own hierarchy
(``SchemaError`` with status and code, one readable line naming the subject), retries it
controls (jittered backoff on 5xx, 429 and dropped connections, bounded), and no credential
ever in a message. Registration and id look-ups are cached, because the serializer asks for
the same (subject, schema) for every record.
"""

from __future__ import annotations

import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from bridge.errors import ConfigError, SchemaError

if TYPE_CHECKING:
    from bridge.config import BridgeConfig

__all__ = [
    "CompatibilityResult",
    "RegisteredSchema",
    "RegistryClientConfig",
    "SchemaRegistryClient",
    "registry_client",
]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_ACCEPT = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json"
_RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

Version = int | Literal["latest"]


@dataclass(frozen=True)
class RegistryClientConfig:
    """How to reach the registry.

    ``url`` may list several registries separated by commas; they are tried in turn. Basic
    auth may also come from ``https://user:pass@host`` in a URL; it is stripped from the URL
    so it never shows up in messages. Secrets are excluded from ``repr``.
    """

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    timeout_s: float = 10.0
    max_attempts: int = 4
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.url or not self.url.strip(", "):
            raise ValueError("schema registry url is empty")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.bearer_token and (self.username or self.password):
            raise ValueError("set either basic auth (username/password) or a bearer token, not both")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as registered under one subject."""

    subject: str
    version: int
    schema_id: int
    schema: str


@dataclass(frozen=True)
class CompatibilityResult:
    """Truthy when compatible; ``messages`` says why not (the registry's verbose output)."""

    is_compatible: bool
    messages: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.is_compatible


@dataclass(frozen=True)
class _Failure:
    """Why an attempt failed, kept to build the final message after the last retry."""

    url: str
    detail: str
    status: int | None = None
    code: int | None = None
    retry_after_s: float | None = None


def _split_urls(raw: str) -> tuple[list[str], str | None, str | None]:
    """Base URLs without userinfo, plus the first userinfo found (URL-embedded basic auth)."""
    urls: list[str] = []
    user: str | None = None
    password: str | None = None
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        parts = urlsplit(part)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"schema registry url {_redact(part)!r} is not an http(s) URL")
        if parts.username is not None and user is None:
            user, password = parts.username, parts.password
        netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        if ":" in parts.hostname:  # IPv6 literal
            netloc = f"[{parts.hostname}]" + ("" if parts.port is None else f":{parts.port}")
        urls.append(urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")))
    return urls, user, password


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def _ssl_context(config: RegistryClientConfig) -> ssl.SSLContext | bool:
    if config.ca_file is None and config.cert_file is None:
        return config.verify
    context = ssl.create_default_context(cafile=config.ca_file)
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file)
    if not config.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class SchemaRegistryClient:
    """Thread-safe client for the subset of the Confluent REST API the bridge uses."""

    def __init__(
        self,
        config: RegistryClientConfig | str,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if isinstance(config, str):
            config = RegistryClientConfig(url=config)
        self.config = config
        self._urls, url_user, url_password = _split_urls(config.url)
        if not self._urls:
            raise ValueError("schema registry url is empty")
        username = config.username if config.username is not None else url_user
        password = config.password if config.password is not None else url_password
        auth = httpx.BasicAuth(username, password or "") if username is not None else None
        headers = {"Accept": _ACCEPT}
        if config.bearer_token:
            headers["Authorization"] = f"Bearer {config.bearer_token}"
        self._http = httpx.Client(
            auth=auth,
            headers=headers,
            timeout=config.timeout_s,
            verify=_ssl_context(config),
            transport=transport,
        )
        self._sleep = sleep
        self._preferred = 0  # index of the URL that answered last: stick to it
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, str], int] = {}
        self._lookups: dict[tuple[str, str], RegisteredSchema] = {}
        self._schemas: dict[int, str] = {}

    @property
    def urls(self) -> list[str]:
        """The base URLs, credentials removed."""
        return list(self._urls)

    # ------------------------------------------------------------------ API

    def register(self, subject: str, schema_str: str, schema_type: str = "AVRO") -> int:
        """Register (or find) ``schema_str`` (of ``schema_type``: AVRO, JSON, PROTOBUF) under
        ``subject``; the id is cached."""
        key = (subject, schema_str)
        cached = self._ids.get(key)
        if cached is not None:
            return cached
        body = self._request(
            "POST",
            f"/subjects/{quote(subject, safe='')}/versions",
            json={"schema": schema_str, "schemaType": schema_type},
            what=f"register a schema for subject '{subject}'",
            on_error=lambda f: self._register_error(subject, f),
        )
        schema_id = int(body["id"])
        with self._lock:
            # Not self._schemas: the registry's text for the id may be another spelling.
            self._ids[key] = schema_id
        return schema_id

    def lookup(self, subject: str, schema_str: str, schema_type: str = "AVRO") -> RegisteredSchema | None:
        """The registration of ``schema_str`` under ``subject``, or None if it is not there."""
        key = (subject, schema_str)
        cached = self._lookups.get(key)
        if cached is not None:
            return cached
        try:
            body = self._request(
                "POST",
                f"/subjects/{quote(subject, safe='')}",
                json={"schema": schema_str, "schemaType": schema_type},
                what=f"look up a schema under subject '{subject}'",
            )
        except SchemaError as exc:
            if exc.code in (40401, 40403):
                return None
            raise
        found = self._registered(body, subject)
        with self._lock:
            self._lookups[key] = found
            self._ids[key] = found.schema_id
        return found

    def get_schema(self, schema_id: int) -> str:
        """The schema text for an id (ids are immutable, so cached forever)."""
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        body = self._request("GET", f"/schemas/ids/{int(schema_id)}", what=f"fetch schema id {schema_id}")
        schema = str(body["schema"])
        with self._lock:
            self._schemas[schema_id] = schema
        return schema

    def get_version(self, subject: str, version: Version = "latest") -> RegisteredSchema:
        """A subject's version (not cached: "latest" moves)."""
        body = self._request(
            "GET",
            f"/subjects/{quote(subject, safe='')}/versions/{version}",
            what=f"fetch version {version} of subject '{subject}'",
        )
        found = self._registered(body, subject)
        with self._lock:
            self._schemas.setdefault(found.schema_id, found.schema)
        return found

    def check_compatibility(
        self, subject: str, schema_str: str, version: Version = "latest", schema_type: str = "AVRO"
    ) -> CompatibilityResult:
        """Would the registry accept ``schema_str`` against ``version`` under the subject's level?"""
        body = self._request(
            "POST",
            f"/compatibility/subjects/{quote(subject, safe='')}/versions/{version}",
            params={"verbose": "true"},
            json={"schema": schema_str, "schemaType": schema_type},
            what=f"check compatibility for subject '{subject}' against version {version}",
        )
        return CompatibilityResult(bool(body["is_compatible"]), tuple(str(m) for m in body.get("messages") or ()))

    def get_compatibility(self, subject: str | None = None) -> str:
        """The effective level: the subject's own, else the global one."""
        if subject is None:
            body = self._request("GET", "/config", what="read the global compatibility level")
        else:
            body = self._request(
                "GET",
                f"/config/{quote(subject, safe='')}",
                params={"defaultToGlobal": "true"},
                what=f"read the compatibility level of subject '{subject}'",
            )
        return str(body["compatibilityLevel"])

    def set_compatibility(self, level: str, subject: str | None = None) -> str:
        path = "/config" if subject is None else f"/config/{quote(subject, safe='')}"
        target = (
            "the global compatibility level" if subject is None else f"the compatibility level of subject '{subject}'"
        )
        body = self._request("PUT", path, json={"compatibility": level.upper()}, what=f"set {target}")
        return str(body["compatibility"])

    def subjects(self) -> list[str]:
        return [str(s) for s in self._request("GET", "/subjects", what="list subjects")]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SchemaRegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _registered(body: Mapping[str, Any], subject: str) -> RegisteredSchema:
        return RegisteredSchema(
            subject=str(body.get("subject") or subject),
            version=int(body["version"]),
            schema_id=int(body["id"]),
            schema=str(body["schema"]),
        )

    @staticmethod
    def _register_error(subject: str, failure: _Failure) -> str | None:
        if failure.status != 409:
            return None
        # Confluent's message is 'Schema being registered is incompatible ... details: [...]';
        # the details are the useful part.
        match = re.search(r"details: \[(.*)\]", failure.detail)
        reason = match.group(1) if match else failure.detail
        return f"schema for subject '{subject}' is incompatible: {reason}"

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        on_error: Callable[[_Failure], str | None] | None = None,
    ) -> Any:
        """Send with failover across URLs and jittered exponential backoff between rounds.

        4xx (except 408/429) fails at once: the request itself is wrong and would fail again.
        """
        headers = {"Content-Type": CONTENT_TYPE} if json is not None else None
        last: _Failure | None = None
        for attempt in range(self.config.max_attempts):
            for offset in range(len(self._urls)):
                index = (self._preferred + offset) % len(self._urls)
                base = self._urls[index]
                try:
                    response = self._http.request(method, base + path, json=json, params=params, headers=headers)
                except httpx.TransportError as exc:
                    last = _Failure(base, f"{type(exc).__name__}: {_one_line(str(exc)) or 'no detail'}")
                    continue
                if response.is_success:
                    self._preferred = index
                    try:
                        return response.json()
                    except ValueError:
                        raise SchemaError(
                            f"could not {what}: the registry at {base} answered HTTP {response.status_code} "
                            "with a body that is not JSON",
                            status=response.status_code,
                        ) from None
                failure = self._failure(base, response)
                if response.status_code not in _RETRIABLE_STATUS:
                    message = on_error(failure) if on_error else None
                    raise SchemaError(
                        message or f"could not {what}: {failure.detail}",
                        status=failure.status,
                        code=failure.code,
                    )
                last = failure
            if attempt + 1 < self.config.max_attempts:
                self._sleep(self._backoff(attempt, last))
        assert last is not None
        if last.status is None:
            raise SchemaError(
                f"could not {what}: cannot reach the schema registry at {', '.join(self._urls)} "
                f"after {self.config.max_attempts} attempts ({last.detail})"
            )
        raise SchemaError(
            f"could not {what}: the schema registry at {last.url} still failed after "
            f"{self.config.max_attempts} attempts: {last.detail}",
            status=last.status,
            code=last.code,
        )

    @staticmethod
    def _failure(base: str, response: httpx.Response) -> _Failure:
        code: int | None = None
        message = ""
        try:
            body = response.json()
            if isinstance(body, Mapping):
                raw_code = body.get("error_code")
                code = int(raw_code) if raw_code is not None else None
                message = _one_line(str(body.get("message") or ""))
        except ValueError:
            message = _one_line(response.text[:200])
        retry_after: float | None = None
        header = response.headers.get("Retry-After")
        if header is not None:
            try:
                retry_after = max(0.0, float(header))
            except ValueError:
                retry_after = None
        detail = f"{message or response.reason_phrase} (HTTP {response.status_code}"
        detail += f", error code {code})" if code is not None else ")"
        return _Failure(base, detail, response.status_code, code, retry_after)

    def _backoff(self, attempt: int, last: _Failure | None) -> float:
        """Full jitter (AWS's "exponential backoff and jitter"), honouring a short Retry-After."""
        ceiling = min(self.config.backoff_max_s, self.config.backoff_initial_s * (2**attempt))
        delay = random.uniform(0, ceiling)
        if last is not None and last.retry_after_s is not None:
            delay = max(delay, min(last.retry_after_s, self.config.backoff_max_s))
        return delay


def registry_client(cfg: BridgeConfig) -> SchemaRegistryClient:
    """The client for the config's ``schema_registry``; a bad TLS file or URL is a ConfigError."""
    r = cfg.schema_registry
    try:
        return SchemaRegistryClient(
            RegistryClientConfig(
                url=r.url,
                username=r.basic_auth.username if r.basic_auth else None,
                password=r.basic_auth.password.get_secret_value() if r.basic_auth else None,
                bearer_token=r.bearer_token.get_secret_value() if r.bearer_token else None,
                ca_file=r.ssl_ca_location,
                cert_file=r.ssl_certificate_location,
                key_file=r.ssl_key_location,
                verify=r.ssl_verify,
                timeout_s=r.timeout_s,
                max_attempts=r.max_retries + 1,
            )
        )
    except (OSError, ssl.SSLError) as e:  # a CA or certificate file that is missing or not PEM
        raise ConfigError(
            f"schema_registry.ssl_*: cannot load the TLS files ({e.strerror or e}); check ssl_ca_location, "
            "ssl_certificate_location and ssl_key_location"
        ) from None
    except ValueError as e:
        raise ConfigError(f"schema_registry.url: {e}") from None
