"""The C typed writers and the Python one give identical bytes wherever a C one takes an item,
and they take the ordinary ones (they may hand anything unusual back): ``_typed.c`` from parsed
items, and the transcoder's one pass (``_transcode.c``'s TypedPlan) from GetRecords JSON."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import ConversionError
from connectors.dynamodb import transcode
from connectors.dynamodb._transcode_py import _typed_envelope
from connectors.dynamodb.records import PageReader, StreamContext, from_stream_records
from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.typed import TypedTable, TypedValueConfig
from connectors.dynamodb.typed.encode import encode_record
from connectors.dynamodb.typed.handle import TypedSchema
from connectors.dynamodb.typed.infer import absorb_item
from connectors.dynamodb.typed.plan import AVAILABLE, STREAM_AVAILABLE, Plan, spec
from connectors.dynamodb.typed.types import Arr, Dec, Field, Prim, Rec, UnionT
from tests.ddb_strategies import attribute_values, names, numbers

pytestmark = pytest.mark.skipif(Plan is None, reason="the C extension was not built here (no compiler?)")


def python(rec: Rec, item: Any) -> bytes | None:
    out: list[bytes] = []
    try:
        encode_record(rec, item, out)
    except ConversionError:
        return None
    return b"".join(out)


def c(rec: Rec, item: Any) -> bytes | None:
    return Plan(spec(rec)).encode(item)  # type: ignore[misc]


items = st.dictionaries(names, attribute_values, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(items, min_size=1, max_size=4), st.booleans())
def test_c_equals_python_where_it_writes(seen: list[dict[str, Any]], widen: bool) -> None:
    rec = Rec()
    for item in seen[:-1]:
        try:
            rec = absorb_item(rec, item, "record", widen)
        except ConversionError:
            pass
    item = seen[-1]
    got = c(rec, item)
    if got is not None:
        assert got == python(rec, item)


@settings(max_examples=60, deadline=None)
@given(items)
def test_c_writes_what_the_schema_was_grown_from(item: dict[str, Any]) -> None:
    try:
        rec = absorb_item(Rec(), item, "record", True)
    except ConversionError:
        return
    want = python(rec, item)
    if want is not None:
        assert c(rec, item) == want


@given(numbers, st.sampled_from([Prim("long"), Prim("double"), Dec(38, 0), Dec(38, 10), Dec(10, 2), Dec(1, 0)]))
def test_numbers_exactly_as_python(text: str, t: Any) -> None:
    rec = Rec((Field("n", t),))
    got, want = c(rec, {"n": {"N": text}}), python(rec, {"n": {"N": text}})
    assert got is None or got == want
    if want is not None and text.lstrip("-").replace(".", "").isdigit():
        assert got == want  # plain text is never handed back


def test_declared_defaults_and_unknown_attributes() -> None:
    rec = Rec((Field("q", Prim("long"), nullable=False, default=3, has_default=True), Field("s", Prim("string"))))
    assert c(rec, {"s": {"S": "x"}}) == python(rec, {"s": {"S": "x"}})
    assert c(rec, {"s": {"S": "x"}, "new": {"S": "y"}}) is None
    assert AVAILABLE


# ---- typed images in the transcoder's one pass (_transcode.c's TypedPlan; its twin in
# _transcode_py.py writes with the Python writer): GetRecords JSON straight to typed Avro.

needs_transcoder = pytest.mark.skipif(transcode.CTranscoder is None or not STREAM_AVAILABLE,
                                      reason="the C transcoder was not built here (no compiler?)")
KEYS = (KeyField("pk", "S"),)
TS = 1_700_000_000_123
IMPLS = ["c", "python"]


def shuffled(v: Any, rnd: random.Random) -> Any:
    """The same JSON with every object's members in another order (images come in any order)."""
    if type(v) is dict:
        ks = list(v)
        rnd.shuffle(ks)
        return {k: shuffled(v[k], rnd) for k in ks}
    if type(v) is list:
        return [shuffled(x, rnd) for x in v]
    return v


def stream_record(seq: int, op: str, before: Any, after: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"Keys": {"pk": {"S": f"k{seq}"}}, "SequenceNumber": str(seq)}
    if after is not None:
        d["NewImage"] = after
    if before is not None:
        d["OldImage"] = before
    return {"eventName": {"c": "INSERT", "u": "MODIFY", "d": "REMOVE"}[op], "eventID": f"e{seq}", "dynamodb": d}


def typed_page(impl: str, rec: Rec, changes: list[tuple[str, Any, Any]], rnd: random.Random | None = None,
               image: str = "envelope") -> Any:
    """(records, misses) of one page of ``changes`` through ``impl``'s typed pass."""
    handle = TypedSchema(rec, "t", KEYS, image=image)
    cls = transcode.CTranscoder if impl == "c" else transcode.PyTranscoder
    t = cls((("pk", "S"),), "t", "us-east-1", "arn:stream", "shard-1", records=("topic", handle))
    raw = [stream_record(i + 100, *ch) for i, ch in enumerate(changes)]
    body = orjson.dumps({"Records": [shuffled(r, rnd) if rnd else r for r in raw]})
    plan = handle.stream_plan if impl == "c" else object()
    records, last, _, misses = t.page(body, TS, plan, handle)
    assert last == str(99 + len(changes))
    assert all(type(records[i]) is bytes for i in misses)
    return records, misses


def reference(rec: Rec, record: Any, before: Any, after: Any) -> bytes | None:
    """The typed envelope's body by the Python writer (encode.py)."""
    return _typed_envelope(rec, record.op, before, after, record.position, TS)


@needs_transcoder
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(items, min_size=1, max_size=4), st.booleans(), st.randoms(use_true_random=False))
def test_stream_equals_python_where_it_writes(seen: list[dict[str, Any]], widen: bool, rnd: random.Random) -> None:
    """Where the one pass takes an image its bytes are the Python writer's; where the Python
    writer refuses one, the one pass hands the record back (misses). The twin agrees."""
    rec = Rec()
    for item in seen[:-1]:
        try:
            rec = absorb_item(rec, item, "record", widen)
        except ConversionError:
            pass
    item, old = seen[-1], seen[0]
    changes = [("c", None, item), ("u", old, item), ("d", item, None)]
    for impl in IMPLS:
        records, misses = typed_page(impl, rec, changes, rnd)
        written = [r for r in records if type(r) is not bytes and not r.tombstone]
        assert len(written) + len(misses) == 3
        by_seq = {r.position["sequence_number"]: r for r in written}
        for i, (_, before, after) in enumerate(changes):
            r = by_seq.get(str(100 + i))
            want = _typed_envelope(rec, "cud"[i], before, after, {
                "connector": "dynamodb", "table": "t", "region": "us-east-1", "stream_arn": "arn:stream",
                "shard_id": "shard-1", "sequence_number": str(100 + i), "event_id": f"e{100 + i}",
                "approximate_creation_ms": None, "ttl_delete": False}, TS)
            if r is None:
                continue  # handed back (the C pass may hand back more than Python refuses)
            assert r.encoded_value == want and want is not None
            assert r.encoded_key == b"\x08k" + str(100 + i).encode()
        if want is None:
            assert by_seq.get("102") is None


@needs_transcoder
@settings(max_examples=80, deadline=None)
@given(items, st.randoms(use_true_random=False), st.sampled_from(["envelope", "after"]))
def test_stream_takes_what_the_schema_was_grown_from(item: dict[str, Any], rnd: random.Random, image: str) -> None:
    """A steady table is all one pass: an image of the attributes its schema was grown from,
    in any member order, is written in C (no record handed back), with the Python writer's bytes."""
    try:
        rec = absorb_item(Rec(), item, "record", True)
    except ConversionError:
        return
    records, misses = typed_page("c", rec, [("c", None, item), ("u", item, item)], rnd, image)
    if python(rec, item) is None:
        return
    assert misses == []
    if image == "after":
        assert [r.encoded_value for r in records] == [python(rec, item)] * 2
        return
    assert records[0].encoded_value == reference(rec, records[0], None, item)
    assert records[1].encoded_value == reference(rec, records[1], item, item)


@needs_transcoder
def test_stream_image_after_writes_the_new_image_alone() -> None:
    """``image: after``: the value is the new image's record; a delete is its tombstone only
    (the old image is not written and grows nothing); a change without a new image is handed
    back (the Python writer gives the reason). Positions as the envelope's."""
    rec = Rec((Field("pk", Prim("string")), Field("n", Prim("long"))))
    a, b = {"pk": {"S": "k"}, "n": {"N": "1"}}, {"pk": {"S": "k"}, "n": {"N": "2"}}
    odd = {"pk": {"S": "k"}, "n": {"S": "not a number"}, "new": {"BOOL": True}}
    changes = [("c", None, a), ("u", a, b), ("d", odd, None), ("u", b, None), ("u", odd, b)]
    for impl in IMPLS:
        records, misses = typed_page(impl, rec, changes, image="after")
        assert misses == [3], impl
        assert [(type(r) is bytes or r.tombstone, r if type(r) is bytes else r.encoded_value) for r in records] == [
            (False, python(rec, a)), (False, python(rec, b)), (True, None), (True, records[3]), (False, python(rec, b))]
        assert [r.position["sequence_number"] for r in records if type(r) is not bytes] == ["100", "101", "102", "104"]
        assert records[2].position["event_id"] == "e102" and records[2].encoded_key == b"\x08k102"


@needs_transcoder
@given(numbers, st.sampled_from([Prim("long"), Prim("double"), Dec(38, 0), Dec(38, 10), Dec(10, 2), Dec(1, 0)]))
def test_stream_numbers_exactly_as_python(text: str, t: Any) -> None:
    rec = Rec((Field("n", t),))
    item = {"n": {"N": text}}
    (r, *_), misses = typed_page("c", rec, [("c", None, item)])
    want = reference(rec, r, None, item) if not misses else None
    if not misses:
        assert r.encoded_value == want
    else:
        assert python(rec, item) is None  # plain number text is never handed back when it fits


EDGE_NUMBERS = ["0", "-0", "0.0", "-0.0", "00.500", "2.00", "-2.50", "123456789012345678", "-999999999999999999",
                "1234567890123456789", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
                "0.000000000000000001", "123456789012345.6", "1234567890123456.7", "0.1", "1E+2", "1e-2", "-1E+10",
                "12345678901234567890123456789012345678", "1.7976931348623157E+308", "5E-324", "1e23", "1e22"]


@needs_transcoder
@pytest.mark.parametrize("t", [Prim("long"), Prim("double"), Dec(38, 0), Dec(38, 2), Dec(20, 18), Dec(1, 0)])
def test_stream_edge_numbers_exactly_as_python(t: Any) -> None:
    rec = Rec((Field("n", t),))
    records, misses = typed_page("c", rec, [("c", None, {"n": {"N": x}}) for x in EDGE_NUMBERS])
    for i, (x, r) in enumerate(zip(EDGE_NUMBERS, records, strict=True)):
        want = python(rec, {"n": {"N": x}})
        if i in misses:
            assert want is None, x
        else:
            assert r.encoded_value == reference(rec, r, None, {"n": {"N": x}}), x


@needs_transcoder
def test_stream_unions_defaults_and_hand_backs() -> None:
    rec = Rec((
        Field("q", Prim("long"), nullable=False, default=3, has_default=True),
        Field("s", Prim("string")),
        Field("u", UnionT((Prim("long"), Prim("double"), Prim("string")))),
        Field("m", Rec((Field("a", Arr(Prim("long"))), Field("b", Prim("boolean"))))),
        Field("ss", Arr(Prim("string"))),
        Field("d", Dec(38, 2)),
    ))
    fits = [
        {"s": {"S": "x"}},  # q missing: its default; the rest null
        {"q": {"NULL": True}, "u": {"N": "1.5"}, "m": {"M": {"b": {"BOOL": True}, "a": {"L": [{"N": "1"}, {"NULL": True}]}}}},
        {"u": {"S": "é\n\"q\""}, "ss": {"SS": ["a", "b"]}, "d": {"N": "-12345678901234567890123456789012345.67"}, "q": {"N": "7"}},
        {"u": {"N": "9223372036854775807"}, "m": {"M": {}}, "d": {"N": "0.10"}},
        {"u": {"N": "-0"}, "d": {"N": "1E+2"}},
    ]
    handed_back = [
        {"s": {"S": "x"}, "new": {"S": "y"}},      # no field yet: the schema grows
        {"s": {"N": "1"}},                          # a conflict
        {"u": {"BOOL": True}},                      # no branch takes it
        {"m": {"M": {"c": {"S": "z"}}}},            # a nested map gains a key
        {"d": {"N": "0.001"}},                      # does not fit decimal(38, 2): never rounded
        {"s": {"NULL": False}},                     # not DynamoDB data
        {"u": {"N": "1e400"}},                      # fits no numeric branch exactly
    ]
    changes = [("c", None, x) for x in fits + handed_back]
    for impl in IMPLS:
        records, misses = typed_page(impl, rec, changes)
        assert misses == list(range(len(fits), len(fits) + len(handed_back)))
        for r, x in zip(records, fits, strict=False):
            assert r.encoded_value == reference(rec, r, None, x)
        for i, x in zip(misses, handed_back, strict=True):
            assert orjson.loads(records[i])["dynamodb"]["NewImage"] == x


@needs_transcoder
def test_stream_page_fails_as_the_envelope_fails() -> None:
    """Invalid input fails the page (ValueError: the general path), as for the envelope, even
    in an image the plan does not take."""
    rec = Rec((Field("s", Prim("string")),))
    handle = TypedSchema(rec, "t", KEYS)
    for impl in IMPLS:
        cls = transcode.CTranscoder if impl == "c" else transcode.PyTranscoder
        t = cls((("pk", "S"),), "t", "us-east-1", "arn:stream", "shard-1", records=("topic", handle))
        plan = handle.stream_plan if impl == "c" else object()
        for image in ({"s": {"S": "x"}, "new": {"Q": "1"}}, {"s": {"S": "x", "N": "1"}}, {"b": {"B": "abc"}}):
            body = orjson.dumps({"Records": [stream_record(1, "c", None, image)]})
            with pytest.raises(ValueError):
                t.page(body, TS, plan, handle)


@needs_transcoder
def test_page_reader_typed_one_pass_grows_the_schema_in_order() -> None:
    """The Streams reader of a typed table: records the plan takes come from C with the handle
    they were written by; one it hands back goes the general way (the schema grows there) in
    its place; the next page is written by the grown plan. Every value is the Python writer's
    bytes under its own record's handle, and the records are those of the general path."""
    cfg = TypedValueConfig.model_validate({"shape": "typed", "sample_items": 0})
    typed = TypedTable("t", KEYS, cfg)
    ctx = StreamContext("topic", "t", "us-east-1", KEYS, "arn:stream", "shard-1", typed=typed)
    reader = PageReader(ctx)
    a, b = {"pk": {"S": "k"}, "n": {"N": "1"}}, {"pk": {"S": "k"}, "n": {"N": "2"}, "tag": {"S": "x"}}
    changes = [("c", None, a), ("u", a, a), ("u", a, b), ("u", b, b), ("d", b, None)]
    body = orjson.dumps({"Records": [stream_record(i + 100, *ch) for i, ch in enumerate(changes)]})
    first = typed.handle
    records, last, _ = reader.read(body)  # the first record grows {} to {pk, n}, the third adds tag
    assert last == "104"
    assert [(r.position["sequence_number"], r.tombstone) for r in records] == [
        ("100", False), ("101", False), ("102", False), ("103", False), ("104", False), ("104", True)]
    assert typed.handle is not first and [f.attribute for f in typed.handle.rec.fields] == ["pk", "n", "tag"]
    # after the schema grew, the page's next records are written in C by the grown version
    assert [type(r).__name__ for r in records] == ["ChangeRecord", "StreamRecord", "ChangeRecord", "StreamRecord",
                                                    "StreamRecord", "StreamRecord"]
    for r, (op, before, after) in zip(records, changes, strict=False):
        assert r.schema.rec.get("pk") is not None
        assert r.encoded_value == _typed_envelope(r.schema.rec, op, before, after, r.position, r.ts_ms)
    again, _, _ = reader.read(body)  # steady now: all one pass, one handle
    assert all(type(r).__name__ == "StreamRecord" and r.schema is typed.handle for r in again)
    for r, (op, before, after) in zip(again, changes, strict=False):
        assert r.encoded_value == _typed_envelope(typed.handle.rec, op, before, after, r.position, r.ts_ms)
    framed = transcode.frame_records(again, b"\0\0\0\0\x01", b"\0\0\0\0\x02")
    assert framed is not None and framed[1][0] == b"\0\0\0\0\x02" + again[0].encoded_value
    assert transcode.frame_records(records, b"\0\0\0\0\x01", b"\0\0\0\0\x02") is None  # two handles: framed one by one


def test_a_widened_declared_default_is_written_as_its_first_branch() -> None:
    """``nullable: false`` with a default, widened to a union by ``widen``: a missing attribute
    is the default as the union's first branch (index 0), which is what Avro readers expect."""
    import io
    import json

    import fastavro

    rec = Rec((Field("q", UnionT((Prim("long"), Prim("string"))), nullable=False, default=3, has_default=True),))
    assert python(rec, {}) == python(rec, {"q": {"NULL": True}}) == b"\x00\x06"
    if Plan is not None:
        assert c(rec, {}) == b"\x00\x06"
    handle = TypedSchema(rec, "t", KEYS, image="after")
    schema = fastavro.parse_schema(json.loads(handle.value_schema))
    assert fastavro.schemaless_reader(io.BytesIO(b"\x00\x06"), schema) == {"q": 3}
    for impl in IMPLS if transcode.CTranscoder is not None and STREAM_AVAILABLE else ["python"]:
        (r,), misses = typed_page(impl, rec, [("c", None, {})])
        assert misses == [] and r.encoded_value == reference(rec, r, None, {})
        assert r.encoded_value[:5] == b"\x02c\x00\x02" + b"\x00" and r.encoded_value[5] == 6


@needs_transcoder
@pytest.mark.parametrize("image", ["envelope", "after"])
def test_page_reader_typed_gives_the_general_paths_records(image: str) -> None:
    """From a table's first page on (its schema grows on it), the one pass gives the records
    the general path (orjson, from_stream_records, the Python writer) gives: the same keys,
    values, schema versions, tombstones and positions."""
    cfg = TypedValueConfig.model_validate({"shape": "typed", "sample_items": 0, "image": image,
                                           "on_conflict": "widen"})
    a = {"pk": {"S": "k"}, "n": {"N": "1"}, "m": {"M": {"x": {"SS": ["p", "q"]}}}}
    b = {"pk": {"S": "k"}, "n": {"N": "2.5"}, "tag": {"B": "AAE="}, "m": {"M": {"y": {"NULL": True}}}}
    changes = [("c", None, a), ("u", a, a), ("u", a, b), ("d", b, None), ("u", b, a), ("c", None, b)]
    body = orjson.dumps({"Records": [stream_record(i + 100, *ch) for i, ch in enumerate(changes)]})

    def view(r: Any) -> tuple[Any, ...]:
        value = None if r.tombstone else (r.encoded_value if r.encoded_value is not None else r.schema.encode_value(r))
        return (r.position, r.tombstone, r.key, value, r.schema.value_schema)

    fast_typed, general_typed = TypedTable("t", KEYS, cfg), TypedTable("t", KEYS, cfg)
    fast = PageReader(StreamContext("topic", "t", "us-east-1", KEYS, "arn:stream", "shard-1", typed=fast_typed))
    general_ctx = StreamContext("topic", "t", "us-east-1", KEYS, "arn:stream", "shard-1", typed=general_typed)
    for _ in range(2):  # the first page grows the schema; the second is steady
        got = fast.read(body)[0]
        want = from_stream_records(orjson.loads(body)["Records"], general_ctx, got[0].ts_ms)
        assert [view(r) for r in got] == [view(r) for r in want]
    assert any(type(r).__name__ == "StreamRecord" for r in got)


@needs_transcoder
@pytest.mark.parametrize("image", ["envelope", "after"])
def test_scan_pages_write_typed_rows_in_one_pass(image: str) -> None:
    """Typed snapshot rows from Scan pages: the C item writer writes them by the plan (the
    Python writer's bytes, with the handle of the version that wrote them); an item not
    plainly in the plan is written the general way in its place, which grows the schema."""
    from connectors.dynamodb.snapshot_rows import SnapshotRows
    from connectors.dynamodb.table import TableInfo

    cfg = TypedValueConfig.model_validate({"shape": "typed", "sample_items": 0, "image": image})
    table = TableInfo("t", "us-east-1", KEYS, None, None, 0)
    source = {"connector": "dynamodb", "table": "t", "region": "us-east-1", "snapshot": "scan", "segment": 0,
              "total_segments": 1, "ttl_delete": False}
    typed = TypedTable("t", KEYS, cfg)
    rows = SnapshotRows(topic="topic", table=table, source=source, typed=typed)
    a = {"pk": {"S": "k1"}, "n": {"N": "1"}, "m": {"M": {"x": {"NS": ["1", "25"]}}}}
    b = {"pk": {"S": "k2"}, "n": {"N": "2"}, "tag": {"S": "é"}}
    body = orjson.dumps({"Items": [a, b, a], "Count": 3, "LastEvaluatedKey": {"pk": {"S": "k2"}}})
    first, rest = rows.scan_page(body)  # the schema grows on this page: its items go the general way
    assert rest == {"Count": 3, "LastEvaluatedKey": {"pk": {"S": "k2"}}}
    steady, _ = rows.scan_page(body)
    assert [type(r).__name__ for r in steady] == ["ItemRecord"] * 3
    assert all(r.schema is typed.handle for r in steady)
    for r, item in zip(first + steady, [a, b, a] * 2, strict=True):
        assert r.key == {"pk": item["pk"]} and r.position == source
        want = python(r.schema.rec, item) if image == "after" else r.schema.encode_change(
            "r", None, item, source, r.ts_ms)
        assert r.encoded_value == want
    framed = transcode.frame_records(steady, b"\0\0\0\0\x01", b"\0\0\0\0\x02")
    assert framed is not None and framed[1][0] == b"\0\0\0\0\x02" + steady[0].encoded_value
    odd = {"pk": {"S": "k3"}, "n": {"S": "x"}}  # a conflict (dead-letter policy): the general way, body None
    mixed, _ = rows.scan_page(orjson.dumps({"Items": [a, odd]}))
    assert type(mixed[0]).__name__ == "ItemRecord" and type(mixed[1]).__name__ == "ChangeRecord"
    assert mixed[1].encoded_value is None


@needs_transcoder
@pytest.mark.parametrize("keys", [(("pk", "S"), ("sk", "N")), (("bk", "B"),)])
def test_scan_pages_typed_keys_as_the_envelopes(keys: tuple[tuple[str, str], ...]) -> None:
    """A typed row's key is read from its item wherever its key attributes stand, the envelope
    key's bytes; an item without one fails as it does for the envelope (a config error)."""
    from bridge.errors import ConfigError
    from connectors.dynamodb.avro import encode_key
    from connectors.dynamodb.snapshot_rows import SnapshotRows
    from connectors.dynamodb.table import TableInfo

    key_fields = tuple(KeyField(n, t) for n, t in keys)  # type: ignore[arg-type]
    table = TableInfo("t", "us-east-1", key_fields, None, None, 0)
    source = {"connector": "dynamodb", "table": "t", "region": "us-east-1", "snapshot": "scan", "segment": 0,
              "total_segments": 1, "ttl_delete": False}
    values = {"S": 'k\u00e9"\\', "N": "-12.50", "B": "AP8="}  # escaped in the JSON
    key = {n: {t: values[t]} for n, t in keys}
    items = [{"v": {"N": "1"}, **key}, {**key, "v": {"N": "2"}}, {"v": {"N": "3"}, **dict(reversed(key.items()))}]
    typed = TypedTable("t", key_fields, TypedValueConfig.model_validate({"shape": "typed", "sample_items": 0}))
    typed.absorb_items(items)
    rows = SnapshotRows(topic="topic", table=table, source=source, typed=typed)
    records, _ = rows.scan_page(orjson.dumps({"Items": items}))
    assert [type(r).__name__ for r in records] == ["ItemRecord"] * 3
    for r, item in zip(records, items, strict=True):
        assert r.encoded_key == encode_key(key_fields, key) and r.key == key
        assert r.encoded_value == r.schema.encode_change("r", None, item, source, r.ts_ms)
    with pytest.raises(ConfigError, match="item without key attribute"):
        rows.scan_page(orjson.dumps({"Items": [{"v": {"N": "1"}}]}))


@needs_transcoder
@pytest.mark.parametrize("image", ["envelope", "after"])
def test_page_reader_typed_binary_keys(image: str) -> None:
    """A table with a binary key takes the one pass too, with the general path's records; a
    page whose Keys differ from the images' (moto base64-encodes binary Keys twice) goes the
    general way, which takes the key from the image."""
    keys = (KeyField("bk", "B"),)
    cfg = TypedValueConfig.model_validate({"shape": "typed", "sample_items": 0, "image": image})
    a, b = {"bk": {"B": "AP8="}, "n": {"N": "1"}}, {"bk": {"B": "AP8="}, "n": {"N": "2"}}

    def record(seq: int, op: str, before: Any, after: Any, key: str) -> dict[str, Any]:
        r = stream_record(seq, op, before, after)
        r["dynamodb"]["Keys"] = {"bk": {"B": key}}
        return r

    def view(r: Any) -> tuple[Any, ...]:
        value = None if r.tombstone else (r.encoded_value if r.encoded_value is not None else r.schema.encode_value(r))
        return (r.position, r.tombstone, r.key, value, r.schema.value_schema)

    for key in ("AP8=", "QVA4PQ=="):  # the image's key, then moto's
        fast_typed, general_typed = TypedTable("t", keys, cfg), TypedTable("t", keys, cfg)
        fast_typed.absorb_items([a]), general_typed.absorb_items([a])
        body = orjson.dumps({"Records": [record(100, "c", None, a, key), record(101, "u", a, b, key),
                                         record(102, "d", b, None, key)]})
        fast = PageReader(StreamContext("topic", "t", "us-east-1", keys, "arn:stream", "shard-1", typed=fast_typed))
        got = fast.read(body)[0]
        want = from_stream_records(orjson.loads(body)["Records"], StreamContext(
            "topic", "t", "us-east-1", keys, "arn:stream", "shard-1", typed=general_typed), got[0].ts_ms)
        assert [view(r) for r in got] == [view(r) for r in want]
        assert all(r.key == {"bk": {"B": "AP8="}} for r in got)
        assert (type(got[0]).__name__ == "StreamRecord") is (key == "AP8=")
