"""The REST API (Kafka Connect's shape where it fits), ``/health``, ``/metrics`` and the status page.

A stdlib HTTP server in a thread, as ``/metrics`` has always been: the API is a handful of
small JSON documents, not worth a framework. Reads come from the worker's ``OpsState``
(plain attribute reads); changes (pause, stop, restart, reset) are coroutines run on the
worker's event loop, and the request waits for them to finish.

Binds 127.0.0.1 unless told otherwise. With ``rest.bearer_token`` set every request but
``/health`` and the page's static files needs ``Authorization: Bearer <token>``; the page
reads the token from its URL fragment (``/status#token=…``), which browsers never send.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from collections.abc import Callable, Coroutine
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from bridge.errors import BridgeError
from bridge.metrics import METRICS, Metrics
from bridge.ops.control import Conflict, Control, NotFound
from bridge.ops.health import HealthChecks
from bridge.ops.openapi import openapi_document
from bridge.ops.runtime import OpsState

__all__ = ["RestServer"]

log = logging.getLogger(__name__)

_STATIC = {"status.html": "text/html; charset=utf-8", "status.js": "text/javascript; charset=utf-8",
           "status.css": "text/css; charset=utf-8"}


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RestServer:
    def __init__(
        self,
        *,
        port: int,
        host: str,
        ops: OpsState,
        control: Control,
        loop: asyncio.AbstractEventLoop,
        health: HealthChecks,
        offsets: Callable[[], list[tuple[dict[str, Any], dict[str, Any]]]],
        snapshots: Callable[[], list[dict[str, Any]]] = lambda: [],
        bearer_token: str | None = None,
        metrics: Metrics = METRICS,
    ) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self, method: str) -> None:
                try:
                    status, body, ctype = server._route(method, self)
                except _HttpError as e:
                    status, body, ctype = e.status, _error(e.status, str(e)), "application/json"
                except Exception as e:  # noqa: BLE001 - a bug answers 500, never kills the server
                    log.exception("REST %s %s failed", method, self.path)
                    status, body, ctype = 500, _error(500, f"{type(e).__name__}: {e}"), "application/json"
                self.send_response(status)
                if body is not None:
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.send_header("Content-Length", "0")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if body is not None and method != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                self._serve("GET")

            def do_PUT(self) -> None:  # noqa: N802
                self._serve("PUT")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def do_DELETE(self) -> None:  # noqa: N802
                self._serve("DELETE")

            def do_PATCH(self) -> None:  # noqa: N802
                self._serve("PATCH")

            def log_message(self, *args: object) -> None:
                pass

        self.ops, self.control, self.loop, self.health = ops, control, loop, health
        self._offsets, self._snapshots, self._metrics = offsets, snapshots, metrics
        self._token = bearer_token
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="rest", daemon=True)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> RestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- routing ------------------------------------------------------------------------

    def _authorized(self, handler: BaseHTTPRequestHandler) -> bool:
        if not self._token:
            return True
        got = handler.headers.get("Authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {self._token}".encode())

    def _run(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 120.0) -> Any:
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)
        except Conflict as e:
            raise _HttpError(409, str(e)) from None
        except NotFound as e:
            raise _HttpError(404, str(e)) from None
        except BridgeError as e:
            raise _HttpError(500, str(e)) from None

    def _route(self, method: str, h: BaseHTTPRequestHandler) -> tuple[int, bytes | None, str]:
        url = urlsplit(h.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = parse_qs(url.query, keep_blank_values=True)
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)  # no endpoint takes a body; read it so the connection stays usable
        if method == "GET" and parts == ["health"]:
            doc = self.health.evaluate()
            bad = doc["status"] == "FAILED" or ("strict" in query and doc["status"] != "OK")
            return (503 if bad else 200), _dump(doc), "application/json"
        if method == "GET" and parts in (["status"], ["status.html"]):
            return 200, _static("status.html"), _STATIC["status.html"]
        if method == "GET" and len(parts) == 2 and parts[0] == "static":
            if parts[1] not in _STATIC:
                raise _HttpError(404, f"no static file {parts[1]!r}")
            return 200, _static(parts[1]), _STATIC[parts[1]]
        if not self._authorized(h):
            raise _HttpError(401, "missing or wrong bearer token: send 'Authorization: Bearer <rest.bearer_token>'")
        if method == "GET" and parts == []:
            return 200, _dump({"version": "0.1.0", "name": self.ops.name, "worker_id": self.ops.worker_id}), "application/json"
        if method == "GET" and parts == ["openapi.json"]:
            return 200, _dump(openapi_document()), "application/json"
        if method == "GET" and parts == ["metrics"]:
            return 200, self._metrics.render().encode(), "text/plain; version=0.0.4"
        if not parts or parts[0] != "connectors":
            raise _HttpError(404, f"no such resource {url.path!r}")
        if len(parts) == 1:
            if method != "GET":
                raise _HttpError(405, f"{method} is not allowed on /connectors")
            return 200, _dump([self.ops.name]), "application/json"
        name = parts[1]
        if name != self.ops.name:
            raise _HttpError(404, f"no connector {name!r}; this worker runs {self.ops.name!r}")
        rest = parts[2:]
        return self._connector(method, rest, query)

    def _connector(self, method: str, rest: list[str], query: dict[str, list[str]]) -> tuple[int, bytes | None, str]:
        ops = self.ops
        j = "application/json"
        if method == "GET" and rest == []:
            return 200, _dump({"name": ops.name, "type": "source",
                               "tasks": [{"connector": ops.name, "task": t.id} for t in self._tasks()]}), j
        if method == "GET" and rest == ["status"]:
            return 200, _dump(self.status()), j
        if method == "GET" and rest == ["tasks"]:
            return 200, _dump([{"id": {"connector": ops.name, "task": t.id}, "partition": t.partition}
                               for t in self._tasks()]), j
        if method == "GET" and rest == ["positions"]:
            return 200, _dump(self.positions()), j
        if len(rest) == 3 and rest[0] == "tasks":
            tid = rest[1]
            if method == "GET" and rest[2] == "status":
                t = ops.find(tid)
                if t is None:
                    raise _HttpError(404, f"connector {ops.name!r} has no task {tid!r}")
                return 200, _dump(_task_status(t)), j
            if method == "POST" and rest[2] == "restart":
                self._run(self.control.restart_task(tid))
                return 204, None, j
        if rest == ["pause"] and method == "PUT":
            self._run(self.control.pause())
            return 202, None, j
        if rest == ["resume"] and method == "PUT":
            self._run(self.control.resume())
            return 202, None, j
        if rest == ["stop"] and method == "PUT":
            self._run(self.control.stop())
            return 202, None, j
        if rest == ["restart"] and method == "POST":
            self._run(self.control.restart())
            return 204, None, j
        if rest == ["offsets"] and method == "GET":
            return 200, _dump({"offsets": [{"partition": p, "offset": o} for p, o in self._offsets()]}), j
        if rest == ["offsets"] and method == "DELETE":
            n = self._run(self.control.reset_offsets())
            return 200, _dump({"message": f"{n} offsets reset; resume starts every source from its start_position"}), j
        known = {"status", "tasks", "positions", "pause", "resume", "stop", "restart", "offsets"}
        if rest and rest[0] in known:
            raise _HttpError(405, f"{method} is not allowed on /connectors/{ops.name}/{'/'.join(rest)}")
        raise _HttpError(404, f"no such resource /connectors/{ops.name}/{'/'.join(rest)}")

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


def _error(status: int, message: str) -> bytes:
    return _dump({"error_code": status, "message": message})


def _static(name: str) -> bytes:
    return resources.files("bridge.ops").joinpath("static", name).read_bytes()
