import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from chaos.lab.accounts import Accounts, Repo
from chaos.lab.auth_service import make_server
from chaos.lab.components.hub import hub_registry
from chaos.lab.components.launch import INHERITED_ENV, Launch
from chaos.lab.components.mirror import pull_through_mirror
from chaos.lab.components.push_registry import push_registry
from chaos.lab.ports import free_ports
from chaos.lab.registry_config import hub_config, mirror_config, push_config, write_config
from chaos.lab.tokens import TokenSigner

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
TIMEOUT_S = 5
HUB_CHALLENGE = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'


def test_hub_config_configures_token_auth_exactly_like_hub(tmp_path):
    config = hub_config(tmp_path / "storage", 5123, tmp_path / "cert.pem")
    assert config["auth"] == {
        "token": {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "issuer": "auth.docker.io",
            "rootcertbundle": str(tmp_path / "cert.pem"),
        }
    }
    assert config["http"]["addr"] == "127.0.0.1:5123"
    assert config["http"]["secret"]
    assert config["http"]["headers"] == {"X-Content-Type-Options": ["nosniff"]}
    assert config["storage"]["filesystem"] == {"rootdirectory": str(tmp_path / "storage")}
    assert config["storage"]["delete"] == {"enabled": True}
    assert config["storage"]["redirect"] == {"disable": True}
    assert config["log"] == {"level": "info", "formatter": "text"}
    assert "proxy" not in config


def test_mirror_config_is_an_anonymous_pull_through_cache_of_hub(tmp_path):
    config = mirror_config(tmp_path, 5124)
    assert config["proxy"] == {"remoteurl": "https://registry-1.docker.io"}
    assert "auth" not in config
    assert config["http"]["addr"] == "127.0.0.1:5124"


def test_mirror_config_takes_another_remote(tmp_path):
    assert mirror_config(tmp_path, 1, remote_url="https://proxy.test:8443")["proxy"]["remoteurl"] == (
        "https://proxy.test:8443"
    )


def test_push_config_is_a_plain_registry_that_can_share_the_mirrors_storage(tmp_path):
    push = push_config(tmp_path / "shared", 5125)
    mirror = mirror_config(tmp_path / "shared", 5124)
    assert "proxy" not in push and "auth" not in push
    assert push["storage"] == mirror["storage"]
    assert push["http"]["addr"] == "127.0.0.1:5125"


def test_write_config_writes_yaml_that_reads_back(tmp_path):
    config = hub_config(tmp_path / "storage", 5123, tmp_path / "cert.pem")
    path = write_config(config, tmp_path / "conf" / "hub.yml")
    assert yaml.safe_load(path.read_text()) == config


# --- the launchers (chaos.lab.components) ---------------------------------------


def test_hub_launcher_serves_the_hub_config_it_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://users-own-proxy.invalid:3128")
    config_path = tmp_path / "hub" / "config.yml"
    launch = hub_registry(binary="/usr/bin/docker-registry", port=5123, storage=tmp_path / "storage",
                          cert_path=tmp_path / "keys" / "cert.pem", config_path=config_path, log_path=tmp_path / "hub.log")
    assert (launch.name, launch.url, launch.log_path) == ("hub", "http://127.0.0.1:5123", tmp_path / "hub.log")
    assert launch.argv == ("/usr/bin/docker-registry", "serve", str(config_path))
    assert yaml.safe_load(config_path.read_text()) == hub_config(tmp_path / "storage", 5123, tmp_path / "keys" / "cert.pem")
    assert set(launch.env) <= set(INHERITED_ENV)


def test_mirror_launcher_reaches_hub_through_the_proxy_whose_ca_it_trusts(tmp_path, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://users-own-proxy.invalid:3128")
    config_path = tmp_path / "mirror" / "config.yml"
    launch = pull_through_mirror(binary="docker-registry", port=5124, storage=tmp_path / "storage",
                                 config_path=config_path, log_path=tmp_path / "mirror.log",
                                 https_proxy="http://127.0.0.1:8080", ca_file=tmp_path / "proxy" / "ca.pem")
    assert (launch.name, launch.url) == ("mirror", "http://127.0.0.1:5124")
    assert launch.argv == ("docker-registry", "serve", str(config_path))
    assert yaml.safe_load(config_path.read_text()) == mirror_config(tmp_path / "storage", 5124)
    assert launch.env["HTTPS_PROXY"] == "http://127.0.0.1:8080"
    assert launch.env["SSL_CERT_FILE"] == str(tmp_path / "proxy" / "ca.pem")
    assert set(launch.env) <= set(INHERITED_ENV) | {"HTTPS_PROXY", "SSL_CERT_FILE"}


def test_a_mirror_launched_without_a_proxy_has_none_even_if_the_caller_has_one(tmp_path, monkeypatch):
    # bench/'s direct arms: the mirror talks TLS to the hub itself, held to HTTP/1.1.
    monkeypatch.setenv("HTTPS_PROXY", "http://users-own-proxy.invalid:3128")
    launch = pull_through_mirror(binary="docker-registry", port=5126, storage=tmp_path / "storage",
                                 config_path=tmp_path / "config.yml", log_path=tmp_path / "mirror-direct.log",
                                 remote_url="https://127.0.0.1:5443", ca_file=tmp_path / "hub-ca.pem",
                                 extra_env={"GODEBUG": "http2client=0"}, name="mirror-direct")
    assert launch.name == "mirror-direct"
    assert "HTTPS_PROXY" not in launch.env
    assert launch.env["GODEBUG"] == "http2client=0"
    assert yaml.safe_load((tmp_path / "config.yml").read_text())["proxy"] == {"remoteurl": "https://127.0.0.1:5443"}


def test_push_registry_launcher_serves_a_plain_registry_on_the_given_storage(tmp_path):
    launch = push_registry(binary="docker-registry", port=5125, storage=tmp_path / "mirror-storage",
                           config_path=tmp_path / "push-registry.yml", log_path=tmp_path / "push.log")
    assert (launch.name, launch.url) == ("push-registry", "http://127.0.0.1:5125")
    assert yaml.safe_load((tmp_path / "push-registry.yml").read_text()) == push_config(tmp_path / "mirror-storage", 5125)


# --- the real binary -------------------------------------------------------------


def _http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment must not see loopback traffic
    return session


@contextmanager
def running_registry(config: dict, workdir: Path, ready_status: int):
    """docker-registry serving config, ready once GET /v2/ answers ready_status."""
    config_path = write_config(config, workdir / "registry.yml")
    log_path = workdir / "registry.log"
    url = f"http://{config['http']['addr']}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [REGISTRY, "serve", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    http = _http()
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, f"docker-registry exited early:\n{log_path.read_text()[-2000:]}"
            try:
                if http.get(f"{url}/v2/", timeout=1).status_code == ready_status:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"docker-registry never ready:\n{log_path.read_text()[-2000:]}"
            time.sleep(0.05)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(TIMEOUT_S)
        http.close()


@contextmanager
def launched(launch: Launch):
    """A launcher's process, ready by its own readiness check, stopped on exit."""
    with launch.process() as process:
        process.start()
        process.wait_ready(launch.ready, deadline_s=15)
        yield launch.url


@contextmanager
def running_auth(workdir: Path, signer: TokenSigner, accounts: Accounts):
    accounts_path = workdir / "accounts.json"
    accounts.to_file(accounts_path)
    server = make_server(accounts_path, signer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT_S)


def _push_blob(http, registry, repository, token, blob):
    """POST an upload then PUT it with ?digest=; returns the final response (or the refused POST)."""
    headers = {"Authorization": f"Bearer {token}"}
    started = http.post(f"{registry}/v2/{repository}/blobs/uploads/", headers=headers, timeout=TIMEOUT_S)
    if started.status_code != 202:
        return started
    location = started.headers["Location"]
    if location.startswith("/"):
        location = registry + location
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    return http.put(
        location,
        params={"digest": digest},
        data=blob,
        headers={**headers, "Content-Type": "application/octet-stream"},
        timeout=TIMEOUT_S,
    )


@pytest.mark.lab
def test_lab_hub_challenges_and_enforces_tokens_like_docker_hub(tmp_path):
    signer = TokenSigner.create(tmp_path / "keys")
    accounts = Accounts(
        users={"alice": "alice-pw"},
        repositories={"library/redis": Repo(), "alice/private": Repo(private=True)},
    )
    (port,) = free_ports(1)
    config = hub_config(tmp_path / "storage", port, signer.cert_path)
    http = _http()

    with running_auth(tmp_path, signer, accounts) as auth, running_registry(config, tmp_path, 401) as registry:

        def token(scope, user=None):
            reply = http.get(
                f"{auth}/token",
                params={"service": "registry.docker.io", "scope": scope},
                auth=(user, accounts.users[user]) if user else None,
                timeout=TIMEOUT_S,
            )
            assert reply.status_code == 200
            return reply.json()["token"]

        base = http.get(f"{registry}/v2/", timeout=TIMEOUT_S)
        print("GET /v2/ ->", base.status_code, base.headers["WWW-Authenticate"])
        assert base.status_code == 401
        assert base.headers["WWW-Authenticate"] == HUB_CHALLENGE

        unauthenticated = http.get(f"{registry}/v2/library/redis/tags/list", timeout=TIMEOUT_S)
        print("GET tags/list, no token ->", unauthenticated.headers["WWW-Authenticate"])
        assert unauthenticated.headers["WWW-Authenticate"] == (
            HUB_CHALLENGE + ',scope="repository:library/redis:pull"'
        )

        # A public repository's token passes the auth check: what is left is "not found".
        public = http.get(
            f"{registry}/v2/library/redis/tags/list",
            headers={"Authorization": f"Bearer {token('repository:library/redis:pull')}"},
            timeout=TIMEOUT_S,
        )
        assert public.status_code == 404
        assert public.json()["errors"][0]["code"] == "NAME_UNKNOWN"

        # Anonymous on a private repository: token with empty access, then Hub's insufficient_scope.
        private = http.get(
            f"{registry}/v2/alice/private/manifests/latest",
            headers={"Authorization": f"Bearer {token('repository:alice/private:pull')}"},
            timeout=TIMEOUT_S,
        )
        print("GET private manifest, anonymous token ->", private.status_code, private.headers["WWW-Authenticate"])
        print("   body:", private.text.strip())
        assert private.status_code == 401
        assert private.headers["WWW-Authenticate"] == (
            HUB_CHALLENGE + ',scope="repository:alice/private:pull",error="insufficient_scope"'
        )
        assert private.json()["errors"][0]["code"] == "UNAUTHORIZED"

        # The owner pushes with a push token; a pull-only token of the same owner is refused.
        pushed = _push_blob(http, registry, "alice/app", token("repository:alice/app:pull,push", "alice"), b"hi")
        assert pushed.status_code == 201, pushed.text
        refused = _push_blob(http, registry, "alice/app", token("repository:alice/app:pull", "alice"), b"hi")
        print("POST upload, pull-only token ->", refused.status_code, refused.headers["WWW-Authenticate"])
        assert refused.status_code == 401
        # distribution lists the actions in Go map order: pull,push or push,pull.
        assert refused.headers["WWW-Authenticate"] in {
            HUB_CHALLENGE + f',scope="repository:alice/app:{actions}",error="insufficient_scope"'
            for actions in ("pull,push", "push,pull")
        }
        assert refused.json()["errors"][0]["code"] == "UNAUTHORIZED"

        # Nobody gets push on official images through the token service.
        official_token = token("repository:library/redis:pull,push", "alice")
        official = _push_blob(http, registry, "library/redis", official_token, b"x")
        assert official.status_code == 401


class _StubUpstream(BaseHTTPRequestHandler):
    """Answers GET /v2/ 200 and records every path: distribution in proxy mode
    dials its remote at start-up (and panics if it cannot), so it needs one."""

    seen: list[str]

    def do_GET(self):
        self.seen.append(self.path)
        body = b"{}" if self.path == "/v2/" else b'{"errors":[{"code":"NOT_FOUND","message":"stub"}]}'
        self.send_response(200 if self.path == "/v2/" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format, *args):
        pass


@contextmanager
def stub_upstream():
    seen: list[str] = []
    handler = type("Handler", (_StubUpstream,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT_S)


@pytest.mark.lab
def test_blob_pushed_to_push_registry_is_served_by_the_mirror_sharing_its_storage(tmp_path):
    storage = tmp_path / "shared"
    http = _http()
    blob = b"pushed through the side door"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    # A loopback stub as upstream: nothing can leave the machine.
    with stub_upstream() as (upstream, upstream_paths):
        mirror_port, push_port = free_ports(2)
        mirror = pull_through_mirror(binary=REGISTRY, port=mirror_port, storage=storage, remote_url=upstream,
                                     config_path=tmp_path / "mirror" / "registry.yml", log_path=tmp_path / "mirror.log")
        push = push_registry(binary=REGISTRY, port=push_port, storage=storage,
                             config_path=tmp_path / "push" / "registry.yml", log_path=tmp_path / "push.log")
        with launched(push) as push_url, launched(mirror) as mirror_url:
            refused = http.post(f"{mirror_url}/v2/alice/app/blobs/uploads/", timeout=TIMEOUT_S)
            assert refused.status_code == 405
            assert refused.json()["errors"][0]["code"] == "UNSUPPORTED"
            assert _push_blob(http, push_url, "alice/app", "unused", blob).status_code == 201
            served = http.get(f"{mirror_url}/v2/alice/app/blobs/{digest}", timeout=TIMEOUT_S)
            assert served.status_code == 200
            assert served.content == blob
    # Served from the shared storage: the mirror never asked upstream for the blob.
    assert not any("/blobs/" in path for path in upstream_paths), upstream_paths
