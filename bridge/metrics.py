"""Counters and gauges, served as Prometheus text on ``/metrics`` with ``/health`` beside it.

Kept dependency-free (stdlib HTTP server in a thread): an operator needs to scrape a few
numbers and probe liveness, not a metrics framework.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["METRICS", "Metrics", "MetricsServer"]


class Metrics:
    """Thread-safe named counters and gauges with optional labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], Callable[[], float] | float] = {}
        self._help: dict[str, tuple[str, str]] = {}

    def inc(self, name: str, amount: float = 1, help: str = "", **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._help.setdefault(name, ("counter", help))
            self._counters[key] = self._counters.get(key, 0) + amount

    def gauge(self, name: str, value: Callable[[], float] | float, help: str = "", **labels: str) -> None:
        with self._lock:
            self._help.setdefault(name, ("gauge", help))
            self._gauges[(name, tuple(sorted(labels.items())))] = value

    def counter_fn(self, name: str, value: Callable[[], float], help: str = "", **labels: str) -> None:
        """A counter whose value a callable reads (it must only ever grow): typed counter."""
        with self._lock:
            self._help[name] = ("counter", help)
            self._gauges[(name, tuple(sorted(labels.items())))] = value

    def remove(self, name: str, **labels: str) -> None:
        """Forget one series (a task that ended), so /metrics does not grow without bound."""
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters.pop(key, None)
            self._gauges.pop(key, None)

    def value(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            if key in self._counters:
                return self._counters[key]
            g = self._gauges.get(key, 0)
        return g() if callable(g) else g

    def render(self) -> str:
        with self._lock:
            items = [(k, v) for k, v in self._counters.items()] + [(k, v) for k, v in self._gauges.items()]
            helps = dict(self._help)
        lines: list[str] = []
        seen: set[str] = set()
        for (name, labels), v in sorted(items, key=lambda kv: kv[0]):
            if name not in seen:
                kind, text = helps.get(name, ("untyped", ""))
                if text:
                    lines.append(f"# HELP {name} {text}")
                lines.append(f"# TYPE {name} {kind}")
                seen.add(name)
            value = v() if callable(v) else v
            label = "{" + ",".join(f'{k}="{_escape(val)}"' for k, val in labels) + "}" if labels else ""
            lines.append(f"{name}{label} {_number(value)}")
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    """Exact for integers (``%g`` would print 1234567 as 1.23457e+06), repr otherwise."""
    v = float(value)
    return str(int(v)) if v.is_integer() and abs(v) < 2**63 else repr(v)


def _escape(value: object) -> str:
    """A label value in the text format: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


METRICS = Metrics()


def _degraded(text: str) -> bool:
    """Whether a health answer says DEGRADED (the JSON of the health checks, or a plain line)."""
    if text.startswith("{"):
        try:
            return json.loads(text).get("status") == "DEGRADED"
        except ValueError:
            return False
    return text.startswith("DEGRADED")


class MetricsServer:
    """``GET /metrics`` (Prometheus text) and ``GET /health``.

    ``healthy()`` returns a bool or ``(ok, text)``: 200 with the text while ``ok``, else 503
    (``/health?strict``: 503 for DEGRADED too); a text that is a JSON document (the health
    checks' answer) is served as JSON. The socket
    is bound in the constructor, so a port in use fails before anything else happens;
    requests are served from ``start()``.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", metrics: Metrics = METRICS,
                 healthy: Callable[[], bool | tuple[bool, str]] = lambda: True) -> None:
        metrics_ref, healthy_ref = metrics, healthy

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path.split("?")[0] == "/metrics":
                    body, status = metrics_ref.render().encode(), 200
                    ctype = "text/plain; version=0.0.4"
                elif self.path.split("?")[0] == "/health":
                    answer = healthy_ref()
                    ok, text = answer if isinstance(answer, tuple) else (answer, "ok" if answer else "unhealthy")
                    body, status = f"{text}\n".encode(), (200 if ok else 503)
                    ctype = "application/json" if text.startswith("{") else "text/plain"
                    if ok and "strict" in self.path.partition("?")[2].split("&") and _degraded(text):
                        status = 503  # as the REST server's /health?strict: DEGRADED counts as down

                else:
                    body, status, ctype = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
