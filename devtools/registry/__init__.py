"""The local Schema Registry (Confluent's REST subset) and its Avro compatibility rules.

The server is imported lazily: it pulls in confluent_kafka, which the rules do not need,
and ``python -m devtools.registry.server`` must not find the module already imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devtools.registry.compat import (
    CompatibilityLevel,
    InvalidSchemaError,
    can_read,
    canonical_form,
    check,
    parse_schema,
)

if TYPE_CHECKING:
    from devtools.registry.server import RegistryServer, RegistryServerConfig, RegistryStoreError

__all__ = [
    "CompatibilityLevel",
    "InvalidSchemaError",
    "RegistryServer",
    "RegistryServerConfig",
    "RegistryStoreError",
    "can_read",
    "canonical_form",
    "check",
    "parse_schema",
]

_SERVER_NAMES = frozenset({"RegistryServerConfig", "RegistryServer", "RegistryStoreError"})


def __getattr__(name: str) -> Any:
    if name in _SERVER_NAMES:
        from devtools.registry import server

        return getattr(server, name)
    raise AttributeError(f"module 'devtools.registry' has no attribute {name!r}")
