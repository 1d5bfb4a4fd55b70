"""In-process test doubles that speak real wire protocols, for faults the emulators cannot produce."""

from tests.doubles.streams_double import (
    AWS_ERRORS,
    OPERATIONS,
    TABLE_OPERATIONS,
    TRANSPORT_FAULTS,
    CallCounter,
    FaultPlan,
    FaultRule,
    ManualClock,
    PutResult,
    ShardView,
    StreamsDouble,
)
from tests.doubles.tcp_proxy import TcpProxy

__all__ = [
    "AWS_ERRORS",
    "OPERATIONS",
    "TABLE_OPERATIONS",
    "TRANSPORT_FAULTS",
    "CallCounter",
    "FaultPlan",
    "FaultRule",
    "ManualClock",
    "PutResult",
    "ShardView",
    "StreamsDouble",
    "TcpProxy",
]
