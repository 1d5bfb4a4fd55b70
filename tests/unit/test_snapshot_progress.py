"""Snapshot progress: rate, ETA and the rendered line, on a manual clock."""

from __future__ import annotations

import io
import logging

import pytest

from bridge.metrics import METRICS
from bridge.progress import SnapshotProgress, format_duration, render_bar


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (-1, "?"), (float("inf"), "?"), (0, "0s"), (59.4, "59s"), (61, "1m01s"), (3600, "1h00m"), (3725, "1h02m")],
)
def test_format_duration(seconds, text) -> None:
    assert format_duration(seconds) == text


def test_render_bar() -> None:
    assert render_bar(0.5, width=10) == "[#####.....]"
    assert render_bar(1.5, width=4) == "[####]"
    assert render_bar(None, width=3) == "[???]"


def test_eta_divides_what_is_left_by_the_recent_rate() -> None:
    clock = Clock()
    p = SnapshotProgress("t", total_units=4, expected_items=10_000, stream=io.StringIO(), tty=False, clock=clock)
    assert p.eta_s() is None  # no rate yet
    clock.t += 10
    p.add(1000)  # 100 items/s
    assert p.rate() == pytest.approx(100.0)
    assert p.eta_s() == pytest.approx(90.0)
    clock.t += 10
    p.add(3000, scanned=4000)  # filtered page: progress counts scanned items
    assert p.items == 4000 and p.scanned == 5000
    assert p.rate() == pytest.approx(250.0)
    assert p.eta_s() == pytest.approx(5000 / 250)
    assert p.fraction() == pytest.approx(0.5)


def test_rate_forgets_samples_older_than_the_window() -> None:
    clock = Clock()
    p = SnapshotProgress("t", expected_items=1_000_000, stream=io.StringIO(), tty=False, clock=clock)
    clock.t += 10
    p.add(10_000)  # fast start: 1000/s
    for _ in range(10):
        clock.t += 10
        p.add(100)  # then 10/s
    assert p.rate() < 50, "a rate over the whole run would still say ~100/s"


def test_resumed_items_count_toward_progress_not_rate() -> None:
    clock = Clock()
    p = SnapshotProgress("t", total_units=8, expected_items=1000, stream=io.StringIO(), tty=False, clock=clock)
    p.resumed(600, units_done=3)
    clock.t += 4
    p.add(100)
    assert p.done_items == 700 and p.units_done == 3
    assert p.rate() == pytest.approx(25.0)
    assert p.eta_s() == pytest.approx(300 / 25)


def test_more_items_than_expected_means_eta_zero_and_unknown_count_uses_units() -> None:
    clock = Clock()
    p = SnapshotProgress("t", total_units=4, expected_items=100, stream=io.StringIO(), tty=False, clock=clock)
    clock.t += 1
    p.add(150)
    assert p.eta_s() == 0.0 and p.fraction() == 1.0
    q = SnapshotProgress("t", total_units=4, expected_items=0, stream=io.StringIO(), tty=False, clock=clock)
    q.unit_done()
    assert q.fraction() == 0.25 and q.eta_s() is None


def test_tty_redraws_one_line_and_ends_it_when_finished() -> None:
    clock = Clock()
    out = TTY()
    p = SnapshotProgress("orders", total_units=2, expected_items=200, stream=out, clock=clock)
    clock.t += 1
    p.add(100)
    p.unit_done()
    clock.t += 1
    p.add(100)
    p.unit_done()
    p.finish()
    text = out.getvalue()
    assert text.count("\r\x1b[2K") >= 2 and text.endswith("\n") and text.count("\n") == 1
    last = text.rsplit("\r\x1b[2K", 1)[1]
    assert "snapshot orders (scan) [########################] 100% 200/200 items" in last
    assert "segments 2/2" in last and "ETA 0s" in last


def test_log_lines_when_not_on_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    out = io.StringIO()
    p = SnapshotProgress("orders", units="files", total_units=3, expected_items=3000, interval_s=10, stream=out, tty=False, clock=clock)
    with caplog.at_level(logging.INFO, logger="bridge.progress"):
        clock.t += 5
        p.add(500)  # before the interval: no line
        clock.t += 5
        p.add(500)
        p.unit_done()
    assert out.getvalue() == ""
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "1000/3000 items, 100 items/s, files 0/3" in lines[0] and "ETA 20s" in lines[0]
    m = p.metrics()
    assert m["files_done"] == 1 and m["items"] == 1000 and m["eta_seconds"] == pytest.approx(20.0)
    assert METRICS.value("bridge_snapshot_units_done", table="orders", snapshot="scan") == 1
