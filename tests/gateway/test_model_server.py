"""The model server: bad input, authentication, rate limits, output shaping, lifecycle."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from invguard.data import ImageDataset
from invguard.errors import InvalidParameterError
from invguard.gateway.model_server import (
    TokenBucketLimiter,
    create_model_app,
    serve_in_thread,
    server_stats,
)
from invguard.models import TrainedModel
from invguard.targets import OutputSpec, TorchTarget
from tests._servers import API_KEY, FakeClock, Served, serve_model, torch_predict_proba

KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def server(digits_mlp: TrainedModel) -> Iterator[Served]:
    with serve_model(
        digits_mlp.model,
        input_shape=(1, 8, 8),
        num_classes=10,
        api_keys=[API_KEY, "another-key-for-bob"],
        max_batch=4,
        max_body_bytes=20_000,
    ) as srv:
        yield srv


def _inputs(n: int = 2, value: float = 0.5) -> list[object]:
    out: list[object] = np.full((n, 1, 8, 8), value).tolist()
    return out


BAD_REQUESTS: dict[str, tuple[dict[str, object], int, str]] = {
    "missing key": ({"json": {"inputs": _inputs()}}, 401, "missing API key"),
    "wrong key": (
        {"json": {"inputs": _inputs()}, "headers": {"X-API-Key": "guess-123"}},
        401,
        "invalid API key",
    ),
    "wrong bearer": (
        {"json": {"inputs": _inputs()}, "headers": {"Authorization": "Bearer guess-123"}},
        401,
        "invalid API key",
    ),
    "malformed json": (
        {"content": b'{"inputs": [[', "headers": KEY},
        400,
        "request body is not valid JSON: Expecting value: line 1 column 14",
    ),
    "not an object": ({"json": [1, 2], "headers": KEY}, 422, "'inputs' is missing"),
    "empty inputs": ({"json": {"inputs": []}, "headers": KEY}, 422, "non-empty list"),
    "wrong shape": (
        {"json": {"inputs": np.zeros((2, 64)).tolist()}, "headers": KEY},
        422,
        r"'inputs' must have shape \(n, 1, 8, 8\), got \(2, 64\)",
    ),
    "ragged": (
        {"json": {"inputs": [_inputs(1)[0], [[0.5]]]}, "headers": KEY},
        422,
        r"'inputs' is ragged: expected a list of arrays of shape \(1, 8, 8\)",
    ),
    "strings": (
        {"json": {"inputs": [[["a"] * 8] * 8]}, "headers": KEY},
        422,
        "'inputs' must contain only numbers",
    ),
    "nan": (
        {
            "content": json.dumps({"inputs": _inputs(1, float("nan"))}).encode(),
            "headers": KEY,
        },
        422,
        "'inputs' contains NaN or infinite values",
    ),
    "out of range": (
        {"json": {"inputs": _inputs(1, 2.0)}, "headers": KEY},
        422,
        r"'inputs' values must lie in \[0, 1\], got min 2, max 2",
    ),
    "too many": (
        {"json": {"inputs": _inputs(5)}, "headers": KEY},
        422,
        "'inputs' has 5 items, at most 4 per request",
    ),
    "body too large": (
        {"content": b" " * 30_000, "headers": KEY},
        413,
        r"request body is larger than the limit of 20000 bytes \(Content-Length 30000\)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(
    case: str, server: Served, caplog: pytest.LogCaptureFixture
) -> None:
    kwargs, status, pattern = BAD_REQUESTS[case]
    caplog.set_level(logging.DEBUG)
    with httpx.Client(transport=httpx.HTTPTransport()) as client:
        resp = client.post(server.url, **kwargs)  # type: ignore[arg-type]
        assert resp.status_code == status
        assert resp.headers["content-type"] == "application/json"
        error = resp.json()["error"]
        assert "\n" not in error
        import re

        assert re.search(pattern, error), error
        if status == 401:
            assert resp.headers["www-authenticate"].startswith("Bearer")
            assert "guess-123" not in resp.text
        ok = client.post(server.url, json={"inputs": _inputs()}, headers=KEY)
        assert ok.status_code == 200
        assert np.allclose(np.sum(ok.json()["predictions"], axis=1), 1.0, atol=1e-5)
    assert API_KEY not in caplog.text
    assert "guess-123" not in caplog.text


def test_keys_are_kept_only_as_digests(server: Served, digits_mlp: TrainedModel) -> None:
    app = create_model_app(
        torch_predict_proba(digits_mlp.model),
        input_shape=(1, 8, 8),
        num_classes=10,
        api_keys=[API_KEY],
    )
    handler = app.state.model_app
    assert API_KEY not in repr(vars(handler))
    assert all(len(d) == 32 for d in handler.key_digests)


def test_bearer_auth_and_routes(server: Served, digits: ImageDataset) -> None:
    with httpx.Client(transport=httpx.HTTPTransport()) as client:
        x = digits.x_test[:3]
        resp = client.post(
            server.url,
            json={"inputs": x.tolist()},
            headers={"Authorization": "Bearer another-key-for-bob"},
        )
        assert resp.status_code == 200
        assert np.array(resp.json()["predictions"]).shape == (3, 10)
        assert client.get(server.base + "/healthz").json() == {"status": "ok"}
        missing = client.get(server.base + "/nope")
        assert missing.status_code == 404
        assert missing.json() == {"error": "Not Found"}
        wrong_method = client.get(server.url)
        assert wrong_method.status_code == 405
        assert "error" in wrong_method.json()


def test_rate_limit_per_key_with_retry_after(digits_mlp: TrainedModel) -> None:
    clock = FakeClock()
    with (
        serve_model(
            digits_mlp.model,
            input_shape=(1, 8, 8),
            num_classes=10,
            api_keys=["key-a-111111", "key-b-222222"],
            rate_limit=(2.0, 3),
            clock=clock,
        ) as srv,
        httpx.Client(transport=httpx.HTTPTransport()) as client,
    ):

        def post(key: str) -> httpx.Response:
            return client.post(srv.url, json={"inputs": _inputs(1)}, headers={"X-API-Key": key})

        assert [post("key-a-111111").status_code for _ in range(3)] == [200, 200, 200]
        refused = post("key-a-111111")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert (
            "rate limit exceeded: at most 2 requests per second (burst 3)"
            in refused.json()["error"]
        )
        assert post("key-b-222222").status_code == 200  # its own bucket
        clock.now += 0.5  # one token back for key a
        assert post("key-a-111111").status_code == 200
        assert post("key-a-111111").status_code == 429
        assert srv.stats.refused == {429: 2}
        assert srv.stats.served_requests == 5


def test_rate_limit_by_client_address_without_keys(digits_mlp: TrainedModel) -> None:
    clock = FakeClock()
    with (
        serve_model(
            digits_mlp.model,
            input_shape=(1, 8, 8),
            num_classes=10,
            rate_limit=(1.0, 1),
            clock=clock,
        ) as srv,
        httpx.Client(transport=httpx.HTTPTransport()) as client,
    ):
        codes = [client.post(srv.url, json={"inputs": _inputs(1)}).status_code for _ in range(2)]
        assert codes == [200, 429]


def test_token_bucket() -> None:
    clock = FakeClock()
    bucket = TokenBucketLimiter(4.0, 2, clock=clock, max_clients=2)
    assert bucket.take("a") == 0
    assert bucket.take("a") == 0
    assert bucket.take("a") == pytest.approx(0.25)
    clock.now += 0.125
    assert bucket.take("a") == pytest.approx(0.125)  # half a token back
    for client in ("b", "c", "d"):
        bucket.take(client)
    assert len(bucket._buckets) <= 2


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        (OutputSpec(decimals=2), "predictions"),
        (OutputSpec(top_k=2), "predictions"),
        (OutputSpec(scores=False), "labels"),
    ],
)
def test_output_shaping(
    spec: OutputSpec, key: str, digits: ImageDataset, digits_mlp: TrainedModel
) -> None:
    x = digits.x_test[:20]
    with (
        serve_model(digits_mlp.model, input_shape=(1, 8, 8), num_classes=10, output=spec) as srv,
        httpx.Client(transport=httpx.HTTPTransport()) as client,
    ):
        doc = client.post(srv.url, json={"inputs": x.tolist()}).json()
    assert list(doc) == [key]
    labels = TorchTarget(digits_mlp.model, input_shape=(1, 8, 8)).predict(x).argmax(1)
    if key == "labels":
        assert doc["labels"] == labels.tolist()
        return
    scores = doc["predictions"]
    if spec.decimals is not None:  # the JSON carries short decimals such as 0.07
        assert all(len(repr(v).partition(".")[2]) <= 2 for row in scores for v in row)
    else:
        assert all(sum(v > 0 for v in row) <= 2 for row in scores)
    assert np.array_equal(np.argmax(scores, axis=1), labels)


def test_model_failure_is_a_500_without_details() -> None:
    def broken(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("secret internal path /srv/models/x.pt")

    def wrong_shape(x: np.ndarray) -> np.ndarray:
        return np.zeros((len(x), 3))

    for fn, message in ((broken, "the model failed on this batch"), (wrong_shape, "shape (2, 3)")):
        app = create_model_app(fn, input_shape=(1, 8, 8), num_classes=10)
        with serve_in_thread(app) as base, httpx.Client(transport=httpx.HTTPTransport()) as c:
            resp = c.post(base + "/v1/predict", json={"inputs": _inputs()})
            assert resp.status_code == 500
            assert message in resp.json()["error"]
            assert "secret" not in resp.text
        assert server_stats(app).refused == {500: 1}


def test_server_stops_cleanly() -> None:
    app = create_model_app(lambda x: np.full((len(x), 2), 0.5), input_shape=(3,), num_classes=2)
    with serve_in_thread(app) as base:
        assert base.startswith("http://127.0.0.1:")
        assert httpx.get(base + "/healthz").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/healthz")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch": 0}, "The 'max_batch' parameter must be an int >= 1, got 0"),
        ({"api_keys": "abc"}, "must be a collection of keys, got a single string"),
        ({"api_keys": []}, "non-empty collection"),
        ({"rate_limit": (0.0, 3)}, "The 'rate' parameter must be a float > 0.0, got 0.0"),
        ({"rate_limit": (1.0, 0)}, "The 'burst' parameter must be an int >= 1, got 0"),
        ({"num_classes": 1}, "The 'num_classes' parameter must be an int >= 2, got 1"),
        ({"output": OutputSpec(top_k=5)}, "must be <= the number of classes \\(2\\)"),
    ],
)
def test_parameter_validation(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"input_shape": (3,), "num_classes": 2, **kwargs}
    with pytest.raises(InvalidParameterError, match=message):
        create_model_app(lambda x: x, **args)  # type: ignore[arg-type]
