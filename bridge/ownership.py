"""Which source partitions a worker reads, and on which producer lane: its ownership.

The worker asks an ``Ownership`` it is given, instead of having its methods replaced while
it runs: a worker alone owns everything (``OwnEverything``); in a group, membership keeps an
ownership object up to date with the coordination partitions it was assigned
(``bridge.group.GroupOwnership``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["DEFAULT_LANE", "OwnEverything", "Ownership"]

DEFAULT_LANE = "main"


class Ownership(Protocol):
    def owns(self, partition: Mapping[str, Any]) -> bool:
        """May this worker read the source partition (start its task, write its offset)?"""

    def route(self, partition: Mapping[str, Any]) -> str:
        """The name of the producer lane that carries the partition's records."""

    def held(self) -> bool:
        """Must reading and offset writes wait? (at-least-once in a group: the process was
        paused long enough to have lost its partitions; see ``bridge.pause_guard``)"""

    def ready(self) -> bool:
        """Does the worker know its share of the work? (in a group: its first assignment is
        done); until then "every unit read to its end" says nothing (run --until-caught-up)."""


class OwnEverything:
    """A worker alone: every partition, on the one default lane, never held, always ready."""

    def owns(self, partition: Mapping[str, Any]) -> bool:
        return True

    def route(self, partition: Mapping[str, Any]) -> str:
        return DEFAULT_LANE

    def held(self) -> bool:
        return False

    def ready(self) -> bool:
        return True
