"""Certificates for upstreams that serve Hub's host names themselves.

A tunnel the fault proxy relays unopened (chaos.proxy.passthrough) ends its
TLS at the upstream, so the upstream must present a certificate for the host
the client asked for (production.cloudflare.docker.com), issued by a CA the
client trusts. The clients of a lab already trust one CA: the fault proxy's
own (`<confdir>/mitmproxy-ca-cert.pem`, through SSL_CERT_FILE or a
certs.d folder). So the upstream's certificate is issued by that CA, made
here before mitmdump starts, exactly as mitmdump would make it on its first
start (mitmproxy's CertStore), and mitmdump then finds and uses it.

When the proxy intercepts the host after all (a fault could match it), it
connects to the same upstream and must trust it too: give mitmdump
`--set ssl_verify_upstream_trusted_ca=<ca_file>` (the same CA file).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mitmproxy.certs import CertStore

CA_BASENAME = "mitmproxy"  # mitmproxy's file names in its confdir: mitmproxy-ca.pem, mitmproxy-ca-cert.pem
CA_KEY_SIZE = 2048  # mitmproxy's default key_size option
VALID_DAYS = 30  # a lab's certificates outlive any run; no longer


@dataclass(frozen=True)
class ServerCert:
    ca_file: Path  # the CA clients trust (mitmproxy-ca-cert.pem in the confdir)
    cert_file: Path  # the server's certificate, then the CA's
    key_file: Path  # its private key (0600)


def issue_server_cert(confdir: Path, folder: Path, names: tuple[str, ...], *, name: str = "server") -> ServerCert:
    """A certificate for `names` (host names or IP addresses), with a key of its
    own, issued by the proxy CA in `confdir` (created there if missing, as
    mitmdump would), written to folder/NAME.pem (with the CA after it) and
    folder/NAME-key.pem (0600). The CA's key never leaves the confdir."""
    confdir, folder = Path(confdir), Path(folder)
    store = CertStore.from_store(confdir, CA_BASENAME, CA_KEY_SIZE)
    ca = x509.load_pem_x509_certificate(store.default_ca.to_pem())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([_general_name(item) for item in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False)
        .sign(store.default_privatekey, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / f"{name}.pem", folder / f"{name}-key.pem"
    pem = serialization.Encoding.PEM
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    return ServerCert(confdir / f"{CA_BASENAME}-ca-cert.pem", cert_file, key_file)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _general_name(text: str) -> x509.GeneralName:
    if _is_ip(text):
        return x509.IPAddress(ipaddress.ip_address(text))
    return x509.DNSName(text)
