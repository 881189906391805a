import asyncio
import logging
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from chaos.errors import EnvironmentProblem, UsageError
from chaos.faults.faultset import DuplicateFault, FaultSet, UnknownFault
from chaos.lab.ports import free_port
from chaos.proxy.control_api import ControlServer, parse_control_address
from chaos.proxy.control_client import ControlClient, control_base_url
from chaos.proxy.metrics import ProxyMetrics
from chaos.proxy.tap import EVENT_FIELDS, EventTap

TOKEN = b"a-token-of-32-characters-0123456"


class Api:
    def __init__(self, token=None, host="127.0.0.1"):
        self.faults = FaultSet()
        self.tap = EventTap(capacity=3)
        self.in_flight = 0
        self.token = token
        self.host = host
        self.metrics = ProxyMetrics(lambda: len(self.faults.specs()), lambda: self.in_flight)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = ControlServer(
            self.faults, lambda: self.tap, lambda: self.in_flight, metrics=self.metrics, token=lambda: self.token
        )

    def __enter__(self):
        self.thread.start()

        async def start():
            return self.server.start(self.host, 0)

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


@pytest.mark.parametrize("text, expected", [("0.0.0.0:5380", ("0.0.0.0", 5380)), ("[::]:1", ("::", 1)), ("10.0.0.1:1", ("10.0.0.1", 1))])
def test_with_a_token_any_ip_address_may_serve_the_api(text, expected):
    assert parse_control_address(text, token=True) == expected
    with pytest.raises(ValueError, match="not loopback; the control API answers other hosts only with a token"):
        parse_control_address(text)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "a", "kind": "refuse", "ttl_s": 10**400}, "ttl_s"),
        ({"name": "a", "kind": "refuse", "ttl_s": 1e12}, "ttl_s"),
        ({"name": "a", "kind": "latency", "params": {"delay_ms": 10**400}}, "params.delay_ms"),
        ({"name": "a", "kind": "refuse", "trigger": {"first": 10**400}}, "trigger.first"),
        ({"name": "a", "kind": "bandwidth", "params": {"rate_kbps": 1e-9}}, "params.rate_kbps"),
    ],
)
def test_hostile_numbers_are_400_naming_the_field(api, body, field):
    response = raw(api, "POST", "/faults", json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{field}: ")
    assert api.faults.specs() == []


@pytest.mark.parametrize(
    "text, message",
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"name": "a", "kind": "refuse", "match": {"roles": ' + b"[" * 50 + b"]" * 50 + b"}}", "nested deeper than 8 levels"),
        (b'{"name": "a", "kind": "refuse", "ttl_s": NaN}', "NaN is not a JSON number"),
        (b'{"name": "a", "kind": "refuse", "ttl_s": Infinity}', "Infinity is not a JSON number"),
        (b'{"name": "a", "kind": "refuse", "ttl_s": 1' + b"0" * 5000 + b"}", "body is not JSON"),
    ],
)
def test_hostile_bodies_are_400(api, text, message):
    response = raw(api, "POST", "/faults", data=text, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert len(response.json()["error"]) < 300


def test_a_body_too_big_to_be_a_fault_is_refused_unread(api):
    # tornado answers 400 and closes before reading it; a client still sending meets a reset.
    try:
        response = raw(api, "POST", "/faults", data=b" " * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})
    except requests.RequestException:
        pass
    else:
        assert response.status_code == 400
    assert api.faults.specs() == []
    assert raw(api, "GET", "/healthz").status_code == 200  # and the API carries on


def test_refused_calls_are_logged_in_one_line(api, caplog):
    caplog.set_level(logging.WARNING, logger="chaos.proxy.control_api")
    raw(api, "POST", "/faults", json={"name": "a", "kind": "refuze"})
    raw(api, "GET", "/nope")
    deadline = time.monotonic() + 5  # the server logs a call just after the client has its answer
    while len(caplog.records) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("hub-chaos: control API: POST /faults -> 400 kind: unknown fault kind 'refuze'")
    assert messages[1] == "hub-chaos: control API: GET /nope -> 404 no such endpoint: GET /nope"


def test_delete_all_says_how_many_were_active(api, client):
    client.add({"name": "a", "kind": "refuse"})
    client.add({"name": "b", "kind": "refuse"})
    assert raw(api, "DELETE", "/faults").json() == {"removed": 2}


def test_metrics_are_served_in_prometheus_text(api):
    api.metrics.observe({**{name: None for name in EVENT_FIELDS}, "role": "registry", "kind": "ping",
                         "origin": "unknown", "method": "GET", "status": 401, "bytes": 10, "latency_ms": 3.0}, [], [])  # fmt: skip
    response = raw(api, "GET", "/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    [sample] = families["hub_chaos_requests"].samples
    assert sample.labels == {"role": "registry", "kind": "ping", "origin": "unknown", "method": "GET", "status": "401"}
    assert sample.value == 1


@pytest.fixture
def token_api():
    with Api(token=TOKEN, host="0.0.0.0") as running:
        yield running


def test_with_a_token_every_call_but_healthz_needs_it(token_api):
    assert raw(token_api, "GET", "/healthz").status_code == 200
    for method, path in (("GET", "/faults"), ("DELETE", "/faults"), ("GET", "/events"), ("GET", "/metrics"), ("GET", "/nope")):
        refused = raw(token_api, method, path)
        assert refused.status_code == 401, path
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="hub-chaos"'
        assert "bearer token" in refused.json()["error"] and TOKEN.decode() not in refused.text
        wrong = raw(token_api, method, path, headers={"Authorization": "Bearer " + "x" * 32})
        assert wrong.status_code == 401
    with ControlClient(token_api.url, token=TOKEN.decode()) as control:
        control.add({"name": "down", "kind": "refuse"})
        assert [f["name"] for f in control.list()] == ["down"]
        assert "hub_chaos_faults_active 1.0" in control.metrics()
    with ControlClient(token_api.url) as control, pytest.raises(UsageError, match="bearer token"):
        control.list()


def test_with_a_token_any_host_header_is_fine(token_api):
    # Served beyond loopback, clients name the machine; the token, not the Host, guards it.
    response = raw(token_api, "GET", "/faults", headers={"Host": "proxy.example", "Authorization": f"Bearer {TOKEN.decode()}"})
    assert response.status_code == 200


def test_the_token_never_reaches_the_log(token_api, caplog):
    caplog.set_level(logging.DEBUG)
    raw(token_api, "GET", "/faults", headers={"Authorization": "Bearer " + TOKEN.decode() + "x"})
    raw(token_api, "GET", "/faults", headers={"Authorization": "Bearer " + TOKEN.decode()})
    deadline = time.monotonic() + 5  # the server logs a call just after the client has its answer
    while "401" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "hub-chaos: control API: GET /faults -> 401" in caplog.text
    assert TOKEN.decode() not in caplog.text


@pytest.mark.parametrize(
    "text, expected",
    [("127.0.0.1:5380", "http://127.0.0.1:5380"), ("http://127.0.0.1:5380/", "http://127.0.0.1:5380"),
     ("https://proxy.example:443", "https://proxy.example:443")],
)  # fmt: skip
def test_the_client_takes_host_port_or_a_url(text, expected):
    assert control_base_url(text) == expected


@pytest.mark.parametrize("text", ["http://:s3cret@127.0.0.1:1", "user:s3cret@127.0.0.1:1", "http://u@127.0.0.1:1"])
def test_an_address_carrying_credentials_is_refused_without_echoing_them(text):
    with pytest.raises(UsageError, match="no user or password") as caught:
        ControlClient(text)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("text", ["127.0.0.1", "ftp://127.0.0.1:1", "http://127.0.0.1:1/api", "http://:1", "127.0.0.1:x"])
def test_the_client_refuses_other_addresses_as_usage_errors(text):
    with pytest.raises(UsageError, match="expected HOST:PORT or http://HOST:PORT"):
        ControlClient(text)
