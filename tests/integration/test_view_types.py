"""Every StreamViewType flows through the bridge, with the images that view type carries."""

from __future__ import annotations

import pytest

from tests.helpers import InProcessBridge, TopicReader, bridge_config, create_table, normalize, unique

VIEWS = {
    "KEYS_ONLY": (False, False),
    "NEW_IMAGE": (False, True),
    "OLD_IMAGE": (True, False),
    "NEW_AND_OLD_IMAGES": (True, True),
}


@pytest.mark.parametrize("view", list(VIEWS))
def test_view_type(stack, dynamodb, view: str) -> None:
    has_old, has_new = VIEWS[view]
    table = unique(view.lower().replace("_", "-"))
    create_table(dynamodb, table, range_key=None, view_type=view)
    v1 = {"pk": {"S": "k"}, "n": {"N": "1"}, "m": {"M": {"x": {"SS": ["a"]}}}}
    v2 = {"pk": {"S": "k"}, "n": {"N": "2"}}
    dynamodb.put_item(TableName=table, Item=v1)
    dynamodb.put_item(TableName=table, Item=v2)
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": "k"}})

    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, f"ddb.{table}")
    with InProcessBridge(bridge_config(stack, [table])) as bridge:
        events = reader.read_count(4, timeout=60, check=bridge.check)
    reader.close()
    assert [e.op for e in events] == ["c", "u", "d", None]
    assert all(e.key == {"pk": "k"} for e in events)
    images = [(normalize(e.before), normalize(e.after)) for e in events[:3]]
    expected = [(None, v1), (v1, v2), (v2, None)]
    for (before, after), (want_before, want_after) in zip(images, expected, strict=True):
        assert before == (normalize(want_before) if has_old else None)
        assert after == (normalize(want_after) if has_new else None)
