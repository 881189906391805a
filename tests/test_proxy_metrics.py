from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from chaos.proxy.metrics import MAX_FAULT_NAMES, OTHER_FAULTS, ProxyMetrics
from chaos.proxy.tap import EVENT_FIELDS


def event(**fields):
    base = {name: None for name in EVENT_FIELDS}
    base.update(role="registry", kind="blob", origin="mirror", method="GET", status=200, bytes=0, latency_ms=12.0)
    base.update(fields)
    return base


def samples(text):
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_events_are_counted_by_role_kind_and_origin():
    metrics = ProxyMetrics(lambda: 2, lambda: 1)
    metrics.observe(event(bytes=1000), [("rot", "corrupt")], ["rot"])
    metrics.observe(event(bytes=24, status=None), [("rot", "corrupt"), ("slow", "latency")], [])
    metrics.observe(event(role="cdn", origin="client", bytes=5), [], [])
    body, content_type = metrics.render(None)
    assert content_type.startswith("text/plain; version=0.0.4")
    got = samples(body.decode())
    labels = (("kind", "blob"), ("origin", "mirror"), ("role", "registry"))
    assert got[("hub_chaos_requests_total", tuple(sorted(labels + (("method", "GET"), ("status", "200")))))] == 1
    assert got[("hub_chaos_requests_total", tuple(sorted(labels + (("method", "GET"), ("status", "none")))))] == 1
    assert got[("hub_chaos_response_body_bytes_total", labels)] == 1024
    cdn = (("kind", "blob"), ("origin", "client"), ("role", "cdn"))
    assert got[("hub_chaos_response_body_bytes_total", cdn)] == 5
    rot = tuple(sorted(labels + (("fault", "rot"), ("fault_kind", "corrupt"))))
    assert got[("hub_chaos_faults_fired_total", rot)] == 2
    assert got[("hub_chaos_faults_applied_total", rot)] == 1
    slow = tuple(sorted(labels + (("fault", "slow"), ("fault_kind", "latency"))))
    assert got[("hub_chaos_faults_fired_total", slow)] == 1
    assert ("hub_chaos_faults_applied_total", slow) not in got
    assert got[("hub_chaos_faults_active", ())] == 2
    assert got[("hub_chaos_requests_in_flight", ())] == 1
    assert got[("hub_chaos_request_duration_seconds_count", labels)] == 2


def test_prometheus_gets_openmetrics_when_it_asks():
    metrics = ProxyMetrics(lambda: 0, lambda: 0)
    metrics.observe(event(), [], [])
    body, content_type = metrics.render("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
    assert content_type.startswith("application/openmetrics-text")
    names = {family.name for family in parse_openmetrics(body.decode())}
    assert {"hub_chaos_requests", "hub_chaos_faults_active"} <= names


def test_two_proxies_in_one_process_keep_their_own_counts():
    first, second = ProxyMetrics(lambda: 0, lambda: 0), ProxyMetrics(lambda: 0, lambda: 0)
    first.observe(event(), [], [])
    assert "hub_chaos_requests_total{" not in second.render(None)[0].decode()


def test_fault_names_beyond_the_cap_are_counted_together_not_a_series_each():
    metrics = ProxyMetrics(lambda: 0, lambda: 0)
    for build in range(MAX_FAULT_NAMES + 50):
        metrics.observe(event(), [(f"hub-down-{build}", "refuse")], [f"hub-down-{build}"])
    metrics.observe(event(), [("hub-down-0", "refuse")], [])  # a name seen before the cap keeps its series
    got = samples(metrics.render(None)[0].decode())
    fired = {dict(labels)["fault"]: value for (name, labels), value in got.items() if name == "hub_chaos_faults_fired_total"}
    assert len(fired) == MAX_FAULT_NAMES + 1
    assert fired[OTHER_FAULTS] == 50 and fired["hub-down-0"] == 2 and f"hub-down-{MAX_FAULT_NAMES}" not in fired
    applied = {dict(labels)["fault"]: value for (name, labels), value in got.items()
               if name == "hub_chaos_faults_applied_total"}
    assert applied[OTHER_FAULTS] == 50 and applied["hub-down-0"] == 1
