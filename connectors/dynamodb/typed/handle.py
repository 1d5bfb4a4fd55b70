"""One version of a table's typed schemas as the runtime's ``RecordSchema`` handle.

Immutable, as the seam asks (bridge/serde/converter.py): a table that gains an attribute
gets a new handle, and the runtime registers it before the first record that carries it.
Records of the typed shape carry what the envelope shape's do: ``key`` in DynamoDB JSON,
``value`` a ``Change(op, before, after)`` with the images in DynamoDB JSON, ``position`` the
source block (the envelope's ``source`` field).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.errors import ConversionError
from bridge.serde.converter import KafkaHeaders
from bridge.task import SourceRecord
from connectors.dynamodb.avro import encode_key, encode_source
from connectors.dynamodb.dead_letter import change_dead_letter_value
from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.typed import avro
from connectors.dynamodb.typed.binary import long_bytes, string_bytes
from connectors.dynamodb.typed.encode import encode_record
from connectors.dynamodb.typed.names import namespace
from connectors.dynamodb.typed.plan import compile_plan, compile_stream_plan
from connectors.dynamodb.typed.types import Rec

__all__ = ["TypedSchema"]

_NULL, _SOME = b"\x00", b"\x02"


@dataclass(frozen=True, eq=False)
class TypedSchema:
    """``rec`` (the item record) of ``table`` as key and value schema text and writers."""

    rec: Rec
    table: str
    key_fields: tuple[KeyField, ...]
    image: str = "envelope"  # or "after": the after image alone
    strategy: Any = "TopicNameStrategy"
    headers: Callable[[SourceRecord], KafkaHeaders] | None = None
    key_schema: str = field(init=False)
    value_schema: str = field(init=False)

    plan: Any = field(init=False)  # the C writer's plan of ``rec`` (None: the Python writer only)
    # the C transcoder's plan (GetRecords JSON → this version's values in one pass); None: not built
    stream_plan: Any = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan", compile_plan(self.rec))
        object.__setattr__(self, "stream_plan", compile_stream_plan(self.rec, self.image))
        ns = namespace(self.table)
        object.__setattr__(self, "key_schema", avro.dumps(avro.key_schema(self.key_fields, ns)))
        object.__setattr__(self, "value_schema", avro.dumps(avro.value_schema(self.rec, ns, self.image)))

    def encode_key(self, record: Any) -> bytes:
        return encode_key(self.key_fields, record.key)  # the envelope shape's key bytes

    def encode_value(self, record: Any) -> bytes:
        v = record.value
        return self.encode_change(v.op, v.before, v.after, record.position, record.ts_ms)

    def encode_change(self, op: str, before: Any, after: Any, source: Any, ts_ms: int) -> bytes:
        """The value's body; TypeConflict or UnknownAttribute (both ConversionErrors) when an
        image does not fit this version."""
        out: list[bytes] = []
        if self.image == "after":
            if after is None:
                raise ConversionError("image: after: a record without an after image has no value (a delete is "
                                      "written as its tombstone only)")
            self._image(after, out, "NewImage")
            return b"".join(out)
        out.append(string_bytes(op))
        for image, where in ((before, "OldImage"), (after, "NewImage")):
            if image is None:
                out.append(_NULL)
            else:
                out.append(_SOME)
                self._image(image, out, where)
        out.append(encode_source(source))
        out.append(long_bytes(ts_ms))
        return b"".join(out)

    def _image(self, item: Any, out: list[bytes], where: str) -> None:
        plan = self.plan
        if plan is not None:
            body = plan.encode(item)
            if body is not None:
                out.append(body)
                return
        try:
            encode_record(self.rec, item, out)
        except ConversionError as e:
            e.args = (f"{where}: {e}",)
            raise

    def dead_letter_value(self, record: Any) -> Any:
        return change_dead_letter_value(record)
