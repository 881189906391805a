import base64
import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from chaos.errors import EnvironmentProblem
from chaos.lab.tokens import BadScope, BadToken, Scope, TokenSigner, parse_scope, parse_scopes


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    return TokenSigner.create(tmp_path_factory.mktemp("keys"))


def test_create_writes_key_and_cert_that_load_reads_back(tmp_path):
    created = TokenSigner.create(tmp_path)
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600
    assert created.cert_path == tmp_path / "cert.pem"
    loaded = TokenSigner.load(tmp_path)
    token = loaded.sign("alice", [])
    assert created.verify(token)["sub"] == "alice"


def test_load_without_keys_is_an_environment_problem(tmp_path):
    with pytest.raises(EnvironmentProblem, match="cannot load token signing keys"):
        TokenSigner.load(tmp_path)


def test_load_refuses_a_certificate_of_another_key(tmp_path):
    TokenSigner.create(tmp_path / "a")
    TokenSigner.create(tmp_path / "b")
    (tmp_path / "a" / "cert.pem").write_bytes((tmp_path / "b" / "cert.pem").read_bytes())
    with pytest.raises(EnvironmentProblem, match="does not match"):
        TokenSigner.load(tmp_path / "a")


def test_certificate_is_a_self_signed_p256_ca(signer):
    cert = signer.certificate
    assert cert.issuer == cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes, cert.signature_algorithm_parameters)


def test_token_claims_look_like_hubs(signer):
    access = [{"type": "repository", "name": "library/redis", "actions": ["pull"]}]
    before = int(time.time())
    token = signer.sign("alice", access)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == "auth.docker.io"
    assert claims["aud"] == "registry.docker.io"
    assert claims["sub"] == "alice"
    assert claims["access"] == access
    assert before <= claims["iat"] <= int(time.time())
    assert claims["nbf"] <= claims["iat"]
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"]


def test_every_token_has_its_own_jti(signer):
    ids = {jwt.decode(signer.sign("", []), options={"verify_signature": False})["jti"] for _ in range(5)}
    assert len(ids) == 5


def test_header_carries_the_certificate_in_x5c_and_it_verifies_the_token(signer):
    token = signer.sign("", [])
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    (leaf,) = header["x5c"]
    der = base64.b64decode(leaf)
    assert der == signer.certificate.public_bytes(serialization.Encoding.DER)
    # What the registry does: take the key from the x5c certificate, not from a file.
    key = x509.load_der_x509_certificate(der).public_key()
    assert jwt.decode(token, key, algorithms=["ES256"], audience="registry.docker.io")["sub"] == ""


def test_custom_audience_issuer_and_lifetime_are_honoured(signer):
    token = signer.sign("bob", [], audience="elsewhere", issuer="me", expires_in=60)
    claims = signer.verify(token, audience="elsewhere", issuer="me")
    assert claims["exp"] - claims["iat"] == 60


def test_expired_token_is_rejected(signer):
    with pytest.raises(BadToken, match="expired"):
        signer.verify(signer.sign("alice", [], expires_in=-10))


def test_token_for_another_audience_is_rejected(signer):
    with pytest.raises(BadToken):
        signer.verify(signer.sign("alice", [], audience="auth.docker.io/refresh"))


def test_token_of_another_signer_is_rejected(signer, tmp_path):
    other = TokenSigner.create(tmp_path)
    with pytest.raises(BadToken):
        signer.verify(other.sign("alice", []))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("repository:library/redis:pull", Scope("repository", "library/redis", ("pull",))),
        ("repository:alice/app:pull,push", Scope("repository", "alice/app", ("pull", "push"))),
        ("repository:alice/app:push,pull,push", Scope("repository", "alice/app", ("push", "pull"))),
        ("repository:redis:pull", Scope("repository", "redis", ("pull",))),
        ("repository:a/b/c-d_e.f:pull", Scope("repository", "a/b/c-d_e.f", ("pull",))),
        ("repository:localhost:5000/app:pull", Scope("repository", "localhost:5000/app", ("pull",))),
        ("repository(plugin):vieux/sshfs:pull", Scope("repository", "vieux/sshfs", ("pull",))),
        ("registry:catalog:*", Scope("registry", "catalog", ("*",))),
    ],
)
def test_parse_scope_accepts(text, expected):
    assert parse_scope(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "expected type:name:actions"),
        ("repository", "expected type:name:actions"),
        ("repository:library/redis", "expected type:name:actions"),
        (":library/redis:pull", "bad resource type"),
        ("Repository:library/redis:pull", "bad resource type"),
        ("repository(:library/redis:pull", "bad resource type"),
        ("repository::pull", "empty resource name"),
        ("repository:Library/Redis:pull", "bad repository name"),
        ("repository:library//redis:pull", "bad repository name"),
        ("repository:library/redis:", "bad action ''"),
        ("repository:library/redis:pull,", "bad action ''"),
        ("repository:library/redis:pu ll", "bad action"),
    ],
)
def test_parse_scope_rejects(text, problem):
    with pytest.raises(BadScope, match=problem):
        parse_scope(text)


def test_parse_scopes_takes_repeated_and_space_separated_scopes_and_merges_repeats():
    scopes = parse_scopes(
        [
            "repository:alice/app:pull",
            "repository:library/redis:pull repository:alice/app:push",
        ]
    )
    assert scopes == [
        Scope("repository", "alice/app", ("pull", "push")),
        Scope("repository", "library/redis", ("pull",)),
    ]


def test_parse_scopes_of_nothing_is_empty():
    assert parse_scopes([]) == []
    assert parse_scopes([""]) == []


def test_scope_prints_in_wire_form():
    assert str(Scope("repository", "alice/app", ("pull", "push"))) == "repository:alice/app:pull,push"
