"""One TypedTable per table and process: every shard reader of a table grows one schema."""

from __future__ import annotations

from typing import Any

from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.typed.config import TypedOptions
from connectors.dynamodb.typed.table import TypedTable

__all__ = ["typed_table"]

_TABLES: dict[tuple[str, tuple[KeyField, ...], int], TypedTable] = {}


def typed_table(table: str, key_fields: tuple[KeyField, ...], cfg: TypedOptions, strategy: Any,
                headers: Any) -> TypedTable:
    k = (table, key_fields, id(cfg))
    t = _TABLES.get(k)
    if t is None or t.cfg is not cfg:
        t = _TABLES[k] = TypedTable(table, key_fields, cfg, strategy=strategy, headers=headers)
    return t
