import asyncio

from mitmproxy import http
from mitmproxy.test import tflow

from chaos.faults.body import BodyFilter
from chaos.faults.faultset import FaultSet
from chaos.faults.hooks import APPLIED, FilterChain, body_filters, hold_request, needs_hold, run_hook
from chaos.faults.kind import FaultKind
from chaos.faults.registry import register
from tests._faults_helpers import MANIFEST, Clock, spec


def test_run_hook_stops_once_the_flow_is_killed():
    faults = FaultSet(clock=Clock())
    faults.add(spec(name="first", kind="reset"))
    faults.add(spec(name="second", kind="reset"))
    flow = tflow.tflow(resp=True)
    applied = run_hook(faults.matching("h", "GET", MANIFEST), "on_response_headers", flow)
    assert applied == ["first"]
    assert flow.error.msg == "Connection killed."


def test_run_hook_skips_kinds_without_that_hook():
    faults = FaultSet(clock=Clock())
    faults.add(spec(name="r", kind="reset"))
    flow = tflow.tflow(req=http.Request.make("GET", "https://registry-1.docker.io/v2/"))
    assert run_hook(faults.matching("h", "GET", MANIFEST), "on_request", flow) == []
    assert flow.error is None


def test_applied_counts_once_per_flow_and_names_the_fault_on_the_flow():
    faults = FaultSet(clock=Clock())
    faults.add(spec(name="rst", kind="reset"))
    flow = tflow.tflow(resp=True)
    fired = faults.fire("h", "GET", MANIFEST)
    run_hook(fired, "on_response_headers", flow)
    assert flow.metadata[APPLIED] == ["rst"]
    assert faults.specs()[0].counters.applied == 1


class _Hold(FaultKind):
    name = "test-hold"
    log: list = []

    async def hold_request(self, flow, lifetime):
        self.log.append(self.params)
        await asyncio.sleep(0)
        return True


class _Tag(BodyFilter):
    def __init__(self, tag):
        self.tag = tag
        self.closed = False

    def __call__(self, chunk):
        return chunk + self.tag

    def close(self):
        self.closed = True


class _Tagger(FaultKind):
    name = "test-tagger"

    def body_filter(self, flow):
        return _Tag(self.params)


register(_Hold)
register(_Tagger)


class _Active:
    def __init__(self, kind, name):
        self.kind = kind
        self.applied = 0
        self.lifetime = None
        self.spec = type("S", (), {"name": name})()


def test_holds_run_in_order_and_stop_once_the_flow_is_killed():
    _Hold.log.clear()
    holds = [_Active(_Hold("one"), "one"), _Active(_Hold("two"), "two")]
    assert needs_hold(holds) and not needs_hold([_Active(FaultKind(None), "x")])
    flow = tflow.tflow()
    asyncio.run(hold_request(holds, flow))
    assert _Hold.log == ["one", "two"] and flow.metadata[APPLIED] == ["one", "two"]

    _Hold.log.clear()
    killed = tflow.tflow()
    killed.kill()
    asyncio.run(hold_request(holds, killed))
    assert _Hold.log == ["one"]


def test_body_filters_chain_in_fault_order_before_the_sink():
    faults = [_Active(_Tagger(b"1"), "one"), _Active(_Tagger(b"2"), "two")]
    flow = tflow.tflow(resp=True)
    filters = body_filters(faults, flow)
    seen = []
    chain = FilterChain(filters, lambda chunk: seen.append(chunk) or chunk)
    assert chain(b"x") == b"x12" and seen == [b"x12"]
    assert not chain.ends_response
    chain.close()
    assert all(f.closed for _, f in filters)
    assert flow.metadata[APPLIED] == ["one", "two"]


def test_a_fault_ending_mid_body_releases_its_filter_and_uncounts_it_when_it_had_not_acted():
    # Counters say what reached the client: a truncate removed before its cut cut nothing.
    async def scenario():
        faults = FaultSet(clock=Clock())
        faults.add(spec(name="cut", kind="truncate", params={"after_bytes": 10}, ttl_s=60))
        faults.add(spec(name="rot", kind="corrupt", params={"at_byte": 0}, ttl_s=60))
        flow = tflow.tflow(resp=True)
        flow.response.headers["content-length"] = "30"
        fired = faults.fire("h", "GET", MANIFEST)
        chain = FilterChain(body_filters(fired, flow), lambda chunk: chunk, flow)
        assert flow.metadata[APPLIED] == ["cut", "rot"]
        assert chain(b"\x00" * 5) == b"\xff" + b"\x00" * 4
        faults.remove("cut")
        faults.remove("rot")
        assert chain(b"\x00" * 25) == b"\x00" * 25  # neither cuts nor flips any more
        assert not chain.ends_response
        assert flow.metadata[APPLIED] == ["rot"]  # rot had flipped a byte; cut had done nothing
        assert [a.applied for a in fired] == [0, 1]
        chain.close()

    asyncio.run(scenario())


def test_faults_ended_since_they_fired_act_no_more():
    faults = FaultSet(clock=Clock())
    faults.add(spec(name="rst", kind="reset", ttl_s=60))
    fired = faults.fire("h", "GET", MANIFEST)
    faults.remove("rst")
    flow = tflow.tflow(resp=True)
    assert run_hook(fired, "on_response_headers", flow) == [] and flow.error is None
    assert body_filters(fired, flow) == []
