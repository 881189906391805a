"""lab.mirror: the mirror under test configured as a team runs theirs: Hub
credentials (proxy.username/password), a TTL, their own distribution config
as the base (the lab overrides only what it must, and says which keys).

What distribution 2.8.2 does with proxy credentials, checked on the real
binary: the mirror's own account's private images pull anonymously through
it and are stored; another account's are not; a mirror started while Hub's
/v2/ answers 503 (no challenge) never learns the token realm, and stays
anonymous after Hub recovers until it restarts."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
import requests
import yaml

from chaos.errors import UsageError
from chaos.lab.lab import Lab
from chaos.lab.layout import LabPaths, LabState
from chaos.lab.registry_config import (
    REDACTED,
    go_duration,
    load_user_config,
    mirror_config_from,
    upstream_login_problem,
)
from chaos.language.model import LabSpec, MirrorSettings, SeedImage, User
from chaos.proxy.control_client import ControlClient
from chaos.vocab.reference import parse_reference
from tests.lab_helpers import processes_mentioning

ACCEPT = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json",
))  # fmt: skip
DISCOVERED = "Discovered token authentication URL: https://auth.docker.io/token"
ALICE_PW, BOB_PW = "alice-upstream-pw", "bob-pw-not-the-mirrors"
USERS = (User("alice", ALICE_PW), User("bob", BOB_PW))
IMAGES = (
    SeedImage(parse_reference("alpine:3.19"), 40_000, layers=1),
    SeedImage(parse_reference("alice/private-app:1.0"), 40_000, layers=1, private=True),
    SeedImage(parse_reference("alice/later-app:1.0"), 40_000, layers=1, private=True),
    SeedImage(parse_reference("bob/secret-app:1.0"), 40_000, layers=1, private=True),
)


# -- the user's config as the base ---------------------------------------------------


@pytest.mark.parametrize(("content", "problem"), [
    ("- a\n- b\n", "expected a YAML mapping with `version: 0.1`"),
    ("log: {level: info}\n", "no `version`"),
    ("version: 0.2\n", "version 0.2 (distribution 2.x reads version 0.1)"),
    ("version: 0.1\nproxies: {remoteurl: x}\n", "unknown section 'proxies'"),
    ("version: 0.1\nstorage: [filesystem]\n", "`storage` must be a mapping"),
    ("version: 0.1\nhttp: {addr: [\n", "YAML error at line"),
    ("just words\n", "expected a YAML mapping"),
])  # fmt: skip
def test_a_file_that_is_not_a_distribution_config_is_one_line_naming_it(tmp_path, content, problem):
    path = tmp_path / "mirror.yml"
    path.write_text(content)
    with pytest.raises(UsageError) as caught:
        load_user_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not a distribution registry config: ") and problem in message
    assert "\n" not in message and caught.value.exit_code == 2


def test_a_missing_config_file_says_so(tmp_path):
    with pytest.raises(UsageError, match=r"absent\.yml: cannot read the mirror's config file: No such file"):
        load_user_config(tmp_path / "absent.yml")


USERS_CONFIG = """\
version: 0.1
log:
  level: debug
  fields: {team: platform}
storage:
  s3: {region: eu-west-1, bucket: mirror, accesskey: AKIA, secretkey: s3-secret}
  cache: {blobdescriptor: inmemory}
  delete: {enabled: true}
http:
  addr: :5000
  tls: {certificate: /etc/ssl/mirror.crt, key: /etc/ssl/mirror.key}
  headers: {X-Team: [platform]}
auth:
  htpasswd: {realm: mirror, path: /etc/registry/htpasswd}
proxy:
  remoteurl: https://registry-1.docker.io
  username: alice
  password: alice-upstream-pw
  ttl: 72h
"""


def test_the_lab_overrides_only_what_it_must_and_says_which_keys(tmp_path):
    path = tmp_path / "mirror.yml"
    path.write_text(USERS_CONFIG)
    built = mirror_config_from(load_user_config(path), tmp_path / "storage", 5124)
    config = built.config
    assert config["http"]["addr"] == "127.0.0.1:5124" and "tls" not in config["http"]
    assert config["storage"] == {
        "cache": {"blobdescriptor": "inmemory"}, "delete": {"enabled": True},
        "filesystem": {"rootdirectory": str(tmp_path / "storage")},
    }  # fmt: skip
    assert "auth" not in config
    # Kept: log, headers, the team's own Hub credentials and TTL.
    assert config["log"] == {"level": "debug", "fields": {"team": "platform"}}
    assert config["http"]["headers"] == {"X-Team": ["platform"]}
    assert config["proxy"] == {"remoteurl": "https://registry-1.docker.io", "username": "alice",
                               "password": ALICE_PW, "ttl": "72h"}
    assert built.overridden == ("http.addr", "http.tls", "storage.s3", "storage.filesystem.rootdirectory", "auth")
    # lab.mirror settings win over the file, and are reported too.
    built = mirror_config_from(load_user_config(path), tmp_path / "storage", 5124, username="bob",
                               password=BOB_PW, ttl_s=3600)
    assert built.config["proxy"]["username"] == "bob" and built.config["proxy"]["ttl"] == "1h0m0s"
    assert built.overridden[-3:] == ("proxy.username", "proxy.password", "proxy.ttl")


def test_a_users_upstream_login_the_lab_hub_cannot_know_is_named():
    passwords = {user.name: user.password for user in USERS}
    assert upstream_login_problem({"proxy": {"username": "alice", "password": ALICE_PW}}, passwords) is None
    assert upstream_login_problem({"proxy": {"remoteurl": "x"}}, passwords) is None
    assert upstream_login_problem({"proxy": {"username": "teams-bot", "password": "t"}}, passwords).startswith(
        "proxy.username 'teams-bot' is not a lab user: the lab hub refuses its login")
    wrong = upstream_login_problem({"proxy": {"username": "bob", "password": "guess"}}, passwords)
    assert wrong.startswith("proxy.password is not the password of lab user 'bob'") and "guess" not in wrong


def test_without_a_base_nothing_of_the_users_is_overridden(tmp_path):
    built = mirror_config_from(None, tmp_path, 5124, ttl_s=7 * 24 * 3600)
    assert built.overridden == () and built.config["proxy"] == {"remoteurl": "https://registry-1.docker.io",
                                                                 "ttl": "168h0m0s"}
    with pytest.raises(UsageError, match="lab.mirror.ttl: 0s: must be a positive duration"):
        mirror_config_from(None, tmp_path, 5124, ttl_s=0)


@pytest.mark.parametrize(("seconds", "text"), [
    (604800, "168h0m0s"), (3600, "1h0m0s"), (5400.25, "1h30m0.25s"), (90, "1m30s"), (60, "1m0s"), (1.5, "1.5s"),
    (1, "1s"), (0.5, "500ms"), (0.0015, "1.5ms"), (0.000002, "2µs"), (0, "0s"),
])  # fmt: skip
def test_ttl_is_written_as_go_writes_a_duration(seconds, text):
    assert go_duration(seconds) == text


def test_an_upstream_login_that_is_not_a_lab_user_is_refused_before_anything_starts(tmp_path):
    spec = LabSpec(users=USERS, mirror=MirrorSettings(upstream_login="carol"))
    with pytest.raises(UsageError, match=r"lab.mirror.upstream_login: 'carol' is not a lab user \(lab.users: alice, bob\)"):
        Lab(spec, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_config_file_starts_nothing(tmp_path):
    path = tmp_path / "mirror.yml"
    path.write_text("log: {level: info}\n")
    lab = Lab(LabSpec(mirror=MirrorSettings(config_file=str(path))), tmp_path / "lab")
    with pytest.raises(UsageError, match="no `version`"), lab:
        pass
    assert not (tmp_path / "lab").exists() and not lab.components


@pytest.mark.lab
def test_a_users_config_runs_as_the_mirror_with_the_labs_overrides_recorded(tmp_path):
    path = tmp_path / "mirror.yml"
    path.write_text(USERS_CONFIG)
    spec = LabSpec(users=USERS, images=IMAGES, mirror=MirrorSettings(config_file=str(path), ttl_s=7200))
    with Lab(spec, tmp_path / "lab") as lab:
        # The team's credentials (a lab user's, here) are kept: its private image comes through.
        assert manifest(lab, "alice/private-app") == 200
        assert requests.get(f"{lab.state.mirror_url}/v2/library/alpine/manifests/3.19", headers={"Accept": ACCEPT},
                            timeout=10).status_code == 200
        running = yaml.safe_load(lab.paths.mirror_config.read_text())
        assert running["log"]["fields"] == {"team": "platform"} and running["proxy"]["ttl"] == "2h0m0s"
        expected = ["http.addr", "http.tls", "storage.s3", "storage.filesystem.rootdirectory", "auth", "proxy.ttl"]
        assert lab.state.mirror_overrides == expected
        assert LabState.load(lab.paths.state_file).mirror_overrides == expected
        assert "team=platform" in lab.paths.log("mirror").read_text()  # the user's log settings in force
    # At stop the config stays as evidence, its secrets redacted.
    kept = yaml.safe_load(lab.paths.mirror_config.read_text())
    assert kept["proxy"]["password"] == REDACTED and kept["proxy"]["username"] == "alice"
    assert kept["storage"]["filesystem"]["rootdirectory"] == lab.state.mirror_storage
    assert files_holding(tmp_path / "lab", ALICE_PW) == []


# -- what distribution does with proxy credentials -----------------------------------


def manifest(lab: Lab, repository: str, tag: str = "1.0") -> int:
    return requests.get(f"{lab.state.mirror_url}/v2/{repository}/manifests/{tag}", headers={"Accept": ACCEPT},
                        timeout=10).status_code


def stored(lab: Lab) -> list[str]:
    root = Path(lab.state.mirror_storage) / "docker/registry/v2/repositories"
    return sorted(str(p.relative_to(root)) for p in root.glob("*/*"))


def mirror_log(lab: Lab, since: int = 0) -> list[str]:
    return lab.paths.log("mirror").read_text().splitlines()[since:]


def files_holding(root: Path, secret: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes())


@pytest.mark.lab
def test_a_credentialed_mirror_serves_its_accounts_private_images_to_anyone_and_stores_them(tmp_path):
    spec = LabSpec(users=USERS, images=IMAGES, mirror=MirrorSettings(upstream_login="alice"))
    with Lab(spec, tmp_path) as lab:
        assert any(DISCOVERED in line for line in mirror_log(lab))
        # The password is in the mirror's own config (0600) and in no other file.
        assert files_holding(tmp_path, ALICE_PW) == ["mirror/config.yml"]
        assert stat.S_IMODE(lab.paths.mirror_config.stat().st_mode) == 0o600
        assert lab.state.users["alice"] == ALICE_PW  # in memory, for the runner
        assert yaml.safe_load(lab.paths.mirror_config.read_text())["proxy"]["username"] == "alice"

        # Anonymous clients get alice's private image through the mirror, which stores it...
        assert manifest(lab, "alice/private-app") == 200
        # ...while bob's private image is denied (the mirror says unknown) and not stored.
        assert manifest(lab, "bob/secret-app") == 404
        time.sleep(0.5)
        assert stored(lab) == ["alice/private-app"]
        auth_log = lab.paths.log("auth").read_text()
        assert "scope=repository:bob/secret-app:pull&service=registry.docker.io user=alice status=200 granted=-" in auth_log
    assert files_holding(tmp_path, ALICE_PW) == []


@pytest.mark.lab
def test_a_credentialed_mirror_started_while_hubs_ping_answers_503_stays_anonymous_until_restarted(tmp_path):
    spec = LabSpec(users=USERS, images=IMAGES, mirror=MirrorSettings(upstream_login="alice"))
    with Lab(spec, tmp_path) as lab, ControlClient(lab.state.control_url) as control:
        control.add({"name": "ping-503", "kind": "http", "params": {"status": 503},
                     "match": {"roles": ["registry"], "endpoints": ["ping"]}})
        ping = requests.get("https://registry-1.docker.io/v2/", timeout=10, verify=lab.state.ca_file,
                            proxies={"https": lab.state.proxy_urls["mirror"]})
        assert ping.status_code == 503 and "WWW-Authenticate" not in ping.headers  # no challenge to learn from
        since = len(mirror_log(lab))
        lab.restart("mirror")  # it starts (a refused connection would make it panic)
        assert requests.get(f"{lab.state.mirror_url}/v2/", timeout=5).ok
        assert not any(DISCOVERED in line for line in mirror_log(lab, since))
        control.reset()  # Hub recovers

        assert manifest(lab, "library/alpine", "3.19") == 200  # public images pull, anonymously
        assert manifest(lab, "alice/later-app") == 404  # the mirror's own private image no longer does
        assert "alice/later-app" not in stored(lab)
        assert "scope=repository:alice/later-app:pull&service=registry.docker.io user=- " in (
            lab.paths.log("auth").read_text())

        since = len(mirror_log(lab))
        lab.restart("mirror")
        assert any(DISCOVERED in line for line in mirror_log(lab, since))
        assert manifest(lab, "alice/later-app") == 200
    assert not processes_mentioning(str(tmp_path))
    assert LabPaths(tmp_path).state_file.exists()
