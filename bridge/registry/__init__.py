"""Schema Registry: the bridge's client, Avro compatibility rules, and a local server.

The server is imported lazily: it pulls in confluent_kafka, which the client does not need,
and ``python -m bridge.registry.server`` must not find the module already imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.registry.client import (
    CompatibilityResult,
    RegisteredSchema,
    RegistryClientConfig,
    SchemaRegistryClient,
)
from bridge.registry.compat import (
    CompatibilityLevel,
    InvalidSchemaError,
    can_read,
    canonical_form,
    check,
    parse_schema,
)

if TYPE_CHECKING:
    from bridge.registry.server import RegistryServer, RegistryServerConfig, RegistryStoreError

__all__ = [
    "CompatibilityLevel",
    "CompatibilityResult",
    "InvalidSchemaError",
    "RegisteredSchema",
    "RegistryClientConfig",
    "RegistryServer",
    "RegistryServerConfig",
    "RegistryStoreError",
    "SchemaRegistryClient",
    "can_read",
    "canonical_form",
    "check",
    "parse_schema",
]

_SERVER_NAMES = frozenset({"RegistryServerConfig", "RegistryServer", "RegistryStoreError"})


def __getattr__(name: str) -> Any:
    if name in _SERVER_NAMES:
        from bridge.registry import server

        return getattr(server, name)
    raise AttributeError(f"module 'bridge.registry' has no attribute {name!r}")
