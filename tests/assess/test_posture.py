"""Posture probes against real loopback servers in several configurations, and mock endpoints."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import numpy as np
import pytest

from invguard.assess.posture import (
    CHECKS,
    PostureObservation,
    _decimals,
    _significant_digits,
    probe_endpoint,
)
from invguard.errors import InvalidParameterError
from invguard.models import TrainedModel
from invguard.targets import OutputSpec
from invguard.targets.http import EndpointError
from tests._servers import API_KEY, serve_model

# variant: server settings, then the expected 'passed' of each check in CHECKS order
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, bool]]] = {
    "open, full probabilities": (
        {"output": OutputSpec()},
        {
            "authentication": False,
            "output_detail": False,
            "output_precision": False,
            "rate_limiting": False,
            "transport_security": False,
        },
    ),
    "key, top-3": (
        {"output": OutputSpec(top_k=3), "api_keys": [API_KEY]},
        {
            "authentication": True,
            "output_detail": True,
            "output_precision": False,
            "rate_limiting": False,
            "transport_security": False,
        },
    ),
    "key, rounded to 2, rate limited": (
        {"output": OutputSpec(decimals=2), "api_keys": [API_KEY], "rate_limit": (0.5, 6)},
        {
            "authentication": True,
            "output_precision": True,
            "rate_limiting": True,
            "transport_security": False,
        },
    ),
    "open, labels only, rate limited": (
        {"output": OutputSpec(scores=False), "rate_limit": (0.5, 6)},
        {
            "authentication": False,
            "output_detail": True,
            "output_precision": True,
            "rate_limiting": True,
            "transport_security": False,
        },
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_observations_match_the_deployment(variant: str, digits_mlp: TrainedModel) -> None:
    settings, expected = VARIANTS[variant]
    keyed = "api_keys" in settings
    headers = {"X-API-Key": API_KEY} if keyed else {}
    burst = 12
    with serve_model(digits_mlp.model, input_shape=(1, 8, 8), num_classes=10, **settings) as srv:
        found = probe_endpoint(
            srv.url,
            headers=headers,
            input_shape=(1, 8, 8),
            num_classes=10,
            burst=burst,
            rng=np.random.default_rng(7),
        )
        stats = srv.stats
    assert [o.check for o in found] == list(CHECKS)
    by_check = {o.check: o for o in found}
    for check, passed in expected.items():
        assert by_check[check].passed is passed, by_check[check].summary
    for obs in found:
        assert isinstance(obs, PostureObservation)
        assert obs.summary
        assert "\n" not in obs.summary
        assert obs.recommendation
        text = json.dumps(obs.to_dict())  # JSON-ready
        assert API_KEY not in text
    # every request and input the probes report is one the server saw, and no more
    requests = sum(o.evidence["requests"] for o in found)
    queries = sum(o.evidence["queries"] for o in found)
    assert requests == stats.requests
    refused_inputs = 1 if keyed else 0  # the single input sent without credentials
    refused_inputs += 1 if "rate_limit" in settings else 0  # the input refused with 429
    assert queries == stats.served_inputs + refused_inputs
    assert by_check["rate_limiting"].evidence["requests"] <= burst
    spec: OutputSpec = settings["output"]
    detail = by_check["output_detail"].evidence
    precision = by_check["output_precision"].evidence
    if not spec.scores:
        assert detail["form"] == "labels only"
    elif spec.top_k == 3:
        assert detail["form"] == "top-3 scores"
        assert detail["nonzero_per_row"] == {"min": 3, "max": 3, "mean": 3.0}
        assert precision["precision"] == "full float precision"
    elif spec.decimals == 2:
        assert precision["max_decimals"] == 2
        assert by_check["output_precision"].summary == "scores are rounded to 2 decimals"
    else:
        assert detail["form"] == "full probability vectors"
        assert detail["rows_sum_to_one"]
        assert precision["precision"] == "full float precision"
    if "rate_limit" in settings:
        assert by_check["rate_limiting"].evidence["retry_after"] == "2"
        assert stats.refused.get(429) == 1  # the probe stops at the first 429
    else:
        assert by_check["rate_limiting"].evidence["requests"] == burst
    auth = by_check["authentication"].evidence
    assert auth["status_without_credentials"] == (401 if keyed else 200)
    assert by_check["transport_security"].evidence["host_is_loopback"] is True


def _mock(handler: Any) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def test_https_endpoint_and_bounded_probe_with_a_mock() -> None:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        if "authorization" not in request.headers:
            return httpx.Response(403, json={"error": "forbidden"})
        n = len(json.loads(request.content)["instances"])
        return httpx.Response(200, json={"out": {"p": np.full((n, 4), 0.25).tolist()}})

    kwargs: dict[str, Any] = {
        "headers": {"Authorization": "Bearer tok-abc"},
        "request_template": {"instances": "$inputs"},
        "response_mapping": "/out/p",
        "input_shape": (3,),
        "num_classes": 4,
        "burst": 5,
        "samples": 4,
    }
    found = probe_endpoint("https://models.example.com/v1/p", transport=_mock(handler), **kwargs)
    by_check = {o.check: o for o in found}
    assert by_check["transport_security"].passed
    assert by_check["authentication"].passed
    assert by_check["authentication"].evidence["status_without_credentials"] == 403
    assert not by_check["output_detail"].passed  # 0.25 everywhere: full vectors
    assert by_check["output_precision"].passed  # 0.25: two decimals
    assert by_check["output_precision"].evidence["max_decimals"] == 2
    assert not by_check["rate_limiting"].passed
    assert len(bodies) == 1 + 1 + 5
    assert "tok-abc" not in json.dumps([o.to_dict() for o in found])
    # the same rng seed sends the same inputs
    first = list(bodies)
    bodies.clear()
    probe_endpoint("https://models.example.com/v1/p", transport=_mock(handler), **kwargs)
    assert bodies == first
    only = probe_endpoint(
        "https://models.example.com/v1/p",
        transport=_mock(handler),
        checks=["transport_security"],
        **kwargs,
    )
    assert [o.check for o in only] == ["transport_security"]


def test_unusable_answers_are_inconclusive_not_passed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, html="<html>maintenance</html>")

    found = probe_endpoint(
        "http://10.0.0.5/predict",
        input_shape=(3,),
        num_classes=4,
        burst=3,
        transport=_mock(handler),
    )
    by_check = {o.check: o for o in found}
    for check in ("output_detail", "output_precision"):
        assert not by_check[check].passed
        assert by_check[check].summary.startswith("inconclusive: the response is not JSON")
        assert by_check[check].evidence["conclusive"] is False
    assert not by_check["authentication"].passed  # answered without credentials
    assert by_check["transport_security"].evidence["host_is_loopback"] is False


def test_unreachable_endpoint_raises() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        EndpointError, match=rf"127\.0\.0\.1:{port}/p: request failed: ConnectError"
    ):
        probe_endpoint(f"http://127.0.0.1:{port}/p", input_shape=(3,), num_classes=4)


def test_decimals_and_validation() -> None:
    assert [_decimals(v) for v in (0.07, 1.0, 1e-05, 0.5, 0.123456789, 2.5e-7)] == [
        2,
        0,
        5,
        1,
        9,
        8,
    ]
    assert [_significant_digits(v) for v in (0.07, 1.0, 0.1234, 1.5e-12, 0.1 + 0.2)] == [
        1,
        1,
        4,
        2,
        17,
    ]
    with pytest.raises(InvalidParameterError, match="The 'burst' parameter must be an int >= 1"):
        probe_endpoint("http://x/p", input_shape=(3,), num_classes=4, burst=0)
    with pytest.raises(InvalidParameterError, match="'checks' parameter must be a collection"):
        probe_endpoint("http://x/p", input_shape=(3,), num_classes=4, checks=["tls"])
