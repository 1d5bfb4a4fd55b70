"""One Apache Kafka version everywhere (issue 18): the compose file, the testcontainers stack
and every version the docs quote are the one the local stack runs and the tests prove."""

from __future__ import annotations

import os
import re
from pathlib import Path

from devtools.apache_kafka import KAFKA_VERSION
from tests.helpers import ROOT

# "apache/kafka:3.9.0" (an image) or "Apache Kafka 3.9.0" / "Kafka 3.9.0" (prose); not
# "librdkafka 2.16.0" (lower case) nor "kafka_2.13" (Scala's version in a Maven artifact).
MENTION = re.compile(r"apache/kafka:(\S+?)[\"'\s]|\bKafka (\d+\.\d+(?:\.\d+)?)\b")
SKIP_DIRS = {".git", ".venv", "node_modules", "build", "dist", "__pycache__", ".devstack"}
TEXT = {".md", ".py", ".yml", ".yaml", ".toml", ".txt", ".cfg", ""}


def _files() -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        out += [Path(dirpath) / f for f in filenames if Path(f).suffix in TEXT or f == "Dockerfile"]
    return out


def test_one_apache_kafka_version_everywhere() -> None:
    seen: dict[str, list[str]] = {}
    for path in _files():
        if path == Path(__file__):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for m in MENTION.finditer(text):
            version = m.group(1) or m.group(2)
            line = text.count("\n", 0, m.start()) + 1
            seen.setdefault(version, []).append(f"{path.relative_to(ROOT)}:{line}")
    others = {v: where for v, where in seen.items() if v not in (KAFKA_VERSION, "{KAFKA_VERSION}")}
    assert not others, f"Apache Kafka {KAFKA_VERSION} is the version the stack runs; also found: {others}"
    compose = (ROOT / "docker" / "docker-compose.yml").read_text()
    assert f"image: apache/kafka:{KAFKA_VERSION}\n" in compose
