"""KRaft cluster ids for the local Apache Kafka: never one a command line reads as an option."""

from __future__ import annotations

import base64

from devtools.apache_kafka import new_cluster_id


def test_cluster_ids_never_start_with_a_dash() -> None:
    # 1 in 64 URL-safe base64 ids starts with '-': kafka-storage's parser then took it for an
    # option ("argument --cluster-id/-t: expected one argument"), seen once in CI.
    ids = [new_cluster_id() for _ in range(5000)]
    assert not any(i.startswith("-") for i in ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids[:100])
    assert len(set(ids)) == len(ids)
