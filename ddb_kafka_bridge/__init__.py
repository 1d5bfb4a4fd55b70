"""dynamodb-kafka-bridge as a Python library: the public names, all of them (docs/transforms.md).

    from ddb_kafka_bridge import Bridge

    bridge = Bridge("bridge.yaml")  # or the same structure as a dict
    bridge.transform("orders", select=["op as event_name", "after.orderId as order_id"])

    @bridge.transform("orders")
    def mask(record: Record) -> Record: ...

    bridge.run()

Everything outside this module is private and may change between versions.
"""

from bridge.errors import BridgeError, ConfigError, ConversionError
from bridge.transforms.record import Record
from bridge_app.api import Bridge

__all__ = ["Bridge", "BridgeError", "ConfigError", "ConversionError", "Record"]
