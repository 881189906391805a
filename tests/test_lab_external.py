"""Just the lab hub and the fault proxy, for a mirror of the user's own
(`Lab(spec, root, mirror=False)`), and the settings that point that mirror
(or a fault proxy of the user's own) at them, as data."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from chaos.clients.builtin import BuiltinClient
from chaos.errors import UsageError
from chaos.lab.binaries import require_registry
from chaos.lab.components.launch import READY_DEADLINE_S
from chaos.lab.components.mirror import pull_through_mirror
from chaos.lab.components.proxy import fault_proxy, mitmdump_binary
from chaos.lab.lab import Lab, external_mirror_settings
from chaos.lab.ports import free_ports
from chaos.language.model import LabSpec, MirrorSettings, SeedImage, User
from chaos.proxy.control_client import ControlClient
from chaos.vocab.reference import parse_reference
from tests.lab_helpers import processes_mentioning

ALPINE = parse_reference("alpine:3.19")
SPEC = LabSpec(users=(User("alice", "alice-pw"),), images=(SeedImage(ALPINE, 200_000, layers=2),))


def test_a_lab_without_a_mirror_refuses_what_needs_one(tmp_path):
    with pytest.raises(UsageError, match="engine docker: the lab's docker pulls through the lab's mirror"):
        Lab(SPEC, tmp_path, mirror=False, engines={"docker"})
    with pytest.raises(UsageError, match="lab.mirror: settings for the lab's mirror, and this lab runs none"):
        Lab(LabSpec(users=SPEC.users, mirror=MirrorSettings(upstream_login="alice")), tmp_path, mirror=False)


def users_mirror(tmp_path: Path, name: str, https_proxy: str, ca_file: str):
    """A mirror as a user runs it: production's upstream, HTTPS_PROXY and the CA from the settings."""
    port = free_ports(1)[0]
    return pull_through_mirror(
        binary=require_registry(), port=port, storage=tmp_path / name / "storage", config_path=tmp_path / name / "config.yml",
        log_path=tmp_path / name / "mirror.log", https_proxy=https_proxy, ca_file=ca_file, name=name,
    )  # fmt: skip


@pytest.mark.lab
def test_a_users_mirror_pulls_through_the_lab_with_the_printed_settings(tmp_path):
    with Lab(SPEC, tmp_path / "lab", mirror=False) as lab:
        assert set(lab.components) == {"hub", "auth", "cdn", "proxy"} and lab.state.mirror_url == ""
        settings = lab.external_mirror_settings()
        assert settings == external_mirror_settings(lab.state)
        assert settings.remote_url == "https://registry-1.docker.io"
        assert settings.https_proxy == lab.state.proxy_urls["mirror"]
        assert settings.env() == {"HTTPS_PROXY": settings.https_proxy, "SSL_CERT_FILE": lab.state.ca_file}
        assert settings.hub_routes == (f"registry={lab.state.hub_url},auth={lab.state.auth_url},"
                                       f"cdn={lab.state.cdn_url}")
        assert settings.cdn_host == "production.cloudflare.docker.com"
        assert stat.S_IMODE(Path(settings.cdn_secret_file).stat().st_mode) == 0o600
        assert settings.to_dict()["env"] == settings.env() and settings.users_file.endswith("users.json")

        # The user's mirror behind the lab's proxy, on its listener for mirrors.
        launch = users_mirror(tmp_path, "their-mirror", settings.https_proxy, settings.ca_file)
        with launch.process() as mirror, ControlClient(settings.control_url) as control:
            mirror.start()
            mirror.wait_ready(launch.ready, READY_DEADLINE_S)
            start = control.events().next
            client = BuiltinClient(mirror_url=launch.url, proxy_url=lab.state.proxy_url, ca_file=lab.state.ca_file,
                                   timeout=10)
            assert client.pull(ALPINE).served_by == "mirror"
            # A relayed CDN tunnel's event comes once the CDN has been quiet a moment:
            # wait, as a run does, until nothing is in flight.
            deadline = time.monotonic() + 10
            while control.health()["in_flight"] and time.monotonic() < deadline:
                time.sleep(0.05)
            events = control.events(after=start).events
            assert {e["origin"] for e in events} == {"mirror"}
            assert any(e["role"] == "cdn" for e in events)  # blob GETs redirected to the CDN, as Hub's are

        # A fault proxy of the user's own in front of the same lab hub, from
        # hub_routes and the CDN secret alone.
        port, control_port = free_ports(2)
        routes = dict(pair.split("=", 1) for pair in settings.hub_routes.split(","))
        proxy_launch = fault_proxy(
            mitmdump=mitmdump_binary(), port=port, control_port=control_port, confdir=tmp_path / "their-proxy",
            routes=routes, cdn_secret_file=Path(settings.cdn_secret_file), log_path=tmp_path / "their-proxy.log",
            name="their-proxy", upstream_ca=Path(settings.upstream_ca_file),
        )  # fmt: skip
        with proxy_launch.process() as proxy:
            proxy.start()
            proxy.wait_ready(proxy_launch.ready, READY_DEADLINE_S)
            ca = str(tmp_path / "their-proxy" / "mitmproxy-ca-cert.pem")
            launch = users_mirror(tmp_path, "behind-their-proxy", proxy_launch.url, ca)
            with launch.process() as mirror:
                mirror.start()
                mirror.wait_ready(launch.ready, READY_DEADLINE_S)
                client = BuiltinClient(mirror_url=launch.url, proxy_url=proxy_launch.url, ca_file=ca, timeout=10)
                result = client.pull(ALPINE)
                assert result.ok and result.served_by == "mirror"
            cdn_log = lab.paths.log("cdn").read_text()
            assert cdn_log.count("GET /") >= 2  # both mirrors' blobs came from the lab's CDN
    assert lab.stopped and not processes_mentioning(str(tmp_path))
