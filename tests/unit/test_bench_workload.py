"""The benchmark's synthetic GetRecords pages are what the bridge reads: both transcoders and
the general path agree on them (so a bench run measures the fast path, not a fallback)."""

from __future__ import annotations

import orjson
import pytest

from bench.variants import KEY_FIELDS, Pages, context, transcoder
from bench.workload import WORKLOADS
from connectors.dynamodb import transcode
from connectors.dynamodb.avro import encode_envelope, encode_key
from connectors.dynamodb.records import from_stream_records


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_bench_pages_take_the_fast_path(name: str) -> None:
    pages = Pages.make(WORKLOADS[name], distinct=1, per_page=60)
    body = pages.bodies[0]
    out, last, nxt = transcoder(impl=transcode.PyTranscoder).page(body, 1)
    if transcode.CTranscoder is not None:
        assert transcoder(impl=transcode.CTranscoder).page(body, 1) == (out, last, nxt)
    assert nxt == "it-1" and transcoder(impl=transcode.PyTranscoder).page(pages.finals[0], 1)[2] is None
    general = [r for r in from_stream_records(orjson.loads(body)["Records"], context("t")) if not r.tombstone]
    assert len(out) == len(general) == 60 and pages.messages[0] == 60 + sum(op == "d" for op, *_ in out)
    for (_, _, _, key_avro, value_avro), g in zip(out, general, strict=True):
        assert key_avro == encode_key(KEY_FIELDS, g.key)
        assert value_avro == encode_envelope(g.op, g.before, g.after, g.source, 1)
    assert {op for op, *_ in out} == {"c", "u", "d"}
