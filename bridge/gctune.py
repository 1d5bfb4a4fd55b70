"""Garbage-collector settings for the bridge process.

The bridge keeps every record in flight until the broker acknowledges it: tens of
thousands of objects at a time, each a few Python containers (the record, its key, the
delivery callback). With CPython's default thresholds (700, 10, 10) the collector runs a
young-generation pass every 700 container allocations and full passes over every record
in flight again and again; bench/run.py measured that at 30-45% of the bridge's CPU.

Records are freed by reference counting as soon as they are acknowledged; reference cycles
are rare (asyncio internals, exceptions) and still collected, only less often. Objects that
exist at start-up (modules, config, clients) live for the whole run and are frozen out of
every pass.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "tune_for_throughput"]

# A young pass every 50,000 allocations; older generations after 20 and 100 of those.
THRESHOLDS = (50_000, 20, 100)


def tune_for_throughput() -> tuple[int, int, int]:
    """Apply THRESHOLDS and freeze what is alive now; returns the previous thresholds.

    Call once per process, after imports and start-up, before the hot loop; process-wide,
    so libraries and tests that run the bridge in-process should not call it.
    """
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    return previous
