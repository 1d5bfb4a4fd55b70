"""A table with a binary hash key on moto: the consumer reads the items' own key bytes
(issue 18, papercut).

moto base64-encodes binary attributes twice in a stream record's ``Keys`` (``QVA4PQ==`` for an
image's ``AP8=``). The bridge checks ``Keys`` against the image and takes the image's key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.faults.support import free_port, scrape
from tests.helpers import BridgeProcess, TopicReader, bridge_config, create_table, dynamodb_client, unique

pytestmark = pytest.mark.slow

KEYS = [b"\x00\xff", b"AP8=", b"\x01", bytes(range(40))]


def test_binary_keys_on_moto_are_the_items_own(stack: Any, tmp_path: Path) -> None:
    ddb = dynamodb_client(stack.dynamodb_endpoint)
    table = unique("binkey")
    create_table(ddb, table, hash_key=("pk", "B"), range_key=None)
    for k in KEYS:
        ddb.put_item(TableName=table, Item={"pk": {"B": k}, "v": {"S": "1"}})
    ddb.put_item(TableName=table, Item={"pk": {"B": KEYS[0]}, "v": {"S": "2"}})  # MODIFY
    ddb.delete_item(TableName=table, Key={"pk": {"B": KEYS[1]}})  # REMOVE, then its tombstone
    cfg = bridge_config(stack, [table], metrics={"port": free_port(), "host": "127.0.0.1"})
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, f"ddb.{table}")
    try:
        events = reader.read_count(len(KEYS) + 3, timeout=90, check=bridge.check)
        reader.drain(1.0)
        got = [(e.op, e.key["pk"]) for e in events]
        assert got == [("c", k) for k in KEYS] + [("u", KEYS[0]), ("d", KEYS[1]), (None, KEYS[1])], got
        # the key in the value's images is the same bytes as the record key
        assert all((e.after or e.before)["pk"] == {"B": e.key["pk"]} for e in events if e.value is not None)
        log = bridge.log()
        assert log.count("differs from its image's") == 1, log[-3000:]
        series = scrape(cfg) or {}
        assert series.get("bridge_stream_keys_from_image_total") == len(KEYS) + 2, series
    finally:
        reader.close()
        assert bridge.stop() == 0, bridge.log()[-3000:]
