"""Counters and gauges, served as Prometheus text on ``/metrics`` with ``/health`` beside it.

The store is ours (labelled values and callables read at scrape time, which every part of
the bridge writes without knowing Prometheus); the exposition format is ``prometheus_client``'s
and the server aiohttp's (``bridge.http_service``), as writing either by hand invites bugs.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric

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

    content_type = CONTENT_TYPE_PLAIN_0_0_4

    def render(self) -> str:
        """The Prometheus text format (``prometheus_client``'s writer): values exact up to 2**53."""
        return generate_latest(_Families(self)).decode()  # type: ignore[arg-type]

    def families(self) -> Iterator[Metric]:
        """Every series as ``prometheus_client`` metric families (a counter's family drops ``_total``)."""
        with self._lock:
            items = [(k, v) for k, v in self._counters.items()] + [(k, v) for k, v in self._gauges.items()]
            helps = dict(self._help)
        grouped: dict[str, list[tuple[dict[str, str], float]]] = {}
        for (name, labels), v in sorted(items, key=lambda kv: kv[0]):
            grouped.setdefault(name, []).append((dict(labels), float(v() if callable(v) else v)))
        for name, samples in grouped.items():
            kind, text = helps.get(name, ("untyped", ""))
            if kind == "counter" and not name.endswith("_total"):
                kind = "untyped"  # prometheus_client would rename it; keep the name the dashboards use
            family = Metric(name.removesuffix("_total") if kind == "counter" else name, text,
                            "unknown" if kind == "untyped" else kind)
            for sample_labels, value in samples:
                family.add_sample(name, sample_labels, value)
            yield family


class _Families:
    """The collector ``generate_latest`` asks for (``collect``), over one ``Metrics``."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()


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
    checks' answer) is served as JSON. ``sock`` is bound beforehand
    (``bridge.http_service.bind``), so a port in use fails before anything else happens;
    requests are served from ``start()``.
    """

    def __init__(self, sock: socket.socket, metrics: Metrics = METRICS,
                 healthy: Callable[[], bool | tuple[bool, str]] = lambda: True) -> None:
        from bridge.http_service import HttpService

        self._metrics, self._healthy = metrics, healthy
        self._service = HttpService("metrics", sock, [web.get("/metrics", self._scrape, allow_head=False),
                                                      web.get("/health", self._health, allow_head=False)])
        self.port = self._service.port

    async def _scrape(self, request: web.Request) -> web.Response:
        text = await asyncio.to_thread(self._metrics.render)  # gauges are callables; one may block
        return web.Response(body=text.encode(), headers={"Content-Type": self._metrics.content_type})

    async def _health(self, request: web.Request) -> web.Response:
        answer = await asyncio.to_thread(self._healthy)
        ok, text = answer if isinstance(answer, tuple) else (answer, "ok" if answer else "unhealthy")
        status = 200 if ok else 503
        if ok and "strict" in request.query and _degraded(text):
            status = 503  # as the REST server's /health?strict: DEGRADED counts as down
        ctype = "application/json" if text.startswith("{") else "text/plain"
        return web.Response(status=status, body=f"{text}\n".encode(), headers={"Content-Type": ctype})

    def start(self) -> MetricsServer:
        self._service.start()
        return self

    def stop(self) -> None:
        self._service.stop()
