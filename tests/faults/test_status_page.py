"""The status page in a real headless browser (Debian's ``chromium``): a stream with a split
and a merge is drawn as a tree (edges parent → child, open and closed shards, who reads
what, lag), the page loads its data with the bearer token from its URL fragment, and a
screenshot is kept as a test artifact (``$BRIDGE_TEST_ARTIFACTS``, default ``test-artifacts/``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.doubles.streams_double import StreamsDouble
from tests.faults.support import Bridges, ChangeLog, ChangeReader, double_config, free_port, topic_of, wait_until
from tests.faults.test_operations import call
from tests.helpers import ROOT, not_run

pytestmark = pytest.mark.slow

REQUIRE_BROWSER = "BRIDGE_REQUIRE_BROWSER"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    not_run("status page test: no chromium (apt-get install chromium)", REQUIRE_BROWSER)


class _Dom(HTMLParser):
    """Elements with their attributes and text, enough to assert what the page shows."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self._stack: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a))

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def browse(browser: str, url: str, *extra: str) -> str:
    proc = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--virtual-time-budget=6000", "--window-size=1500,1000", *extra, url],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_status_page_draws_a_split_and_a_merge(
    stack: Any, make_double: Callable[..., StreamsDouble], bridges: Bridges,
    make_reader: Callable[[str, str, str], ChangeReader],
) -> None:
    browser = chromium()
    double = make_double(shards=2)
    s0, s1 = double.open_shard_ids()
    log = ChangeLog(double)
    log.write_many(20, keys=8)
    c1, c2 = double.split(s0)
    merged = double.merge(c2, s1)
    log.write_many(30, keys=8)
    port, token = free_port(), "page-token"
    cfg = double_config(stack, double, rest={"port": port, "bearer_token": token})
    bridges.start(cfg)
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    reader.wait_for_log(log)
    base = f"http://127.0.0.1:{port}"
    name = cfg["name"]
    wait_until(lambda: {g["id"]: g for g in call(base, "GET", f"/connectors/{name}/positions", token)[1]["graphs"][0]
                        ["shards"]}.get(merged, {}).get("reading"), 30, "the merged shard to be read")

    dom = _Dom()
    dom.feed(browse(browser, f"{base}/status#token={token}", "--dump-dom"))
    (svg,) = dom.find("svg", data_table=double.table)
    assert int(svg["width"]) > 0
    shards = {a["data-shard"]: a for a in dom.find("g") if "data-shard" in a}
    assert set(shards) == {s0, s1, c1, c2, merged}
    edges = {(a["data-from"], a["data-to"]) for a in dom.find("path") if "data-from" in a}
    assert edges == {(s0, c1), (s0, c2), (c2, merged), (s1, merged)}  # the split's two, the merge's two
    assert {sid for sid, a in shards.items() if a["data-closed"] == "true"} == {s0, s1, c2}
    assert shards[s0]["data-state"] == shards[s1]["data-state"] == shards[c2]["data-state"] == "finished"
    assert shards[c1]["data-state"] == shards[merged]["data-state"] == "running"
    assert "reading" in shards[merged]["class"] and "open" in shards[merged]["class"]
    text = " ".join(dom.text)
    assert name in text and "RUNNING" in text and "5 shards" in text
    assert "lag 0 ms" in text  # the open shards are caught up
    tasks = {a["data-task"] for a in dom.find("tr") if "data-task" in a}
    assert {f"{double.table}:{c1}", f"{double.table}:{merged}"} <= tasks

    # Without the token the page says why it shows nothing.
    bare = _Dom()
    bare.feed(browse(browser, f"{base}/status", "--dump-dom"))
    assert any("cannot load status" in t and "bearer token" in t for t in bare.text)

    artifacts = Path(os.environ.get("BRIDGE_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "status-page.png"
    shot.unlink(missing_ok=True)
    browse(browser, f"{base}/status#token={token}", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000
