"""Dev tools: the local stack (``dev up|down|status``), Apache Kafka on the JDK, the local
Schema Registry and the demo. Installed with the ``dev`` extra; the runtime never imports them."""

from __future__ import annotations

from typing import Any

__all__ = ["add_subcommands"]


def add_subcommands(sub: Any) -> None:
    """The CLI's dev commands: ``dev up|down|status`` and ``demo``."""
    from devtools.demo import add_demo_subcommand
    from devtools.devstack import add_dev_subcommands

    add_dev_subcommands(sub)
    add_demo_subcommand(sub)
