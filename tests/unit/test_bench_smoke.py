"""The in-process benchmarks still run against today's code (their numbers live in their
output, not here): a refactor of a seam they call broke ``bench/snapshot_bench.py`` once
without any test noticing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize(("bench", "expect"), [
    ("snapshot_bench", "export, all cores / the same export on one core"),
    ("typed_bench", "target: typed >= 0.80"),
    ("transforms_bench", "target: typed+chain >= 0.70"),
    ("formats_bench", "protobuf"),
])
def test_bench_quick_run_prints_its_table(bench: str, expect: str) -> None:
    done = subprocess.run([sys.executable, "-m", f"bench.{bench}", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert expect in done.stdout, done.stdout[-2000:]
