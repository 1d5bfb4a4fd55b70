"""The cheap signer signs exactly what botocore's SigV4Auth signs (AWS verifies every byte)."""

from __future__ import annotations

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from connectors.dynamodb.sigv4 import SigV4Signer


def botocore_headers(creds: Credentials, url: str, target: str, body: bytes, region: str) -> dict[str, str]:
    req = AWSRequest(method="POST", url=url, data=body,
                     headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0"})
    SigV4Auth(creds.get_frozen_credentials(), "dynamodb", region).add_auth(req)
    return dict(req.headers.items())


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////wEaDH+token/with+slashes=="])
@pytest.mark.parametrize(("url", "host"), [
    ("https://streams.dynamodb.eu-west-1.amazonaws.com/", "streams.dynamodb.eu-west-1.amazonaws.com"),
    ("http://127.0.0.1:18000/", "127.0.0.1:18000"),
])
def test_same_signature_as_botocore(token: str | None, url: str, host: str) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    body = b'{"ShardIterator":"arn:aws:dynamodb:eu-west-1:1:table/t/stream/x|1|AAAA==","Limit":1000}'
    target = "DynamoDBStreams_20120810.GetRecords"
    want = botocore_headers(creds, url, target, body, "eu-west-1")
    got = SigV4Signer(creds, "eu-west-1", "dynamodb").headers(host, target, body, amz_date=want["X-Amz-Date"])
    assert got["Authorization"] == want["Authorization"]
    assert {k: v for k, v in got.items()} == {k: want[k] for k in got}


def test_signing_key_follows_the_date_and_the_secret() -> None:
    creds = Credentials("AKID", "secret-1")
    signer = SigV4Signer(creds, "us-east-1", "dynamodb")
    body = b"{}"
    for date in ("20240101T000000Z", "20240102T000001Z"):
        want = botocore_headers(creds, "https://dynamodb.us-east-1.amazonaws.com/", "T.Op", body, "us-east-1")
        # botocore signs "now"; re-sign with our signer at its date, then at another day
        assert signer.headers("dynamodb.us-east-1.amazonaws.com", "T.Op", body,
                              amz_date=want["X-Amz-Date"])["Authorization"] == want["Authorization"]
        other = signer.headers("dynamodb.us-east-1.amazonaws.com", "T.Op", body, amz_date=date)
        assert f"/{date[:8]}/us-east-1/dynamodb/aws4_request" in other["Authorization"]
    rotated = Credentials("AKID", "secret-2")
    signer._credentials = rotated
    want = botocore_headers(rotated, "https://dynamodb.us-east-1.amazonaws.com/", "T.Op", body, "us-east-1")
    assert signer.headers("dynamodb.us-east-1.amazonaws.com", "T.Op", body,
                          amz_date=want["X-Amz-Date"])["Authorization"] == want["Authorization"]
