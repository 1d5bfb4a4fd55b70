"""``/health`` as a set of named checks anyone can add to.

Each check answers OK, DEGRADED or FAILED with a reason; the overall state is the worst of
them, served as JSON with every check's answer, so a probe reads one word and a person
reads why. DEGRADED means "running, but look" (lag above the threshold, a task retrying
for long, the registry unreachable, the producer stalled); FAILED means data is not
flowing and will not without help (the worker stopped on an error, a task failed).

HTTP status: 200 for OK and DEGRADED, 503 for FAILED, so a liveness probe does not restart
a bridge that is only behind; ``/health?strict`` answers 503 for DEGRADED too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, cast

__all__ = ["Check", "HealthChecks", "State", "worst"]

log = logging.getLogger(__name__)

State = Literal["OK", "DEGRADED", "FAILED"]
Check = Callable[[], "tuple[State, str | None]"]
_RANK = {"OK": 0, "DEGRADED": 1, "FAILED": 2}


def worst(states: list[str]) -> State:
    return cast(State, max(states, key=lambda s: _RANK[s], default="OK"))


class HealthChecks:
    """Named checks; ``evaluate()`` runs them all (a check that raises counts as FAILED)."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._lock = threading.Lock()
        self._last: str = "OK"

    def add(self, name: str, check: Check) -> None:
        with self._lock:
            self._checks[name] = check

    def remove(self, name: str) -> None:
        with self._lock:
            self._checks.pop(name, None)

    def evaluate(self) -> dict[str, Any]:
        with self._lock:
            checks = dict(self._checks)
        out: dict[str, dict[str, Any]] = {}
        for name, check in checks.items():
            try:
                state, reason = check()
            except Exception as e:  # noqa: BLE001 - a broken check must show, not break /health
                state, reason = "FAILED", f"health check failed: {type(e).__name__}: {e}"
            out[name] = {"status": state, "reason": reason}
        status = worst([c["status"] for c in out.values()])
        if status != self._last:
            reasons = "; ".join(f"{n}: {c['reason']}" for n, c in out.items() if c["status"] != "OK")
            log.log(logging.INFO if status == "OK" else logging.WARNING, "health %s -> %s%s", self._last, status,
                    f" ({reasons})" if reasons else "")
            self._last = status
        return {"status": status, "checks": out, "time_ms": int(time.time() * 1000)}

    def rank(self) -> int:
        return _RANK[self.evaluate()["status"]]


class CachedProbe:
    """Runs ``probe`` at most every ``ttl_s`` (e.g. a registry GET), remembering its answer."""

    def __init__(self, probe: Callable[[], None], ttl_s: float = 10.0, what: str = "") -> None:
        self._probe = probe
        self._ttl = ttl_s
        self._what = what
        self._at = 0.0
        self._answer: tuple[State, str | None] = ("OK", None)
        self._failing_since: float | None = None
        self._lock = threading.Lock()

    def __call__(self) -> tuple[State, str | None]:
        with self._lock:
            if time.monotonic() - self._at < self._ttl:
                return self._answer
            self._at = time.monotonic()
            try:
                self._probe()
            except Exception as e:  # noqa: BLE001 - any failure of the probe is the answer
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                self._answer = ("DEGRADED", f"{self._what} unreachable for "
                                            f"{time.monotonic() - self._failing_since:.0f} s: {e}")
            else:
                self._failing_since = None
                self._answer = ("OK", None)
            return self._answer
