"""The README's layering, checked: ``bridge/`` knows nothing of DynamoDB.

The runtime (worker, lanes, commits, group, offsets, ops) must stay source-agnostic so a
second connector could be added beside ``connectors/dynamodb/``; the composition root
(``bridge_app/``), beside the runtime, is what wires a connector in.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DYNAMODB_LIBRARIES = ("boto3", "botocore", "connectors")


def _imports(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def test_bridge_imports_no_connector_and_no_aws_sdk() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in sorted((ROOT / "bridge").rglob("*.py"))
        for line, module in _imports(path)
        if module.split(".")[0] in DYNAMODB_LIBRARIES
    ]
    assert not offenders, "bridge/ must not know DynamoDB; wire it in bridge_app/:\n" + "\n".join(offenders)


def test_the_dynamodb_config_models_live_in_the_connector() -> None:
    import bridge.config as generic
    import connectors.dynamodb.config as dynamodb

    for name in ("AwsConfig", "TableConfig", "StreamConfig", "SnapshotConfig", "TableDiscoveryConfig"):
        assert not hasattr(generic, name), f"bridge.config.{name} belongs in connectors/dynamodb/config.py"
        assert hasattr(dynamodb, name)
    assert not {"aws", "tables", "table_discovery"} & set(generic.BridgeConfig.model_fields)
    assert issubclass(dynamodb.DynamoDBConfig, generic.BridgeConfig)
