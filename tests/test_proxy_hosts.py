import pytest

from chaos.proxy.hosts import HostPolicy, parse_host_globs


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("registry-1.docker.io", True),
        ("REGISTRY-1.docker.io.", True),
        ("auth.docker.io", True),
        ("production.cloudflare.docker.com", True),
        ("eu.cloudflare.docker.com", True),
        ("example.com", False),
        ("docker.io", False),  # not one of Hub's services the proxy routes or faults
        ("index.docker.io", False),
        ("127.0.0.1", False),
    ],
)
def test_by_default_only_docker_hubs_hosts_pass(host, allowed):
    assert HostPolicy().allows(host) is allowed


def test_extra_globs_and_any_host_open_it():
    policy = HostPolicy(extra=parse_host_globs("*.r2.example.com, mirror.local"))
    assert policy.allows("blobs.r2.example.com") and policy.allows("mirror.local")
    assert not policy.allows("example.com")
    assert HostPolicy(any_host=True).allows("example.com")


@pytest.mark.parametrize(
    "text, problem",
    [("a.com,,b.com", "empty host"), ("host:443", "bad host glob 'host:443'"), ("http://x", "bad host glob")],
)
def test_bad_globs_are_named(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_host_globs(text)


def test_empty_text_means_no_extra_hosts():
    assert parse_host_globs("") == ()
