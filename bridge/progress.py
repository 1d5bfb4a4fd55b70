"""Snapshot progress: one line on a terminal, log lines and metric values otherwise.

A snapshot of a large table runs for hours, so the person who started it wants to know
how far it is and when it will end. The scan and export tasks feed a ``SnapshotProgress``
(items published, items scanned, segments or files done); the ETA divides what is left of
the table's item count (DescribeTable's ``ItemCount``, refreshed by DynamoDB about every
six hours, so it is an estimate) by the recent scan rate.

On a terminal (stderr is a TTY) a single line is redrawn in place; otherwise a log line is
written every ``interval_s`` with the same numbers, and ``metrics()`` returns them for a
metrics endpoint.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

from bridge.metrics import METRICS

__all__ = ["SnapshotProgress", "format_duration", "render_bar"]

log = logging.getLogger(__name__)

RATE_WINDOW_S = 30.0  # items/s is measured over the last half minute, so a pause shows up soon


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``42s``; ``?`` when unknown."""
    if seconds is None or math.isinf(seconds) or math.isnan(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _count(n: float) -> str:
    if n >= 10_000_000:
        return f"{n / 1e6:.0f}M"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    return f"{int(n)}"


def render_bar(fraction: float | None, width: int = 24) -> str:
    """``[#########...............]``; an unknown fraction draws an empty bar."""
    if fraction is None:
        return "[" + "?" * width + "]"
    f = min(1.0, max(0.0, fraction))
    full = int(f * width)
    return "[" + "#" * full + "." * (width - full) + "]"


class SnapshotProgress:
    """Counters for one table's snapshot, and their rendering.

    ``clock`` is injectable so the ETA arithmetic can be tested without waiting.
    """

    def __init__(
        self,
        table: str,
        *,
        kind: str = "scan",
        units: str = "segments",
        total_units: int = 0,
        expected_items: int | None = None,
        interval_s: float = 10.0,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.kind = kind
        self.units = units
        self.total_units = total_units
        self.expected_items = expected_items or None
        self.interval_s = interval_s
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._clock = clock
        self.started = clock()
        self.items = 0  # published
        self.scanned = 0  # read from the table (ScannedCount), filtered or not
        self.resumed_items = 0  # covered by stored offsets at start: not read again
        self.units_done = 0
        self.finished: float | None = None
        self._samples: deque[tuple[float, int]] = deque([(self.started, 0)])
        self._last_emit = self.started
        self._drawn = False
        self._register()

    def _register(self) -> None:
        """The same numbers as gauges on /metrics (the latest snapshot of a table wins)."""
        labels = {"table": self.table, "snapshot": self.kind}
        gauges: dict[str, tuple[Callable[[], float], str]] = {
            "bridge_snapshot_items": (lambda: float(self.items), "snapshot rows published in this run"),
            "bridge_snapshot_items_scanned": (lambda: float(self.done_items), "items read so far, resumed included"),
            "bridge_snapshot_items_per_second": (lambda: self.rate(), "recent snapshot read rate"),
            "bridge_snapshot_units_done": (lambda: float(self.units_done), "segments or files done"),
            "bridge_snapshot_units_total": (lambda: float(self.total_units), "segments or files in the snapshot"),
            "bridge_snapshot_eta_seconds": (lambda: -1.0 if (e := self.eta_s()) is None else e, "-1 when unknown"),
        }
        for name, (fn, text) in gauges.items():
            METRICS.gauge(name, fn, text, **labels)

    # ---- feeding -----------------------------------------------------------------------

    def resumed(self, items: int, units_done: int = 0) -> None:
        """What stored offsets say is already done; counts toward progress, not toward rate."""
        self.resumed_items += items
        self.units_done += units_done

    def add(self, items: int, scanned: int | None = None) -> None:
        self.items += items
        self.scanned += items if scanned is None else scanned
        now = self._clock()
        self._samples.append((now, self.scanned))
        while len(self._samples) > 2 and now - self._samples[1][0] > RATE_WINDOW_S:
            self._samples.popleft()
        self.maybe_emit(now)

    def unit_done(self) -> None:
        self.units_done += 1
        self.maybe_emit()

    def finish(self) -> None:
        self.finished = self._clock()
        self.emit(final=True)

    # ---- numbers -----------------------------------------------------------------------

    @property
    def done_items(self) -> int:
        return self.resumed_items + self.scanned

    def rate(self, now: float | None = None) -> float:
        """Items scanned per second over the recent window (whole run when shorter)."""
        now = self._clock() if now is None else now
        t0, n0 = self._samples[0]
        elapsed = now - t0
        if elapsed <= 0:
            return 0.0
        return (self.scanned - n0) / elapsed

    def fraction(self) -> float | None:
        if self.finished is not None:
            return 1.0
        if self.expected_items:
            return min(1.0, self.done_items / self.expected_items)
        if self.total_units:
            return self.units_done / self.total_units
        return None

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left: what remains of the expected item count at the recent rate."""
        if self.finished is not None:
            return 0.0
        if not self.expected_items:
            return None
        left = max(0, self.expected_items - self.done_items)
        if left == 0:
            # ItemCount is approximate: more items than expected means "soon", not "done".
            return 0.0
        r = self.rate(now)
        return left / r if r > 0 else None

    def metrics(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "table": self.table,
            "snapshot": self.kind,
            "items": self.items,
            "items_scanned": self.scanned,
            "items_resumed": self.resumed_items,
            "items_per_second": round(self.rate(now), 1),
            f"{self.units}_done": self.units_done,
            f"{self.units}_total": self.total_units,
            "expected_items": self.expected_items,
            "eta_seconds": None if (e := self.eta_s(now)) is None else round(e, 1),
            "elapsed_seconds": round((self.finished or now) - self.started, 1),
        }

    def line(self, now: float | None = None) -> str:
        now = self._clock() if now is None else now
        frac = self.fraction()
        pct = "  ?%" if frac is None else f"{frac * 100:3.0f}%"
        expected = f"/{_count(self.expected_items)}" if self.expected_items else ""
        return (
            f"snapshot {self.table} ({self.kind}) {render_bar(frac)} {pct} "
            f"{_count(self.done_items)}{expected} items, {self.rate(now):,.0f} items/s, "
            f"{self.units} {self.units_done}/{self.total_units}, "
            f"elapsed {format_duration(now - self.started)}, ETA {format_duration(self.eta_s(now))}"
        )

    # ---- output ------------------------------------------------------------------------

    def maybe_emit(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        every = 0.2 if self._tty else self.interval_s
        if now - self._last_emit >= every:
            self.emit(now=now)

    def emit(self, *, final: bool = False, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        self._last_emit = now
        if self._tty:
            self._stream.write("\r\x1b[2K" + self.line(now) + ("\n" if final else ""))
            self._stream.flush()
            self._drawn = not final
        else:
            m = self.metrics()
            log.info("%s%s", "finished " if final else "", self.line(now))
            log.debug("snapshot metrics %s", m)
