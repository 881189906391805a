"""The http, auth-deny and rate-limit kinds on the wire: a real mitmdump with the
addon in front of a real distribution registry configured like Docker Hub's
(token auth) and the lab's auth.docker.io emulation, pulled from by the builtin
client through the proxy as a Docker daemon would (no mirror).

Everything stays on loopback: Hub's host names are routed to the lab pieces.
"""

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from chaos.clients.builtin import BuiltinClient
from chaos.errors import EnvironmentProblem
from chaos.images.push import push_image
from chaos.images.synth import build_image
from chaos.lab.accounts import Accounts, Repo
from chaos.lab.auth_service import make_server
from chaos.lab.ports import free_port
from chaos.lab.registry_config import hub_config, write_config
from chaos.lab.tokens import TokenSigner
from chaos.proxy.control_client import ControlClient
from chaos.vocab.reference import parse_reference

pytestmark = pytest.mark.lab

MITMDUMP = Path(sys.executable).with_name("mitmdump")
ADDON = Path(__file__).resolve().parents[1] / "addons" / "hub_chaos.py"
# Imported by mitmdump next to the addon so the kinds are registered whether or
# not the registry already discovers them on its own.
KIND_MODULES = ("chaos.faults.kinds.http_error", "chaos.faults.kinds.auth_deny", "chaos.faults.kinds.rate_limit")
REGISTRY = "https://registry-1.docker.io"
TOKEN_URL = "https://auth.docker.io/token"
SERVICE = "registry.docker.io"
IMAGE = "library/redis:7"
PASSWORD = "alice-wire-pw"
READY_S = 20
TIMEOUT_S = 10
HUB_MESSAGE = (
    "You have reached your pull rate limit. You may increase the limit by authenticating "
    "and upgrading: https://www.docker.com/increase-rate-limit"
)


def wait_until(check, what, process, log):
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if check():
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    pytest.fail(f"{what} not ready:\n{log.read_text(errors='replace')[-3000:]}")


def kill_group(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def start(argv, log):
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def direct_session():
    session = requests.Session()
    session.trust_env = False
    return session


class Hub:
    """The lab hub: token service, registry and proxy; what a test needs to talk to them."""

    def __init__(self, signer, hub_url, auth_url, proxy_port, confdir, control, digests):
        self.signer = signer
        self.hub_url = hub_url
        self.auth_url = auth_url
        self.proxy_url = f"http://127.0.0.1:{proxy_port}"
        self.ca_file = str(confdir / "mitmproxy-ca-cert.pem")
        self.control = control
        self.digests = digests  # {"manifest": ..., "config": ..., "layer": ...}

    def session(self):
        """A client of Hub's real host names, through the proxy."""
        session = direct_session()
        session.proxies = {"https": self.proxy_url}
        session.verify = self.ca_file
        return session

    def client(self, credentials=None):
        return BuiltinClient(
            mirror_url=None, proxy_url=self.proxy_url, ca_file=self.ca_file, credentials=credentials, timeout=TIMEOUT_S
        )

    def pull(self, credentials=None):
        return self.client(credentials).pull(parse_reference(IMAGE))

    def token(self, session, auth=None):
        return session.get(
            TOKEN_URL, params={"service": SERVICE, "scope": "repository:library/redis:pull"}, auth=auth, timeout=TIMEOUT_S
        )

    def manifest(self, session, method, token):
        return session.request(
            method,
            f"{REGISTRY}/v2/library/redis/manifests/7",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=TIMEOUT_S,
        )


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("wire")
    signer = TokenSigner.create(root / "keys")
    accounts = root / "accounts.json"
    Accounts(users={"alice": PASSWORD}, repositories={"library/redis": Repo()}).to_file(accounts)
    auth = make_server(accounts, signer, log=io.StringIO())
    auth_thread = threading.Thread(target=auth.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    auth_thread.start()
    processes = []
    try:
        hub_port = free_port()
        hub_url = f"http://127.0.0.1:{hub_port}"
        config = write_config(hub_config(root / "storage", hub_port, signer.cert_path), root / "hub.yml")
        registry_log = root / "registry.log"
        registry = start(["docker-registry", "serve", str(config)], registry_log)
        processes.append(registry)
        http = direct_session()
        wait_until(lambda: http.get(f"{hub_url}/v2/", timeout=1).status_code == 401, "registry", registry, registry_log)

        image = build_image("library/redis", "7", 40_000, seed="wire", layers=1)
        publisher = signer.sign("publisher", [{"type": "repository", "name": "library/redis", "actions": ["pull", "push"]}])
        push_image(hub_url, "library/redis", "7", image, headers={"Authorization": f"Bearer {publisher}"}, timeout=TIMEOUT_S)
        digests = {"manifest": image.digest, "config": image.config.digest, "layer": image.layers[0].digest}

        register = root / "register_kinds.py"
        register.write_text("".join(f"import {module}  # noqa: F401\n" for module in KIND_MODULES))
        confdir = root / "conf"
        proxy_port, control_port = free_port(), free_port()
        proxy_log = root / "mitmdump.log"
        proxy = start(
            [
                str(MITMDUMP),
                "-s", str(register),
                "-s", str(ADDON),
                "--listen-host", "127.0.0.1",
                "-p", str(proxy_port),
                "--set", f"confdir={confdir}",
                "--set", "connection_strategy=lazy",
                "--set", "stream_large_bodies=256k",
                "--set", f"hub_routes=registry={hub_url},auth=http://127.0.0.1:{auth.port}",
                "--set", f"hub_control=127.0.0.1:{control_port}",
            ],  # fmt: skip
            proxy_log,
        )
        processes.append(proxy)
        control = ControlClient(f"http://127.0.0.1:{control_port}", timeout=5)
        try:
            control.wait_ready(deadline_s=READY_S)
        except EnvironmentProblem as err:
            pytest.fail(f"mitmdump not ready: {err}\n{proxy_log.read_text(errors='replace')[-3000:]}")
        yield Hub(signer, hub_url, f"http://127.0.0.1:{auth.port}", proxy_port, confdir, control, digests)
        control.close()
    finally:
        for process in reversed(processes):
            kill_group(process)
        auth.shutdown()
        auth.server_close()
        auth_thread.join(5)


@pytest.fixture
def clean(hub):
    hub.control.reset()
    yield hub
    hub.control.reset()


def test_without_faults_the_image_pulls_through_the_proxy(clean):
    result = clean.pull()
    assert result.ok, result
    assert result.digest == clean.digests["manifest"]


def test_rate_limit_of_three_lets_three_pulls_through_counts_no_heads_then_429(clean):
    clean.control.add({"name": "pull-limit", "kind": "rate-limit", "params": {"limit": 3}, "match": {"roles": ["registry"]}})
    cursor = clean.control.health()["last_event"]
    session = clean.session()
    token = clean.token(session).json()["token"]
    for _ in range(4):
        head = clean.manifest(session, "HEAD", token)
        assert (head.status_code, head.headers["ratelimit-remaining"]) == (200, "3;w=21600")

    pulls = [clean.pull() for _ in range(3)]
    assert [p.ok for p in pulls] == [True, True, True], pulls

    spent = clean.pull()
    assert not spent.ok
    assert spent.error_code == "TOOMANYREQUESTS"
    assert HUB_MESSAGE in spent.message
    assert spent.attempts[-1].status == 429

    refused = clean.manifest(session, "GET", token)
    assert refused.status_code == 429
    assert refused.json() == {"errors": [{"code": "TOOMANYREQUESTS", "message": HUB_MESSAGE}]}
    assert refused.headers["ratelimit-limit"] == "3;w=21600"
    assert refused.headers["ratelimit-remaining"] == "0;w=21600"
    assert refused.headers["docker-ratelimit-source"] == "127.0.0.1"  # anonymous: counted per address
    head = clean.manifest(session, "HEAD", token)
    assert (head.status_code, head.headers["ratelimit-remaining"]) == (200, "0;w=21600")

    manifest_events = [
        (e["method"], e["status"], sorted(set((e["fault"] or "").split(",")) - {""}))
        for e in clean.control.events(after=cursor).events
        if e["kind"] == "manifest"
    ]
    # Clients may check a tag with HEAD before they GET it (dockerd does): HEADs never
    # count and are never refused, however many there are; the GETs tell the story.
    assert [e for e in manifest_events if e[0] == "GET"] == (
        [("GET", 200, [])] * 3 + [("GET", 429, ["pull-limit"]), ("GET", 429, ["pull-limit"])]
    )
    heads = [e for e in manifest_events if e[0] == "HEAD"]
    assert len(heads) >= 5 and set(map(repr, heads)) == {repr(("HEAD", 200, []))}


def test_replacing_the_rate_limit_gives_a_fresh_budget(clean):
    spec = {"name": "pull-limit", "kind": "rate-limit", "params": {"limit": 1}}
    clean.control.add(spec)
    assert clean.pull().ok
    assert clean.pull().error_code == "TOOMANYREQUESTS"
    clean.control.update("pull-limit", spec)
    assert clean.pull().ok


def test_auth_deny_no_scope_makes_a_public_pull_fail_with_insufficient_scope(clean):
    clean.control.add({"name": "no-scope", "kind": "auth-deny", "params": {"mode": "no-scope"}})
    result = clean.pull()
    assert not result.ok
    assert result.error_code == "DENIED"  # the challenge's insufficient_scope, as dockerd reports it
    assert result.message.startswith("pull access denied for redis, repository does not exist or may require 'docker login'")
    assert result.attempts[-1].status == 401

    session = clean.session()
    token = clean.token(session).json()["token"]
    assert clean.signer.verify(token)["access"] == []  # the real token service signed it without the scope
    answer = clean.manifest(session, "GET", token)
    assert answer.status_code == 401
    assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]
    assert answer.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_auth_deny_no_scope_also_strips_dockers_oauth_post_form(clean):
    clean.control.add({"name": "no-scope", "kind": "auth-deny", "params": {"mode": "no-scope"}})
    reply = clean.session().post(
        TOKEN_URL,
        data={"grant_type": "password", "username": "alice", "password": PASSWORD, "service": SERVICE,
              "scope": "repository:library/redis:pull", "client_id": "docker"},
        timeout=TIMEOUT_S,
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    assert reply.json()["scope"] == ""
    assert clean.signer.verify(reply.json()["access_token"])["access"] == []


def test_auth_deny_bad_credentials_gives_hubs_401_to_logged_in_clients_only(clean):
    clean.control.add({"name": "bad-login", "kind": "auth-deny", "params": {"mode": "bad-credentials"}})
    session = clean.session()
    refused = clean.token(session, auth=("alice", PASSWORD))
    assert refused.status_code == 401
    assert refused.json() == {"details": "incorrect username or password"}
    assert clean.token(session).status_code == 200  # anonymous still gets a token

    logged_in = clean.pull(credentials=("alice", PASSWORD))
    assert not logged_in.ok
    assert logged_in.error_code == "UNAUTHORIZED"
    assert logged_in.message.endswith("unauthorized: incorrect username or password")
    assert clean.pull().ok


def test_http_503_on_manifests_leaves_blobs_working(clean):
    clean.control.add({"name": "manifests-down", "kind": "http", "params": {"status": 503}, "match": {"endpoints": ["manifest"]}})
    session = clean.session()
    token = clean.token(session).json()["token"]
    manifest = clean.manifest(session, "GET", token)
    assert manifest.status_code == 503
    assert manifest.json() == {"errors": [{"code": "UNAVAILABLE", "message": "service unavailable", "detail": None}]}

    layer = clean.digests["layer"]
    blob = session.get(
        f"{REGISTRY}/v2/library/redis/blobs/{layer}", headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_S
    )
    assert blob.status_code == 200
    assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == layer

    # The wire carries Hub's UNAVAILABLE body; a client reads bodies of 4xx only
    # (distribution's HandleErrorResponse), so the user sees the status line, as with docker.
    result = clean.pull()
    assert (result.ok, result.error_code, result.attempts[-1].status) == (False, "BAD_RESPONSE", 503)
    assert result.message == "received unexpected HTTP status: 503 Service Unavailable"


def test_http_401_challenge_sends_the_builtin_client_to_the_token_service_and_fails(clean):
    clean.control.add({"name": "deny", "kind": "http", "params": {"status": 401}, "match": {"endpoints": ["manifest"]}})
    result = clean.pull()
    assert not result.ok
    assert result.error_code == "DENIED"  # Hub-style 401: insufficient_scope challenge
    assert result.message.startswith("pull access denied for redis")

