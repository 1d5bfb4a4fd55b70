"""Snapshot items through the one-pass writer (issue 22): Scan pages and export lines.

The C ItemWriter and its pure-Python twin give identical records (every field, bytes
included) for generated Scan pages and export files of every DynamoDB type, written by
different JSON writers; both equal the general path (orjson → snapshot_records →
connectors.dynamodb.avro), and fastavro reads the items back. Then: the two refuse the same input,
line positions are exact across any split, and the C writer gives the same bytes when
threads run it at once (it parses with the GIL released).
"""

from __future__ import annotations

import base64
import io
import json
import threading
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.dynamodb import transcode
from connectors.dynamodb.avro import encode_envelope, encode_key, item_from_avro
from connectors.dynamodb.envelope import envelope_schema
from connectors.dynamodb.schemas import KeyField, table_schemas
from connectors.dynamodb.snapshot_rows import SnapshotRows, snapshot_records
from connectors.dynamodb.table import TableInfo
from tests.ddb_strategies import binaries, expected_item, items, numbers, strings

TABLE, REGION, TOPIC = "orders", "us-east-1", "ddb.orders"
TS = 1_700_000_000_999
KEY_SETS = {
    "S+N": (("pk", "S"), ("sk", "N")),
    "B": (("id", "B"),),
    "N": (("n", "N"),),
    "clash-dash": (("order-id", "S"), ("order_id", "N")),
    "clash-umlaut": (("ü", "S"), ("ö", "B")),
}
SOURCE = {"connector": "dynamodb", "table": TABLE, "region": REGION, "snapshot": "scan", "segment": 3,
          "total_segments": 32, "ttl_delete": False}
needs_c = pytest.mark.skipif(transcode.CItemWriter is None, reason="the C extension was not built here (no compiler?)")
IMPLS = [pytest.param(transcode.PyItemWriter, id="python")]
if transcode.CItemWriter is not None:
    IMPLS.insert(0, pytest.param(transcode.CItemWriter, id="c"))


def key_fields(keys: tuple[tuple[str, str], ...]) -> tuple[KeyField, ...]:
    return tuple(KeyField(n, t) for n, t in keys)  # type: ignore[arg-type]


def make(impl: Any, keys: tuple[tuple[str, str], ...]) -> Any:
    return impl(keys, TOPIC, TABLE, envelope_schema(TABLE, key_fields(keys)), SOURCE)


def around(ts: int = TS) -> tuple[bytes, bytes]:
    full = encode_envelope("r", None, {}, SOURCE, ts)
    return full[:4], full[5:]


def fields(records: list[Any]) -> list[tuple[Any, ...]]:
    return [tuple(getattr(r, f) for f in transcode.RECORD_FIELDS) for r in records]


# --------------------------------------------------------------------------- generated input

@st.composite
def table_items(draw: st.DrawFn, keys: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    key = {name: {t: draw({"S": strings, "N": numbers, "B": binaries}[t])} for name, t in keys}
    item = {**draw(items), **key}
    order = draw(st.permutations(list(item)))  # key attributes anywhere in the item
    return {name: item[name] for name in order}


def write(doc: Any, style: str) -> bytes:
    if style == "orjson":
        return orjson.dumps(doc)
    if style == "ascii":  # non-ASCII as \\uXXXX, astral characters as surrogate pairs
        return json.dumps(doc, ensure_ascii=True).encode()
    if style == "indent":
        return json.dumps(doc, ensure_ascii=False, indent=1).encode()
    return json.dumps(doc, ensure_ascii=True).replace("/", "\\/").encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | strings,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(strings, c, max_size=3),
    max_leaves=6,
)


@st.composite
def scan_pages(draw: st.DrawFn) -> tuple[tuple[tuple[str, str], ...], dict[str, Any], bytes]:
    keys = KEY_SETS[draw(st.sampled_from(sorted(KEY_SETS)))]
    page = draw(st.lists(table_items(keys), max_size=5))
    doc: dict[str, Any] = {"Items": page, "Count": len(page), "ScannedCount": len(page) + draw(st.integers(0, 5))}
    if draw(st.booleans()):
        doc["LastEvaluatedKey"] = {name: page[-1][name] for name, _ in keys} if page else {"x": {"S": "y"}}
    if draw(st.booleans()):
        doc["ConsumedCapacity"] = {"TableName": TABLE, "CapacityUnits": draw(st.floats(0, 1e6))}
    if draw(st.booleans()):
        doc["x-unknown"] = draw(json_values)
    order = draw(st.permutations(list(doc)))
    doc = {k: doc[k] for k in order}
    return keys, doc, write(doc, draw(st.sampled_from(["orjson", "ascii", "indent", "slashes"])))


@st.composite
def export_files(draw: st.DrawFn) -> tuple[tuple[tuple[str, str], ...], list[dict[str, Any]], bytes]:
    """An export data file's text: one {"Item": ...} per line (blank lines and a last line
    without its newline too), as AWS writes them or with other JSON writers' spacing."""
    keys = KEY_SETS[draw(st.sampled_from(sorted(KEY_SETS)))]
    rows = draw(st.lists(table_items(keys), max_size=6))
    style = draw(st.sampled_from(["orjson", "ascii", "slashes"]))
    lines = []
    for item in rows:
        doc: dict[str, Any] = {"Item": item}
        if draw(st.integers(0, 4)) == 0:
            doc = {"x-other": draw(json_values), **doc}
        lines.append(draw(st.sampled_from(["", " ", "\t"])) + write(doc, style).decode() + draw(st.sampled_from(["", " \r"])))
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(st.sampled_from(["", "  ", "\x0b", "\r"])))
    text = "\n".join(lines)
    if lines and draw(st.booleans()):
        text += "\n"
    return keys, rows, text.encode()


VALUE_SCHEMAS: dict[Any, Any] = {}


def schemas(keys: tuple[tuple[str, str], ...]) -> Any:
    if keys not in VALUE_SCHEMAS:
        s = table_schemas(TABLE, key_fields(keys))
        VALUE_SCHEMAS[keys] = (fastavro.parse_schema(json.loads(s.key_schema)),
                               fastavro.parse_schema(json.loads(s.value_schema)))
    return VALUE_SCHEMAS[keys]


def read(schema: Any, data: bytes) -> Any:
    buf = io.BytesIO(data)
    out = fastavro.schemaless_reader(buf, schema, schema)
    assert buf.tell() == len(data)
    return out


def check_against_general_path(keys: tuple[tuple[str, str], ...], records: list[Any], want: list[dict[str, Any]]) -> None:
    table = TableInfo(TABLE, REGION, key_fields(keys), None, None, 0)
    general = snapshot_records(want, topic=TOPIC, table=table, source=SOURCE)
    assert len(records) == len(general)
    key_schema, value_schema = schemas(keys)
    for r, g, item in zip(records, general, want, strict=True):
        assert (r.topic, r.table, r.key_fields, r.key, r.op, r.source, r.tombstone) == (
            g.topic, g.table, g.key_fields, g.key, g.op, g.source, g.tombstone)
        assert r.encoded_key == encode_key(g.key_fields, g.key)
        assert r.encoded_value == encode_envelope(g.op, g.before, g.after, g.source, TS)
        v = read(value_schema, r.encoded_value)
        assert v["op"] == "r" and v["before"] is None and v["ts_ms"] == TS
        assert item_from_avro(v["after"]) == expected_item(item)
        k = read(key_schema, r.encoded_key)
        assert list(k.values()) == [base64.b64decode(item[n][t]) if t == "B" else item[n][t] for n, t in keys]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(page=scan_pages())
def test_generated_scan_pages(page: tuple[tuple[tuple[str, str], ...], dict[str, Any], bytes]) -> None:
    keys, doc, body = page
    head, tail = around()
    records, rest = make(transcode.PyItemWriter, keys).scan_page(body, head, tail, TS)
    if transcode.CItemWriter is not None:  # the C writer: the very same records and members
        c_records, c_rest = make(transcode.CItemWriter, keys).scan_page(body, head, tail, TS)
        assert fields(c_records) == fields(records)
        assert {k: orjson.loads(v) for k, v in c_rest.items()} == {k: orjson.loads(v) for k, v in rest.items()}
    assert {k: orjson.loads(v) for k, v in rest.items()} == {k: v for k, v in orjson.loads(body).items() if k != "Items"}
    check_against_general_path(keys, records, doc["Items"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(file=export_files(), want=st.integers(1, 4))
def test_generated_export_lines(file: tuple[tuple[tuple[str, str], ...], list[dict[str, Any]], bytes], want: int) -> None:
    """Read in batches of ``want`` records, as the export task does: the same records, positions
    and line counts from both writers, and the line count is the file's (blank lines included)."""
    keys, rows, data = file
    head, tail = around()
    out: dict[str, tuple[list[Any], list[tuple[int, int]]]] = {}
    impls = [transcode.PyItemWriter] + ([transcode.CItemWriter] if transcode.CItemWriter is not None else [])
    for impl in impls:
        w = make(impl, keys)
        pos, records, steps = 0, [], []
        for final in (False, True):
            while True:
                got, new_pos, n = w.lines(data, pos, want, final, head, tail, TS)
                steps.append((new_pos, n))
                records.extend(got)
                if new_pos == pos and not got:
                    break
                pos = new_pos
        assert pos == len(data)
        out[impl.__name__ + impl.__module__] = (fields(records), steps)
        total_lines = sum(n for _, n in steps)
        assert total_lines == len(data.splitlines()) if data else total_lines == 0
        check_against_general_path(keys, records, rows)
    assert len({repr(v) for v in out.values()}) == 1


# --------------------------------------------------------------------------- hand-picked cases

GOOD = {"pk": {"S": "a"}, "sk": {"N": "1"}}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"Items": {}}',
        b'{"Items": [{"pk": {"S": "a"}}]}',  # no sk
        b'{"Items": [{"pk": {"S": "a"}, "sk": {"S": "1"}}]}',  # sk is N in the table
        b'{"Items": [{"pk": {"S": "a"}, "sk": {"N": "1"}, "b": {"B": "AB"}}]}',  # not canonical base64
        b'{"Items": [{"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"S": "a", "N": "1"}}]}',
        b'{"Items": [{"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"Q": "a"}}]}',
        b'{"Items": [{"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"BOOL": 1}}]}',
        b'{"Items": [7]}',
        b'{"Items": []} x',
    ],
)
def test_both_refuse_what_the_general_path_must_handle(impl: Any, body: bytes) -> None:
    with pytest.raises(ValueError):
        make(impl, KEY_SETS["S+N"]).scan_page(body, b"", b"", TS)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("line", [b'{"Items": {}}', b'{"Item": 5}', b"{", b'{"Item": {"pk": {"S": "a"}}}', b"[1]"])
def test_both_refuse_bad_export_lines(impl: Any, line: bytes) -> None:
    with pytest.raises(ValueError):
        make(impl, KEY_SETS["S+N"]).lines(b'{"Item": {"pk": {"S": "a"}, "sk": {"N": "1"}}}\n' + line + b"\n",
                                          0, 10, True, b"", b"", TS)


@pytest.mark.parametrize("impl", IMPLS)
def test_counts_and_lengths_over_one_byte_and_numbers_needing_a_double(impl: Any) -> None:
    """A map of 70 attributes (a two-byte block count moves the key attributes written before
    it), long strings, and a top-level number with an exponent (the C writer parses it with the
    GIL held, on a second pass)."""
    item = {"pk": {"S": "p" * 200}, **{f"a{i:02}": {"N": str(i)} for i in range(70)}, "sk": {"N": "12345678901234567890"}}
    body = orjson.dumps({"Items": [item, GOOD], "Count": 2}).replace(b'"Count":2', b'"Count":2,"x":1.5e300')
    head, tail = around()
    records, rest = make(impl, KEY_SETS["S+N"]).scan_page(body, head, tail, TS)
    assert orjson.loads(rest["x"]) == 1.5e300
    check_against_general_path(KEY_SETS["S+N"], records, [item, GOOD])


@needs_c
def test_threads_encode_at_once_and_agree() -> None:
    """Four threads, each with its own writer, on pages of wide items (maps over 16 names are
    checked for repeats with a sort, whose comparison state is per thread): every result is the
    single-threaded one."""
    keys = KEY_SETS["S+N"]
    page = [{**GOOD, "pk": {"S": f"k{i}"}, **{f"f{j}": {"S": "v" * (i % 7)} for j in range(24)}} for i in range(400)]
    body = orjson.dumps({"Items": page})
    head, tail = around()
    want = fields(make(transcode.CItemWriter, keys).scan_page(body, head, tail, TS)[0])
    results: list[Any] = []

    def run() -> None:
        w = make(transcode.CItemWriter, keys)
        for _ in range(20):
            results.append(fields(w.scan_page(body, head, tail, TS)[0]) == want)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 80


@needs_c
def test_frame_items_frames_once_and_snapshot_rows_fall_back() -> None:
    keys = KEY_SETS["S+N"]
    records, _ = make(transcode.CItemWriter, keys).scan_page(orjson.dumps({"Items": [GOOD]}), b"H", b"T", TS)
    assert transcode.frame_records is not None
    keys_, values, payload = transcode.frame_records(records, b"\0\0\0\0\1", b"\0\0\0\0\2")
    assert keys_[0] == b"\0\0\0\0\1" + records[0].encoded_key and values[0] == b"\0\0\0\0\2H" + records[0].encoded_value[1:]
    assert payload == len(keys_[0]) + len(values[0])
    # a page the writer refuses goes the general path: records with the item as `after`, encoded later
    table = TableInfo(TABLE, REGION, key_fields(keys), None, None, 0)
    rows = SnapshotRows(topic=TOPIC, table=table, source=SOURCE)
    bad = {**GOOD, "x": {"S": "a", "N": "1"}}
    got, resp = rows.scan_page(orjson.dumps({"Items": [bad], "Count": 1}))
    assert rows.general_batches == 1 and resp == {"Count": 1}
    assert got[0].after == bad and got[0].encoded_value is None
