"""A throw-away CA and a server certificate for the benchmark's TLS hub.

The direct arm of the pass-through benchmark has the mirror talk TLS to the hub
itself, as it talks TLS to mitmproxy in the proxied arms; the mirror (a Go
program) trusts this CA through SSL_CERT_FILE, and mitmproxy through
ssl_verify_upstream_trusted_ca. The certificate names every way the hub is
addressed: 127.0.0.1 (direct, and mitmproxy's routed connection) and
registry-1.docker.io (the SNI mitmproxy forwards from the mirror).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST_NAMES = ("registry-1.docker.io", "localhost")
IP_ADDRESSES = ("127.0.0.1",)


@dataclass(frozen=True)
class ServerCert:
    ca_file: Path  # what clients trust
    cert_file: Path  # the server's certificate chain (leaf, then CA)
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_server_cert(folder: Path) -> ServerCert:
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("hub-chaos bench CA"))
        .issuer_name(_name("hub-chaos bench CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(h) for h in HOST_NAMES] + [x509.IPAddress(ipaddress.ip_address(a)) for a in IP_ADDRESSES]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(HOST_NAMES[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = ServerCert(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    paths.ca_file.write_bytes(ca.public_bytes(pem))
    paths.cert_file.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    paths.key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths
