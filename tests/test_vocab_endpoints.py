import pytest

from chaos.vocab.endpoints import ENDPOINT_SELECTORS, KINDS, Endpoint, classify, role_of

DIGEST = "sha256:" + "ab" * 32
HEX = "ab" * 32
REGISTRY = "registry-1.docker.io"


@pytest.mark.parametrize(
    "host, role",
    [
        ("registry-1.docker.io", "registry"),
        ("REGISTRY-1.DOCKER.IO.", "registry"),
        ("auth.docker.io", "auth"),
        ("production.cloudflare.docker.com", "cdn"),
        ("docker-images-prod.cloudflare.docker.com", "cdn"),
        ("cloudflare.docker.com.evil.example", "other"),
        ("index.docker.io", "other"),
        ("127.0.0.1", "other"),
    ],
)
def test_role_comes_from_the_host_name(host, role):
    assert role_of(host) == role


@pytest.mark.parametrize(
    "host, method, path, expected",
    [
        (REGISTRY, "GET", "/v2/", Endpoint("registry", "ping")),
        (REGISTRY, "GET", "/v2", Endpoint("registry", "ping")),
        (REGISTRY, "CONNECT", "", Endpoint("registry", "connect")),
        (
            REGISTRY,
            "GET",
            "/v2/library/alpine/manifests/3.19",
            Endpoint("registry", "manifest", "library/alpine", "3.19", "tag"),
        ),
        (
            REGISTRY,
            "HEAD",
            f"/v2/library/alpine/manifests/{DIGEST}",
            Endpoint("registry", "manifest", "library/alpine", DIGEST, "digest"),
        ),
        (
            REGISTRY,
            "GET",
            "/v2/acme/team/app/manifests/latest",
            Endpoint("registry", "manifest", "acme/team/app", "latest", "tag"),
        ),
        (
            # A repository may itself contain a "manifests" component: the last one wins.
            REGISTRY,
            "GET",
            "/v2/acme/manifests/manifests/v1",
            Endpoint("registry", "manifest", "acme/manifests", "v1", "tag"),
        ),
        (
            REGISTRY,
            "GET",
            f"/v2/library/redis/blobs/{DIGEST}",
            Endpoint("registry", "blob", "library/redis", DIGEST, "digest"),
        ),
        (
            REGISTRY,
            "POST",
            "/v2/acme/app/blobs/uploads/",
            Endpoint("registry", "blob_upload", "acme/app"),
        ),
        (
            REGISTRY,
            "PATCH",
            "/v2/acme/app/blobs/uploads/5e0c-uuid?_state=abc",
            Endpoint("registry", "blob_upload", "acme/app"),
        ),
        (REGISTRY, "GET", "/v2/library/alpine/tags/list?n=10", Endpoint("registry", "tags", "library/alpine")),
        (REGISTRY, "GET", "/v2/_catalog?n=100", Endpoint("registry", "catalog")),
        (
            REGISTRY,
            "GET",
            f"/v2/library/alpine/referrers/{DIGEST}",
            Endpoint("registry", "referrers", "library/alpine", DIGEST, "digest"),
        ),
        (REGISTRY, "GET", "/v2/Library/Alpine/manifests/latest", Endpoint("registry", "other")),
        (REGISTRY, "GET", "/", Endpoint("registry", "other")),
        (
            "auth.docker.io",
            "GET",
            "/token?service=registry.docker.io&scope=repository%3Alibrary%2Fredis%3Apull",
            Endpoint("auth", "token", "library/redis"),
        ),
        (
            "auth.docker.io",
            "GET",
            "/token?service=registry.docker.io&scope=repository:acme/app:pull,push",
            Endpoint("auth", "token", "acme/app"),
        ),
        ("auth.docker.io", "GET", "/token?service=registry.docker.io", Endpoint("auth", "token")),
        (
            "auth.docker.io",
            "GET",
            "/token?scope=registry:catalog:*&scope=repository:library/a:pull",
            Endpoint("auth", "token", "library/a"),
        ),
        ("auth.docker.io", "GET", "/v2/", Endpoint("auth", "other")),
        (
            "production.cloudflare.docker.com",
            "GET",
            f"/registry-v2/docker/registry/v2/blobs/sha256/ab/{HEX}/data?verify=1",
            Endpoint("cdn", "blob", None, DIGEST, "digest"),
        ),
        ("production.cloudflare.docker.com", "GET", "/whatever", Endpoint("cdn", "blob")),
        (
            # Unknown hosts still get registry-shaped paths classified (reverse proxies, mirrors).
            "127.0.0.1",
            "GET",
            "/v2/library/alpine/manifests/3",
            Endpoint("other", "manifest", "library/alpine", "3", "tag"),
        ),
    ],
)
def test_classify(host, method, path, expected):
    assert classify(host, method, path) == expected


def test_manifest_selectors_tell_tags_from_digests():
    by_tag = classify("registry-1.docker.io", "GET", "/v2/library/a/manifests/3")
    by_digest = classify("registry-1.docker.io", "GET", "/v2/library/a/manifests/sha256:" + "a" * 64)
    assert by_tag.selected_by(("manifest_tag",)) and not by_tag.selected_by(("manifest_digest",))
    assert by_digest.selected_by(("manifest_digest",)) and not by_digest.selected_by(("manifest_tag",))
    assert by_tag.selected_by(("manifest",)) and by_digest.selected_by(("manifest",))
    assert set(ENDPOINT_SELECTORS) == set(KINDS) | {"manifest_tag", "manifest_digest"}
