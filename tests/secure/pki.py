"""A private CA and the certificates the secured-Kafka tests need, made fresh per session.

The broker's certificate names 127.0.0.1 and localhost (librdkafka checks the host name by
default); one broker certificate is already expired, and a second CA that signed nothing
the broker serves stands for "a CA the bridge does not trust".
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate (PEM): what clients and the broker trust
    other_ca: Path  # a CA that signed nothing here
    broker: Path  # broker key (PKCS#8) + certificate + CA, PEM: Kafka's ssl.keystore.type=PEM
    broker_expired: Path  # the same, with a certificate that expired yesterday
    server_cert: Path  # server certificate for 127.0.0.1 (the registry over HTTPS)
    server_key: Path
    client_cert: Path  # a client certificate signed by the CA (mTLS)
    client_key: Path
    other_client_cert: Path  # a client certificate signed by other_ca
    other_client_key: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(ca: tuple[rsa.RSAPrivateKey, x509.Certificate], cn: str, *, server: bool,
          expired: bool = False) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    start, end = (now - dt.timedelta(days=10), now - dt.timedelta(days=1)) if expired else (
        now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca[1].subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server
            else [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return key, b.sign(ca[0], hashes.SHA256())


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def make_pki(d: Path) -> Pki:
    d.mkdir(parents=True, exist_ok=True)
    ca = _ca("bridge-test-ca")
    other = _ca("some-other-ca")
    broker = _leaf(ca, "127.0.0.1", server=True)
    expired = _leaf(ca, "127.0.0.1", server=True, expired=True)
    client = _leaf(ca, "bridge-client", server=False)
    stranger = _leaf(other, "bridge-client", server=False)
    return Pki(
        ca=_write(d / "ca.pem", _pem_cert(ca[1])),
        other_ca=_write(d / "other-ca.pem", _pem_cert(other[1])),
        broker=_write(d / "broker.pem", _pem_key(broker[0]) + _pem_cert(broker[1]) + _pem_cert(ca[1])),
        broker_expired=_write(d / "broker-expired.pem", _pem_key(expired[0]) + _pem_cert(expired[1]) + _pem_cert(ca[1])),
        server_cert=_write(d / "server.crt", _pem_cert(broker[1]) + _pem_cert(ca[1])),
        server_key=_write(d / "server.key", _pem_key(broker[0])),
        client_cert=_write(d / "client.crt", _pem_cert(client[1])),
        client_key=_write(d / "client.key", _pem_key(client[0])),
        other_client_cert=_write(d / "other-client.crt", _pem_cert(stranger[1])),
        other_client_key=_write(d / "other-client.key", _pem_key(stranger[0])),
    )
