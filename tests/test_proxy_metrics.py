from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from chaos.proxy.metrics import MAX_FAULT_NAMES, ProxyMetrics
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


def test_only_the_most_recently_fired_fault_names_keep_their_series():
    metrics = ProxyMetrics(lambda: 0, lambda: 0)
    metrics.observe(event(), [("hub-down-0", "refuse")], ["hub-down-0"])
    for build in range(1, MAX_FAULT_NAMES + 50):  # one fault name per CI build, as a staging proxy sees
        metrics.observe(event(), [(f"hub-down-{build}", "refuse")], [f"hub-down-{build}"])
        if build == MAX_FAULT_NAMES + 10:  # long after it was dropped, hub-down-0 fires again
            metrics.observe(event(role="auth", kind="token"), [("hub-down-0", "refuse")], [])
    got = samples(metrics.render(None)[0].decode())

    def series(metric):
        return {(dict(labels)["fault"], dict(labels)["role"]): value for (name, labels), value in got.items()
                if name == metric}

    fired, applied = series("hub_chaos_faults_fired_total"), series("hub_chaos_faults_applied_total")
    recent = {(f"hub-down-{build}", "registry") for build in range(51, MAX_FAULT_NAMES + 50)}
    assert set(fired) == recent | {("hub-down-0", "auth")} and set(applied) == recent
    # Its registry series went when it was dropped; the new one starts from zero (a counter reset).
    assert fired[("hub-down-0", "auth")] == 1 and all(value == 1 for value in fired.values())
