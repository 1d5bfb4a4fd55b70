"""A producer lane and its helpers: one Kafka producer and the records, dead letters and
commits that ride on it.

``producer_lane`` builds on the helpers, never the other way round: ``accounting`` (what is
in flight; a batch reports to a ``DeliverySink``), ``commits`` and ``dead_letters`` (each
gets the lane as a ``LanePort``, the one interface defined in ``port``).
"""

from bridge.lane.accounting import Bounds, Entry, Progress
from bridge.lane.producer_lane import ProducerLane

__all__ = ["Bounds", "Entry", "ProducerLane", "Progress"]
