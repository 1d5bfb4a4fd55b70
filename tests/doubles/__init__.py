"""In-process test doubles that speak real wire protocols, for faults the emulators cannot produce."""

from tests.doubles.streams_double import (
    AWS_ERRORS,
    OPERATIONS,
    TRANSPORT_FAULTS,
    CallCounter,
    FaultPlan,
    FaultRule,
    ManualClock,
    PutResult,
    ShardView,
    StreamsDouble,
)

__all__ = [
    "AWS_ERRORS",
    "OPERATIONS",
    "TRANSPORT_FAULTS",
    "CallCounter",
    "FaultPlan",
    "FaultRule",
    "ManualClock",
    "PutResult",
    "ShardView",
    "StreamsDouble",
]
