"""Prometheus text exposition: rendering and the small parser that checks it."""

from __future__ import annotations

import math

import pytest

from invguard.gateway.metrics import (
    ExpositionError,
    GatewayMetrics,
    parse_exposition,
    sample_value,
)


def test_render_and_parse_round_trip() -> None:
    m = GatewayMetrics(["knn", "blacklight"])
    m.requests.inc("200", amount=3)
    m.requests.inc("429")
    for v in (0.0004, 0.003, 0.003, 7.0, 20.0):
        m.latency.observe(v)
    m.alerts.inc("knn")
    m.gauge("blocked_clients", "API keys blocked now.", lambda: 2)
    fams = parse_exposition(m.render())
    assert fams["invguard_gateway_requests_total"].type == "counter"
    assert sample_value(fams, "invguard_gateway_requests_total", status="200") == 3
    assert sample_value(fams, "invguard_gateway_alerts_total", detector="knn") == 1
    assert sample_value(fams, "invguard_gateway_alerts_total", detector="blacklight") == 0
    assert sample_value(fams, "invguard_gateway_blocked_clients") == 2
    name = "invguard_gateway_request_duration_seconds"
    assert sample_value(fams, name + "_bucket", le="0.0005") == 1
    assert sample_value(fams, name + "_bucket", le="0.005") == 3
    assert sample_value(fams, name + "_bucket", le="10") == 4
    assert sample_value(fams, name + "_bucket", le="+Inf") == 5
    assert sample_value(fams, name + "_count") == 5
    assert sample_value(fams, name + "_sum") == pytest.approx(27.0064)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metric{a=b} 1\n", "bad labels"),
        ("metric 1 2 3\n", "not a sample line"),
        ("metric x\n", "is not a number"),
        ("# TYPE m countr\n", "unknown type"),
        ("a 1\nb 1\na 2\n", "samples of a are not together"),
        (
            '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n',
            "not cumulative",
        ),
        ('# TYPE h histogram\nh_bucket{le="1"} 2\nh_count 2\n', r"no \+Inf bucket"),
    ],
)
def test_parser_rejects_malformed_text(text: str, message: str) -> None:
    with pytest.raises(ExpositionError, match=message):
        parse_exposition(text)


def test_label_escaping() -> None:
    m = GatewayMetrics()
    m.requests.inc('we"ird\\\nvalue')
    fams = parse_exposition(m.render())
    assert sample_value(fams, "invguard_gateway_requests_total", status='we"ird\\\nvalue') == 1
    assert math.isnan(parse_exposition("x NaN\n")["x"].samples[0].value)
