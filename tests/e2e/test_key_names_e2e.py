"""Tables whose key attribute names sanitise to the same Avro name are bridged like any other.

Before issue 11 they stopped at the first record with a traceback. Through the real
stack: moto table → bridge process → broker → confluent-kafka's AvroDeserializer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.dynamodb.schemas import avro_field_names
from tests.helpers import BridgeProcess, TopicReader, bridge_config, create_table, unique

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("hash_key", "range_key"),
    [(("order-id", "S"), ("order_id", "N")), (("ü", "S"), ("ö", "S")), (("1st", "N"), ("_1st", "S"))],
    ids=["dash-vs-underscore", "umlauts", "leading-digit"],
)
def test_clashing_key_names(stack: Any, dynamodb: Any, tmp_path: Path, hash_key: tuple[str, str],
                            range_key: tuple[str, str]) -> None:
    table = unique("names")
    create_table(dynamodb, table, hash_key=hash_key, range_key=range_key)
    items = []
    for i in range(3):
        item = {hash_key[0]: {hash_key[1]: str(10 + i) if hash_key[1] == "N" else f"h{i}"},
                range_key[0]: {range_key[1]: str(i) if range_key[1] == "N" else f"r{i}"},
                "v": {"N": str(i)}}
        dynamodb.put_item(TableName=table, Item=item)
        items.append(item)
    cfg = bridge_config(stack, [table])
    bridge = BridgeProcess.write(tmp_path, cfg).start()
    reader = TopicReader(stack.kafka_bootstrap, stack.registry_url, f"ddb.{table}")
    try:
        events = reader.read_count(3, 90, check=bridge.check)
    finally:
        reader.close()
        code = bridge.stop()
    assert code == 0, bridge.log()[-3000:]
    assert "Traceback" not in bridge.log()
    fields = avro_field_names([hash_key[0], range_key[0]])
    assert len(set(fields)) == 2
    got = [(e.key[fields[0]], e.key[fields[1]]) for e in events]
    want = [(i[hash_key[0]][hash_key[1]], i[range_key[0]][range_key[1]]) for i in items]
    assert sorted(got) == sorted(want)
    assert all(e.op == "c" for e in events)
