"""Synthetic DynamoDB Streams GetRecords pages, as the service sends them on the wire.

Wire format, not boto3's: B and BS as base64 text, ApproximateCreationDateTime as epoch
seconds (a JSON number), members in the order DynamoDB Streams writes them. A page holds
``records_per_page`` records of a fixed mix: 25% INSERT, 65% MODIFY, 10% REMOVE (2% of
all records TTL deletes), view type NEW_AND_OLD_IMAGES.

Two item shapes:
- ``wide``: 11 attributes, nested maps and lists, SS/NS sets, binary, 38-digit numbers,
  some non-ASCII and escaped text (~1 KB per image);
- ``small``: 3 attributes (hash key, range key, a counter).
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["KEYS", "Workload", "make_pages", "page_records", "WORKLOADS"]

REGION = "us-east-1"
TABLE = "bench-orders"
STREAM_ARN = f"arn:aws:dynamodb:{REGION}:123456789012:table/{TABLE}/stream/2024-01-01T00:00:00.000"
KEYS = (("pk", "S"), ("sk", "N"))

_WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()
_CITIES = ["Zürich", "São Paulo", "Kraków", "Reykjavík", "東京", "Springfield", "Baile Átha Cliath"]


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def wide_item(rng: random.Random, n: int, version: int) -> dict[str, Any]:
    """11 attributes: the shape of an order/profile document table."""
    return {
        "pk": {"S": f"customer#{n:08d}"},
        "sk": {"N": str(1_700_000_000_000 + n)},
        "name": {"S": f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS).title()}"},
        "email": {"S": f"{rng.choice(_WORDS)}.{n}@example.com"},
        "balance": {"N": f"{rng.randint(0, 10**9)}.{rng.randint(0, 99):02d}"},
        "big": {"N": "12345678901234567890123456789012345678"},
        "active": {"BOOL": version % 3 != 0},
        "tags": {"SS": rng.sample(_WORDS, 3)},
        "scores": {"NS": [str(rng.randint(0, 1000)), f"{rng.random():.6f}", "-1E+10"]},
        "avatar": {"B": _b64(rng.randbytes(24))},
        "address": {
            "M": {
                "street": {"S": f"{rng.randint(1, 999)} {rng.choice(_WORDS).title()} Street"},
                "city": {"S": rng.choice(_CITIES)},
                "note": {"S": 'ring twice, say "hello"\n'} if n % 7 == 0 else {"NULL": True},
                "geo": {"M": {"lat": {"N": f"{rng.uniform(-90, 90):.6f}"},
                              "lon": {"N": f"{rng.uniform(-180, 180):.6f}"}}},
            }
        },
        "orders": {
            "L": [
                {"M": {"id": {"S": f"o-{n}-{i}"}, "qty": {"N": str(rng.randint(1, 9))},
                       "price": {"N": f"{rng.randint(1, 500)}.99"}}}
                for i in range(2)
            ]
            + [{"S": "gift"}, {"BOOL": True}, {"L": []}, {"M": {}}]
        },
    }


def small_item(rng: random.Random, n: int, version: int) -> dict[str, Any]:
    return {"pk": {"S": f"k{n:08d}"}, "sk": {"N": str(n)}, "count": {"N": str(version)}}


@dataclass(frozen=True)
class Workload:
    name: str
    describe: str
    item: Any


WORKLOADS = {
    "wide": Workload("wide", "11 attrs, nested M/L, SS/NS, B", wide_item),
    "small": Workload("small", "3 attrs", small_item),
}


def page_records(workload: Workload, page_no: int, per_page: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed * 1_000_003 + page_no)
    out = []
    seq0 = 100_000_000_000_000_000_000 + page_no * per_page * 7
    for i in range(per_page):
        n = page_no * per_page + i
        roll = rng.random()
        event = "INSERT" if roll < 0.25 else "MODIFY" if roll < 0.90 else "REMOVE"
        new = workload.item(rng, n, 2) if event != "REMOVE" else None
        old = workload.item(rng, n, 1) if event != "INSERT" else None
        image = new or old
        assert image is not None
        body: dict[str, Any] = {
            "ApproximateCreationDateTime": 1_700_000_000 + n // 1000 if n % 2 else 1.700000000123e9,
            "Keys": {"pk": image["pk"], "sk": image["sk"]},
        }
        if new is not None:
            body["NewImage"] = new
        if old is not None:
            body["OldImage"] = old
        body["SequenceNumber"] = str(seq0 + i * 7)
        body["SizeBytes"] = 0
        body["StreamViewType"] = "NEW_AND_OLD_IMAGES"
        rec: dict[str, Any] = {
            "awsRegion": REGION,
            "dynamodb": body,
            "eventID": f"{rng.getrandbits(128):032x}",
            "eventName": event,
            "eventSource": "aws:dynamodb",
            "eventVersion": "1.1",
        }
        if event == "REMOVE" and roll > 0.98:
            rec["userIdentity"] = {"principalId": "dynamodb.amazonaws.com", "type": "Service"}
        out.append(rec)
    return out


def page_body(records: list[dict[str, Any]], next_iterator: str | None) -> bytes:
    doc: dict[str, Any] = {"Records": records}
    if next_iterator is not None:
        doc["NextShardIterator"] = next_iterator
    return orjson.dumps(doc)


def make_pages(workload: Workload, distinct: int, per_page: int = 1000) -> list[bytes]:
    """``distinct`` different page bodies; each names the next as its iterator ("it-<i+1>")."""
    return [page_body(page_records(workload, i, per_page), f"it-{i + 1}") for i in range(distinct)]
