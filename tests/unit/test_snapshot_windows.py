"""The concurrent-snapshot coordinator and the reader wrapper, without any service.

Scripted shard readers hand the wrapper pages; a scan chunk opens and closes a window
around them. What must hold: a row whose key changed in its window is dropped; a row is
released only when every shard reader (idle ones via a watermark, an ended shard via its
children) has read past the window; readers stop at the first record past a window until
its rows are released.
"""

from __future__ import annotations

import asyncio

import pytest

from bridge.task import Batch, SourceRecord, SourceTask
from connectors.dynamodb.envelope import change_record, envelope_schema
from connectors.dynamodb.scan import RateLimiter
from connectors.dynamodb.schemas import KeyField
from connectors.dynamodb.snapshot import (
    ConcurrentWindows,
    HandoffReader,
    InitialGate,
    is_watermark,
    key_id,
    retention_verdict,
    watermark_item,
    watermark_marker,
)
from connectors.dynamodb.table import TableInfo

TABLE = TableInfo("t", "us-east-1", (KeyField("pk", "S"), KeyField("sk", "N")), "arn", "NEW_AND_OLD_IMAGES", 0)


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def change(pk: str, ts: int, seq: int) -> SourceRecord:
    key = {"pk": {"S": pk}, "sk": {"N": "1"}}
    source = {"approximate_creation_ms": ts, "sequence_number": str(seq)}
    return change_record("topic", envelope_schema("t", TABLE.key_fields), key, "u", None, None, source, 0)


def row(pk: str) -> SourceRecord:
    key = {"pk": {"S": pk}, "sk": {"N": "1"}}
    return change_record("topic", envelope_schema("t", TABLE.key_fields), key, "r", None, key, {}, 0)


class Script(SourceTask):
    """A shard reader that returns queued pages, then waits for more."""

    def __init__(self, shard: str) -> None:
        self.partition = {"table": "t", "shard": shard}
        self.pages: asyncio.Queue[Batch] = asyncio.Queue()

    def page(self, records: list[SourceRecord], final: bool = False) -> None:
        seq = records[-1].position["sequence_number"] if records else None
        self.pages.put_nowait(Batch(records, {"seq": seq, "ended": final} if seq else None, final=final))

    async def poll(self) -> Batch:
        return await self.pages.get()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def windows(clock: Clock) -> ConcurrentWindows:
    w = ConcurrentWindows(table=TABLE, ddb=None, skew_ms=100, watermarks=False, clock=clock)
    w.readers_ready.set()
    return w


def test_key_id_matches_scan_and_stream_forms() -> None:
    assert key_id({"pk": {"N": "10"}}) == key_id({"pk": {"N": "1E+1"}}) == key_id({"pk": {"N": "10.0"}})
    assert key_id({"pk": {"B": b"\x01\x02"}}) == key_id({"pk": {"B": "AQI="}})
    assert key_id({"a": {"S": "x"}, "b": {"N": "1"}}) == key_id({"b": {"N": "1"}, "a": {"S": "x"}})


@pytest.mark.parametrize("types", [("S", "N"), ("B", "S"), ("N", "B")])
def test_watermark_keys_are_recognised_for_every_key_type(types: tuple[str, str]) -> None:
    table = TableInfo("t", "r", (KeyField("h", types[0]), KeyField("r", types[1])), None, None, 0)
    item = watermark_item(table, "abc123")
    assert is_watermark(item, table)
    assert watermark_marker(item, table) is not None
    ordinary = {"h": {"S": "user#1"} if types[0] == "S" else {"B": "AQI="} if types[0] == "B" else {"N": "-5"}}
    assert not is_watermark(ordinary, table)
    assert watermark_item(table, "a") != watermark_item(table, "b") or types[0] == "N"


def test_row_changed_in_its_window_is_dropped_and_readers_wait_for_the_rows() -> None:
    async def main() -> None:
        clock = Clock()
        coord = windows(clock)
        inner = Script("s1")
        reader = HandoffReader(inner, shard_id="s1", table=TABLE, windows=coord)
        coord.register("s1", ())

        w = coord.open_window()  # t_start = 1_000_000
        inner.page([change("a", 1_000_010, 1)])  # a changes inside the window
        b1 = await reader.poll()
        assert [r.key["pk"]["S"] for r in b1.records] == ["a"]

        clock.ms = 1_000_050
        closing = asyncio.ensure_future(coord.close_window(w, [row("a"), row("b")]))
        await settle()
        assert not closing.done(), "the reader has not read past t_end yet"

        # x (ts > t_end + skew) passes the window: the reader stops before it.
        inner.page([change("c", 1_000_040, 2), change("b", 1_000_200, 3)])
        b2 = await reader.poll()
        assert [r.key["pk"]["S"] for r in b2.records] == ["c"] and b2.offset == {"seq": "2", "ended": False}
        third = asyncio.ensure_future(reader.poll())  # marks the window passed, then waits
        kept = await asyncio.wait_for(closing, 2)
        assert [r.key["pk"]["S"] for r in kept] == ["b"], "a changed in the window: its row is dropped"
        assert coord.rows_dropped == 1
        await settle()
        assert not third.done(), "b's newer change must wait until the rows are produced"
        coord.release(w)
        b3 = await asyncio.wait_for(third, 2)
        assert [r.key["pk"]["S"] for r in b3.records] == ["b"]

    asyncio.run(main())


def test_an_idle_shard_holds_the_window_until_a_watermark_passes_it() -> None:
    async def main() -> None:
        clock = Clock()
        coord = windows(clock)
        busy, idle = Script("busy"), Script("idle")
        r_busy = HandoffReader(busy, shard_id="busy", table=TABLE, windows=coord)
        r_idle = HandoffReader(idle, shard_id="idle", table=TABLE, windows=coord)
        coord.register("busy", ())
        coord.register("idle", ())
        w = coord.open_window()
        clock.ms += 10
        closing = asyncio.ensure_future(coord.close_window(w, [row("a")]))
        await settle()
        busy.page([change("z", clock.ms + 500, 1)])
        await r_busy.poll()
        waiting = asyncio.ensure_future(r_busy.poll())
        await settle()
        assert not closing.done(), "the idle shard may still hold a change made in the window"

        marker = "m1"
        coord.markers[marker] = clock.ms + 1  # written after t_end
        wm = watermark_item(TABLE, marker)
        rec = change_record("topic", envelope_schema("t", TABLE.key_fields), wm, "c", None, None, {"sequence_number": "7"}, 0)
        idle.page([rec])
        b = await r_idle.poll()
        assert b.records == [], "a watermark is never published"
        idle_next = asyncio.ensure_future(r_idle.poll())
        kept = await asyncio.wait_for(closing, 2)
        assert [r.key["pk"]["S"] for r in kept] == ["a"]
        coord.release(w)
        b_idle = await asyncio.wait_for(idle_next, 2)
        assert b_idle.records == [] and b_idle.offset == {"seq": "7", "ended": False}, "its offset still moves past it"
        await asyncio.wait_for(waiting, 2)

    asyncio.run(main())


def test_an_ended_shard_hands_its_open_windows_to_its_children() -> None:
    async def main() -> None:
        clock = Clock()
        coord = windows(clock)
        parent = Script("p")
        r_parent = HandoffReader(parent, shard_id="p", table=TABLE, windows=coord)
        coord.register("p", ())
        w = coord.open_window()
        clock.ms += 10
        closing = asyncio.ensure_future(coord.close_window(w, [row("a"), row("k")]))
        parent.page([change("x", clock.ms - 5, 1)], final=True)  # the shard ends inside the window
        b = await r_parent.poll()
        assert b.final
        await settle()
        assert "p" in coord.readers and not closing.done(), "until its last records are produced"
        await r_parent.close()  # the worker closes a task after its final batch is durable
        await settle()
        assert "p" in coord.ended and not closing.done(), "the split's children may hold window changes"

        child = Script("c")
        r_child = HandoffReader(child, shard_id="c", table=TABLE, windows=coord)
        coord.register("c", ("p",))
        child.page([change("k", clock.ms + 1, 2), change("y", clock.ms + 500, 3)])
        await r_child.poll()
        nxt = asyncio.ensure_future(r_child.poll())
        kept = await asyncio.wait_for(closing, 2)
        assert [r.key["pk"]["S"] for r in kept] == ["a"], "k changed in the child within the window"
        coord.release(w)
        await asyncio.wait_for(nxt, 2)

    asyncio.run(main())


def test_initial_gate_records_the_first_position_and_holds_the_page() -> None:
    async def main() -> None:
        gate = InitialGate(t0_ms=1000, fresh=True, skew_ms=0)
        inner = Script("s")
        reader = HandoffReader(inner, shard_id="s", table=TABLE, gate=gate)
        inner.page([])
        assert (await reader.poll()).records == []
        inner.page([change("a", 2000, 41), change("b", 2001, 42)])
        mark = await reader.poll()
        assert mark.records == [] and mark.offset["at"] == "41" and mark.offset["seq"] is None
        held = asyncio.ensure_future(reader.poll())
        await settle()
        assert not held.done()
        gate.open.set()
        b = await asyncio.wait_for(held, 2)
        assert [r.key["pk"]["S"] for r in b.records] == ["a", "b"] and b.offset == {"seq": "42", "ended": False}

    asyncio.run(main())


def test_time_filter_drops_changes_older_than_t0_after_a_restart() -> None:
    async def main() -> None:
        gate = InitialGate(t0_ms=5000, fresh=False, skew_ms=100)
        gate.open.set()
        inner = Script("s")
        reader = HandoffReader(inner, shard_id="s", table=TABLE, gate=gate, time_filter_ms=4900)
        inner.page([change("old", 4000, 1), change("edge", 4950, 2), change("new", 6000, 3)])
        first = await reader.poll()
        assert first.records == [] and first.offset == {"seq": "1", "ended": False}
        second = await reader.poll()
        assert [r.key["pk"]["S"] for r in second.records] == ["edge", "new"], "within the skew: kept (safe)"

    asyncio.run(main())


def test_rate_limiter_spreads_calls() -> None:
    class T:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    t = T()
    lim = RateLimiter(100, clock=t)
    assert lim.delay(50) == 0
    lim.take(100)
    assert lim.delay(50) == pytest.approx(0.5)
    t.now += 0.5
    assert lim.delay(50) == pytest.approx(0.0)
    lim.take(150)  # an RCU bill larger than the balance: debt
    assert lim.delay() == pytest.approx(1.0, abs=0.01)


def test_retention_verdict_warns_then_fails_when_configured() -> None:
    hour = 3_600_000
    assert retention_verdict(19 * hour, 20, fail=True) == "ok"
    assert retention_verdict(20 * hour, 20, fail=False) == "warn"
    assert retention_verdict(21 * hour, 20, fail=True) == "fail"


def test_key_id_keeps_all_38_digits_of_a_number_key() -> None:
    """Two numeric keys differing only past the 28th digit are two items: a snapshot row of
    one must not be dropped because the other changed (Decimal.normalize() rounds to 28)."""
    from connectors.dynamodb.snapshot import key_id

    a = "12345678901234567890123456789012345678"
    b = a[:-1] + "9"
    assert key_id({"pk": {"N": a}}) != key_id({"pk": {"N": b}})
    assert key_id({"pk": {"N": "1.50"}}) == key_id({"pk": {"N": "15E-1"}})
