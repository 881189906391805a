"""The engine factory: names, configuration taken from the lab, and one-line
exit-3 errors when an engine cannot run here."""

from __future__ import annotations

import pytest

from chaos.clients.engines import BuiltinEngine, Engine, make_engine
from chaos.errors import EnvironmentProblem, UsageError
from chaos.lab.layout import LabState
from chaos.vocab.names import ENGINES

LAB = LabState(
    root="/nonexistent/lab",
    mirror_url="http://127.0.0.1:5000",
    proxy_url="http://127.0.0.1:3128",
    ca_file="/nonexistent/ca.pem",
)


def make(name, lab=LAB, **overrides):
    options = {"lab": lab, "credentials": None, "timeout": 5.0} | overrides
    return make_engine(name, **options)


def test_the_engines_are_named():
    assert set(ENGINES) == {"builtin", "docker", "skopeo", "containerd"}


def test_an_unknown_engine_is_a_usage_error_naming_the_choices():
    with pytest.raises(UsageError) as caught:
        make("podman")
    assert caught.value.exit_code == 2
    assert "'podman'" in str(caught.value) and all(name in str(caught.value) for name in ENGINES)


def test_a_non_positive_timeout_is_a_usage_error():
    with pytest.raises(UsageError):
        make("builtin", timeout=0)


def test_builtin_uses_the_labs_mirror_proxy_and_ca():
    engine = make("builtin", credentials=("alice", "wonderland"))
    assert isinstance(engine, BuiltinEngine) and isinstance(engine, Engine)
    client = engine.client
    assert (client.mirror_url, client.proxy_url, client.ca_file) == (LAB.mirror_url, LAB.proxy_url, LAB.ca_file)
    assert client.credentials == ("alice", "wonderland")
    engine.close()


def test_timeout_is_the_whole_pulls_budget_for_builtin_too():
    engine = make("builtin", timeout=42.0)
    # Not a per-read timeout any more: the daemon's own limits apply inside it.
    assert engine.client.timeout == 42.0
    assert (engine.client.timings.ping_s, engine.client.timings.layer_retry_s[0]) == (15.0, 5.0)


@pytest.mark.parametrize("name", ["builtin", "skopeo"])
def test_mirror_only_pulls_from_the_mirror_alone(name):
    engine = make(name, mirror_only=True)
    try:
        assert (engine.client.mirror_only if name == "builtin" else engine.mirror_only) is True
    finally:
        engine.close()


@pytest.mark.parametrize("name", ["builtin", "docker", "skopeo", "containerd"])
def test_mirror_only_without_a_mirror_is_a_usage_error(name, tmp_path):
    with pytest.raises(UsageError, match="needs a mirror") as caught:
        make(name, lab=LabState(root=str(tmp_path)), mirror_only=True)
    assert caught.value.exit_code == 2


def test_docker_without_a_daemon_is_an_environment_problem_in_one_line(tmp_path):
    lab = LabState(root=str(tmp_path), mirror_url=LAB.mirror_url, docker_host=f"unix://{tmp_path}/docker.sock")
    with pytest.raises(EnvironmentProblem) as caught:
        make("docker", lab=lab)
    message = str(caught.value)
    assert caught.value.exit_code == 3
    assert message.startswith("engine docker cannot run:") and str(tmp_path) in message
    assert "\n" not in message


def test_docker_falls_back_to_docker_host_outside_the_lab(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/elsewhere.sock")
    with pytest.raises(EnvironmentProblem, match="elsewhere.sock"):
        make("docker", lab=LabState(root=str(tmp_path)))


def test_skopeo_missing_is_an_environment_problem_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no skopeo on it
    with pytest.raises(EnvironmentProblem) as caught:
        make("skopeo")
    assert caught.value.exit_code == 3
    assert "engine skopeo cannot run" in str(caught.value) and "\n" not in str(caught.value)


def test_builtin_still_works_where_the_real_engines_cannot(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert make("builtin").name == "builtin"


def test_skopeo_is_configured_for_the_labs_mirror_and_cleans_up():
    engine = make("skopeo", credentials=("alice", "wonderland"))
    try:
        assert engine.name == "skopeo"
        assert 'location = "127.0.0.1:5000"' in engine.registries_conf.read_text()
        workdir = engine.workdir
        assert workdir.is_dir()
    finally:
        engine.close()
    assert not workdir.exists()
