import asyncio
import socket
import threading
import time

import pytest
import requests

from chaos.errors import EnvironmentProblem, UsageError
from chaos.faults.faultset import DuplicateFault, FaultSet, UnknownFault
from chaos.proxy.control_api import ControlServer, parse_control_address
from chaos.proxy.control_client import ControlClient
from chaos.proxy.tap import EVENT_FIELDS, EventTap


class Api:
    def __init__(self):
        self.faults = FaultSet()
        self.tap = EventTap(capacity=3)
        self.in_flight = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = ControlServer(self.faults, lambda: self.tap, lambda: self.in_flight)

    def __enter__(self):
        self.thread.start()

        async def start():
            return self.server.start("127.0.0.1", 0)

        self.port = self.run(start())
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=5)

    def __exit__(self, *exc):
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def api():
    with Api() as running:
        yield running


@pytest.fixture
def client(api):
    with ControlClient(api.url, timeout=5) as control:
        yield control


def raw(api, method, path, **kwargs):
    session = requests.Session()
    session.trust_env = False
    return session.request(method, api.url + path, timeout=5, **kwargs)


def record(tap, path):
    tap.append({**{name: None for name in EVENT_FIELDS}, "path": path})


def test_health_reports_faults_last_event_and_requests_in_flight(api, client):
    record(api.tap, "/v2/")
    api.in_flight = 2
    assert client.health() == {"ok": True, "faults": 0, "last_event": 1, "in_flight": 2}


def test_fault_lifecycle(client):
    stored = client.add({"name": "down", "kind": "refuse", "ttl_s": 60})
    assert stored["name"] == "down" and stored["expires_at"] > time.time() + 50
    client.add({"name": "rst", "kind": "reset", "match": {"endpoints": ["blob"]}})
    assert [f["name"] for f in client.list()] == ["down", "rst"]
    updated = client.update("down", {"kind": "reset"})
    assert updated["kind"] == "reset"
    assert [f["kind"] for f in client.list()] == ["reset", "reset"]
    client.remove("down")
    assert [f["name"] for f in client.list()] == ["rst"]
    assert client.reset() == 1
    assert client.list() == []


def test_bad_spec_is_a_usage_error_naming_the_field(client):
    with pytest.raises(UsageError, match=r"^kind: unknown fault kind 'refuze'"):
        client.add({"name": "down", "kind": "refuze"})
    with pytest.raises(UsageError, match=r"^match.roles: "):
        client.add({"name": "down", "kind": "refuse", "match": {"roles": ["hub"]}})


def test_duplicate_name_is_409(api, client):
    client.add({"name": "down", "kind": "refuse"})
    with pytest.raises(DuplicateFault, match="already exists"):
        client.add({"name": "down", "kind": "reset"})
    response = raw(api, "POST", "/faults", json={"name": "down", "kind": "refuse"})
    assert response.status_code == 409
    assert "already exists" in response.json()["error"]


def test_absent_fault_is_404(client):
    with pytest.raises(UnknownFault):
        client.remove("ghost")
    with pytest.raises(UnknownFault):
        client.update("ghost", {"kind": "refuse"})


def test_put_name_must_agree_with_url(client):
    client.add({"name": "down", "kind": "refuse"})
    with pytest.raises(UsageError, match="differs from the URL"):
        client.update("down", {"name": "other", "kind": "refuse"})


def test_get_single_fault(api, client):
    client.add({"name": "down", "kind": "refuse"})
    assert raw(api, "GET", "/faults/down").json()["kind"] == "refuse"
    assert raw(api, "GET", "/faults/ghost").status_code == 404


@pytest.mark.parametrize(
    "kwargs, status, message",
    [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "not JSON"),
        ({"data": b'{"name": "a", "kind": "refuse"}', "headers": {"Content-Type": "text/plain"}}, 415, "application/json"),
        ({"json": ["refuse"]}, 400, "fault: expected a mapping"),
    ],
)
def test_malformed_bodies_are_rejected_with_json_errors(api, kwargs, status, message):
    response = raw(api, "POST", "/faults", **kwargs)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert api.faults.specs() == []


def test_unknown_endpoint_and_method_answer_json(api):
    missing = raw(api, "GET", "/nope")
    assert missing.status_code == 404 and "no such endpoint" in missing.json()["error"]
    wrong_method = raw(api, "PATCH", "/faults")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_non_loopback_host_header_is_refused(api):
    response = raw(api, "GET", "/faults", headers={"Host": "attacker.example"})
    assert response.status_code == 403


def test_events_page_through_the_tap(api, client):
    for i in range(5):
        record(api.tap, f"/{i}")
    page = client.events(after=0, limit=2)
    assert page.dropped == 2
    assert [e["path"] for e in page.events] == ["/2", "/3"]
    page = client.events(after=page.next)
    assert ([e["path"] for e in page.events], page.next, page.dropped) == (["/4"], 5, 0)


@pytest.mark.parametrize("query", ["after=-1", "after=x", "limit=0", "after=99"])
def test_bad_event_queries_are_400(api, query):
    response = raw(api, "GET", f"/events?{query}")
    assert response.status_code == 400
    assert response.json()["error"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_api_is_an_environment_problem():
    with ControlClient(f"http://127.0.0.1:{free_port()}", timeout=1) as control:
        with pytest.raises(EnvironmentProblem, match="unreachable"):
            control.health()
        started = time.monotonic()
        with pytest.raises(EnvironmentProblem, match="not ready after 0.3 s"):
            control.wait_ready(0.3)
        assert time.monotonic() - started < 3


def test_wait_ready_returns_health(client):
    assert client.wait_ready(2)["ok"] is True


@pytest.mark.parametrize(
    "text, expected",
    [("", None), ("127.0.0.1:5380", ("127.0.0.1", 5380)), ("[::1]:0", ("::1", 0)), ("127.0.0.2:1", ("127.0.0.2", 1))],
)
def test_parse_control_address(text, expected):
    assert parse_control_address(text) == expected


@pytest.mark.parametrize("text", ["0.0.0.0:1", "10.0.0.1:1", "localhost:1", "127.0.0.1", "127.0.0.1:70000", ":1"])
def test_parse_control_address_rejects(text):
    with pytest.raises(ValueError):
        parse_control_address(text)
