"""Schema Registry: the bridge's client.

The local registry server and its compatibility rules are dev tools (``devtools.registry``).
"""

from __future__ import annotations

from bridge.registry.client import (
    CompatibilityResult,
    RegisteredSchema,
    RegistryClientConfig,
    SchemaRegistryClient,
)

__all__ = [
    "CompatibilityResult",
    "RegisteredSchema",
    "RegistryClientConfig",
    "SchemaRegistryClient",
]
