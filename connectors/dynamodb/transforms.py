"""A DynamoDB table's transform chain: where its records keep the operation, the images and
the metadata (``bridge.transforms.Layout``), and one stage per table shared by its readers."""

from __future__ import annotations

from typing import Any

from bridge.transforms import Layout, TransformStage, parse_transforms

__all__ = ["expand", "layout", "table_stage"]

_STAGES: dict[int, tuple[Any, TransformStage]] = {}


def layout(typed: bool) -> Layout:
    """``metadata`` is the envelope's ``source`` block; a typed image grows as attributes come
    (a path to one not seen yet is null until it is), an envelope image is a map."""
    return Layout(op="op", before="before", after="after", table="source.table",
                  source_ts_ms="source.approximate_creation_ms",
                  aliases=(("metadata", "source"),), open=("before", "after") if typed else ())


def expand(transforms: Any) -> Any:
    """The DynamoDB words of the chain in the runtime's: ``filter: {ttl_deletes: drop|only|keep}``
    is a test of the source block's ``ttl_delete`` (DynamoDB's TTL process deleted the item)."""
    if not isinstance(transforms, list):
        return transforms
    out = []
    for entry in transforms:
        options = entry.get("filter") if isinstance(entry, dict) and len(entry) == 1 else None
        if isinstance(options, dict) and "ttl_deletes" in options:
            options = dict(options)
            ttl = options.pop("ttl_deletes")
            if ttl not in ("keep", "drop", "only"):
                raise ValueError(f"filter.ttl_deletes: write keep, drop or only, not {ttl!r}")
            if ttl != "keep":
                where = dict(options.get("where") or {})
                where["metadata.ttl_delete"] = {"eq": ttl == "only"}
                options["where"] = where
            entry = {"filter": options}
        out.append(entry)
    return out


def table_stage(t: Any) -> TransformStage | None:
    """The stage of a table's config (one per config object: the stream and snapshot readers of
    a table share its compiled chains), or None without transforms."""
    if not t.transforms:
        return None
    found = _STAGES.get(id(t))
    if found is None or found[0] is not t:
        where = f"tables[{t.name}].transforms" if getattr(t, "name", None) else "transforms"
        stage = TransformStage(parse_transforms(expand(t.transforms), where), layout(t.value.shape == "typed"), where=where)
        found = _STAGES[id(t)] = (t, stage)
    return found[1]
