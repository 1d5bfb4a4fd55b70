"""``pip install .`` without extras: the bridge installs and runs, and carries no dev tools.

The dev tools (devtools/: the local stack, Apache Kafka on the JDK, the local registry, the
demo) are their own distribution; the bridge's wheel must neither contain nor need them, and
the CLI's dev commands must say in one line what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env | {"PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(venv)}


def test_pip_install_without_extras_runs_the_bridge_without_the_dev_tools(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a clean copy: no build artefacts or egg-info of the developer's install
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", ".devstack", "*.egg-info", "__pycache__", "*.so", ".pytest_cache",
        ".hypothesis", "test-artifacts", ".mypy_cache", ".ruff_cache"))
    venv = tmp_path / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True, timeout=120)
    env = _env(venv)
    python = str(venv / "bin" / "python")
    work = tmp_path / "elsewhere"  # not the checkout: nothing importable from the current directory
    work.mkdir()

    installed = subprocess.run([python, "-m", "pip", "install", "-q", str(src)], cwd=work, env=env,
                               capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), cwd=work, env=env, capture_output=True, text=True, timeout=120)

    files = run(python, "-m", "pip", "show", "-f", "dynamodb-kafka-bridge")
    assert files.returncode == 0, files.stderr
    listed = [line.strip() for line in files.stdout.splitlines() if line.startswith("  ")]
    assert any(f.startswith("bridge/worker.py") for f in listed) and any(f.startswith("bridge_app/") for f in listed)
    assert not [f for f in listed if f.startswith("devtools/")], "the wheel carries the dev tools"
    gone = run(python, "-c", "import devtools")
    assert gone.returncode == 1 and "No module named 'devtools'" in gone.stderr, gone.stderr

    helped = run("ddb-kafka-bridge", "--help")
    assert helped.returncode == 0, helped.stderr
    assert all(command in helped.stdout for command in ("run", "validate", "verify", "offsets", "dev", "demo"))

    config = work / "bridge.yaml"
    config.write_text(yaml.safe_dump({
        "name": "plain",
        "kafka": {"bootstrap.servers": "localhost:9092"},
        "schema_registry": {"url": "http://localhost:8081"},
        "aws": {"region": "us-east-1"},
        "tables": [{"name": "orders"}],
    }))
    validated = run("ddb-kafka-bridge", "validate", "-c", str(config))
    assert validated.returncode == 0 and validated.stdout.strip() == f"{config}: ok", validated.stdout + validated.stderr
    as_module = run(python, "-m", "bridge_app", "validate", "-c", str(config))
    assert as_module.returncode == 0, as_module.stderr
    # The Python API's one public module, and its config check, installed too.
    api = run(python, "-c", "import ddb_kafka_bridge as b; print(sorted(b.__all__)); "
                            f"print(b.Bridge({str(config)!r}).config().name)")
    assert api.returncode == 0, api.stderr
    assert api.stdout.splitlines() == ["['Bridge', 'BridgeError', 'ConfigError', 'ConversionError', 'Record']",
                                       "plain"], api.stdout

    for argv in (("dev", "up", "--dir", str(work / "stack")), ("demo",)):
        refused = run("ddb-kafka-bridge", *argv)
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 2 and len(lines) == 1, refused.stderr
        assert f"'{argv[0]}' needs the dev tools" in lines[0] and "make install" in lines[0], lines[0]
        assert not (work / "stack").exists()
