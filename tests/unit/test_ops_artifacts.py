"""The shipped Prometheus alert rules and Grafana dashboard load, and name only metrics the
bridge exports (a renamed metric must not leave an alert that can never fire)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from bridge.metrics import Metrics
from bridge.ops.health import HealthChecks
from connectors.dynamodb.items import canonical_number

ROOT = Path(__file__).resolve().parents[2]
EXPORTED = {
    "up", "bridge_health_status", "bridge_connector_paused", "bridge_records_produced_total",
    "bridge_records_dead_lettered_total", "bridge_records_in_flight", "bridge_buffered_bytes", "bridge_tasks_running",
    "bridge_producer_queue_depth", "bridge_task_millis_behind_latest", "bridge_task_iterator_age_ms",
    "bridge_task_records_read_total", "bridge_task_failures_total", "bridge_aws_requests_total",
    "bridge_aws_retries_total", "bridge_aws_throttles_total", "bridge_trimmed_shards_total",
    "bridge_registry_unavailable_total", "bridge_snapshot_units_done", "bridge_snapshot_units_total",
}
METRIC = re.compile(r"\b(up|bridge_[a-z_]+)\b")


def test_alert_rules_parse_and_name_exported_metrics() -> None:
    doc = yaml.safe_load((ROOT / "ops/prometheus/alerts.yml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert len(rules) >= 8
    for r in rules:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"} and r["alert"] and r["expr"]
        assert r["labels"]["severity"] in {"critical", "warning", "info"}
        assert set(METRIC.findall(r["expr"])) <= EXPORTED, r["expr"]


def test_grafana_dashboard_parses_and_names_exported_metrics() -> None:
    dash = json.loads((ROOT / "ops/grafana/dashboard.json").read_text())
    assert dash["uid"] and dash["title"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"])
        for t in p["targets"]:
            assert set(METRIC.findall(t["expr"])) <= EXPORTED, t["expr"]


def test_counters_are_counters_with_exact_values_and_escaped_labels() -> None:
    m = Metrics()
    m.counter_fn("x_total", lambda: 1234567.0, "help")
    m.inc("y_total", table='a"b\\c\nd')
    m.counter_fn("big_total", lambda: float(2**53 - 1))
    m.gauge("half", 0.5)
    text = m.render()
    assert "# TYPE x_total counter" in text
    assert 'y_total{table="a\\"b\\\\c\\nd"} 1' in text
    # Read back by Prometheus's own parser: every value exact, every label value intact.
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("x_total", ())] == 1234567
    assert samples[("big_total", ())] == 2**53 - 1
    assert samples[("half", ())] == 0.5
    assert samples[("y_total", (("table", 'a"b\\c\nd'),))] == 1
    m.remove("x_total")
    assert "x_total" not in m.render()


def test_numbers_compare_exactly_to_38_digits() -> None:
    a = "12345678901234567890123456789012345678"
    assert canonical_number(a) != canonical_number(a[:-1] + "9")
    assert canonical_number("1.50") == canonical_number("1.5") and canonical_number("100") == canonical_number("1E2")
    assert canonical_number("0.000") == canonical_number("0")


def test_health_is_the_worst_check_and_a_broken_check_fails() -> None:
    h = HealthChecks()
    h.add("a", lambda: ("OK", None))
    assert h.evaluate()["status"] == "OK"
    h.add("b", lambda: ("DEGRADED", "lag"))
    assert h.evaluate()["status"] == "DEGRADED"

    def broken() -> tuple[str, str | None]:
        raise RuntimeError("boom")

    h.add("c", broken)  # type: ignore[arg-type]
    doc = h.evaluate()
    assert doc["status"] == "FAILED" and "boom" in doc["checks"]["c"]["reason"]
