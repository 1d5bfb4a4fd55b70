"""The README's "Operating it" command block runs as written, against a real table."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT, bridge_config, bridge_env, create_table, unique

pytestmark = pytest.mark.slow


def operating_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"Operating it .*?```sh\n(.*?)```", text, re.S)
    assert m, "README lost its 'Operating it' command block"
    return [ln for ln in m.group(1).splitlines() if ln.strip()]


def test_readme_operating_block_runs_as_written(stack: Any, dynamodb: Any, tmp_path: Path) -> None:
    table = unique("readme")
    create_table(dynamodb, table)
    for i in range(5):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}})
    (tmp_path / "bridge.yaml").write_text(yaml.safe_dump(bridge_config(stack, [table])))
    lines = operating_block()
    assert len(lines) >= 6
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "ddb-kafka-bridge"
        proc = subprocess.run([sys.executable, "-m", "bridge.cli", *argv[1:]], cwd=tmp_path, env=bridge_env(),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{line}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
