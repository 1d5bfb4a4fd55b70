"""A table's typed schema as it evolves: absorb each record's images, hand out the handle.

One object per table and process. ``absorb`` runs as records are read (on the event loop:
pure CPU, dict look-ups for a steady table) and returns the handle the record is written
with; a new attribute, a new key in a nested map, or a widened field makes a new handle,
which the runtime registers off the event loop before the first record carrying it. A
steady table keeps returning the same handle object: nothing is registered per record.

Conflict policy (``on_conflict``): ``dead-letter`` leaves the schema as it is, so the record
fails to encode and goes to the dead-letter topic with the reason (the attribute, the value,
the field's type) in ``__connect.errors.exception.message``; ``widen`` grows the field to a
union; ``stop`` raises ``TypeConflictStop``, one line, and the reader stops before the record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from bridge.errors import ConnectorError, ConversionError
from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.typed.config import TypedOptions
from connectors.dynamodb.typed.handle import TypedSchema
from connectors.dynamodb.typed.infer import TypeConflict, absorb_item
from connectors.dynamodb.typed.types import Rec

__all__ = ["TypeConflictStop", "TypedTable"]


class TypeConflictStop(ConnectorError):
    """``on_conflict: stop`` met a value that does not fit its field."""


class TypedTable:
    def __init__(
        self, table: str, key_fields: tuple[KeyField, ...], cfg: TypedOptions, *,
        strategy: Any = "TopicNameStrategy", headers: Callable[[Any], Any] | None = None,
    ) -> None:
        self.table, self.cfg = table, cfg
        self._make = lambda rec: TypedSchema(rec, table, key_fields, cfg.image, strategy, headers)
        self.handle = self._make(cfg.declared())  # grown from the declared attributes
        self._lock = threading.Lock()
        self.sampled = False  # the first schema was grown from a sample Scan (streams.py)

    @property
    def rec(self) -> Rec:
        return self.handle.rec

    def absorb(self, before: Any, after: Any) -> TypedSchema:
        """The handle to write a record with these images (a new one when they grow the schema).

        Under a lock: snapshot pages are decoded on several threads, and two of them growing
        the schema at once would each drop the other's new field."""
        with self._lock:
            return self._absorb(before, after)

    def _absorb(self, before: Any, after: Any) -> TypedSchema:
        rec = self.handle.rec
        grown = rec
        widen = self.cfg.on_conflict == "widen"
        try:
            for image in (before, after):
                if type(image) is dict:
                    grown = absorb_item(grown, image, self.cfg.maps, widen)
        except TypeConflict as e:
            if self.cfg.on_conflict == "stop":
                raise TypeConflictStop(
                    f"table {self.table}: {e}; on_conflict: stop. Declare the attribute's type in "
                    f"value.attributes, or set value.on_conflict to widen or dead-letter") from None
            grown = self._around_conflicts(rec, (before, after))
        except ConversionError:  # not DynamoDB data: encoding fails the same way (dead-letter topic)
            grown = self._around_conflicts(rec, (before, after))
        if grown is not rec:
            self.handle = self._make(grown)
        return self.handle

    def write(self, op: str, before: Any, after: Any, source: Any, ts_ms: int) -> tuple[TypedSchema, bytes | None]:
        """(handle, value body) of one change: encoded with the current version when it fits
        (a steady table: one pass, nothing else), else after the schema grew; body None when
        it still does not fit (the conflict policy kept the schema), so the runtime's
        ``encode_value`` raises the reason and the record goes to the dead-letter topic."""
        handle = self.handle
        try:
            return handle, handle.encode_change(op, before, after, source, ts_ms)
        except ConversionError:
            pass
        handle = self.absorb(before, after)
        try:
            return handle, handle.encode_change(op, before, after, source, ts_ms)
        except ConversionError:
            return handle, None

    def _around_conflicts(self, rec: Rec, images: tuple[Any, Any]) -> Rec:
        """dead-letter: the record's other attributes still grow the schema (so that its
        encoding fails on the conflict, the reason its dead-letter headers give)."""
        for image in images:
            if type(image) is dict:
                for name, av in image.items():
                    try:
                        rec = absorb_item(rec, {name: av}, self.cfg.maps, self.cfg.on_conflict == "widen")
                    except ConversionError:
                        pass
        return rec

    def resume(self, registered: Rec) -> TypedSchema:
        """Start from the subject's latest version (a restart): its fields, in its order, with
        the declarations' types where a declared attribute is not in it yet at the end."""
        known = {f.attribute for f in registered.fields}
        extra = tuple(f for f in self.handle.rec.fields if f.attribute not in known)
        self.handle = self._make(Rec(registered.fields + extra))
        return self.handle

    def absorb_items(self, items: Iterable[Any]) -> TypedSchema:
        """Grow from items seen alone (a sample Scan); conflicts among them follow the policy."""
        for item in items:
            self.absorb(None, item)
        return self.handle
