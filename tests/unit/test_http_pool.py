"""The keep-alive pool the AWS clients use: against the Streams double and small real servers.

It replaced httpx on the data path for CPU (bench/RESULTS.md), so what httpx gave for free
is pinned here: connection reuse, dropped and reset connections as retriable errors,
responses delimited by chunks or by the close, servers that close after a response, and
verified TLS.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors.dynamodb.client import ThrottledError, make_clients
from connectors.dynamodb.http import HttpTransportError, KeepAlivePool, proxied
from tests.doubles.streams_double import StreamsDouble


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")


@pytest.fixture
def double() -> Any:
    d = StreamsDouble(table="t", key_schema=(("pk", "S"),), shards=2).start()
    yield d
    d.stop()
    assert d.server_errors == []


def test_requests_share_keep_alive_connections_and_faults_become_retriable(double: StreamsDouble) -> None:
    async def scenario() -> tuple[int, list[str]]:
        async with KeepAlivePool(max_connections=8) as pool:
            _, streams = make_clients(region="us-east-1", profile=None, endpoint_url=double.endpoint_url,
                                      streams_endpoint_url=None, http=pool)
            for _ in range(30):
                await streams.call_once("ListStreams", {})
            await asyncio.gather(*(streams.call_once("ListStreams", {}) for _ in range(40)))
            # A reused connection that dies before any answer is tried once more on a fresh one (the
            # server may have closed it as we wrote); twice in a row is the caller's retriable error.
            double.faults.add("drop", op="ListStreams")
            assert (await streams.call_once("ListStreams", {}))["Streams"]
            codes = []
            for fault in ("drop", "reset", "http503"):
                double.faults.add(fault, op="ListStreams", times=2 if fault != "http503" else 1)
                with pytest.raises(ThrottledError) as exc:
                    await streams.call_once("ListStreams", {})
                codes.append(exc.value.code)
            assert (await streams.call_once("ListStreams", {}))["Streams"]
            assert not double.faults.pending
            return pool.connects, codes

    connects, codes = asyncio.run(scenario())
    assert connects <= 8 + 5  # one per place in the pool, plus one per connection the faults cut
    assert codes == ["Connection", "Connection", "HTTP503"]
    assert double.calls["ListStreams"] == 70 + 2 + 2 + 2 + 1 + 1


async def _serve(handler: Callable[[bytes], tuple[bytes, bool]], ssl_ctx: ssl.SSLContext | None = None
                 ) -> tuple[asyncio.Server, int, list[int]]:
    """A tiny HTTP server: ``handler(request body) -> (raw response, close after it)``; counts connections."""
    conns: list[int] = []

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                raw, close = handler(await reader.readexactly(length))
                writer.write(raw)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0, ssl=ssl_ctx)
    return server, server.sockets[0].getsockname()[1], conns


def test_chunked_bodies_close_delimited_bodies_and_servers_that_close_after_each_response() -> None:
    replies = [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes", True),  # closes without saying so
        (b"HTTP/1.0 404 Not Found\r\n\r\nno such thing", True),  # delimited by the close
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast", False),
    ]

    async def scenario() -> tuple[list[tuple[int, bytes]], int]:
        it = iter(replies)
        server, port, conns = await _serve(lambda body: next(it))
        async with server, KeepAlivePool() as pool:
            got = [await pool.post(f"http://127.0.0.1:{port}/", {"X-Test": "1"}, b"{}") for _ in replies]
        return got, len(conns)

    got, connections = asyncio.run(scenario())
    assert got == [(200, b"hello world"), (200, b"ok"), (200, b"yes"), (404, b"no such thing"), (200, b"last")]
    assert connections == 4  # reused once, then a new connection after each close


def test_an_unreachable_endpoint_is_a_transport_error() -> None:
    async def scenario() -> None:
        server, port, _ = await _serve(lambda b: (b"", True))
        server.close()
        await server.wait_closed()
        async with KeepAlivePool(connect_timeout_s=2) as pool:
            with pytest.raises(HttpTransportError, match="cannot connect"):
                await pool.post(f"http://127.0.0.1:{port}/", {}, b"{}")

    asyncio.run(scenario())


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_is_verified(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def scenario() -> tuple[int, bytes]:
        server, port, _ = await _serve(lambda body: (b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret", False),
                                       server_ctx)
        async with server:
            async with KeepAlivePool() as default:  # certifi's roots: the self-signed certificate is refused
                with pytest.raises(HttpTransportError, match="CERTIFICATE_VERIFY_FAILED"):
                    await default.post(f"https://localhost:{port}/", {}, b"{}")
            async with KeepAlivePool(ssl_context=trusting) as pool:
                first = await pool.post(f"https://localhost:{port}/", {}, b"{}")
                assert await pool.post(f"https://localhost:{port}/", {}, b"{}") == first
                assert pool.connects == 1
                return first

    assert asyncio.run(scenario()) == (200, b"secret")


def test_proxied_endpoints_are_recognised(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    assert not proxied("https://streams.dynamodb.eu-west-1.amazonaws.com/")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert proxied("https://streams.dynamodb.eu-west-1.amazonaws.com/")
    assert not proxied("http://127.0.0.1:8000/")
