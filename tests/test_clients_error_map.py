"""Engine error text -> registry codes: real texts that dockerd 20.10 and
skopeo 1.9 printed against the lab, and Docker's wording for every engine."""

from __future__ import annotations

import pytest

from chaos.clients.error_map import UNKNOWN, classify, docker_message, primary_error
from chaos.vocab.reference import parse_reference

SKOPEO_DENIED = (
    "initializing source docker://alice/private-app:1.0: (Mirrors also failed: [127.0.0.1:49485/alice/private-app:1.0: "
    "reading manifest 1.0 in 127.0.0.1:49485/alice/private-app: manifest unknown: manifest unknown]): "
    "docker.io/alice/private-app:1.0: reading manifest 1.0 in docker.io/alice/private-app: errors:\n"
    "denied: requested access to the resource is denied\nunauthorized: authentication required\n"
)
SKOPEO_HUB_DOWN = (
    "initializing source docker://nginx:1.25: (Mirrors also failed: [127.0.0.1:49485/library/nginx:1.25: reading manifest "
    "1.25 in 127.0.0.1:49485/library/nginx: manifest unknown: manifest unknown]): docker.io/library/nginx:1.25: pinging "
    'container registry registry-1.docker.io: Get "https://registry-1.docker.io/v2/": Bad Gateway'
)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("pull access denied for alice/private-app, repository does not exist or may require 'docker login': "
         "denied: requested access to the resource is denied", "DENIED"),
        (SKOPEO_DENIED, "DENIED"),
        ('Get "https://registry-1.docker.io/v2/": unauthorized: incorrect username or password', "UNAUTHORIZED"),
        ("toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating "
         "and upgrading: https://www.docker.com/increase-rate-limit", "TOOMANYREQUESTS"),
        ("manifest for nginx:1.99 not found: manifest unknown: manifest unknown", "MANIFEST_UNKNOWN"),
        ("no matching manifest for linux/s390x in the manifest list entries", "MANIFEST_UNKNOWN"),
        ("unsupported", "UNSUPPORTED"),
        ("unsupported: The operation is unsupported.", "UNSUPPORTED"),
        ('Get "https://registry-1.docker.io/v2/": Bad Gateway', "NETWORK"),
        (SKOPEO_HUB_DOWN, "NETWORK"),
        ('Get "https://registry-1.docker.io/v2/": proxyconnect tcp: dial tcp 127.0.0.1:3128: connect: connection refused', "NETWORK"),
        ('Get "https://registry-1.docker.io/v2/library/alpine/manifests/3.19": EOF', "NETWORK"),
        ('Get "https://registry-1.docker.io/v2/": proxyconnect tcp: dial tcp 127.0.0.1:3128: i/o timeout', "TIMEOUT"),
        ('Get "https://registry-1.docker.io/v2/": net/http: request canceled while waiting for connection '
         "(Client.Timeout exceeded while awaiting headers)", "TIMEOUT"),
        ("initializing source docker://nginx:1.25: context deadline exceeded", "TIMEOUT"),
        ("filesystem layer verification failed for digest sha256:" + "a" * 64, "DIGEST_MISMATCH"),
        # skopeo (containers/image) on a corrupted CDN blob, as it printed it through the lab:
        ("writing blob: happened during read: Digest did not match, expected sha256:" + "a" * 64
         + ", got sha256:" + "b" * 64, "DIGEST_MISMATCH"),
        ("received unexpected HTTP status: 503 Service Unavailable", "BAD_RESPONSE"),
        ("trying to reuse blob sha256:62d4 at destination: failed to read from destination repository "
         "alice/build-cache: 500 (Internal Server Error)", "BAD_RESPONSE"),
        ("something nobody has seen before", UNKNOWN),
    ],
)
def test_engine_error_text_maps_to_its_registry_code(text, code):
    assert classify(text) == code


def test_only_the_primary_error_decides_not_the_mirrors():
    # The mirror said "manifest unknown"; Hub's answer is what the user gets, as with dockerd.
    assert primary_error(SKOPEO_HUB_DOWN).startswith("docker.io/library/nginx:1.25: pinging")
    assert classify(SKOPEO_HUB_DOWN) == "NETWORK"


def test_a_registry_denial_reads_like_docker_pull_for_every_engine():
    message = docker_message("DENIED", parse_reference("alice/private-app:1.0"), SKOPEO_DENIED)
    assert message == (
        "pull access denied for alice/private-app, repository does not exist or may require 'docker login': "
        "denied: requested access to the resource is denied"
    )


def test_an_unknown_manifest_reads_like_docker_pull():
    message = docker_message("MANIFEST_UNKNOWN", parse_reference("nginx:1.99"), "reading manifest 1.99 in docker.io/library/nginx: manifest unknown: manifest unknown")
    assert message == "manifest for nginx:1.99 not found: manifest unknown: manifest unknown"


def test_network_failures_keep_the_engines_own_words_about_hub():
    message = docker_message("NETWORK", parse_reference("nginx:1.25"), SKOPEO_HUB_DOWN)
    assert "registry-1.docker.io" in message and "Mirrors also failed" not in message


def test_a_wrong_password_is_not_turned_into_pull_access_denied():
    text = 'Get "https://registry-1.docker.io/v2/": unauthorized: incorrect username or password'
    assert docker_message("UNAUTHORIZED", parse_reference("alice/private-app:1.0"), text) == text
