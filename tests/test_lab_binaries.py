"""The distribution registry binary: Debian's docker-registry, upstream's
registry, or one named by an option or CHAOS_REGISTRY_BINARY; one line
saying what to do when there is none."""

from __future__ import annotations

import shutil

import pytest

from chaos.errors import EnvironmentProblem
from chaos.lab.binaries import REGISTRY_ENV, require_registry
from chaos.lab.lab import Lab
from chaos.language.model import LabSpec

REGISTRY = shutil.which("docker-registry")


@pytest.fixture
def bin_dir(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    return folder


def test_debians_name_first(bin_dir):
    (bin_dir / "docker-registry").symlink_to(REGISTRY)
    (bin_dir / "registry").symlink_to(REGISTRY)
    assert require_registry() == str(bin_dir / "docker-registry")


def test_upstreams_name_when_debians_is_missing(bin_dir):
    (bin_dir / "registry").symlink_to(REGISTRY)
    assert require_registry() == str(bin_dir / "registry")


def test_the_environment_names_it_and_an_option_beats_the_environment(bin_dir, tmp_path, monkeypatch):
    (tmp_path / "my-registry").symlink_to(REGISTRY)
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "my-registry"))
    assert require_registry() == str(tmp_path / "my-registry")
    (bin_dir / "registry").symlink_to(REGISTRY)
    assert require_registry("registry") == str(bin_dir / "registry")


@pytest.mark.parametrize("named", ["/nonexistent/registry", "no-such-registry"])
def test_a_named_binary_that_is_not_there_is_one_line_naming_it(bin_dir, monkeypatch, named):
    monkeypatch.setenv(REGISTRY_ENV, named)
    with pytest.raises(EnvironmentProblem) as caught:
        require_registry()
    assert str(caught.value) == f"{REGISTRY_ENV} {named}: not found or not executable"
    assert caught.value.exit_code == 3
    with pytest.raises(EnvironmentProblem, match=f"^registry binary {named}: not found or not executable$"):
        require_registry(named)


def test_none_at_all_says_what_to_install(bin_dir):
    with pytest.raises(EnvironmentProblem) as caught:
        require_registry()
    message = str(caught.value)
    assert "\n" not in message and "docker-registry" in message and "apt-get install docker-registry" in message
    assert REGISTRY_ENV in message and "registry" in message


def test_a_lab_without_a_registry_starts_nothing(bin_dir, tmp_path):
    lab = Lab(LabSpec(), tmp_path / "lab")
    with pytest.raises(EnvironmentProblem, match="no distribution registry found"), lab:
        pass
    assert not (tmp_path / "lab").exists()


@pytest.mark.lab
def test_a_lab_runs_the_registry_it_is_given(tmp_path):
    (tmp_path / "registry").symlink_to(REGISTRY)
    with Lab(LabSpec(), tmp_path / "lab", registry_binary=str(tmp_path / "registry")) as lab:
        for name in ("hub", "mirror"):
            assert lab.state.processes[name]["cmdline"][0] == str(tmp_path / "registry")
