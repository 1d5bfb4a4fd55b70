"""The first schema of a typed table from a sample Scan, before any record is written.

Without it the first version would hold only the attributes of the first record, and every
record after it with one more attribute would register another version: a sample of the
table (``sample_items``, default 1,000) gives the schema most of its fields at once. The
stream and the snapshot go on inferring as they flow.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["sample_items"]


class _Client(Protocol):
    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]: ...


async def sample_items(client: _Client, table: str, n: int) -> list[dict[str, Any]]:
    """Up to ``n`` items of ``table`` (DynamoDB JSON, as Streams images are), in Scan order."""
    items: list[dict[str, Any]] = []
    start: Any = None
    while len(items) < n:
        payload: dict[str, Any] = {"TableName": table, "Limit": n - len(items)}
        if start:
            payload["ExclusiveStartKey"] = start
        page = await client.call("Scan", payload)
        items.extend(page.get("Items") or [])
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    return items[:n]
