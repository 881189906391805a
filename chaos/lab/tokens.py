"""Registry bearer tokens the way auth.docker.io issues them, and the scope grammar.

The lab hub is a stock distribution registry whose `auth.token` trusts one
self-signed certificate. Tokens are ES256 JWTs whose header carries that
certificate in `x5c`: distribution 2.8.2 verifies the chain against its
`rootcertbundle`, so no key id (libtrust `kid`) bookkeeping is needed.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chaos.errors import ChaosError, EnvironmentProblem
from chaos.vocab.hub import TOKEN_ISSUER, TOKEN_LIFETIME_S, TOKEN_SERVICE

KEY_FILE = "key.pem"
CERT_FILE = "cert.pem"


class BadScope(ChaosError):
    """A scope parameter that does not follow `type:name:action[,action...]`."""


class BadToken(ChaosError):
    """A token that is not ours, is expired, or was minted for another audience."""


class Scope(NamedTuple):
    type: str  # "repository", "registry"
    name: str  # "library/redis", "catalog"
    actions: tuple[str, ...]  # ("pull", "push"), order kept, duplicates dropped

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


# distribution/reference's name grammar: optional host[:port] then lowercase path components.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)"
_REPOSITORY_NAME = re.compile(rf"^{_HOST}?{_COMPONENT}(?:/{_COMPONENT})*$")
_TYPE = re.compile(r"^([a-z0-9]+)(?:\(([a-z0-9]+)\))?$")
_ACTION = re.compile(r"^(?:[a-z]+|\*)$")


def parse_scope(text: str) -> Scope:
    """Parse one scope: `repository:library/redis:pull,push` -> Scope.

    The name sits between the first and the last colon, so a name with a
    registry port (`repository:localhost:5000/app:pull`) survives. A resource
    class (`repository(plugin):...`) is accepted and dropped: the registry
    matches access by type and name only.
    """
    first, _, rest = text.partition(":")
    name, sep, actions_text = rest.rpartition(":")
    if not sep:
        raise BadScope(f"invalid scope {text!r}: expected type:name:actions")
    type_match = _TYPE.match(first)
    if not type_match:
        raise BadScope(f"invalid scope {text!r}: bad resource type {first!r}")
    resource_type = type_match.group(1)
    if not name:
        raise BadScope(f"invalid scope {text!r}: empty resource name")
    if resource_type == "repository" and not _REPOSITORY_NAME.match(name):
        raise BadScope(f"invalid scope {text!r}: bad repository name {name!r}")
    actions = tuple(dict.fromkeys(actions_text.split(",")))
    bad = [action for action in actions if not _ACTION.match(action)]
    if bad:
        raise BadScope(f"invalid scope {text!r}: bad action {bad[0]!r}")
    return Scope(resource_type, name, actions)


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Parse every scope parameter, merging repeats of one resource.

    GET /token repeats `scope=`; the OAuth POST form puts several scopes in one
    space-separated value. Both shapes go through here.
    """
    merged: dict[tuple[str, str], dict[str, None]] = {}
    for value in values:
        for item in value.split():
            scope = parse_scope(item)
            merged.setdefault((scope.type, scope.name), {}).update(dict.fromkeys(scope.actions))
    return [Scope(kind, name, tuple(actions)) for (kind, name), actions in merged.items()]


def _new_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub-chaos lab auth.docker.io")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A day of slack keeps a registry with a slightly skewed clock happy.
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        # It is its own root in the registry's bundle, so it must be a CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True)
class TokenSigner:
    """The token service's signing identity: a P-256 key and its self-signed certificate."""

    directory: Path
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, directory: Path) -> TokenSigner:
        """Make a fresh key and certificate and write key.pem and cert.pem into directory."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _new_certificate(key)
        key_path = directory / KEY_FILE
        key_path.unlink(missing_ok=True)
        # Created 0600: never readable by others, not even for a moment.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ))
        (directory / CERT_FILE).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(directory, key, certificate)

    @classmethod
    def load(cls, directory: Path) -> TokenSigner:
        """Read key.pem and cert.pem that create() wrote."""
        directory = Path(directory)
        try:
            key = serialization.load_pem_private_key((directory / KEY_FILE).read_bytes(), password=None)
            certificate = x509.load_pem_x509_certificate((directory / CERT_FILE).read_bytes())
        except (OSError, ValueError) as exc:
            raise EnvironmentProblem(f"cannot load token signing keys from {directory}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise EnvironmentProblem(f"{directory / KEY_FILE}: expected a P-256 (ES256) key")
        if certificate.public_key() != key.public_key():
            raise EnvironmentProblem(f"{directory / CERT_FILE} does not match {directory / KEY_FILE}")
        return cls(directory, key, certificate)

    @property
    def cert_path(self) -> Path:
        """The certificate to give the registry as `auth.token.rootcertbundle`."""
        return self.directory / CERT_FILE

    def sign(
        self,
        subject: str,
        access: list[dict],
        *,
        audience: str = TOKEN_SERVICE,
        issuer: str = TOKEN_ISSUER,
        expires_in: int = TOKEN_LIFETIME_S,
    ) -> str:
        """A JWT granting `access` ([{"type","name","actions"}]) to subject ("" = anonymous)."""
        now = int(time.time())
        claims = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "exp": now + expires_in,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "access": access,
        }
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        headers = {"x5c": [base64.b64encode(der).decode("ascii")]}
        return jwt.encode(claims, self.key, algorithm="ES256", headers=headers)

    def verify(self, token: str, *, audience: str = TOKEN_SERVICE, issuer: str = TOKEN_ISSUER) -> dict:
        """The claims of a token this signer made; BadToken if not ours, expired or misaddressed."""
        try:
            return jwt.decode(
                token,
                self.key.public_key(),
                algorithms=["ES256"],
                audience=audience,
                issuer=issuer,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise BadToken(f"token rejected: {exc}") from exc
