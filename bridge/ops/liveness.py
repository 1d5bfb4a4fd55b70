"""Whether a bridge of this name runs now, for the commands that write its offsets.

A running bridge keeps its offsets in memory and writes them again a moment later, so
``offsets reset`` and ``offsets import`` under it would be undone silently. Every running
worker writes its record in the status topic (``status-worker-<id>``) every
``status.interval_ms``, and a worker that stops cleanly removes it (a tombstone, see
``StatusWriter.close``). So a worker record younger than a few intervals means a live
process; an older one was left by a process that was killed (SIGKILL, a lost machine) and
stops counting once it is older than ``stale_after_ms``, without anyone having to clean up.
The ages compare the writer's clock with this machine's: clocks further apart than the
margin make a live bridge look gone (or a killed one look live for longer).
"""

from __future__ import annotations

import time
from typing import Any

from bridge.config import BridgeConfig
from bridge.errors import ConfigError
from bridge.ops.status_view import read_status

__all__ = ["live_workers", "refuse_if_running", "stale_after_ms"]

# Beyond the heartbeat interval: a writer waits for the broker, a busy loop is late.
_MARGIN_MS = 5000


def stale_after_ms(cfg: BridgeConfig) -> int:
    """A worker record older than this was left by a process that is gone."""
    return 3 * cfg.status.interval_ms + _MARGIN_MS


def live_workers(cfg: BridgeConfig, now_ms: int | None = None) -> list[dict[str, Any]]:
    """The worker records of this connector young enough to be a running process (with ``age_ms``)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    limit = stale_after_ms(cfg)
    out = []
    for w in read_status(cfg)["worker"].values():
        if not isinstance(w, dict) or w.get("connector") != cfg.name or not isinstance(w.get("time_ms"), int):
            continue
        age = now - w["time_ms"]
        if age <= limit:
            out.append(w | {"age_ms": age})
    return out


def refuse_if_running(cfg: BridgeConfig, command: str) -> None:
    """Raise (one line) if a bridge of this name is running: ``command`` would be undone by it."""
    if not cfg.status.enabled:
        return  # no heartbeats to tell by: the command's own note says to stop the bridge first
    live = live_workers(cfg)
    if not live:
        return
    w = min(live, key=lambda r: r["age_ms"])
    rest = w.get("rest_url")
    how = (f"stop it first, or stop its connector and reset through it (PUT {rest}/connectors/{cfg.name}/stop, then "
           f"DELETE {rest}/connectors/{cfg.name}/offsets)") if rest and command == "offsets reset" else "stop it first"
    raise ConfigError(
        f"{command}: bridge {cfg.name!r} is running (worker {w.get('worker_id')}, status heartbeat "
        f"{w['age_ms'] / 1000:.0f}s ago in {cfg.status_topic!r}); it would write its own offsets over these: {how}. "
        f"A process that was killed stops counting {stale_after_ms(cfg) / 1000:.0f}s after its last heartbeat"
    )
