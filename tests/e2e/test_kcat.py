"""Third-party tools on the Apache Kafka stack: Debian's ``kcat`` (librdkafka 2.0.2, which
cannot even list tansu's topics) lists and consumes what the bridge wrote, as the
README's recipe shows.

Where kcat is not installed the test is reported as not run, with the reason; CI installs
it and sets ``BRIDGE_REQUIRE_APACHE_KAFKA``, which turns that into a failure.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import BridgeProcess, TopicReader, bridge_config, create_table, dynamodb_client, not_run, unique

pytestmark = pytest.mark.slow


def _kcat() -> str:
    path = shutil.which("kcat")
    if path:
        return path
    not_run("kcat not installed (Debian: apt-get install kcat)", "BRIDGE_REQUIRE_APACHE_KAFKA")


def test_kcat_lists_and_consumes_the_bridges_topic(kafka_stack, tmp_path: Path) -> None:
    kcat = _kcat()
    ddb = dynamodb_client(kafka_stack.dynamodb_endpoint)
    table = unique("kcat")
    create_table(ddb, table)
    for i in range(5):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"order#{i}"}, "sk": {"N": str(i)}, "status": {"S": "NEW"}})
    ddb.delete_item(TableName=table, Key={"pk": {"S": "order#0"}, "sk": {"N": "0"}})
    expected = 5 + 2  # five inserts, one delete and its tombstone
    topic = f"ddb.{table}"

    bridge = BridgeProcess.write(tmp_path, bridge_config(kafka_stack, [table])).start()
    reader = TopicReader(kafka_stack.kafka_bootstrap, kafka_stack.registry_url, topic)
    try:
        reader.read_count(expected, timeout=90, check=bridge.check)
    finally:
        assert bridge.stop() == 0, bridge.log()[-3000:]
        reader.close()

    boot = kafka_stack.kafka_bootstrap
    listing = subprocess.run([kcat, "-b", boot, "-L", "-t", topic], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert f'topic "{topic}" with 1 partitions' in listing.stdout, listing.stdout

    # One line per record: partition, offset, value size (-1: a tombstone), Confluent magic byte.
    consumed = subprocess.run(
        [kcat, "-b", boot, "-C", "-t", topic, "-e", "-q", "-f", r"%p %o %S\n"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert consumed.returncode == 0, consumed.stderr
    lines = consumed.stdout.split("\n")[:-1]
    assert len(lines) == expected, consumed.stdout
    sizes = [int(line.split()[2]) for line in lines]
    assert sizes[-1] == -1 and all(s > 5 for s in sizes[:-1]), sizes
    raw = subprocess.run(
        [kcat, "-b", boot, "-C", "-t", topic, "-e", "-q", "-c", "1", "-f", "%s"], capture_output=True, timeout=60
    )
    assert raw.stdout[:1] == b"\x00", "values are in Confluent wire format (magic byte 0)"
