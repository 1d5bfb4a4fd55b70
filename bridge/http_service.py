"""The bridge's HTTP servers (REST API, ``/metrics``): aiohttp on a private event loop in a thread.

Why aiohttp and not a hand-written ``http.server``: request parsing, header and body limits,
idle and slow-client timeouts are what hand-written servers get wrong (issue 18: a body read
into memory before the token check, half-sent headers holding a thread forever, a bad
``Content-Length`` answered 500 with a traceback).

Why a thread of its own and not the bridge's event loop: the bridge's start-up calls block
its loop (librdkafka's admin calls, the registry client), and ``/health`` must answer 503
STARTING during them; the health checks and the metrics' gauges are synchronous and may
block (the registry probe waits up to 3 s). On a loop of its own a slow check delays a
probe, never the records. Requests that change the connector (pause, stop, reset) are
coroutines run on the bridge's loop (``on_loop``), and the request waits for them.

The socket is bound in the constructor (``bind``), so a port in use is a start-up error
before anything is created; requests are served from ``start()``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bridge.config import BridgeConfig
from bridge.errors import ConfigError

__all__ = ["HEADER_TIMEOUT_S", "MAX_BODY_BYTES", "HttpService", "bind", "bind_listeners", "check_listeners",
           "json_error", "listening_ports", "on_loop"]

log = logging.getLogger(__name__)

# A connection must complete a request's headers this long after it opened or after the
# previous answer, or it is closed (aiohttp's keep-alive timer: it closes a connection whose
# next request has not been parsed by then, however slowly the bytes trickle in).
HEADER_TIMEOUT_S = 10.0
# No endpoint takes a body: a declared body above this answers 413 without being read, and an
# unread body closes the connection after the answer (lingering_time=0: nothing is drained).
MAX_BODY_BYTES = 64 * 1024
# Request line and each header line (aiohttp answers 400 above them).
MAX_LINE_BYTES = 8190


def bind(host: str, port: int, key: str) -> socket.socket:
    """A listening socket on ``host:port``; ``key`` (``rest``, ``metrics``) names the settings
    in the one-line error a port in use or a bad host gives."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"{key}.host: cannot resolve {host!r} ({e.strerror}); use an address such as "
                          "127.0.0.1 or 0.0.0.0") from None
    # IPv4 first: 'localhost' must serve 127.0.0.1, where clients (and http.server before) look.
    family, kind, proto, _, address = sorted(infos, key=lambda info: info[0] != socket.AF_INET)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server: TIME_WAIT does not block a restart
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"{key}.port: port {port} on {host} is already in use; choose another port or stop "
                              "what holds it") from None
        raise ConfigError(f"{key}: cannot listen on {host}:{port} ({e.strerror or e}); check {key}.host and "
                          f"{key}.port") from None
    return sock


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error answer in Kafka Connect's shape: ``{"error_code": 404, "message": "..."}``."""
    return web.Response(status=status, body=json.dumps({"error_code": status, "message": message}).encode(),
                        content_type="application/json", headers={"Cache-Control": "no-store", **(headers or {})})


async def on_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], timeout_s: float) -> Any:
    """Run ``coro`` on the bridge's loop and wait for it from the HTTP loop (504 after ``timeout_s``)."""
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # the bridge's loop is closed: it has stopped
        coro.close()
        raise web.HTTPServiceUnavailable(reason="the bridge is stopping") from None
    # Waited for, never cancelled: a stop or a reset half done is worse than a late answer (504).
    wrapped = asyncio.wrap_future(future)
    done, _ = await asyncio.wait({wrapped}, timeout=timeout_s)
    if not done:
        raise TimeoutError
    return wrapped.result()


class _ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger: a request it cannot parse (bad ``Content-Length``, oversized
    header) is the client's error, logged at DEBUG in one line; anything else is a bug and
    keeps its ERROR line with the traceback."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:  # type: ignore[override]
        if isinstance(exc_info, HttpProcessingError):
            self.logger.debug("refused a malformed request: %s", exc_info)
            return
        self.logger.error(msg, *args, exc_info=exc_info, **kw)


@web.middleware
async def _json_errors(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    """Every error as JSON (404 for an unknown path, 405 with ``Allow`` for a method a path does
    not take); a handler that raises is a bug: 500, logged with its traceback."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k in ("Allow", "WWW-Authenticate")}
        message = e.text or ""
        if not message or message.startswith(f"{e.status}:"):  # aiohttp's default text
            if e.status == 404:
                message = f"no such resource {request.path!r}"
            elif e.status == 405:
                message = f"{request.method} is not allowed on {request.path}; allowed: {headers.get('Allow', '')}"
            else:
                message = e.reason
        return json_error(e.status, message, headers)
    except TimeoutError:
        return json_error(504, f"{request.method} {request.path} did not finish in time; it may still complete")
    except Exception as e:  # noqa: BLE001 - a bug answers 500, never kills the server
        log.exception("HTTP %s %s failed", request.method, request.path)
        return json_error(500, f"{type(e).__name__}: {e}")


@web.middleware
async def _bounded_body(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return json_error(413, f"the request body is {request.content_length} bytes; no endpoint takes more than "
                               f"{MAX_BODY_BYTES}")
    return await handler(request)


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    """No library or Python version in the ``Server`` header (aiohttp's default names both)."""
    response.headers["Server"] = "ddb-kafka-bridge"


class HttpService:
    """An aiohttp application served on an already bound socket from a thread of its own."""

    def __init__(self, name: str, sock: socket.socket, routes: list[web.RouteDef],
                 middlewares: list[Any] = ()) -> None:  # type: ignore[assignment]
        self.name = name
        self._sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self._app = web.Application(middlewares=[_json_errors, *middlewares, _bounded_body],
                                    client_max_size=MAX_BODY_BYTES)
        self._app.add_routes(routes)
        self._app.on_response_prepare.append(_server_header)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def start(self) -> HttpService:
        self._thread.start()
        self._ready.wait(30)
        if self._failed is not None:
            raise self._failed
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and close the socket (an answer in progress gets ``timeout_s`` to finish)."""
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stopped.set)
            self._thread.join(timeout_s + 1)
        self._sock.close()

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: BLE001 - reported by start()
            self._failed = e
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        runner = web.AppRunner(
            self._app, handle_signals=False, access_log=None, shutdown_timeout=2.0,
            keepalive_timeout=HEADER_TIMEOUT_S, lingering_time=0,
            max_line_size=MAX_LINE_BYTES, max_field_size=MAX_LINE_BYTES,
            logger=_ServerLog(logging.getLogger(f"bridge.http.{self.name}"), {}),
        )
        await runner.setup()
        try:
            await web.SockSite(runner, self._sock).start()
            self._ready.set()
            await self._stopped.wait()
        finally:
            await runner.cleanup()


def listening_ports(cfg: BridgeConfig) -> dict[str, tuple[str, int | None]]:
    """Every port the bridge listens on, by the settings that name it (``bind_listeners``)."""
    return {"metrics": (cfg.metrics.host, cfg.metrics.port), "rest": (cfg.rest.host, cfg.rest.port)}


def bind_listeners(ports: dict[str, tuple[str, int | None]]) -> dict[str, socket.socket]:
    """Bind every listening port now (``{"metrics": (host, port), "rest": (host, port)}``; a
    port of None is not served): all or none, so a port in use stops the start in one line
    before anything is created, and nothing stays bound after the error."""
    bound: dict[str, socket.socket] = {}
    try:
        for key, (host, port) in ports.items():
            if port is not None:
                bound[key] = bind(host, port, key)
    except BaseException:
        for sock in bound.values():
            sock.close()
        raise
    return bound


def check_listeners(ports: dict[str, tuple[str, int | None]]) -> None:
    """``validate``: would every port bind now? (Binds and closes at once.)"""
    for sock in bind_listeners(ports).values():
        sock.close()
