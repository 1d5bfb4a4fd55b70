"""What ``tail`` prints for each value shape: an envelope's images as DynamoDB JSON, a typed
envelope's images as their fields, a typed after image published alone as ``value``; typed
decimals as exact text."""

from __future__ import annotations

import json
from decimal import Decimal

from bridge.ops.decode import to_jsonable
from connectors.dynamodb.items import tail_view

AV = dict.fromkeys(("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"))
SOURCE = {"table": "t"}


def test_envelope_images_are_dynamodb_json() -> None:
    value = {"op": "c", "before": None, "after": {"pk": AV | {"S": "a"}, "n": AV | {"N": "1.50"}},
             "source": SOURCE, "ts_ms": 1}
    assert tail_view(value)["after"] == {"pk": {"S": "a"}, "n": {"N": "1.50"}}


def test_typed_images_and_an_after_image_alone_print_as_fields() -> None:
    after = {"pk": "a", "total": Decimal("12345678901234567890123456789012345678"), "m": {"x": 1}}
    typed = {"op": "u", "before": None, "after": after, "source": SOURCE, "ts_ms": 1}
    line = json.loads(json.dumps(to_jsonable(tail_view(typed))))
    assert line["after"] == {"pk": "a", "total": "12345678901234567890123456789012345678", "m": {"x": 1}}
    alone = json.loads(json.dumps(to_jsonable(tail_view(after))))
    assert alone == {"value": {"pk": "a", "total": "12345678901234567890123456789012345678", "m": {"x": 1}}}
