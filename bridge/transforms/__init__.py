"""Single-message transforms on the schema-neutral record (docs/transforms.md)."""

from bridge.transforms.chain import Layout, matches
from bridge.transforms.record import Record
from bridge.transforms.spec import Spec, parse_transforms
from bridge.transforms.stage import DROP, TransformStage

__all__ = ["DROP", "Layout", "Record", "Spec", "TransformStage", "matches", "parse_transforms"]
