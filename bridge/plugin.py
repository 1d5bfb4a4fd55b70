"""How a connector plugs in: what the composition root asks of it, found by entry point.

A connector distribution declares ``[project.entry-points."ddb_kafka_bridge.connectors"]``
``<name> = "<module>:<object>"``; the object is a ``ConnectorPlugin``. The runtime never
imports a connector: the composition root (``bridge_app``) loads the plugin and hands the
runtime what it builds (``SourceConnector`` objects, an offset check, a framing shortcut).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bridge.config import BridgeConfig
from bridge.serde.formats import TopicFormats
from bridge.task import RecordSchema, SourceConnector

__all__ = ["ENTRY_POINT_GROUP", "ConnectorPlugin", "Sources"]

ENTRY_POINT_GROUP = "ddb_kafka_bridge.connectors"


@dataclass
class Sources:
    """A connector's sources for one run, built and checked against the source system."""

    connectors: list[SourceConnector]
    # Build them again (the REST API's restart of a connector).
    remake: Callable[[], list[SourceConnector]]
    # Why a stored offset cannot be resumed from (None: it can), for the offsets topic at start.
    check_offset: Callable[[Mapping[str, Any], Any], str | None]
    # Frames a batch the connector already encoded, in one call (see RecordSerializer), or None.
    frame_encoded: Callable[..., Any] | None = None
    # (log level, line) for the start-up log: e.g. which encoder this process uses.
    startup_line: tuple[int, str] | None = None
    # (topic, schema handle) of every source as known at start (for the auto_register: false check).
    schemas: Sequence[tuple[str, RecordSchema]] = field(default_factory=list)
    # Each topic's key and value formats (None: Avro for all).
    formats: Callable[[str], TopicFormats] | None = None


class ConnectorPlugin(Protocol):
    name: str

    def load_config(self, path: str | Path) -> BridgeConfig:
        """The config file, validated against the connector's model (a ``BridgeConfig``)."""

    def parse_config(self, data: Any, source: str = "config") -> BridgeConfig:
        """Config data (as the file's YAML gives it, or built in code), validated likewise."""

    def open(
        self, cfg: Any, *, create_topic: Callable[[str], Awaitable[None]]
    ) -> AbstractAsyncContextManager[Sources]:
        """Connect to the source system and build the sources; they live until the context
        ends. Fails with ``ConfigError`` when the source system refuses the start.
        ``create_topic``: for a source found while running (its topic is not in the config)."""

    def check_connect(self, cfg: Any) -> Any:
        """``validate --connect``: a report with ``lines()`` and ``problems``."""

    def offset_problem(self, cfg: Any, partition: dict[str, Any], offset: dict[str, Any] | None) -> str | None:
        """``offsets import``: why the start would refuse this offset, or None."""

    def verify_source(self, cfg: Any, name: str, **kw: Any) -> Any:
        """``verify``: a source's current contents against its topic (a report with ``clean``)."""

    def tail_view(self, value: dict[str, Any]) -> dict[str, Any]:
        """``tail``: a decoded value as the connector shows it (JSON-able after ``to_jsonable``)."""
