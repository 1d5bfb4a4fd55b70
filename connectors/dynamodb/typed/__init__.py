"""Typed values (``tables[].value: {shape: typed}``): Avro records whose fields are the item's
attributes, declared and inferred, evolving under the registry's compatibility rules.

One job per module: ``names`` (attribute → field name), ``types`` (the model), ``numbers``
(exact number text → long/double/decimal), ``infer`` (values grow types), ``avro`` (model →
schema text), ``encode`` (items → Avro binary), ``handle`` (one schema version as the
runtime's RecordSchema), ``table`` (a table's schema over time, conflict policy),
``config`` (``value: {shape: typed, ...}``). docs/schemas.md, "Typed values", is the user's view.
"""

from connectors.dynamodb.typed.config import AttributeDecl, TypedValueConfig
from connectors.dynamodb.typed.handle import TypedSchema
from connectors.dynamodb.typed.table import TypeConflictStop, TypedTable

__all__ = ["AttributeDecl", "TypeConflictStop", "TypedSchema", "TypedTable", "TypedValueConfig"]
