import datetime as dt
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import jwt
import pytest
import requests

from chaos.lab.accounts import Accounts, Repo
from chaos.lab.auth_service import main, make_server
from chaos.lab.ports import free_port
from chaos.lab.tokens import BadToken, TokenSigner

PASSWORD = "s3cret-alice-pw"
SERVICE = "registry.docker.io"
TIMEOUT_S = 5


def _accounts(**extra_repos):
    return Accounts(
        users={"alice": PASSWORD, "bob": "bob-pw"},
        repositories={
            "library/redis": Repo(),
            "alice/private": Repo(private=True, readers=("bob",)),
            **extra_repos,
        },
    )


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    return TokenSigner.create(tmp_path_factory.mktemp("keys"))


class Running:
    def __init__(self, server, accounts_path, log):
        self.server = server
        self.accounts_path = accounts_path
        self.log = log
        self.url = f"http://127.0.0.1:{server.port}"
        self.http = requests.Session()
        self.http.trust_env = False  # a proxy from the environment must not see loopback traffic

    def token(self, *scopes, auth=None, **params):
        return self.http.get(
            f"{self.url}/token",
            params={"service": SERVICE, "scope": list(scopes), **params},
            auth=auth,
            timeout=TIMEOUT_S,
        )

    def post(self, **form):
        return self.http.post(f"{self.url}/token", data={"service": SERVICE, **form}, timeout=TIMEOUT_S)


@pytest.fixture
def auth(tmp_path, signer):
    accounts_path = tmp_path / "accounts.json"
    _accounts().to_file(accounts_path)
    log = io.StringIO()
    server = make_server(accounts_path, signer, log=log)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Running(server, accounts_path, log)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT_S)


def claims(signer, token):
    return signer.verify(token)


def test_anonymous_pull_of_public_repository_gets_hubs_response_shape(auth, signer):
    reply = auth.token("repository:library/redis:pull")
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert body["issued_at"].endswith("Z")
    issued = dt.datetime.fromisoformat(body["issued_at"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - issued).total_seconds()) < 60
    token = claims(signer, body["token"])
    assert token["sub"] == ""
    assert token["access"] == [{"type": "repository", "name": "library/redis", "actions": ["pull"]}]


def test_anonymous_private_repository_gets_a_token_with_empty_access(auth, signer):
    reply = auth.token("repository:alice/private:pull")
    assert reply.status_code == 200
    assert claims(signer, reply.json()["token"])["access"] == []


def test_anonymous_missing_repository_looks_like_a_private_one(auth, signer):
    reply = auth.token("repository:alice/nothing-here:pull")
    assert reply.status_code == 200
    assert claims(signer, reply.json()["token"])["access"] == []


def test_owner_with_basic_auth_gets_pull_and_push_on_private_repository(auth, signer):
    reply = auth.token("repository:alice/private:pull,push", auth=("alice", PASSWORD), account="alice")
    assert reply.status_code == 200
    token = claims(signer, reply.json()["token"])
    assert token["sub"] == "alice"
    assert token["access"] == [{"type": "repository", "name": "alice/private", "actions": ["pull", "push"]}]


def test_reader_gets_only_pull_of_what_was_asked(auth, signer):
    reply = auth.token("repository:alice/private:pull,push", auth=("bob", "bob-pw"))
    assert claims(signer, reply.json()["token"])["access"] == [
        {"type": "repository", "name": "alice/private", "actions": ["pull"]}
    ]


def test_several_scope_parameters_are_granted_one_by_one(auth, signer):
    reply = auth.token("repository:library/redis:pull", "repository:alice/private:pull", "registry:catalog:*")
    assert claims(signer, reply.json()["token"])["access"] == [
        {"type": "repository", "name": "library/redis", "actions": ["pull"]}
    ]


def test_no_scope_gets_a_token_with_empty_access(auth, signer):
    reply = auth.token()
    assert reply.status_code == 200
    assert claims(signer, reply.json()["token"])["access"] == []


@pytest.mark.parametrize("credentials", [("alice", "wrong"), ("nobody", PASSWORD)])
def test_wrong_credentials_get_401_with_hubs_body(auth, credentials):
    reply = auth.token("repository:library/redis:pull", auth=credentials)
    assert reply.status_code == 401
    assert reply.json() == {"details": "incorrect username or password"}


def test_garbled_basic_header_is_treated_as_wrong_credentials(auth):
    reply = auth.http.get(
        f"{auth.url}/token",
        params={"service": SERVICE},
        headers={"Authorization": "Basic !!!not-base64"},
        timeout=TIMEOUT_S,
    )
    assert reply.status_code == 401


@pytest.mark.parametrize("service", ["registry.example.com", None])
def test_unknown_service_is_400(auth, service):
    reply = auth.http.get(f"{auth.url}/token", params={"service": service}, timeout=TIMEOUT_S)
    assert reply.status_code == 400
    assert "unknown service" in reply.json()["details"]


def test_malformed_scope_is_400(auth):
    reply = auth.token("repository:Not Valid:pull")
    assert reply.status_code == 400
    assert "invalid scope" in reply.json()["details"]


def test_offline_token_with_credentials_adds_a_refresh_token(auth, signer):
    body = auth.token("repository:alice/private:pull", auth=("alice", PASSWORD), offline_token="true").json()
    assert body["refresh_token"]
    # A refresh token is not a registry token: the registry's audience check refuses it.
    with pytest.raises(BadToken):
        signer.verify(body["refresh_token"])


def test_offline_token_without_credentials_adds_nothing(auth):
    body = auth.token("repository:library/redis:pull", offline_token="true").json()
    assert "refresh_token" not in body


def test_post_password_grant_follows_dockers_oauth_flow(auth, signer):
    reply = auth.post(
        grant_type="password",
        username="alice",
        password=PASSWORD,
        scope="repository:alice/private:pull,push repository:library/redis:pull,push",
        client_id="docker",
        access_type="offline",
    )
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"access_token", "scope", "expires_in", "issued_at", "refresh_token"}
    assert body["scope"] == "repository:alice/private:pull,push repository:library/redis:pull"
    assert body["expires_in"] == 300
    assert claims(signer, body["access_token"])["sub"] == "alice"


def test_post_without_offline_access_has_no_refresh_token(auth):
    body = auth.post(grant_type="password", username="alice", password=PASSWORD, client_id="docker").json()
    assert "refresh_token" not in body


def test_post_refresh_grant_issues_a_token_for_the_same_user(auth, signer):
    refresh = auth.post(
        grant_type="password", username="bob", password="bob-pw", access_type="offline", client_id="docker"
    ).json()["refresh_token"]
    reply = auth.post(grant_type="refresh_token", refresh_token=refresh, scope="repository:alice/private:pull")
    assert reply.status_code == 200
    token = claims(signer, reply.json()["access_token"])
    assert token["sub"] == "bob"
    assert token["access"] == [{"type": "repository", "name": "alice/private", "actions": ["pull"]}]


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "password", "username": "alice", "password": "wrong"},
        {"grant_type": "password", "username": "", "password": ""},
        {"grant_type": "refresh_token", "refresh_token": "not-a-token"},
    ],
)
def test_post_with_bad_credentials_is_401(auth, form):
    assert auth.post(**form).status_code == 401


def test_post_refresh_token_of_a_deleted_user_is_401(auth):
    refresh = auth.post(
        grant_type="password", username="bob", password="bob-pw", access_type="offline"
    ).json()["refresh_token"]
    Accounts(users={"alice": PASSWORD}, repositories={}).to_file(auth.accounts_path)
    assert auth.post(grant_type="refresh_token", refresh_token=refresh).status_code == 401


def test_post_with_unknown_grant_type_is_400(auth):
    assert auth.post(grant_type="client_credentials").status_code == 400


def test_post_that_is_not_a_form_is_400(auth):
    reply = auth.http.post(f"{auth.url}/token", json={"service": SERVICE}, timeout=TIMEOUT_S)
    assert reply.status_code == 400


def test_repository_added_to_the_accounts_file_at_run_time_is_honoured(auth, signer):
    assert claims(signer, auth.token("repository:carol/new:pull").json()["token"])["access"] == []
    _accounts(**{"carol/new": Repo()}).to_file(auth.accounts_path)
    granted = claims(signer, auth.token("repository:carol/new:pull").json()["token"])["access"]
    assert granted == [{"type": "repository", "name": "carol/new", "actions": ["pull"]}]


def test_broken_accounts_file_keeps_the_previous_accounts_and_says_so(auth, signer):
    auth.accounts_path.write_text("{broken")
    reply = auth.token("repository:library/redis:pull")
    assert claims(signer, reply.json()["token"])["access"] != []
    assert "keeping previous accounts" in auth.log.getvalue()


def test_host_header_does_not_matter(auth):
    reply = auth.http.get(
        f"{auth.url}/token", params={"service": SERVICE}, headers={"Host": "auth.docker.io"}, timeout=TIMEOUT_S
    )
    assert reply.status_code == 200


def test_healthz_answers_200_and_unknown_paths_404(auth):
    assert auth.http.get(f"{auth.url}/healthz", timeout=TIMEOUT_S).status_code == 200
    assert auth.http.get(f"{auth.url}/v2/", timeout=TIMEOUT_S).status_code == 404
    assert auth.http.delete(f"{auth.url}/token", timeout=TIMEOUT_S).status_code == 405


def test_every_request_is_logged_without_passwords(auth):
    auth.token("repository:alice/private:pull", auth=("alice", PASSWORD))
    auth.token("repository:alice/private:pull", auth=("alice", "wrong-pw-xyz"))
    auth.post(grant_type="password", username="alice", password=PASSWORD, access_type="offline")
    auth.http.get(f"{auth.url}/token", params={"service": SERVICE, "password": PASSWORD}, timeout=TIMEOUT_S)
    auth.http.get(f"{auth.url}/healthz", timeout=TIMEOUT_S)
    lines = auth.log.getvalue().splitlines()
    assert len(lines) == 5
    assert "GET /token?service=registry.docker.io&scope=repository:alice/private:pull user=alice status=200" in lines[0]
    assert lines[0].endswith("granted=repository:alice/private:pull")
    assert "user=alice status=401 granted=-" in lines[1]
    assert "POST /token user=alice status=200" in lines[2]
    assert "password=REDACTED" in lines[3]
    assert "GET /healthz user=- status=200" in lines[4]
    assert PASSWORD not in auth.log.getvalue()
    assert "wrong-pw-xyz" not in auth.log.getvalue()


def test_keep_alive_connection_serves_several_requests(auth):
    with socket.create_connection(("127.0.0.1", auth.server.port), timeout=TIMEOUT_S) as sock:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(request + request)
        received = b""
        deadline = time.monotonic() + TIMEOUT_S
        while received.count(b"HTTP/1.1 200") < 2 and time.monotonic() < deadline:
            received += sock.recv(4096)
    assert received.count(b"HTTP/1.1 200") == 2


def test_runs_as_a_module_and_stops_cleanly_on_sigterm(tmp_path, signer):
    accounts_path = tmp_path / "accounts.json"
    _accounts().to_file(accounts_path)
    log_path = tmp_path / "auth.log"
    port = free_port()
    argv = [sys.executable, "-m", "chaos.lab.auth_service", "--accounts", str(accounts_path),
            "--keys", str(signer.directory), "--port", str(port), "--log", str(log_path)]  # fmt: skip
    proc = subprocess.Popen(argv, start_new_session=True, stderr=subprocess.PIPE)
    http = requests.Session()
    http.trust_env = False
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                if http.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "auth service never became ready"
            time.sleep(0.05)
        token = http.get(f"http://127.0.0.1:{port}/token", params={"service": SERVICE}, timeout=TIMEOUT_S)
        assert token.status_code == 200
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(TIMEOUT_S)
        proc.stderr.close()
    log = log_path.read_text()
    assert f"listening on 127.0.0.1:{port}" in log
    assert "GET /token?service=registry.docker.io user=- status=200" in log


def test_main_refuses_a_malformed_accounts_file_with_exit_2(tmp_path, signer, capsys):
    accounts_path = tmp_path / "accounts.json"
    accounts_path.write_text("[]")
    code = main(["--accounts", str(accounts_path), "--keys", str(signer.directory), "--port", "0"])
    assert code == 2
    assert str(accounts_path) in capsys.readouterr().err


def test_main_without_keys_exits_3(tmp_path, capsys):
    accounts_path = tmp_path / "accounts.json"
    _accounts().to_file(accounts_path)
    assert main(["--accounts", str(accounts_path), "--keys", str(tmp_path / "nokeys"), "--port", "0"]) == 3
    assert "cannot load token signing keys" in capsys.readouterr().err


def test_token_verifies_with_the_certificate_alone(auth, signer):
    token = auth.token("repository:library/redis:pull").json()["token"]
    public_key = signer.certificate.public_key()
    assert jwt.decode(token, public_key, algorithms=["ES256"], audience=SERVICE)["iss"] == "auth.docker.io"
