"""Shard count at scale: the real bridge process against a lean Streams double of N shards.

Each run starts ``bench/scale_double.py`` and then ``ddb-kafka-bridge run`` (the bridge as
users run it, its own process, pointed at the double for DynamoDB and Streams, at the
benchmark's broker and registry), and measures from outside:

- **idle**: N open shards that never receive a record. CPU of the bridge process (user +
  sys of all its threads, from /proc: robust to neighbours), GetRecords/s, each shard's
  mean interval between polls (the double's clock), start-up until every shard was asked
  once (from the bridge's spawn), and the DescribeStream listings achieved.
- **catch-up**: N shards that receive a backlog (wide records, pages of 500) once every
  shard has been asked; CPU from the release until every message is acknowledged (the
  bridge's own metrics: produced = expected, nothing in flight), so records per CPU second.

``--bridge-src DIR`` runs another source tree's bridge (e.g. an export of main) under the
same harness, for before/after numbers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """user + sys CPU of a process, all its threads (``/proc/<pid>/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _get(url: str, *, method: str = "GET", timeout: float = 10) -> Any:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with _NO_PROXY.open(req, timeout=timeout) as resp:
        return resp.read()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Double:
    proc: subprocess.Popen[bytes]
    url: str

    @classmethod
    def start(cls, **kw: Any) -> Double:
        cmd = [sys.executable, str(ROOT / "bench" / "scale_double.py")]
        for k, v in kw.items():
            cmd += [f"--{k.replace('_', '-')}", str(v)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            proc.kill()
            raise RuntimeError(f"scale double did not start: {line!r}")
        return cls(proc, f"http://127.0.0.1:{int(line.split()[1])}")

    def stats(self, since: float = 0.0) -> dict[str, Any]:
        return json.loads(_get(f"{self.url}/stats?since={since}", timeout=30))

    def release(self) -> dict[str, Any]:
        return json.loads(_get(f"{self.url}/release", method="POST", timeout=60))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Bridge:
    proc: subprocess.Popen[bytes]
    spawned: float
    log_path: Path
    metrics_url: str | None

    @classmethod
    def start(cls, cfg: dict[str, Any], workdir: Path, src: Path) -> Bridge:
        path = workdir / f"{cfg['name']}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        log_path = workdir / f"{cfg['name']}.log"
        env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                   AWS_DEFAULT_REGION="us-east-1", PYTHONPATH=str(src))
        env.pop("AWS_PROFILE", None)
        with log_path.open("ab") as log:
            spawned = time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", "bridge_app.cli", "run", "-c", str(path)], stdout=log,
                                    stderr=subprocess.STDOUT, env=env, cwd=src)
        port = (cfg.get("metrics") or {}).get("port")
        return cls(proc, spawned, log_path, f"http://127.0.0.1:{port}/metrics" if port else None)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"bridge exited with {self.proc.returncode}:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str) -> float:
        assert self.metrics_url is not None
        for line in _get(self.metrics_url).decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def bridge_config(bootstrap: str, registry: str, endpoint: str, stream: dict[str, Any], *,
                  metrics_port: int | None = None) -> dict[str, Any]:
    name = f"scale-{uuid.uuid4().hex[:8]}"
    cfg: dict[str, Any] = {
        "name": name,
        "kafka": {"bootstrap.servers": bootstrap},
        "schema_registry": {"url": registry},
        "aws": {"region": "us-east-1", "endpoint_url": endpoint},
        "topic_prefix": name,
        "tables": [{"name": "bench-orders", "stream": stream}],
        "log_level": "WARNING",
        "shutdown_timeout_s": 20,
    }
    if metrics_port is not None:
        cfg["metrics"] = {"port": metrics_port, "host": "127.0.0.1"}
    return cfg


def _wait_all_asked(double: Double, bridge: Bridge, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        bridge.check()
        st = double.stats(time.monotonic())
        if st["asked"] == st["shards"] or time.monotonic() > deadline:
            return st
        time.sleep(0.2)


def idle(shards: int, *, poll_interval_ms: int, max_idle_poll_interval_ms: int | None, window_s: float,
         bootstrap: str, registry: str, src: Path = ROOT, discovery_interval_ms: int = 10000,
         startup_timeout_s: float = 120.0) -> dict[str, Any]:
    """N idle open shards: CPU, request rate, per-shard intervals, start-up, discovery."""
    double = Double.start(idle=shards)
    workdir = Path(tempfile.mkdtemp(prefix="scale-"))
    stream: dict[str, Any] = {"poll_interval_ms": poll_interval_ms, "discovery_interval_ms": discovery_interval_ms}
    if max_idle_poll_interval_ms is not None:
        stream["max_idle_poll_interval_ms"] = max_idle_poll_interval_ms
    bridge = Bridge.start(bridge_config(bootstrap, registry, double.url, stream), workdir, src)
    out: dict[str, Any] = {"shards": shards, "poll_interval_ms": poll_interval_ms,
                           "max_idle_poll_interval_ms": max_idle_poll_interval_ms,
                           "discovery_interval_ms": discovery_interval_ms, "window_s": window_s}
    try:
        st = _wait_all_asked(double, bridge, startup_timeout_s)
        out["asked_at_start"] = st["asked"]
        out["startup_s"] = st["first_ask_max"] - bridge.spawned if st["first_ask_max"] else None
        out["first_ask_s"] = st["first_ask_min"] - bridge.spawned if st["first_ask_min"] else None
        # settle: past start-up bursts, with adaptive polling until the intervals reach their cap
        settle = 2 * poll_interval_ms / 1000 + 1
        if max_idle_poll_interval_ms:
            settle = max(settle, 2 * max_idle_poll_interval_ms / 1000 + 2)
        time.sleep(settle)
        bridge.check()
        t0, c0 = time.monotonic(), bridge.cpu()
        time.sleep(window_s)
        t1, c1 = time.monotonic(), bridge.cpu()
        bridge.check()
        st = double.stats(t0)
        wall = t1 - t0
        out.update(
            cpu_s=c1 - c0, wall_s=wall, cpu_pct=100 * (c1 - c0) / wall, getrecords=st["getrecords"],
            getrecords_per_s=st["getrecords"] / wall, per_shard_interval=st["per_shard_mean_interval"],
            intervals=st["intervals"], shards_polled_twice=st["shards_with_two_asks"],
            listing_periods=st["listing_periods"], listing_durations=st["listing_durations"],
            cpu_ms_per_getrecords=1000 * (c1 - c0) / max(1, st["getrecords"]),
            asked_total=st["asked"],
        )
        return out
    finally:
        bridge.stop()
        double.stop()


def catch_up(shards: int, records: int, *, bootstrap: str, registry: str, src: Path = ROOT,
             poll_interval_ms: int = 1000, timeout_s: float = 300.0) -> dict[str, Any]:
    """``records`` wide records over ``shards`` shards, released once every shard is polled."""
    double = Double.start(backlog_shards=shards, backlog_records=records)
    workdir = Path(tempfile.mkdtemp(prefix="scale-"))
    port = _free_port()
    cfg = bridge_config(bootstrap, registry, double.url, {"poll_interval_ms": poll_interval_ms}, metrics_port=port)
    bridge = Bridge.start(cfg, workdir, src)
    try:
        _wait_all_asked(double, bridge, 120)
        time.sleep(1.5)
        t0, c0 = time.monotonic(), bridge.cpu()
        rel = double.release()
        deadline = t0 + timeout_s
        while True:
            bridge.check()
            if (bridge.metric("bridge_records_produced_total") >= rel["messages"]
                    and bridge.metric("bridge_records_in_flight") == 0):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"catch-up did not finish in {timeout_s} s")
            time.sleep(0.05)
        t1, c1 = time.monotonic(), bridge.cpu()
        served = double.stats(t0)["records_served"]
        return {"shards": shards, "records": rel["records"], "served": served, "cpu_s": c1 - c0,
                "wall_s": t1 - t0, "per_cpu_s": rel["records"] / (c1 - c0)}
    finally:
        bridge.stop()
        double.stop()


# --------------------------------------------------------------------------- the section in bench/run.py

# (shards, poll_interval_ms, max_idle_poll_interval_ms, window_s); the acceptance runs are marked
IDLE_PLAN = {
    "full": [(100, 1000, None, 20.0), (1000, 1000, None, 20.0), (3000, 1000, None, 20.0),
             (3000, 5000, None, 30.0), (3000, 1000, 8000, 24.0)],
    "quick": [(100, 1000, None, 8.0), (1000, 1000, None, 10.0)],
}
CATCH_UP_PLAN = {"full": [(1, 128_000), (256, 128_000)], "quick": [(1, 32_000), (64, 32_000)]}
TARGET_CPU_PCT, TARGET_STARTUP_S, TARGET_INTERVAL, TARGET_CATCH_UP = 50.0, 10.0, 0.20, 1.5


def run_section(size: str, bootstrap: str, registry: str, src: Path = ROOT,
                say: Any = print) -> dict[str, Any]:
    """Every idle and catch-up run of the plan, each printed as it finishes."""
    out: dict[str, Any] = {"idle": [], "catch_up": [], "src": str(src)}
    for shards, interval, cap, window in IDLE_PLAN[size]:
        r = idle(shards, poll_interval_ms=interval, max_idle_poll_interval_ms=cap, window_s=window,
                 bootstrap=bootstrap, registry=registry, src=src)
        out["idle"].append(r)
        say("  " + idle_line(r))
    for shards, records in CATCH_UP_PLAN[size]:
        r = catch_up(shards, records, bootstrap=bootstrap, registry=registry, src=src)
        out["catch_up"].append(r)
        say(f"  catch-up: {r['records']:,} records on {shards} shard(s): {r['cpu_s']:.2f} CPU s, "
            f"{r['wall_s']:.1f} s wall, {r['per_cpu_s']:,.0f} records per CPU second")
    return out


def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def idle_line(r: dict[str, Any]) -> str:
    iv = r.get("per_shard_interval") or {}
    return (f"{r['shards']:>5,} idle shards @ {r['poll_interval_ms'] / 1000:g} s"
            f"{' adaptive to ' + format(r['max_idle_poll_interval_ms'] / 1000, 'g') + ' s' if r['max_idle_poll_interval_ms'] else ''}: "
            f"{r['cpu_pct']:.1f}% of a core, {r['getrecords_per_s']:,.0f} GetRecords/s, "
            f"{r['cpu_ms_per_getrecords']:.2f} ms CPU each; per-shard interval {_fmt(iv.get('min'), '.2f')}"
            f"-{_fmt(iv.get('max'), '.2f')} s; start-up {_fmt(r['startup_s'])} s; "
            f"listing periods {', '.join(f'{p:.1f}' for p in r['listing_periods']) or '-'} s")


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = [["open idle shards", "poll interval", "CPU, % of one core", "GetRecords/s (per shard)",
             "CPU ms per GetRecords", "per-shard mean interval, min-max", "start-up until every shard asked",
             "DescribeStream listing periods"]]
    for r in report["idle"]:
        iv = r.get("per_shard_interval") or {}
        interval = f"{r['poll_interval_ms'] / 1000:g} s"
        if r["max_idle_poll_interval_ms"]:
            interval += f", adaptive to {r['max_idle_poll_interval_ms'] / 1000:g} s"
        periods = r["listing_periods"]
        rows.append([
            f"{r['shards']:,}", interval, f"{r['cpu_pct']:.1f}",
            f"{r['getrecords_per_s']:,.0f} ({r['getrecords_per_s'] / r['shards']:.2f})",
            f"{r['cpu_ms_per_getrecords']:.2f}",
            f"{_fmt(iv.get('min'), '.2f')}-{_fmt(iv.get('max'), '.2f')} s"
            + ("" if r.get("shards_polled_twice", 0) == r["shards"] else f" ({r.get('shards_polled_twice', 0):,} shards)"),
            f"{_fmt(r['startup_s'])} s" if r["startup_s"] is not None
            else f"{r['asked_at_start']:,} of {r['shards']:,} asked",
            (f"{min(periods):.2f}-{max(periods):.2f} s" if periods else "-"),
        ])
    return rows


def catch_up_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = [["shards", "records", "CPU s", "wall s", "records per CPU second", "CPU per record vs 1 shard"]]
    base = next((r for r in report["catch_up"] if r["shards"] == 1), None)
    for r in report["catch_up"]:
        ratio = (r["cpu_s"] / r["records"]) / (base["cpu_s"] / base["records"]) if base else None
        rows.append([str(r["shards"]), f"{r['records']:,}", f"{r['cpu_s']:.2f}", f"{r['wall_s']:.1f}",
                     f"{r['per_cpu_s']:,.0f}", _fmt(ratio, ".2f") + "×" if ratio else "-"])
    return rows


def verdicts(report: dict[str, Any]) -> list[tuple[str, bool]]:
    """The issue's acceptance lines, judged on this run."""
    out: list[tuple[str, bool]] = []
    for r in report["idle"]:
        iv = r.get("per_shard_interval") or {}
        want = r["poll_interval_ms"] / 1000
        if r["shards"] == 3000 and r["poll_interval_ms"] == 5000 and not r["max_idle_poll_interval_ms"]:
            ok_iv = (bool(iv) and r.get("shards_polled_twice") == r["shards"]
                     and abs(iv["min"] / want - 1) <= TARGET_INTERVAL and abs(iv["max"] / want - 1) <= TARGET_INTERVAL)
            out.append((f"3,000 idle shards @ 5 s: every shard's mean interval within ±20% "
                        f"({_fmt(iv.get('min'), '.2f')}-{_fmt(iv.get('max'), '.2f')} s)", ok_iv))
            periods = r["listing_periods"]
            disc = r["discovery_interval_ms"] / 1000
            ok_disc = bool(periods) and all(abs(p / disc - 1) <= TARGET_INTERVAL for p in periods)
            out.append((f"3,000 idle shards: DescribeStream listings on schedule (every {disc:g} s; periods "
                        f"{', '.join(f'{p:.2f}' for p in periods) or 'none'})", ok_disc))
            out.append((f"3,000 idle shards @ 5 s: {r['cpu_pct']:.1f}% of one core (< {TARGET_CPU_PCT:.0f}%)",
                        r["cpu_pct"] < TARGET_CPU_PCT))
            out.append((f"3,000 idle shards: every shard asked {_fmt(r['startup_s'])} s after start "
                        f"(<= {TARGET_STARTUP_S:.0f} s)", r["startup_s"] is not None and r["startup_s"] <= TARGET_STARTUP_S))
        if r["shards"] == 1000 and r["poll_interval_ms"] == 1000 and not r["max_idle_poll_interval_ms"]:
            out.append((f"1,000 idle shards @ 1 s: {r['cpu_pct']:.1f}% of one core (< {TARGET_CPU_PCT:.0f}%)",
                        r["cpu_pct"] < TARGET_CPU_PCT))
    cu = {r["shards"]: r for r in report["catch_up"]}
    if 1 in cu and len(cu) > 1:
        many = max(cu)
        ratio = (cu[many]["cpu_s"] / cu[many]["records"]) / (cu[1]["cpu_s"] / cu[1]["records"])
        out.append((f"catch-up: CPU per record on {many} shards = {ratio:.2f}× that of 1 shard "
                    f"(<= {TARGET_CATCH_UP}×)", ratio <= TARGET_CATCH_UP))
    return out
