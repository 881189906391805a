"""What a lab writes: no password in lab.json or any log; each file holding a
secret is 0600 and gone (or redacted) once the lab stops; `chaos pull --login`
still finds a running lab's passwords (users.json, 0600). And a run folder
keeps evidence, not bulk: the hub's and mirror's storage live in the scratch
folder, a listing of the mirror's storage stays."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from chaos.clients.builtin import BuiltinClient
from chaos.lab.lab import Lab
from chaos.lab.layout import LabPaths, lab_password
from chaos.language.model import LabSpec, MirrorSettings, SeedImage, User
from chaos.vocab.reference import parse_reference

pytestmark = pytest.mark.lab

PASSWORDS = {"alice": "alice-secret-pw", "bob": "bob-secret-pw", "mirrorbot": "mirrorbot-secret-pw"}
SPEC = LabSpec(
    users=tuple(User(name, password) for name, password in PASSWORDS.items()),
    images=(
        SeedImage(parse_reference("alpine:3.19"), 300_000, layers=2),
        SeedImage(parse_reference("alice/private-app:1.0"), 40_000, layers=1, private=True),
    ),
    push_registry=True,
    mirror=MirrorSettings(upstream_login="mirrorbot"),
)


def files_holding(root: Path, secret: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_are_0600_while_running_and_gone_once_stopped(tmp_path):
    paths = LabPaths(tmp_path)
    with Lab(SPEC, tmp_path) as lab:
        client = BuiltinClient(mirror_url=lab.state.mirror_url, proxy_url=lab.state.proxy_url,
                               ca_file=lab.state.ca_file, timeout=10, credentials=("alice", PASSWORDS["alice"]))
        assert client.pull(parse_reference("alice/private-app:1.0")).ok  # a login, through the auth service
        assert client.pull(parse_reference("alpine:3.19")).ok

        state = json.loads(paths.state_file.read_text())
        assert "users" not in state
        for name, password in PASSWORDS.items():
            assert password not in paths.state_file.read_text()
            assert not [log for log in paths.logs.iterdir() if password in log.read_text()], name
        assert files_holding(tmp_path, PASSWORDS["alice"]) == ["users.json"]
        assert files_holding(tmp_path, PASSWORDS["mirrorbot"]) == ["mirror/config.yml"]  # the mirror's own only
        # `chaos pull --login` finds the passwords of a running lab there...
        assert lab_password(tmp_path, "alice") == PASSWORDS["alice"]
        assert lab_password(tmp_path, "nobody") is None
        # ...but not the mirror's upstream password, which lives in the mirror's config alone.
        assert lab_password(tmp_path, "mirrorbot") is None
        # The auth service keeps hashes, as htpasswd does.
        accounts = json.loads(paths.accounts_file.read_text())
        assert set(accounts["users"]) == set(PASSWORDS)
        assert all(value.startswith("$scrypt$") for value in accounts["users"].values())

        secret_files = [paths.users_file, paths.accounts_file, paths.cdn_secret_file, paths.hub_keys / "key.pem",
                        paths.mirror_config, paths.proxy_confdir / "mitmproxy-ca.pem"]
        assert {str(f.relative_to(tmp_path)): mode(f) for f in secret_files} == {
            str(f.relative_to(tmp_path)): 0o600 for f in secret_files
        }
    assert lab.stopped
    for password in PASSWORDS.values():
        assert files_holding(tmp_path, password) == []
    assert not any(f.exists() for f in paths.secret_files())
    assert lab_password(tmp_path, "alice") is None


def stored_files(lab: Lab) -> dict[str, int]:
    """Path -> size of every file the mirror holds now (a file moved meanwhile is skipped)."""
    root, found = Path(lab.state.mirror_storage), {}
    for path in root.rglob("*"):
        try:
            if path.is_file():
                found[str(path.relative_to(root))] = path.stat().st_size
        except FileNotFoundError:
            continue
    return found


def test_a_run_folder_keeps_evidence_not_the_hubs_blobs(tmp_path):
    with Lab(SPEC, tmp_path) as lab:
        scratch = Path(lab.state.scratch)
        assert Path(lab.state.mirror_storage).is_relative_to(scratch)
        assert lab.paths.hub_storage.is_relative_to(scratch)
        client = BuiltinClient(mirror_url=lab.state.mirror_url, proxy_url=lab.state.proxy_url,
                               ca_file=lab.state.ca_file, timeout=10)
        assert client.pull(parse_reference("alpine:3.19")).served_by == "mirror"
        # The mirror stores its copy of each layer on its own time: wait for both.
        deadline = time.monotonic() + 20
        while sum((blobs := stored_files(lab)).values()) < 300_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sum(blobs.values()) > 300_000  # the layers are in the scratch folder...
    assert not scratch.exists()
    size = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert size < 300_000  # ...and not in the lab folder
    listing = lab.paths.mirror_listing.read_text().splitlines()
    assert listing[0].startswith("# the mirror's storage when the lab stopped: ")
    rows = dict(reversed(line.split("\t")) for line in listing[1:])
    # Every file the mirror held while running is listed with its size (but
    # its TTL bookkeeping and uploads, which change after a pull).
    settled = {path: size for path, size in blobs.items() if "_uploads" not in path and "scheduler-state" not in path}
    assert {path: int(rows[path]) for path in settled} == settled
    assert any("/blobs/sha256/" in path for path in rows)
