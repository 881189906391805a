import pytest

from chaos.faults.match import Match
from chaos.vocab.endpoints import Endpoint
from tests._faults_helpers import CONNECT, MANIFEST


@pytest.mark.parametrize(
    "match, host, method, endpoint, expected",
    [
        (Match(), "registry-1.docker.io", "GET", MANIFEST, True),
        (Match(roles=("auth",)), "registry-1.docker.io", "GET", MANIFEST, False),
        (Match(hosts=("*.docker.io",)), "Registry-1.Docker.IO", "GET", MANIFEST, True),
        (Match(hosts=("auth.docker.io",)), "registry-1.docker.io", "GET", MANIFEST, False),
        (Match(endpoints=("blob",)), "registry-1.docker.io", "GET", MANIFEST, False),
        (Match(methods=("HEAD",)), "registry-1.docker.io", "get", MANIFEST, False),
        (Match(methods=("GET",)), "registry-1.docker.io", "get", MANIFEST, True),
        (Match(repository="library/*"), "registry-1.docker.io", "GET", MANIFEST, True),
        (Match(repository="acme/*"), "registry-1.docker.io", "GET", MANIFEST, False),
        # A CONNECT knows only its host: narrower faults leave the tunnel alone.
        (Match(roles=("registry",)), "registry-1.docker.io", "CONNECT", CONNECT, True),
        (Match(endpoints=("manifest",)), "registry-1.docker.io", "CONNECT", CONNECT, False),
        (Match(methods=("GET",)), "registry-1.docker.io", "CONNECT", CONNECT, False),
        (Match(repository="*"), "registry-1.docker.io", "CONNECT", CONNECT, False),
    ],
)
def test_match(match, host, method, endpoint, expected):
    assert match.matches(host, method, endpoint) is expected


MANIFEST_BY_DIGEST = Endpoint("registry", "manifest", "library/alpine", "sha256:" + "a" * 64, "digest")
BLOB = Endpoint("registry", "blob", "library/alpine", "sha256:" + "a" * 64, "digest")


@pytest.mark.parametrize(
    "endpoints, endpoint, expected",
    [
        (("manifest",), MANIFEST, True),
        (("manifest",), MANIFEST_BY_DIGEST, True),
        (("manifest_tag",), MANIFEST, True),
        (("manifest_tag",), MANIFEST_BY_DIGEST, False),
        (("manifest_digest",), MANIFEST_BY_DIGEST, True),
        (("manifest_digest",), MANIFEST, False),
        (("manifest_digest",), BLOB, False),
        (("blob", "manifest_tag"), BLOB, True),
    ],
)
def test_manifests_can_be_selected_by_tag_or_by_digest(endpoints, endpoint, expected):
    assert Match(endpoints=endpoints).matches("h", "GET", endpoint) is expected


@pytest.mark.parametrize(
    "clients, client, expected",
    [
        (("127.0.0.2",), "127.0.0.2", True),
        (("127.0.0.2",), "127.0.0.1", False),
        (("127.0.0.*",), "127.0.0.9", True),
        (("127.0.0.0/30",), "127.0.0.3", True),
        (("127.0.0.0/30",), "127.0.0.4", False),
        (("127.0.0.0/30",), "::1", False),
        (("::1",), "::1", True),
        (("127.0.0.1",), None, False),
        ((), None, True),
    ],
)
def test_match_by_client_address(clients, client, expected):
    assert Match(clients=clients).matches("h", "GET", MANIFEST, client) is expected


@pytest.mark.parametrize(
    "origins, origin, expected",
    [
        ((), "mirror", True),
        (("mirror",), "mirror", True),
        (("mirror",), "client", False),
        (("mirror", "client"), "client", True),
        (("client",), "unknown", False),
        (("unknown",), "unknown", True),
    ],
)
def test_origins_select_who_sent_the_request(origins, origin, expected):
    assert Match(origins=origins).matches("registry-1.docker.io", "GET", MANIFEST, origin=origin) is expected


def test_a_request_of_unknown_origin_is_unknown_by_default():
    assert Match(origins=("unknown",)).matches("registry-1.docker.io", "GET", MANIFEST) is True
    assert Match(origins=("mirror",)).matches("registry-1.docker.io", "GET", MANIFEST) is False
