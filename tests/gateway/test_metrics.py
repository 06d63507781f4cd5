"""Gateway metrics with prometheus_client: a registry per gateway, text and OpenMetrics."""

from __future__ import annotations

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families

from invguard import __version__
from invguard.gateway.metrics import GatewayMetrics, parse_exposition, sample_value


def test_render_and_parse_round_trip() -> None:
    m = GatewayMetrics(["knn", "blacklight"], model="digits MLP")
    m.requests.inc("200", amount=3)
    m.requests.inc("429")
    for v in (0.0004, 0.003, 0.003, 7.0, 20.0):
        m.latency.observe(v)
    m.alerts.inc("knn")
    m.inputs.inc(amount=5)
    m.gauge("blocked_clients", "API keys blocked now.", lambda: 2)
    body, content_type = m.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    fams = parse_exposition(body.decode())
    assert fams["invguard_gateway_requests"].type == "counter"
    assert sample_value(fams, "invguard_gateway_requests_total", status="200") == 3
    assert sample_value(fams, "invguard_gateway_alerts_total", detector="knn") == 1
    assert sample_value(fams, "invguard_gateway_alerts_total", detector="blacklight") == 0
    assert sample_value(fams, "invguard_gateway_predictions_total") == 5
    assert sample_value(fams, "invguard_gateway_blocked_clients") == 2
    name = "invguard_gateway_request_duration_seconds"
    assert sample_value(fams, name + "_bucket", le="0.0005") == 1
    assert sample_value(fams, name + "_bucket", le="0.005") == 3
    assert sample_value(fams, name + "_bucket", le="10.0") == 4
    assert sample_value(fams, name + "_bucket", le="+Inf") == 5
    assert sample_value(fams, name + "_count") == 5
    assert sample_value(fams, name + "_sum") == pytest.approx(27.0064)
    build = "invguard_build_info"
    info = {"version": __version__, "model": "digits MLP"}
    assert any(
        s.name == build and info.items() <= s.labels.items() and s.value == 1
        for f in fams.values()
        for s in f.samples
    )
    assert sample_value(fams, "process_cpu_seconds_total") > 0  # the process collector
    assert m.requests.value("200") == 3
    assert m.requests.total() == 4
    assert m.webhook.value("delivered") == 0


def test_openmetrics_when_asked_and_registries_apart() -> None:
    a, b = GatewayMetrics(), GatewayMetrics()  # no global registry: no duplicate names
    a.requests.inc("415")
    body, content_type = a.render("application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("# EOF\n")
    families = om_families(text)  # type: ignore[no-untyped-call]
    samples = {(s.name, tuple(s.labels.items())): s.value for f in families for s in f.samples}
    assert samples[("invguard_gateway_requests_total", (("status", "415"),))] == 1
    assert b.requests.total() == 0


def test_label_escaping() -> None:
    m = GatewayMetrics()
    m.requests.inc('we"ird\\\nvalue')
    fams = parse_exposition(m.render()[0].decode())
    assert sample_value(fams, "invguard_gateway_requests_total", status='we"ird\\\nvalue') == 1
