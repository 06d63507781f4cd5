"""HttpTarget against real loopback servers (digits MLP) and malformed endpoints (MockTransport)."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from invguard.data import ImageDataset
from invguard.defenses.output import apply_output_spec
from invguard.errors import InvalidParameterError, TargetError
from invguard.gateway.model_server import serve_in_thread
from invguard.models import TrainedModel
from invguard.targets import Capability, OutputSpec, QueryBudgetExceededError, Target, TorchTarget
from invguard.targets.http import EndpointError, HttpTarget, parse_retry_after, redact_url
from tests._servers import API_KEY, FakeClock, serve_model

SPECS = {
    "full": OutputSpec(),
    "top3": OutputSpec(top_k=3),
    "round2": OutputSpec(decimals=2),
    "labels": OutputSpec(scores=False),
}
MOCK_URL = "https://api.example.com/v1/predict"


def _expected(digits_mlp: TrainedModel, x: np.ndarray, spec: OutputSpec) -> np.ndarray:
    probs = TorchTarget(digits_mlp.model, input_shape=(1, 8, 8)).predict(x)
    return apply_output_spec(probs, spec)


# --- real servers -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(SPECS))
def test_predictions_match_the_served_model(
    variant: str, digits: ImageDataset, digits_mlp: TrainedModel
) -> None:
    spec = SPECS[variant]
    x = digits.x_test[:50]
    with (
        serve_model(
            digits_mlp.model, input_shape=(1, 8, 8), num_classes=10, output=spec, api_keys=[API_KEY]
        ) as srv,
        HttpTarget(
            srv.url,
            num_classes=10,
            input_shape=(1, 8, 8),
            output=spec,
            headers={"X-API-Key": API_KEY},
            max_batch=16,
        ) as target,
    ):
        assert isinstance(target, Target)
        assert target.capabilities == spec.capabilities()
        got = target.predict(x)
        assert target.queries == 50
        assert srv.stats.served_inputs == 50
        assert srv.stats.served_requests == math.ceil(50 / 16) == target.requests_sent
    want = _expected(digits_mlp, x, spec)
    assert got.shape == (50, 10)
    assert got.dtype == np.float32
    if variant == "full":
        assert np.allclose(got, want, atol=1e-6)
        assert np.allclose(got.sum(1), 1.0, atol=1e-5)
    elif variant == "top3":
        assert ((got > 0).sum(1) <= 3).all()
        assert np.array_equal(got > 0, want > 0)
        assert np.allclose(got, want, atol=1e-6)
    elif variant == "round2":
        assert np.allclose(got, want, atol=1e-6)
        assert np.allclose(got * 100, np.round(got * 100), atol=1e-4)  # two decimals exactly
    else:
        assert np.array_equal(got, want)  # one-hot rows at the model's arg-max
        assert set(np.unique(got)) == {0.0, 1.0}


def test_query_budget_is_respected_exactly(digits: ImageDataset, digits_mlp: TrainedModel) -> None:
    x = digits.x_test
    with (
        serve_model(digits_mlp.model, input_shape=(1, 8, 8), num_classes=10) as srv,
        HttpTarget(
            srv.url, num_classes=10, input_shape=(1, 8, 8), max_batch=8, query_budget=50
        ) as target,
    ):
        target.predict(x[:30])
        with pytest.raises(QueryBudgetExceededError, match="budget of 50"):
            target.predict(x[:21])
        assert srv.stats.requests == 4  # the refused batch sent nothing
        target.predict(x[:20])
        assert target.queries == 50
        with pytest.raises(QueryBudgetExceededError):
            target.predict(x[:1])
        assert srv.stats.served_inputs == target.queries == 50
        assert srv.stats.requests == srv.stats.served_requests == 4 + 3


def test_concurrent_requests_keep_the_order(digits: ImageDataset, digits_mlp: TrainedModel) -> None:
    x = digits.x_test[:100]
    with (
        serve_model(digits_mlp.model, input_shape=(1, 8, 8), num_classes=10) as srv,
        HttpTarget(
            srv.url, num_classes=10, input_shape=(1, 8, 8), max_batch=10, concurrency=4
        ) as target,
    ):
        got = target.predict(x)
        assert srv.stats.served_requests == 10
        assert srv.stats.served_inputs == target.queries == 100
    assert np.allclose(got, _expected(digits_mlp, x, SPECS["full"]), atol=1e-6)


def test_retries_on_429_honour_retry_after(digits: ImageDataset, digits_mlp: TrainedModel) -> None:
    clock = FakeClock()
    x = digits.x_test[:16]
    with (
        serve_model(
            digits_mlp.model,
            input_shape=(1, 8, 8),
            num_classes=10,
            rate_limit=(0.25, 2),  # one request every 4 s, bursts of 2
            clock=clock,
        ) as srv,
        HttpTarget(
            srv.url, num_classes=10, input_shape=(1, 8, 8), max_batch=4, sleep=clock.sleep
        ) as target,
    ):
        got = target.predict(x)
        # requests 1-2 use the burst; 3 and 4 are refused once each with Retry-After: 4
        assert clock.sleeps == [4.0, 4.0]
        assert srv.stats.refused == {429: 2}
        assert target.requests_sent == 6
        assert srv.stats.served_inputs == target.queries == 16
    assert np.allclose(got, _expected(digits_mlp, x, SPECS["full"]), atol=1e-6)


def test_wrong_or_missing_key_is_an_endpoint_error(
    digits: ImageDataset, digits_mlp: TrainedModel
) -> None:
    wrong = "sk-wrong-0000000000000000"
    with serve_model(
        digits_mlp.model, input_shape=(1, 8, 8), num_classes=10, api_keys=[API_KEY]
    ) as srv:
        for headers in ({"X-API-Key": wrong}, {"Authorization": f"Bearer {wrong}"}, {}):
            with HttpTarget(srv.url, num_classes=10, input_shape=(1, 8, 8), headers=headers) as t:
                with pytest.raises(EndpointError) as info:
                    t.predict(digits.x_test[:3])
                assert wrong not in str(info.value)
                assert wrong not in repr(t)
                assert info.value.status == 401
                assert info.value.queries_spent == 3 == t.queries
                assert str(info.value).startswith(f"endpoint {srv.url}: HTTP 401")
        with HttpTarget(
            srv.url,
            num_classes=10,
            input_shape=(1, 8, 8),
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as t:
            assert t.predict(digits.x_test[:3]).shape == (3, 10)
        assert srv.stats.served_inputs == 3
        assert srv.stats.refused == {401: 3}


def test_real_server_answering_html() -> None:
    async def page(request: Request) -> Response:
        return HTMLResponse("<!DOCTYPE html><html><body>Login</body></html>")

    app = Starlette(routes=[Route("/v1/predict", page, methods=["POST"])])
    with (
        serve_in_thread(app) as base,
        HttpTarget(base + "/v1/predict", num_classes=10, input_shape=(1, 8, 8)) as t,
    ):
        with pytest.raises(EndpointError, match=r"response is not JSON \(content-type 'text/html"):
            t.predict(np.zeros((2, 1, 8, 8), np.float32))
        assert t.queries == 2


def test_connection_refused() -> None:
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with HttpTarget(
        f"http://127.0.0.1:{port}/v1/predict", num_classes=10, input_shape=(1, 8, 8)
    ) as t:
        with pytest.raises(
            EndpointError, match=rf"127\.0\.0\.1:{port}/v1/predict: connection refused"
        ):
            t.predict(np.zeros((2, 1, 8, 8), np.float32))
        assert t.queries == 2


@pytest.mark.slow
def test_faces_mlp_over_http(faces: ImageDataset, faces_mlp: TrainedModel) -> None:
    shape = faces.image_shape
    x = faces.x_test[:40]
    with (
        serve_model(faces_mlp.model, input_shape=shape, num_classes=40, api_keys=[API_KEY]) as srv,
        HttpTarget(
            srv.url,
            num_classes=40,
            input_shape=shape,
            headers={"X-API-Key": API_KEY},
            max_batch=20,
            concurrency=2,
        ) as target,
    ):
        got = target.predict(x)
        assert srv.stats.served_inputs == target.queries == 40
    want = TorchTarget(faces_mlp.model, input_shape=shape).predict(x)
    assert np.allclose(got, want, atol=1e-6)
    assert (got.argmax(1) == faces.y_test[:40]).mean() > 0.8


# --- malformed endpoints (MockTransport) ------------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


def _json(doc: object, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=doc)


def _scores(n: int, c: int = 10) -> list[list[float]]:
    return np.full((n, c), 1.0 / c).tolist()


def _nan_body(request: httpx.Request) -> httpx.Response:
    rows = ",".join(["[" + ",".join(["NaN"] * 10) + "]"] * 3)
    return httpx.Response(
        200, content=f'{{"predictions": [{rows}]}}', headers={"content-type": "application/json"}
    )


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


MALFORMED: dict[str, tuple[Handler, str]] = {
    "html": (
        lambda r: httpx.Response(200, html="<html><body>Welcome</body></html>"),
        r"response is not JSON \(content-type 'text/html; charset=utf-8', body starts '<html>",
    ),
    "malformed json": (
        lambda r: httpx.Response(
            200, content=b'{"predictions": [[0.1,', headers={"content-type": "application/json"}
        ),
        r"response is malformed JSON: Expecting value",
    ),
    "missing field": (
        lambda r: _json({"result": _scores(3)}),
        r"response has no '/predictions': no field 'predictions' at the top level "
        r"\(keys there: result\)",
    ),
    "wrong classes": (
        lambda r: _json({"predictions": _scores(3, 7)}),
        r"'/predictions' has 7 class scores per input, expected 10",
    ),
    "wrong rows": (
        lambda r: _json({"predictions": _scores(2)}),
        r"'/predictions' has 2 rows for 3 inputs",
    ),
    "nan": (_nan_body, r"'/predictions' contains NaN or infinite scores"),
    "negative": (
        lambda r: _json({"predictions": (np.ones((3, 10)) * -0.5).tolist()}),
        r"contains negative scores \(min -0.5\): probabilities are expected, not logits",
    ),
    "strings": (
        lambda r: _json({"predictions": [["a"] * 10] * 3}),
        r"'/predictions' must be an \(inputs, classes\) array of numbers",
    ),
    "timeout": (_timeout, r"timed out after 2 s \(ReadTimeout\)"),
    "500": (
        lambda r: _json({"error": f"boom for key {r.headers['x-api-key']}"}, status=500),
        r"HTTP 500 Internal Server Error after 3 attempts: server says 'boom for key \*\*\*'",
    ),
    "404": (lambda r: _json({"detail": "Not Found"}, 404), r"HTTP 404 Not Found: server says"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_endpoints_raise_clear_endpoint_errors(case: str) -> None:
    handler, pattern = MALFORMED[case]
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    clock = FakeClock()
    target = HttpTarget(
        MOCK_URL + "?tenant=acme-secret",
        num_classes=10,
        input_shape=(1, 8, 8),
        headers={"X-API-Key": API_KEY},
        timeout=2.0,
        retries=2,
        transport=httpx.MockTransport(record),
        sleep=clock.sleep,
    )
    with target, pytest.raises(EndpointError) as info:
        target.predict(np.zeros((3, 1, 8, 8), np.float32))
    err = info.value
    message = str(err)
    assert "\n" not in message
    assert message.startswith(f"endpoint {MOCK_URL}?tenant=***: ")
    assert API_KEY not in message
    assert "acme-secret" not in message
    assert API_KEY not in repr(target)
    assert err.queries_spent == 3 == target.queries
    assert seen[0].headers["x-api-key"] == API_KEY
    import re

    assert re.search(pattern, message), message
    if case == "500":
        assert len(seen) == 3
        assert clock.sleeps == [0.5, 1.0]  # exponential backoff without Retry-After
        assert err.status == 500
    else:
        assert len(seen) == 1


def test_retry_after_from_a_mock_endpoint_is_honoured() -> None:
    replies = iter(
        [
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(503, headers={"Retry-After": "2"}),
            _json({"predictions": _scores(2)}),
        ]
    )
    clock = FakeClock()
    with HttpTarget(
        MOCK_URL,
        num_classes=10,
        input_shape=(1, 8, 8),
        transport=httpx.MockTransport(lambda r: next(replies)),
        sleep=clock.sleep,
    ) as t:
        assert np.allclose(t.predict(np.zeros((2, 1, 8, 8), np.float32)), 0.1)
        assert clock.sleeps == [7.0, 2.0]
        assert t.queries == 2
        assert t.requests_sent == 3


def test_retry_after_beyond_the_limit_fails_without_waiting() -> None:
    clock = FakeClock()
    with HttpTarget(
        MOCK_URL,
        num_classes=10,
        input_shape=(1, 8, 8),
        max_retry_wait=30,
        transport=httpx.MockTransport(
            lambda r: httpx.Response(429, headers={"Retry-After": "3600"})
        ),
        sleep=clock.sleep,
    ) as t:
        with pytest.raises(EndpointError, match="Retry-After 3600 s, more than max_retry_wait=30"):
            t.predict(np.zeros((1, 1, 8, 8), np.float32))
        assert clock.sleeps == []


def test_failure_mid_way_keeps_sent_queries_and_refunds_the_rest() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(len(json.loads(request.content)["inputs"]))
        if len(calls) == 2:
            return _json({"error": "overloaded"}, 500)
        return _json({"predictions": _scores(calls[-1])})

    with HttpTarget(
        MOCK_URL,
        num_classes=10,
        input_shape=(1, 8, 8),
        max_batch=2,
        retries=0,
        query_budget=10,
        transport=httpx.MockTransport(handler),
    ) as t:
        with pytest.raises(
            EndpointError, match="HTTP 500 Internal Server Error: server says"
        ) as info:
            t.predict(np.zeros((6, 1, 8, 8), np.float32))
        assert calls == [2, 2]  # the third batch was never sent
        assert info.value.queries_spent == 4 == t.queries
        assert t.counter.remaining == 6


def test_budget_refusal_sends_nothing() -> None:
    calls: list[httpx.Request] = []
    with HttpTarget(
        MOCK_URL,
        num_classes=10,
        input_shape=(1, 8, 8),
        query_budget=5,
        transport=httpx.MockTransport(lambda r: calls.append(r) or _json({})),  # type: ignore[func-returns-value]
    ) as t:
        with pytest.raises(QueryBudgetExceededError):
            t.predict(np.zeros((6, 1, 8, 8), np.float32))
        assert calls == []
        assert t.queries == 0


def test_request_template_and_response_mapping() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        n = len(body["instances"])
        return _json({"outputs": {"scores/v2": [{"probs": _scores(n)}]}})

    with HttpTarget(
        MOCK_URL,
        num_classes=10,
        input_shape=(1, 8, 8),
        request_template={"instances": "$inputs", "params": {"model": "digits", "v": [1, 2]}},
        response_mapping="/outputs/scores~1v2/0/probs",
        transport=httpx.MockTransport(handler),
    ) as t:
        x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
        assert np.allclose(t.predict(x), 0.1)
    assert bodies[0]["params"] == {"model": "digits", "v": [1, 2]}
    assert np.array_equal(np.asarray(bodies[0]["instances"], dtype=np.float32), x)


def test_label_only_endpoints() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return _json({"labels": [3, 0, 9]})

    with HttpTarget(
        MOCK_URL,
        num_classes=10,
        input_shape=(1, 8, 8),
        output=OutputSpec(scores=False),
        transport=httpx.MockTransport(handler),
    ) as t:
        assert t.capabilities == frozenset({Capability.LABELS})
        out = t.predict(np.zeros((3, 1, 8, 8), np.float32))
        assert np.array_equal(out.argmax(1), [3, 0, 9])
        assert out.sum() == 3
        with pytest.raises(EndpointError, match="'/labels' has 3 labels for 2 inputs"):
            t.predict(np.zeros((2, 1, 8, 8), np.float32))
    bad = httpx.MockTransport(lambda r: _json({"labels": [12]}))
    with (
        HttpTarget(
            MOCK_URL,
            num_classes=10,
            input_shape=(1, 8, 8),
            output=OutputSpec(scores=False),
            transport=bad,
        ) as t,
        pytest.raises(
            EndpointError, match=r"label 12 in response field '/labels' is out of range for 10"
        ),
    ):
        t.predict(np.zeros((1, 1, 8, 8), np.float32))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch": 0}, "The 'max_batch' parameter must be an int >= 1, got 0"),
        ({"concurrency": 0}, "The 'concurrency' parameter must be an int >= 1, got 0"),
        ({"retries": -1}, "The 'retries' parameter must be an int >= 0, got -1"),
        ({"timeout": 0.0}, "The 'timeout' parameter must be a float > 0.0, got 0.0"),
        ({"request_template": {"x": 1}}, "must contain the string '\\$inputs'"),
        ({"response_mapping": "predictions"}, "must be a JSON pointer"),
        ({"response_mapping": "/a~2"}, "invalid escape"),
        ({"output": OutputSpec(top_k=11)}, "'top_k' parameter must be <= the number of classes"),
        ({"url": "ftp://example.com/x"}, "must be an http:// or https:// URL"),
    ],
)
def test_parameter_validation(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"num_classes": 10, "input_shape": (1, 8, 8), **kwargs}
    url = str(args.pop("url", MOCK_URL))
    with pytest.raises(InvalidParameterError, match=message):
        HttpTarget(url, **args)  # type: ignore[arg-type]


def test_closed_target_refuses_and_url_credentials_are_redacted() -> None:
    t = HttpTarget(
        "https://user:hunter2@api.example.com:8443/v1/predict?key=abc123&x=1",
        num_classes=10,
        input_shape=(1, 8, 8),
        headers={"Authorization": "Bearer tok-999"},
        transport=httpx.MockTransport(lambda r: _json({})),
    )
    assert t.endpoint == "https://api.example.com:8443/v1/predict?key=***&x=***"
    assert "hunter2" not in repr(t)
    assert "tok-999" not in repr(t)
    assert "abc123" not in repr(t)
    assert "Authorization" in repr(t)
    t.close()
    with pytest.raises(TargetError, match="closed"):
        t.predict(np.zeros((1, 1, 8, 8), np.float32))


def test_helpers() -> None:
    assert redact_url("http://[::1]:8080/p") == "http://[::1]:8080/p"
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    when = parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=lambda: 1445412480.0)
    assert when == pytest.approx(10.0)
