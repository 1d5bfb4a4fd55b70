"""``offsets import``'s parsing of a file, the cases its whole-file check must get right."""

from __future__ import annotations

import pytest

from bridge.errors import ConfigError
from bridge.ops.offsets_tool import import_lines

LINE = b'{"offset": {"ended": false, "seq": "%s"}, "partition": {"shard": "shardId-1", "table": "orders"}}'


def test_a_utf8_byte_order_mark_is_not_a_problem() -> None:
    entries = import_lines([b"\xef\xbb\xbf" + LINE % b"11" + b"\r\n"])
    assert entries == [({"shard": "shardId-1", "table": "orders"}, {"ended": False, "seq": "11"})]


@pytest.mark.parametrize("raw", [
    b'{"offset": {"ended": false, "seq": "1", "seq": "2"}, "partition": {"shard": "shardId-1", "table": "orders"}}',
    b'{"offset": {"ended": false, "seq": "1"}, "partition": {"shard": "a", "shard": "b", "table": "orders"}}',
])
def test_a_key_given_twice_is_refused_not_silently_the_last(raw: bytes) -> None:
    with pytest.raises(ConfigError, match=r"nothing written: line 2: key '(seq|shard)' given twice"):
        import_lines([LINE % b"11", raw])
