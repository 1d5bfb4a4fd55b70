"""The REST API, /metrics and /health driven over HTTP against a bridge process reading the
Streams double: pause stops reading, resume goes on from the same position, a failed task
restarts, offsets reset only when stopped; counters equal what was written; lag rises while
paused and falls after catch-up, and /health follows it (DEGRADED and back to OK)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.doubles.streams_double import StreamsDouble
from tests.faults.support import (
    Bridges,
    ChangeLog,
    ChangeReader,
    assert_exact,
    double_config,
    free_port,
    get_status,
    topic_of,
    wait_until,
)

pytestmark = pytest.mark.slow

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(base: str, method: str, path: str, token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(base + path, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with _OPENER.open(req, timeout=130) as resp:
            body = resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, body.decode()


def scrape_series(port: int) -> dict[str, float]:
    status, text = get_status(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def total(series: dict[str, float], name: str) -> float:
    return sum(v for k, v in series.items() if k.split("{", 1)[0] == name)


def test_rest_pause_resume_restart_reset_with_lag_and_health(
    stack: Any, make_double: Callable[..., StreamsDouble], bridges: Bridges,
    make_reader: Callable[[str, str, str], ChangeReader],
) -> None:
    double = make_double(shards=2)
    rest_port, token = free_port(), "s3cret-token"
    cfg = double_config(stack, double, stream={"poll_interval_ms": 100},
                        rest={"port": rest_port, "bearer_token": token},
                        health={"max_lag_ms": 1500, "registry_probe_s": 1},
                        errors={"task_failure": "fail-task"}, status={"interval_ms": 300})
    name, mport = cfg["name"], cfg["metrics"]["port"]
    base = f"http://127.0.0.1:{rest_port}"
    log = ChangeLog(double)
    log.write_many(40, keys=12, delete_every=9)
    bridge = bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.wait_for_log(log)

    # The token is required, except for /health; the OpenAPI document is served.
    assert call(base, "GET", "/connectors")[0] == 401
    assert call(base, "GET", "/connectors", token) == (200, [name])
    status, doc = call(base, "GET", "/openapi.json", token)
    assert status == 200 and "/connectors/{name}/pause" in doc["paths"]

    # Counters equal what was written (records incl. tombstones), typed as counters.
    wait_until(lambda: total(scrape_series(mport), "bridge_records_produced_total") == log.count, 20,
               "records_produced_total to equal the records written")
    _, text = get_status(f"http://127.0.0.1:{mport}/metrics")
    assert "# TYPE bridge_records_produced_total counter" in text
    assert "# TYPE bridge_task_records_read_total counter" in text
    assert total(scrape_series(mport), "bridge_task_records_read_total") == log.count

    def health() -> tuple[int, dict[str, Any]]:
        return call(base, "GET", "/health")

    wait_until(lambda: health()[1]["status"] == "OK", 20, "/health OK after catch-up")
    wait_until(lambda: all(t["millis_behind_latest"] == 0 for t in call(base, "GET", f"/connectors/{name}/positions",
                                                                            token)[1]["tasks"]), 20, "lag 0")
    status, st = call(base, "GET", f"/connectors/{name}/status", token)
    assert st["connector"]["state"] == "RUNNING" and {t["state"] for t in st["tasks"]} == {"RUNNING"}
    assert len(st["tasks"]) == 2

    # Pause: reading stops within one poll interval (a GetRecords in progress may finish).
    reader.read_until(lambda ev: len(ev) >= log.count, 20)  # tombstones too
    assert call(base, "PUT", f"/connectors/{name}/pause", token)[0] == 202
    time.sleep(0.1 + 0.3)  # one poll interval plus one GetRecords round trip
    calls_then = double.calls.count("GetRecords")
    log.write_many(30, keys=12)
    n_before = len(reader.events)
    reader.poll_for(2.0)
    assert double.calls.count("GetRecords") == calls_then, "GetRecords went on while paused"
    assert len(reader.events) == n_before, "records arrived while paused"
    assert {t["state"] for t in call(base, "GET", f"/connectors/{name}/status", token)[1]["tasks"]} == {"PAUSED"}

    # Lag rises while paused, past the threshold: DEGRADED with the reason, on both servers.
    lags = [total(scrape_series(mport), "bridge_task_millis_behind_latest")]
    wait_until(lambda: health()[1]["status"] == "DEGRADED", 20, "/health DEGRADED while paused")
    lags.append(total(scrape_series(mport), "bridge_task_millis_behind_latest"))
    assert lags[1] > lags[0] and lags[1] > 1500, lags
    code, doc = health()
    assert code == 200 and doc["checks"]["lag"]["status"] == "DEGRADED"
    assert "max_lag_ms=1500" in doc["checks"]["lag"]["reason"]
    assert json.loads(get_status(f"http://127.0.0.1:{mport}/health")[1])["status"] == "DEGRADED"
    assert call(base, "GET", "/health?strict")[0] == 503

    # Resume: from the same position (every change once, none twice), lag back to ~0, OK.
    assert call(base, "PUT", f"/connectors/{name}/resume", token)[0] == 202
    reader.wait_for_log(log)
    wait_until(lambda: health()[1]["status"] == "OK", 20, "/health OK after resume")
    assert total(scrape_series(mport), "bridge_task_millis_behind_latest") < 1000
    assert_exact(reader.poll_for(1.0), log)

    # Reset offsets is refused while the connector runs.
    code, err = call(base, "DELETE", f"/connectors/{name}/offsets", token)
    assert code == 409 and "STOPPED" in err["message"]

    # A task fails (a non-retriable error); the other goes on; /health FAILED; restart works.
    shard = double.open_shard_ids()[0]
    double.faults.add("AccessDeniedException", op="GetRecords", shard=shard, times=1)
    wait_until(lambda: any(t["state"] == "FAILED" for t in
                           call(base, "GET", f"/connectors/{name}/status", token)[1]["tasks"]), 20, "a FAILED task")
    failed = next(t for t in call(base, "GET", f"/connectors/{name}/status", token)[1]["tasks"] if t["state"] == "FAILED")
    assert "AccessDenied" in failed["trace"] and failed["failed_at_ms"]
    assert health()[0] == 503 and health()[1]["status"] == "FAILED"
    log.write_many(20, keys=12)
    assert call(base, "POST", f"/connectors/{name}/tasks/{failed['id']}/restart", token)[0] == 204
    reader.wait_for_log(log)
    wait_until(lambda: health()[1]["status"] == "OK", 20, "/health OK after the task restart")
    assert_exact(reader.poll_for(1.0), log)
    assert call(base, "POST", f"/connectors/{name}/tasks/{failed['id']}/restart", token)[0] == 409  # not FAILED now
    assert call(base, "GET", f"/connectors/{name}/tasks/nope/status", token)[0] == 404

    # Stop, then reset: every offset gone; resume reads the shards again from the start.
    assert call(base, "PUT", f"/connectors/{name}/stop", token)[0] == 202
    assert call(base, "GET", f"/connectors/{name}/status", token)[1]["connector"]["state"] == "STOPPED"
    assert len(call(base, "GET", f"/connectors/{name}/offsets", token)[1]["offsets"]) == 2
    code, doc = call(base, "DELETE", f"/connectors/{name}/offsets", token)
    assert code == 200, doc
    assert call(base, "GET", f"/connectors/{name}/offsets", token)[1]["offsets"] == []
    before = len(reader.events)
    assert call(base, "PUT", f"/connectors/{name}/resume", token)[0] == 202
    reader.grow_by(log.count, timeout=60)
    assert len(reader.events) - before >= log.count
    bridge.check()
    assert bridge.stop() == 0
