"""The README's layering, checked: ``bridge/`` knows nothing of DynamoDB.

The runtime (worker, lanes, commits, group, offsets, ops, serde) must stay source-agnostic
so a second connector could be added beside ``connectors/dynamodb/``; ``bridge/app.py``, the
composition root, is the one module of ``bridge/`` that wires a connector in. Imports are not
enough (the data model once carried DynamoDB JSON through import-clean modules), so the
runtime's code -- names, attributes and string literals; docstrings and comments may give
DynamoDB as the example -- must not speak DynamoDB either.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSITION_ROOT = Path("bridge/app.py")
DYNAMODB_LIBRARIES = ("boto3", "botocore", "connectors", "schemas")
# The composition root wires the connector in; the command line and the local dev stack are
# not runtime (and leave bridge/ with the house move).
NOT_RUNTIME = {COMPOSITION_ROOT, Path("bridge/cli.py"), Path("bridge/devstack.py"), Path("bridge/devstack_moto.py"),
               Path("bridge/apache_kafka.py")}
VOCABULARY = re.compile(
    r"dynamo|attribute_?value|\bav\b|shard|stream_?arn|(new|old)_?image|sequence_?number|approximate_?creation|"
    r"get_?records|describe_?(table|stream)|key_?fields?\b|keys_only|ttl_delete|export_?arn|projection_?expression",
    re.IGNORECASE,
)
PROJECT_NAME = re.compile(r"dynamodb-kafka-bridge", re.IGNORECASE)


def _imports(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def test_bridge_imports_no_connector_and_no_aws_sdk_outside_the_composition_root() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in sorted((ROOT / "bridge").rglob("*.py"))
        if path.relative_to(ROOT) != COMPOSITION_ROOT
        for line, module in _imports(path)
        if module.split(".")[0] in DYNAMODB_LIBRARIES
    ]
    assert not offenders, "bridge/ must not know DynamoDB; go through bridge/app.py:\n" + "\n".join(offenders)


def test_the_dynamodb_config_models_live_in_the_connector() -> None:
    import bridge.config as generic
    import connectors.dynamodb.config as dynamodb

    for name in ("AwsConfig", "TableConfig", "StreamConfig", "SnapshotConfig", "TableDiscoveryConfig"):
        assert not hasattr(generic, name), f"bridge.config.{name} belongs in connectors/dynamodb/config.py"
        assert hasattr(dynamodb, name)
    assert not {"aws", "tables", "table_discovery"} & set(generic.BridgeConfig.model_fields)
    assert issubclass(dynamodb.DynamoDBConfig, generic.BridgeConfig)


def _docstrings(tree: ast.AST) -> set[int]:
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _words(path: Path) -> list[tuple[int, str]]:
    """The names and string literals a module's code is made of (docstrings left out)."""
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstrings(tree)
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            out.append((line, PROJECT_NAME.sub("", node.value)))
        elif isinstance(node, ast.Name):
            out.append((line, node.id))
        elif isinstance(node, ast.Attribute):
            out.append((line, node.attr))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append((line, node.name))
        elif isinstance(node, ast.arg):
            out.append((line, node.arg))
        elif isinstance(node, ast.alias):
            out.append((line, node.asname or node.name))
    return out


def test_runtime_code_speaks_no_dynamodb() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {m.group(0)!r} in {word[:80]!r}"
        for path in sorted((ROOT / "bridge").rglob("*.py"))
        if path.relative_to(ROOT) not in NOT_RUNTIME
        for line, word in _words(path)
        if (m := VOCABULARY.search(word))
    ]
    assert not offenders, "DynamoDB vocabulary in the runtime; it belongs in connectors/dynamodb/:\n" + "\n".join(
        sorted(set(offenders)))


def test_the_vocabulary_check_sees_what_it_should(tmp_path: Path) -> None:
    """The check itself: it finds the words in code, not in docstrings."""
    sample = tmp_path / "sample.py"
    sample.write_text('"""About DynamoDB shards."""\nsource = {"stream_arn": 1}\nrecord.NewImage\n'
                      'def f(key_fields):\n    """shard"""\n')
    found = {m.group(0).lower() for _, w in _words(sample) if (m := VOCABULARY.search(w))}
    assert found == {"stream_arn", "newimage", "key_fields"}


def test_the_envelope_and_its_schemas_live_in_the_connector() -> None:
    assert not (ROOT / "schemas").exists(), "the .avsc files belong in connectors/dynamodb/schemas/"
    assert not (ROOT / "bridge" / "serde" / "avro.py").exists(), "the AttributeValue encoder is connectors/dynamodb/avro.py"
    assert sorted(p.name for p in (ROOT / "connectors" / "dynamodb" / "schemas").glob("*.avsc")) == [
        "attribute_value.avsc", "envelope.avsc", "key.avsc", "source.avsc"]
