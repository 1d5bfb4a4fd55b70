"""HTTP/1.1 keep-alive POSTs to the AWS endpoints, with few objects per request.

Why not httpx here: measured against a local endpoint (bench/scale_double.py), an empty
GetRecords through ``httpx.AsyncClient`` cost 0.8–2.7 ms of CPU per request, rising with
the number in flight: httpcore's pool scans every queued request for every request, each
request builds a dozen objects (Request, Response, streams, h11 events, anyio locks, each
lock a failed ``import sniffio`` when that package is missing), and headers and body leave
in two ``send`` calls. The same request on an ``asyncio.Protocol`` that writes it in one
call and parses the reply in place costs ~50–70 µs. The AWS JSON endpoints need little
of HTTP: POST, Content-Length bodies (chunked is read too), keep-alive, TLS.

``KeepAlivePool`` keeps idle connections per (scheme, host, port), most recently used
first, and opens at most ``max_connections`` per endpoint; callers beyond that wait in a
FIFO (O(1), no scanning). Callers bound what they put in flight (the poll scheduler's
slots are fewer than ``max_connections``), so the wait is the exception.

``HttpxTransport`` serves the same interface through an ``httpx.AsyncClient``: the pool
hands an endpoint to it where the environment configures an HTTP(S) proxy for it (httpx
reads the proxy environment; this pool does not speak CONNECT), and tests and benches
that pass their own client get it.

Failures of the transport (refused, reset, closed, timed out, TLS) raise
``HttpTransportError``, a ``RetriableError``; the AWS client turns it into its own error.
"""

from __future__ import annotations

import asyncio
import collections
import os
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from bridge.errors import RetriableError

__all__ = [
    "HttpTransport",
    "HttpTransportError",
    "HttpxTransport",
    "KeepAlivePool",
    "canonical_host",
    "proxied",
]

USER_AGENT = "dynamodb-kafka-bridge/0.1"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class HttpTransportError(RetriableError):
    """The request did not get a complete HTTP response (connection refused, reset, closed, timed out)."""


class HttpTransport(Protocol):
    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        """POST ``body``; returns (status, response body). Raises ``HttpTransportError``."""

    async def aclose(self) -> None: ...


def canonical_host(url: str) -> str:
    """The Host header (and signed host) for ``url``: the port only where it is not the default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        return f"{host}:{parts.port}"
    return host


def proxied(url: str) -> bool:
    """True if the environment routes ``url`` through a proxy (as httpx and urllib read it)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(parts.hostname or "", proxies)  # type: ignore[attr-defined]  # in urllib, not in typeshed


def tls_context() -> ssl.SSLContext:
    """Verified TLS as httpx sets it up: certifi's CA bundle unless SSL_CERT_FILE/SSL_CERT_DIR say otherwise."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if not (cafile or capath):
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:  # the system's store
            pass
    ctx = ssl.create_default_context(cafile=cafile, capath=capath)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


# --------------------------------------------------------------------------- the connection


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time. Parses the response as bytes arrive."""

    __slots__ = ("transport", "buf", "waiter", "closed", "used", "got", "_head_end", "_length", "_status", "_chunked",
                 "_close_after", "_error")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False
        self.used = 0  # requests sent on it
        self.got = 0  # bytes received since the last request was sent
        self._reset()

    def _reset(self) -> None:
        self._head_end = -1
        self._length = -1
        self._status = 0
        self._chunked = False
        self._close_after = False
        self._error: BaseException | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        self.buf += data
        if self.waiter is not None:
            self._parse()

    def eof_received(self) -> bool | None:
        if self.waiter is not None and self._head_end >= 0 and self._length < 0 and not self._chunked:
            self._finish(bytes(self.buf[self._head_end :]))  # body delimited by the close
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            what = f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"
            waiter.set_exception(HttpTransportError(f"connection lost before a complete response ({what})"))

    # the response

    def _parse(self) -> None:
        buf = self.buf
        if self._head_end < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self._fail("response headers too long")
                return
            try:
                head = bytes(buf[:end]).decode("latin-1").split("\r\n")
                self._status = int(head[0].split(" ", 2)[1])
            except (IndexError, ValueError):
                self._fail(f"malformed status line {bytes(buf[:60])!r}")
                return
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    self._length = int(value)
                elif name == "transfer-encoding":
                    self._chunked = "chunked" in value.lower()
                elif name == "connection":
                    self._close_after = "close" in value.lower()
            self._head_end = end + 4
            if 100 <= self._status < 200:  # 100 Continue and friends: skip, read the real response
                del buf[: self._head_end]
                self._reset()
                self._parse()
                return
            if not self._chunked and self._length < 0:
                self._close_after = True  # delimited by the close (eof_received)
                return
        if self._chunked:
            self._parse_chunked()
            return
        if self._length < 0:
            return
        end = self._head_end + self._length
        if len(buf) >= end:
            with memoryview(buf) as view:  # one copy of a page of up to 1 MB, not two
                body = bytes(view[self._head_end : end])
            del buf[:end]
            self._finish(body)

    def _parse_chunked(self) -> None:
        buf = self.buf
        pos = self._head_end
        parts: list[bytes] = []
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return
            try:
                size = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
            except ValueError:
                self._fail("malformed chunk size")
                return
            start = line_end + 2
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return
                body = b"".join(parts)
                del buf[: trailer_end + 4]
                self._finish(body)
                return
            if len(buf) < start + size + 2:
                return
            parts.append(bytes(buf[start : start + size]))
            pos = start + size + 2

    def _finish(self, body: bytes) -> None:
        waiter, self.waiter = self.waiter, None
        status, close = self._status, self._close_after
        self._reset()
        if close:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))

    def _fail(self, why: str) -> None:
        waiter, self.waiter = self.waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(HttpTransportError(why))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, request: bytes, waiter: asyncio.Future[tuple[int, bytes]]) -> None:
        assert self.transport is not None
        self.waiter = waiter
        self.used += 1
        self.got = 0
        self.buf.clear()
        self.transport.write(request)


# --------------------------------------------------------------------------- the pool


class _Endpoint:
    """Connections to one (scheme, host, port)."""

    __slots__ = ("scheme", "host", "port", "host_header", "idle", "open", "waiters", "proxied")

    def __init__(self, scheme: str, host: str, port: int, host_header: str, proxied: bool) -> None:
        self.proxied = proxied
        self.scheme = scheme
        self.host = host
        self.port = port
        self.host_header = host_header
        self.idle: list[_Connection] = []  # LIFO: the warmest connection first, the rest may time out
        self.open = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()


class KeepAlivePool:
    """HTTP/1.1 keep-alive connections to a few endpoints, at most ``max_connections`` each."""

    def __init__(self, *, max_connections: int = 256, timeout_s: float = 30.0, connect_timeout_s: float = 5.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.max_connections = max_connections
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._ssl = ssl_context
        self._endpoints: dict[str, _Endpoint] = {}
        self._closing = False
        self._via_proxy: HttpxTransport | None = None
        self.connects = 0  # connections opened, for tests and metrics

    def _endpoint(self, url: str) -> tuple[_Endpoint, str]:
        base, sep, path = url.partition("://")
        hostport, _, rest = path.partition("/")
        key = base + sep + hostport
        ep = self._endpoints.get(key)
        if ep is None:
            parts = urlsplit(url)
            if parts.scheme not in _DEFAULT_PORTS:
                raise ValueError(f"unsupported URL scheme in {url!r}")
            ep = _Endpoint(parts.scheme, parts.hostname or "", parts.port or _DEFAULT_PORTS[parts.scheme],
                           canonical_host(url), proxied(url))
            self._endpoints[key] = ep
        return ep, "/" + rest

    async def _connect(self, ep: _Endpoint) -> _Connection:
        loop = asyncio.get_running_loop()
        ssl_ctx = None
        if ep.scheme == "https":
            if self._ssl is None:
                self._ssl = tls_context()
            ssl_ctx = self._ssl
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    _Connection, ep.host, ep.port, ssl=ssl_ctx, server_hostname=ep.host if ssl_ctx else None
                )
        except (OSError, ssl.SSLError, TimeoutError) as e:
            raise HttpTransportError(f"cannot connect to {ep.host}:{ep.port}: {type(e).__name__}: {e}") from None
        self.connects += 1
        return conn

    async def _acquire(self, ep: _Endpoint) -> tuple[_Connection | None, bool]:
        """An idle connection, or (None, True) meaning: open a new one (a place is reserved)."""
        while True:
            while ep.idle:
                conn = ep.idle.pop()
                if not conn.closed:
                    return conn, False
                ep.open -= 1
            if ep.open < self.max_connections:
                ep.open += 1
                return None, True
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            ep.waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake(ep)  # we were handed a turn we will not use: pass it on
                raise

    def _wake(self, ep: _Endpoint) -> None:
        while ep.waiters:
            fut = ep.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _release(self, ep: _Endpoint, conn: _Connection | None) -> None:
        if conn is None or conn.closed or self._closing:
            if conn is not None:
                conn.close()
            ep.open -= 1
        else:
            ep.idle.append(conn)
        self._wake(ep)

    def _proxy_transport(self) -> HttpxTransport:
        if self._via_proxy is None:
            import httpx

            limits = httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections)
            timeout = httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s)
            self._via_proxy = HttpxTransport(httpx.AsyncClient(timeout=timeout, limits=limits), owned=True)
        return self._via_proxy

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        ep, path = self._endpoint(url)
        if ep.proxied:
            return await self._proxy_transport().post(url, headers, body)
        lines = [f"POST {path} HTTP/1.1\r\nHost: {ep.host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
                 f"Content-Length: {len(body)}\r\n"]
        lines += [f"{k}: {v}\r\n" for k, v in headers.items()]
        lines.append("\r\n")
        request = "".join(lines).encode("latin-1") + body
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            conn, _ = await self._acquire(ep)
            if conn is None:
                try:
                    conn = await self._connect(ep)
                except BaseException:
                    self._release(ep, None)
                    raise
            reused = conn.used > 0
            fut: asyncio.Future[tuple[int, bytes]] = loop.create_future()
            conn.send(request, fut)
            try:
                async with asyncio.timeout(self.timeout_s):
                    result = await fut
            except TimeoutError:
                conn.close()
                self._release(ep, conn)
                raise HttpTransportError(f"no response from {ep.host}:{ep.port} in {self.timeout_s:.0f} s") from None
            except HttpTransportError:
                self._release(ep, conn)
                if attempt == 1 and reused and not conn.got:
                    continue  # a keep-alive connection the server closed as we wrote: once more, on a fresh one
                raise
            except BaseException:
                conn.close()  # cancelled mid-request: its late response must not reach the next caller
                self._release(ep, conn)
                raise
            self._release(ep, conn)
            return result
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self._closing = True
        for ep in self._endpoints.values():
            for conn in ep.idle:
                conn.close()
            ep.idle.clear()
        if self._via_proxy is not None:
            await self._via_proxy.aclose()

    async def __aenter__(self) -> KeepAlivePool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class HttpxTransport:
    """The same interface over an ``httpx.AsyncClient`` (proxies, mock transports in tests)."""

    def __init__(self, client: Any, *, owned: bool = False) -> None:
        self._client = client
        self._owned = owned

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        import httpx

        try:
            resp = await self._client.post(url, content=body, headers=dict(headers))
        except httpx.TransportError as e:
            raise HttpTransportError(f"{type(e).__name__}: {e}") from None
        return resp.status_code, resp.content

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()
