"""The REST API (Kafka Connect's shape where it fits), ``/health``, ``/metrics`` and the status page.

Served by aiohttp from a thread of its own (``bridge.http_service`` says why). Reads come
from the worker's ``OpsState`` (plain attribute reads); changes (pause, stop, restart, reset)
are coroutines run on the worker's event loop, and the request waits for them to finish.

Binds 127.0.0.1 unless told otherwise (another host needs ``rest.bearer_token``, or an
explicit ``rest.allow_unauthenticated``: ``bridge.config``). With a token every request but
``/health`` and the page's static files needs ``Authorization: Bearer <token>`` (the scheme
in any case, RFC 7235), checked on the headers alone: a refused request's body is never
read. The page reads the token from its URL fragment (``/status#token=…``), which browsers
never send.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
from collections.abc import Callable, Coroutine
from importlib import resources
from typing import Any

from aiohttp import web

from bridge.errors import BridgeError
from bridge.http_service import HttpService, json_error, on_loop
from bridge.metrics import METRICS, Metrics
from bridge.ops.control import Conflict, Control, NotFound
from bridge.ops.health import HealthChecks
from bridge.ops.openapi import openapi_document
from bridge.ops.runtime import OpsState

__all__ = ["RestServer"]

log = logging.getLogger(__name__)

_STATIC = {"status.html": "text/html; charset=utf-8", "status.js": "text/javascript; charset=utf-8",
           "status.css": "text/css; charset=utf-8"}
# Served without a token: a probe's /health, and the page (it asks for the token itself).
_PUBLIC = ("/health", "/status", "/status.html")
_CHANGE_TIMEOUT_S = 120.0
_JSON = "application/json"


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RestServer:
    def __init__(
        self,
        *,
        sock: socket.socket,
        ops: OpsState,
        control: Control,
        loop: asyncio.AbstractEventLoop,
        health: HealthChecks,
        offsets: Callable[[], list[tuple[dict[str, Any], dict[str, Any]]]],
        snapshots: Callable[[], list[dict[str, Any]]] = lambda: [],
        bearer_token: str | None = None,
        metrics: Metrics = METRICS,
    ) -> None:
        """``sock``: bound beforehand (``bridge.http_service.bind``), so a port in use stops the
        start before anything is created."""
        self.ops, self.control, self.loop, self.health = ops, control, loop, health
        self._offsets, self._snapshots, self._metrics = offsets, snapshots, metrics
        self._expected = f"bearer {bearer_token}".encode() if bearer_token else None
        c = "/connectors/{name}"
        get, put, post, delete = web.get, web.put, web.post, web.delete
        routes = [
            get("/", self._root, allow_head=False),
            get("/health", self._health, allow_head=False),
            get("/status", self._page, allow_head=False),
            get("/status.html", self._page, allow_head=False),
            get("/static/{file}", self._static, allow_head=False),
            get("/openapi.json", self._openapi, allow_head=False),
            get("/metrics", self._metrics_text, allow_head=False),
            get("/connectors", self._connectors, allow_head=False),
            get(c, self._connector, allow_head=False),
            get(c + "/status", self._status, allow_head=False),
            get(c + "/tasks", self._tasks_doc, allow_head=False),
            get(c + "/positions", self._positions, allow_head=False),
            get(c + "/tasks/{task}/status", self._task_status, allow_head=False),
            post(c + "/tasks/{task}/restart", self._task_restart),
            put(c + "/pause", self._change("pause")),
            put(c + "/resume", self._change("resume")),
            put(c + "/stop", self._change("stop")),
            post(c + "/restart", self._change("restart")),
            get(c + "/offsets", self._offsets_doc, allow_head=False),
            delete(c + "/offsets", self._reset),
        ]
        self._service = HttpService("rest", sock, routes, middlewares=[self._authenticate, self._api_errors])
        self.host, self.port = self._service.host, self._service.port

    @property
    def url(self) -> str:
        """Where a client on this machine reaches the API (a wildcard address is not one)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else ("::1" if self.host == "::" else self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def listening(self) -> str:
        """The address the socket is bound to, for the start-up line (0.0.0.0 is every interface)."""
        where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        if self.host in ("0.0.0.0", "::", ""):
            where += " (every interface)"
        return where + (", bearer token required" if self._expected else ", no token")

    def start(self) -> RestServer:
        self._service.start()
        return self

    def stop(self) -> None:
        self._service.stop()

    # ---- middleware ---------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        if self._expected is None:
            return True
        got = request.headers.get("Authorization", "")
        scheme, _, token = got.partition(" ")
        # RFC 7235: the scheme is case-insensitive; the token is compared in constant time.
        return hmac.compare_digest(f"{scheme.lower()} {token.strip()}".encode(), self._expected)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        """Before routing and before any body is read: a refused client learns nothing else."""
        if request.path in _PUBLIC or request.path.startswith("/static/") or self._authorized(request):
            return await handler(request)
        return json_error(401, "missing or wrong bearer token: send 'Authorization: Bearer <rest.bearer_token>'",
                          {"WWW-Authenticate": 'Bearer realm="ddb-kafka-bridge"'})

    @web.middleware
    async def _api_errors(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        try:
            return await handler(request)
        except _HttpError as e:
            return json_error(e.status, str(e))

    # ---- handlers -----------------------------------------------------------------------

    def _name(self, request: web.Request) -> str:
        name = request.match_info["name"]
        if name != self.ops.name:
            raise _HttpError(404, f"no connector {name!r}; this worker runs {self.ops.name!r}")
        return name

    async def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            return await on_loop(self.loop, coro, _CHANGE_TIMEOUT_S)
        except Conflict as e:
            raise _HttpError(409, str(e)) from None
        except NotFound as e:
            raise _HttpError(404, str(e)) from None
        except BridgeError as e:
            raise _HttpError(500, str(e)) from None

    async def _root(self, request: web.Request) -> web.Response:
        return _ok({"version": "0.1.0", "name": self.ops.name, "worker_id": self.ops.worker_id})

    async def _health(self, request: web.Request) -> web.Response:
        doc = await asyncio.to_thread(self.health.evaluate)  # a check may block (the registry probe)
        bad = doc["status"] == "FAILED" or ("strict" in request.query and doc["status"] != "OK")
        return _ok(doc, 503 if bad else 200)

    async def _page(self, request: web.Request) -> web.Response:
        return _file("status.html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in _STATIC:
            raise _HttpError(404, f"no static file {name!r}")
        return _file(name)

    async def _openapi(self, request: web.Request) -> web.Response:
        return _ok(openapi_document())

    async def _metrics_text(self, request: web.Request) -> web.Response:
        text = await asyncio.to_thread(self._metrics.render)
        return web.Response(body=text.encode(), headers={"Content-Type": self._metrics.content_type,
                                                         "Cache-Control": "no-store"})

    async def _connectors(self, request: web.Request) -> web.Response:
        return _ok([self.ops.name])

    async def _connector(self, request: web.Request) -> web.Response:
        name = self._name(request)
        return _ok({"name": name, "type": "source", "tasks": [{"connector": name, "task": t.id} for t in self._tasks()]})

    async def _status(self, request: web.Request) -> web.Response:
        self._name(request)
        return _ok(self.status())

    async def _tasks_doc(self, request: web.Request) -> web.Response:
        name = self._name(request)
        return _ok([{"id": {"connector": name, "task": t.id}, "partition": t.partition} for t in self._tasks()])

    async def _positions(self, request: web.Request) -> web.Response:
        self._name(request)
        return _ok(await asyncio.to_thread(self.positions))

    async def _task_status(self, request: web.Request) -> web.Response:
        self._name(request)
        tid = request.match_info["task"]
        t = self.ops.find(tid)
        if t is None:
            raise _HttpError(404, f"connector {self.ops.name!r} has no task {tid!r}")
        return _ok(_task_status(t))

    async def _task_restart(self, request: web.Request) -> web.Response:
        self._name(request)
        await self._run(self.control.restart_task(request.match_info["task"]))
        return web.Response(status=204, headers={"Cache-Control": "no-store"})

    def _change(self, what: str) -> Callable[[web.Request], Coroutine[Any, Any, web.Response]]:
        status = 204 if what == "restart" else 202

        async def change(request: web.Request) -> web.Response:
            self._name(request)
            await self._run(getattr(self.control, what)())
            return web.Response(status=status, headers={"Cache-Control": "no-store"})

        return change

    async def _offsets_doc(self, request: web.Request) -> web.Response:
        self._name(request)
        return _ok({"offsets": [{"partition": p, "offset": o} for p, o in self._offsets()]})

    async def _reset(self, request: web.Request) -> web.Response:
        self._name(request)
        n = await self._run(self.control.reset_offsets())
        return _ok({"message": f"{n} offsets reset; resume starts every source from its start_position"})

    # ---- documents ----------------------------------------------------------------------

    def _tasks(self) -> list[Any]:
        return sorted(list(self.ops.tasks.values()) + list(self.ops.finished.values()), key=lambda t: t.id)

    def status(self) -> dict[str, Any]:
        ops = self.ops
        return {"name": ops.name, "type": "source",
                "connector": {"state": ops.state, "worker_id": ops.worker_id, "trace": ops.trace},
                "tasks": [_task_status(t) for t in self._tasks()]}

    def positions(self) -> dict[str, Any]:
        graphs = []
        for c in list(self.ops.connectors.values()):
            describe = getattr(c, "describe", None)
            if describe is not None:
                graphs.append(describe())
        return {"name": self.ops.name, "state": self.ops.state, "worker_id": self.ops.worker_id,
                "tasks": [t.to_json() for t in self._tasks()], "graphs": graphs, "snapshots": self._snapshots(),
                "health": self.health.evaluate()}


def _task_status(t: Any) -> dict[str, Any]:
    return {"id": t.id, "state": t.state, "worker_id": t.worker_id, "trace": t.trace, "failed_at_ms": t.failed_at_ms}


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, default=str).encode()


def _ok(doc: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_dump(doc), content_type=_JSON, headers={"Cache-Control": "no-store"})


def _file(name: str) -> web.Response:
    body = resources.files("bridge.ops").joinpath("static", name).read_bytes()
    return web.Response(body=body, headers={"Content-Type": _STATIC[name], "Cache-Control": "no-store"})
