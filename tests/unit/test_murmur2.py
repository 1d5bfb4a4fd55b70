"""Reference murmur2, checked against Kafka's own Java test vectors (UtilsTest)."""

from __future__ import annotations

import pytest

from tests.murmur2 import java_partition, murmur2

JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), JAVA_VECTORS.items())
def test_murmur2_matches_java(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_java_partition_is_positive_modulo() -> None:
    assert java_partition(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7
