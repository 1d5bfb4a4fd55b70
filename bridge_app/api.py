"""The bridge as a Python library: the same configuration built in code, transforms registered
in code, and the bridge run in-process as ``ddb-kafka-bridge run`` runs it.

Public through ``ddb_kafka_bridge`` (its ``__all__``); see docs/transforms.md, "Python API".
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, overload

from bridge.config import BridgeConfig, read_config
from bridge.errors import ConfigError
from bridge.redact import install_log_redaction
from bridge.transforms.record import Record
from bridge.worker import Worker

__all__ = ["Bridge"]

log = logging.getLogger(__name__)

Transform = Callable[[Record], "Record | list[Record] | None"]


class Bridge:
    """One bridge: ``Bridge(config).transform(...).run()``.

    ``config``: the YAML file's path, or the same structure as a dict. Nothing is checked or
    connected until ``run``: then the config is validated (``ConfigError`` with one line, as
    the CLI's exit 2) and every start-up check runs before anything is read or written.
    """

    def __init__(self, config: dict[str, Any] | str | Path) -> None:
        data = read_config(config) if isinstance(config, (str, Path)) else copy.deepcopy(config)
        if not isinstance(data, dict):
            raise ConfigError("config: expected a mapping (a dict, or a YAML file holding one)")
        self._data: dict[str, Any] = data
        self._source = str(config) if isinstance(config, (str, Path)) else "config"
        self._worker: Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set by stop() from any thread, at any time (before the run, during its start-up
        # checks): the run stops as soon as its worker exists; cleared when the run ends.
        self._stop_asked = threading.Event()
        self._state = "STARTING"

    @overload
    def transform(self, table: str | None = None) -> Callable[[Transform], Transform]: ...

    @overload
    def transform(self, table: str | None, *specs: dict[str, Any] | Transform, **named: Any) -> Bridge: ...

    def transform(self, table: str | None = None, *specs: dict[str, Any] | Transform, **named: Any) -> Any:
        """Add transforms to ``table``'s chain (None: every listed table and the discovery template).

        ``bridge.transform("orders", select=[...], filter={...})`` adds YAML's transforms by
        name (in keyword order; ``specs`` as YAML's dicts come first); used as a decorator,
        ``@bridge.transform("orders")`` adds the function (a ``Record`` in; a ``Record``, a
        list of them, or None out). Returns the bridge, or the function for a decorator.
        """
        entries: list[Any] = [s if isinstance(s, dict) else {"python": s} for s in specs]
        entries += [{name: options} for name, options in named.items()]
        if entries:
            self._add(table, entries)
            return self

        def register(fn: Transform) -> Transform:
            self._add(table, [{"python": fn}])
            return fn

        return register

    def _add(self, table: str | None, entries: list[Any]) -> None:
        tables = [t for t in self._data.get("tables") or [] if isinstance(t, dict)]
        targets = tables if table is None else [t for t in tables if t.get("name") == table]
        discovery = self._data.get("table_discovery")
        if table is None and isinstance(discovery, dict):
            targets.append(discovery.setdefault("template", {}))
        if not targets:
            listed = ", ".join(str(t.get("name")) for t in tables) or "none"
            raise ConfigError(f"transform: no table {table!r} in the config's tables (listed: {listed}); "
                              "add it to tables, or pass table=None for every table")
        for t in targets:
            t.setdefault("transforms", [])
            t["transforms"] = [*t["transforms"], *entries]

    def config(self) -> BridgeConfig:
        """The configuration, validated (ConfigError with one line otherwise)."""
        from bridge_app.connector import connector

        return connector().parse_config(self._data, self._source)

    def run(self) -> int:
        """Run until SIGINT/SIGTERM/SIGHUP (in the main thread) or ``stop()``: drain, commit, return
        the number of records produced. A failure raises (a ``BridgeError`` saying why)."""
        return asyncio.run(self.run_async(signals=_main_thread()))

    def run_until_caught_up(self) -> int:
        """Run until every source is read to its current end and committed (``run --until-caught-up``)."""
        return asyncio.run(self.run_async(until_caught_up=True, signals=_main_thread()))

    async def run_async(self, *, until_caught_up: bool = False, signals: bool = False) -> int:
        """``run`` inside a running event loop; ``signals``: stop on SIGINT/SIGTERM/SIGHUP as the
        CLI does (off by default here: the loop's signals are its owner's)."""
        from bridge_app.app import run_bridge
        from bridge_app.wiring import until_caught_up_hook

        try:
            cfg = self.config()
            install_log_redaction()
            self._loop, self._worker, self._state = asyncio.get_running_loop(), None, "STARTING"

            def started(worker: Worker) -> None:
                self._worker = worker  # before the flag is read: stop() sees the worker or we see the flag
                if self._stop_asked.is_set():  # stop() came before or during the start-up checks
                    worker.stop()
                if until_caught_up:
                    until_caught_up_hook(worker)

            worker = await run_bridge(cfg, install_signal_handlers=signals, on_start=started)
            return 0 if worker is None else worker.records_produced
        finally:
            self._loop, self._worker, self._state = None, None, "STOPPED"
            self._stop_asked.clear()

    def stop(self) -> None:
        """Ask the bridge to stop (drain, commit, return from ``run``); from any thread. Asked
        before ``run`` or during its start-up checks, the run stops as soon as it has started;
        after the run it does nothing."""
        self._stop_asked.set()
        worker, loop = self._worker, self._loop
        if worker is not None and loop is not None:
            try:
                loop.call_soon_threadsafe(worker.stop)
            except RuntimeError:  # the run ended meanwhile and its loop is closed: nothing to stop
                pass

    def health(self) -> tuple[bool, str]:
        """(ok, text) as ``/health`` answers: STARTING, ok, DEGRADED, STOPPING or FAILED; STOPPED
        once ``run`` has returned."""
        worker = self._worker
        return (False, self._state) if worker is None else worker.health()


def _main_thread() -> bool:
    """Signal handlers can only be installed there; elsewhere ``stop()`` ends the run."""
    return threading.current_thread() is threading.main_thread()
