"""The fault proxy listens once per origin, so its tap can tell who asked:
the mirror filling its cache, the client engine falling back to Hub, the push
registry. Each component is given its own listener."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.clients.builtin import BuiltinClient
from chaos.lab.components.proxy import ORIGINS_OPTION, fault_proxy
from chaos.lab.lab import Lab
from chaos.lab.layout import LabState
from chaos.lab.ports import is_listening
from chaos.language.model import LabSpec, SeedImage
from chaos.proxy.control_client import ControlClient
from chaos.vocab.reference import parse_reference

ALPINE, NGINX = parse_reference("alpine:3.19"), parse_reference("nginx:1.25")


def launch(tmp_path: Path, **kwargs):
    return fault_proxy(mitmdump="/venv/bin/mitmdump", control_port=5380, confdir=tmp_path / "proxy",
                       routes={"registry": "http://127.0.0.1:5001"}, cdn_secret_file=None,
                       log_path=tmp_path / "proxy.log", **kwargs)


def test_one_listener_per_origin_each_named_to_the_addon(tmp_path):
    argv = launch(tmp_path, port=8082, origins={"mirror": 8081, "client": 8082, "push-registry": 8083}).argv
    modes = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--mode"]
    assert modes == ["regular@8081", "regular@8082", "regular@8083"]
    assert "--listen-port" not in argv
    assert f"{ORIGINS_OPTION}=mirror=8081,client=8082,push-registry=8083" in argv
    assert argv[argv.index("--listen-host") + 1] == "127.0.0.1"


def test_without_origins_one_listener_naming_none(tmp_path):
    argv = launch(tmp_path, port=8080).argv
    assert argv[argv.index("--listen-port") + 1] == "8080"
    assert "--mode" not in argv and not any(arg.startswith(ORIGINS_OPTION) for arg in argv)


@pytest.mark.parametrize("origins", [{"mirror": 8081}, {"mirror": 8082, "client": 8082}])
def test_the_main_port_must_be_an_origins_and_no_two_origins_share_one(tmp_path, origins):
    with pytest.raises(ValueError, match="fault_proxy: "):
        launch(tmp_path, port=8082, origins=origins)


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


@pytest.mark.lab
def test_the_lab_gives_each_origin_its_listener_and_the_tap_says_who_asked(tmp_path):
    spec = LabSpec(images=(SeedImage(ALPINE, 40_000, layers=1), SeedImage(NGINX, 40_000, layers=1)),
                   push_registry=True)
    with Lab(spec, tmp_path) as lab:
        state = lab.state
        ports = list(state.ports.values())
        assert len(set(ports)) == len(ports)  # no two components on one port
        assert set(state.proxy_urls) == {"mirror", "client", "push-registry"}
        assert state.proxy_url == state.proxy_urls["client"]
        assert len(set(state.proxy_urls.values())) == 3
        assert all(is_listening(int(url.rsplit(":", 1)[1])) for url in state.proxy_urls.values())
        assert LabState.load(lab.paths.state_file).proxy_urls == state.proxy_urls
        assert environ(lab.components["mirror"].pid)["HTTPS_PROXY"] == state.proxy_urls["mirror"]
        assert environ(lab.components["push-registry"].pid)["HTTPS_PROXY"] == state.proxy_urls["push-registry"]

        with ControlClient(state.control_url) as control:
            start = control.events().next
            client = BuiltinClient(mirror_url=state.mirror_url, proxy_url=state.proxy_url, ca_file=state.ca_file,
                                   timeout=10)
            assert client.pull(ALPINE).served_by == "mirror"  # the mirror asks Hub
            hub_only = BuiltinClient(mirror_url=None, proxy_url=state.proxy_url, ca_file=state.ca_file, timeout=10)
            assert hub_only.pull(NGINX).served_by == "hub"  # the client asks Hub itself
            events = control.events(after=start).events
    by_repository = {}
    for event in events:
        by_repository.setdefault(event.get("repository"), set()).add(event["origin"])
    assert by_repository["library/alpine"] == {"mirror"}
    assert by_repository["library/nginx"] == {"client"}
