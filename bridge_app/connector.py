"""The connector plugin this bridge runs, found by its entry point (``bridge.plugin``)."""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from bridge.errors import StartupError
from bridge.plugin import ENTRY_POINT_GROUP, ConnectorPlugin

__all__ = ["DEFAULT_CONNECTOR", "connector"]

DEFAULT_CONNECTOR = "dynamodb"


@functools.cache
def connector(name: str = DEFAULT_CONNECTOR) -> ConnectorPlugin:
    found = {e.name: e for e in entry_points(group=ENTRY_POINT_GROUP)}
    entry = found.get(name)
    if entry is None:
        raise StartupError(
            f"no connector {name!r} is installed (entry points {ENTRY_POINT_GROUP!r}: "
            f"{', '.join(sorted(found)) or 'none'}); install the bridge with pip install ."
        )
    plugin: ConnectorPlugin = entry.load()
    return plugin
