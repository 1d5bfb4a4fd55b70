"""The README's layering, checked: ``bridge/`` knows nothing of DynamoDB, of the dev tools
or of what wires it.

The runtime (worker, lanes, commits, group, offsets, ops, serde) must stay source-agnostic so a
second connector could be added beside ``connectors/dynamodb/``; the composition root
(``bridge_app/``), beside the runtime, wires in the connector it finds by entry point
(``bridge.plugin``). The dev tools
(``devtools/``) are their own distribution, which no runtime module may need. Every import
counts, also one inside a function or under ``TYPE_CHECKING``: each is a dependency.

Imports are not enough (the data model once carried DynamoDB JSON through import-clean
modules), so the runtime's code -- names, attributes and string literals; docstrings and
comments may give DynamoDB as the example -- must not speak DynamoDB either.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DYNAMODB_LIBRARIES = ("boto3", "botocore", "connectors")
RUNTIME = ("bridge", "connectors", "bridge_app")  # what `pip install .` installs and runs
# What the runtime package must not import, and why.
NOT_IN_BRIDGE = {
    "connectors": "a connector is wired in by bridge_app/",
    "schemas": "a connector's schemas belong to the connector",
    "devtools": "the dev tools are not installed with the bridge",
    "bridge_app": "the composition root sits above the runtime",
}
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


def _sources(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    """A module or package of this checkout (also a compiled extension, by its source or .so)."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file() or any(
        path.parent.glob(f"{path.name}.*"))


def _import_graph(*packages: str) -> dict[str, set[str]]:
    """module → the modules of ``packages`` it imports (``from a import b``: ``a.b`` if a module)."""
    graph: dict[str, set[str]] = {}
    for path in _sources(*packages):
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    edges.add(sub if _is_module(sub) else node.module)
        name = _module(path)
        graph[name] = {e for e in edges if e.split(".")[0] in packages and e != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


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


def test_bridge_imports_no_connector_schemas_dev_tools_or_composition_root() -> None:
    offenders = []
    for path in _sources("bridge"):
        rel = str(path.relative_to(ROOT))
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top in NOT_IN_BRIDGE:
                offenders.append(f"{rel}:{line}: imports {module} ({NOT_IN_BRIDGE[top]})")
    assert not offenders, "bridge/ is the runtime only:\n" + "\n".join(offenders)


def test_the_runtime_never_imports_the_dev_tools() -> None:
    """The dev commands reach the CLI through an entry point the devtools distribution declares."""
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in _sources(*RUNTIME)
        for line, module in _imports(path)
        if module.split(".")[0] == "devtools"
    ]
    assert not offenders, "`pip install .` carries no devtools/:\n" + "\n".join(offenders)


def test_no_import_cycles_among_runtime_modules() -> None:
    cycles = _cycles(_import_graph(*RUNTIME))
    assert not cycles, "modules importing each other in a circle:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_cycle() -> None:
    """The check above is not vacuous: the circle issue 20 found (lane, accounting, commits)."""
    assert _cycles({"lane": {"accounting", "commits"}, "accounting": {"lane"}, "commits": set()}) == [
        ["accounting", "lane"]]
    assert _import_graph("bridge")["bridge.lane.producer_lane"] >= {"bridge.lane.accounting", "bridge.lane.commits"}


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
        for path in _sources("bridge")
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
    # The top-level schemas/ folder only tells consumers where the formats live (no code, no .avsc).
    assert [p.name for p in (ROOT / "schemas").iterdir()] == ["README.md"], "the .avsc files belong in connectors/dynamodb/schemas/"
    assert not (ROOT / "bridge" / "serde" / "avro.py").exists(), "the AttributeValue encoder is connectors/dynamodb/avro.py"
    assert sorted(p.name for p in (ROOT / "connectors" / "dynamodb" / "schemas").glob("*.avsc")) == [
        "attribute_value.avsc", "envelope.avsc", "key.avsc", "source.avsc"]


def test_the_composition_root_finds_the_connector_by_its_entry_point() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in _sources("bridge_app")
        for line, module in _imports(path)
        if module.split(".")[0] == "connectors"
    ]
    assert not offenders, "bridge_app/ loads connectors through bridge.plugin's entry points:\n" + "\n".join(offenders)
    from bridge.plugin import ConnectorPlugin
    from bridge_app.connector import connector
    from connectors.dynamodb.plugin import PLUGIN

    assert connector("dynamodb") is PLUGIN
    wanted = {name for name in vars(ConnectorPlugin) if not name.startswith("_")} | {"name"}
    assert wanted <= set(dir(PLUGIN)), sorted(wanted - set(dir(PLUGIN)))


def test_the_transform_chain_takes_the_sources_words_from_its_layout() -> None:
    """bridge/transforms names no source's config (``shape: typed``), field property
    (``"attribute"``) or type (AttributeValue): the connector's Layout passes them in."""
    words = re.compile(r"shape: typed|[\"']attribute[\"']|AttributeValue")
    offenders = [f"{path.relative_to(ROOT)}:{n}: {line.strip()[:80]}"
                 for path in sorted((ROOT / "bridge" / "transforms").glob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1) if words.search(line)]
    assert not offenders, "\n".join(offenders)
