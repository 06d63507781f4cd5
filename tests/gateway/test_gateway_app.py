"""The gateway on a real uvicorn server on 127.0.0.1: authentication, limits, bad input, output
policy, detection and its responses, alerts in the audit log before the response, webhooks,
metrics, restarts, and upstream forwarding."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from invguard.attacks import InversionRequest
from invguard.attacks.blackbox import MIFaceZO
from invguard.audit import AuditLog
from invguard.data import ImageDataset
from invguard.gateway.app import Backend, Gateway, load_backend, running_gateway
from invguard.gateway.config import GatewayConfigError, hash_api_key
from invguard.gateway.metrics import parse_exposition, sample_value
from invguard.gateway.model_server import serve_in_thread
from invguard.models import TrainedModel
from invguard.targets import EndpointError, HttpTarget
from tests._servers import FakeClock, serve_model
from tests.gateway.conftest import KEYS, GatewayFactory, inputs, load

ALICE = {"X-API-Key": KEYS["alice"]}
ALICE_JSON = {**ALICE, "Content-Type": "application/json"}  # for raw bodies
MALLORY = {"X-API-Key": KEYS["mallory"]}
PROBE_DETECTION: dict[
    str, dict[str, Any]
] = {  # the kNN detector alone: flags the 21st query of a probe stream
    "knn": {"k": 20, "threshold": 0.05},
    "blacklight": {"enabled": False},
    "inversion": {"enabled": False},
}


def probe_stream(n_batches: int, batch: int = 16, seed: int = 0) -> Iterator[list[Any]]:
    """Small random moves around one input: what gradient estimation sends."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.2, 0.8, (1, 8, 8))
    for _ in range(n_batches):
        x = np.clip(centre + rng.normal(0, 0.01, (batch, 1, 8, 8)), 0, 1)
        yield x.tolist()


def alerts(path: Path) -> list[dict[str, Any]]:
    with AuditLog(path, readonly=True) as log:
        return [e.payload for e in log.entries(action="gateway.alert")]


# ---------------------------------------------------------------------------------------------
# access control and input validation


def test_authentication_and_keys_never_logged(
    serve_gateway: GatewayFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    with (
        serve_gateway(detection={"detectors": PROBE_DETECTION}) as (base, gw),
        httpx.Client() as c,
    ):
        url = base + "/v1/predict"
        missing = c.post(url, json={"inputs": inputs()})
        assert missing.status_code == 401
        assert missing.json()["error"].startswith("missing API key")
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = c.post(url, json={"inputs": inputs()}, headers={"X-API-Key": "sk-guess-00000000"})
        assert wrong.status_code == 401
        assert wrong.json() == {"error": "invalid API key"}
        bearer = c.post(
            url, json={"inputs": inputs()}, headers={"Authorization": "Bearer " + KEYS["bob"]}
        )
        assert bearer.status_code == 200
        ok = c.post(url, json={"inputs": inputs(3)}, headers=ALICE)
        assert np.array(ok.json()["predictions"]).shape == (3, 10)
        for batch in probe_stream(3):  # an alert, so that the alert path logs too
            c.post(url, json={"inputs": batch}, headers=MALLORY)
        assert c.get(base + "/metrics").status_code == 200
        assert gw.client("mallory").blocked_until > time.time()
    logged = caplog.text + "".join(capfd.readouterr())
    assert "mallory" in logged  # the alert names the key by its id ...
    audit = b"".join(p.read_bytes() for p in tmp_path.glob("audit.db*"))
    for secret in [*KEYS.values(), "sk-guess-00000000"]:
        assert secret not in logged  # ... never by the key itself
        assert secret.encode() not in audit
        assert hash_api_key(secret) not in logged
    assert b"mallory" in audit


def test_rate_limit_per_key_with_retry_after(serve_gateway: GatewayFactory) -> None:
    clock = FakeClock()
    over = {
        "keys": [
            {
                "id": "alice",
                "sha256": hash_api_key(KEYS["alice"]),
                "rate_limit": {"rate": 2, "burst": 3},
            },
            {"id": "bob", "sha256": hash_api_key(KEYS["bob"])},
        ],
        "rate_limit": {"rate": 100, "burst": 1},
    }
    with (
        serve_gateway(gateway_kwargs={"monotonic": clock}, **over) as (base, _gw),
        httpx.Client() as c,
    ):

        def post(key: str) -> httpx.Response:
            return c.post(
                base + "/v1/predict", json={"inputs": inputs(1)}, headers={"X-API-Key": key}
            )

        assert [post(KEYS["alice"]).status_code for _ in range(3)] == [200, 200, 200]
        refused = post(KEYS["alice"])
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert "at most 2 requests per second (burst 3)" in refused.json()["error"]
        assert post(KEYS["bob"]).status_code == 200  # bob: the default bucket, burst 1
        assert post(KEYS["bob"]).status_code == 429
        clock.now += 0.5
        assert post(KEYS["alice"]).status_code == 200
        metrics = parse_exposition(c.get(base + "/metrics").text)
    assert sample_value(metrics, "invguard_gateway_requests_total", status="429") == 2


BAD_REQUESTS: dict[str, tuple[dict[str, Any], int, str]] = {
    "malformed json": (
        {"content": b'{"inputs": [[', "headers": ALICE_JSON},
        400,
        "request body is not valid JSON",
    ),
    "not an object": ({"json": [1, 2], "headers": ALICE}, 422, "'inputs' is missing"),
    "empty": ({"json": {"inputs": []}, "headers": ALICE}, 422, "non-empty list"),
    "wrong shape": (
        {"json": {"inputs": np.zeros((2, 64)).tolist()}, "headers": ALICE},
        422,
        r"'inputs' must have shape \(n, 1, 8, 8\), got \(2, 64\)",
    ),
    "ragged": (
        {"json": {"inputs": [inputs(1)[0], [[0.5]]]}, "headers": ALICE},
        422,
        "'inputs' is ragged",
    ),
    "strings": (
        {"json": {"inputs": [[["a"] * 8] * 8]}, "headers": ALICE},
        422,
        "must contain only numbers",
    ),
    "nan": (
        {
            "content": json.dumps({"inputs": inputs(1, float("nan"))}).encode(),
            "headers": ALICE_JSON,
        },
        422,
        "'inputs' contains NaN or infinite values",
    ),
    "infinity": (
        {
            "content": json.dumps({"inputs": inputs(1, float("inf"))}).encode(),
            "headers": ALICE_JSON,
        },
        422,
        "'inputs' contains NaN or infinite values",
    ),
    "out of range": (
        {"json": {"inputs": inputs(1, 1.5)}, "headers": ALICE},
        422,
        r"values must lie in \[0, 1\], got min 1.5, max 1.5",
    ),
    "too many": (
        {"json": {"inputs": inputs(5)}, "headers": ALICE},
        422,
        "'inputs' has 5 items, at most 4 per request",
    ),
    "too large": (
        {"content": b" " * 30_000, "headers": ALICE_JSON},
        413,
        r"request body is larger than the limit of 20000 bytes",
    ),
}


def test_bad_inputs_get_a_clear_4xx_and_the_server_keeps_serving(
    serve_gateway: GatewayFactory, digits: ImageDataset
) -> None:
    over = {"server": {"max_batch": 4, "max_body_bytes": 20_000}}
    with serve_gateway(**over) as (base, gw), httpx.Client() as c:
        url = base + "/v1/predict"
        for i, (case, (kwargs, status, pattern)) in enumerate(BAD_REQUESTS.items()):
            resp = c.post(url, **kwargs)
            assert resp.status_code == status, case
            assert resp.headers["content-type"] == "application/json", case
            error = resp.json()["error"]
            assert "\n" not in error
            assert re.search(pattern, error), (case, error)
            good = digits.x_test[2 * i : 2 * i + 2].tolist()  # varied, like a real client's
            ok = c.post(url, json={"inputs": good}, headers=ALICE)
            assert ok.status_code == 200, case
        # the detectors never saw a refused request
        assert gw.engine is not None
        assert gw.engine.tracked_clients() == 1


def test_output_policy_global_and_per_key(
    serve_gateway: GatewayFactory, digits: ImageDataset
) -> None:
    over = {
        "output": [
            {"name": "top_k", "params": {"k": 3}},
            {"name": "round", "params": {"decimals": 2}},
        ],
        "keys": [
            {"id": "alice", "sha256": hash_api_key(KEYS["alice"])},
            {"id": "bob", "sha256": hash_api_key(KEYS["bob"]), "output": [{"name": "label_only"}]},
            {
                "id": "mallory",
                "sha256": hash_api_key(KEYS["mallory"]),
                "output": [
                    {"name": "noise", "params": {"sigma": 0.05, "seed": 1}},
                    {"name": "reverse_sigmoid", "params": {"beta": 0.5}},
                ],
            },
        ],
    }
    x = digits.x_test[:20].tolist()
    with serve_gateway(**over) as (base, gw), httpx.Client() as c:
        truth = gw.backend.predict(np.asarray(x, dtype=np.float32)).argmax(1)
        url = base + "/v1/predict"
        alice = c.post(url, json={"inputs": x}, headers=ALICE).json()["predictions"]
        assert all(sum(v > 0 for v in row) <= 3 for row in alice)
        assert all(len(repr(v).partition(".")[2]) <= 2 for row in alice for v in row)
        assert np.array_equal(np.argmax(alice, axis=1), truth)
        bob = c.post(url, json={"inputs": x}, headers={"X-API-Key": KEYS["bob"]}).json()
        assert bob == {"labels": truth.tolist()}
        mal = c.post(url, json={"inputs": x}, headers=MALLORY).json()["predictions"]
        assert np.array_equal(np.argmax(mal, axis=1), truth)
        assert np.allclose(np.sum(mal, axis=1), 1.0, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# detection and responses


def test_attack_stream_is_blocked_and_alerted_before_the_response(
    serve_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """InvGuard's own black-box attack, through HTTP, with mallory's key: blocked, audited."""
    over = {"detection": {"detectors": {"blacklight": {"action": "log"}}}}
    with serve_gateway(**over) as (base, _gw), httpx.Client() as c:
        with (
            HttpTarget(
                base + "/v1/predict",
                num_classes=10,
                input_shape=(1, 8, 8),
                headers=MALLORY,
                max_batch=32,
                query_budget=3000,
            ) as target,
            pytest.raises(EndpointError, match="HTTP 403") as info,
        ):
            MIFaceZO(max_iterations=30).run(target, InversionRequest(), rng=0)
        assert info.value.status == 403
        spent = target.queries
        assert spent <= 200  # stopped within the first few requests
        found = alerts(tmp_path / "audit.db")  # committed before the 403 was sent
        assert {a["detector"] for a in found} <= {"knn", "inversion"}
        first = min(found, key=lambda a: a["query_index"])
        assert first["key"] == "mallory"
        assert first["action"] == "block"
        assert first["query_index"] < spent
        again = c.post(base + "/v1/predict", json={"inputs": inputs(1)}, headers=MALLORY)
        assert again.status_code == 403
        assert "blocked until" in again.json()["error"]
        assert int(again.headers["retry-after"]) > 3000
        assert c.post(base + "/v1/predict", json={"inputs": inputs(1)}, headers=ALICE).is_success
        metrics = parse_exposition(c.get(base + "/metrics").text)
    assert sample_value(metrics, "invguard_gateway_blocked_clients") == 1
    assert sample_value(metrics, "invguard_gateway_alerts_total", detector=first["detector"]) == 1
    assert sample_value(metrics, "invguard_gateway_responses_total", action="block") >= 1


def test_degrade_switches_the_key_to_labels_in_the_same_response(
    serve_gateway: GatewayFactory, tmp_path: Path
) -> None:
    detectors = {**PROBE_DETECTION, "knn": {**PROBE_DETECTION["knn"], "action": "degrade"}}
    with (
        serve_gateway(detection={"detectors": detectors}) as (base, gw),
        httpx.Client() as c,
    ):
        url = base + "/v1/predict"
        shapes = []
        for batch in probe_stream(3):
            rows = np.array(
                c.post(url, json={"inputs": batch}, headers=MALLORY).json()["predictions"]
            )
            shapes.append(bool(np.all((rows == 0) | (rows == 1))))
            if shapes[-1]:
                assert len(alerts(tmp_path / "audit.db")) == 1  # recorded before this answer
        assert shapes[0] is False  # the first 16 queries: fewer than k earlier ones
        assert shapes[-1] is True  # degraded to one-hot labels, same response format
        alice = np.array(
            c.post(url, json={"inputs": inputs(2)}, headers=ALICE).json()["predictions"]
        )
        assert not np.all((alice == 0) | (alice == 1))
        assert gw.client("mallory").degraded_until > time.time()


def test_throttle_applies_the_throttle_bucket(serve_gateway: GatewayFactory) -> None:
    clock = FakeClock()
    detectors = {**PROBE_DETECTION, "knn": {**PROBE_DETECTION["knn"], "action": "throttle"}}
    over = {
        "detection": {
            "detectors": detectors,
            # 16 queries per request; one request per 2 s
            "responses": {
                "throttle": {"rate": 8, "burst": 16, "requests": 0.5, "request_burst": 1}
            },
        }
    }
    with (
        serve_gateway(gateway_kwargs={"monotonic": clock}, **over) as (base, _gw),
        httpx.Client() as c,
    ):
        codes = [
            c.post(base + "/v1/predict", json={"inputs": b}, headers=MALLORY).status_code
            for b in probe_stream(4)
        ]
        # detection in the second request; the third spends the throttle bucket's one token
        assert codes == [200, 200, 200, 429]
        refused = c.post(base + "/v1/predict", json={"inputs": inputs(1)}, headers=MALLORY)
        assert refused.headers["retry-after"] == "2"
        assert c.post(base + "/v1/predict", json={"inputs": inputs(1)}, headers=ALICE).is_success


def test_audit_failure_fails_closed(serve_gateway: GatewayFactory) -> None:
    with (
        serve_gateway(detection={"detectors": PROBE_DETECTION}) as (base, gw),
        httpx.Client() as c,
    ):

        def broken(records: object) -> Future[Any]:
            fut: Future[Any] = Future()
            fut.set_exception(OSError("disk full"))
            return fut

        gw.audit.submit = broken  # type: ignore[method-assign]
        codes = [
            c.post(base + "/v1/predict", json={"inputs": b}, headers=MALLORY).status_code
            for b in probe_stream(2)
        ]
        assert codes == [200, 503]
        assert (
            "disk full"
            not in c.post(base + "/v1/predict", json={"inputs": inputs(1)}, headers=MALLORY).text
        )


def test_restart_keeps_blocks_and_stores_no_secret(
    tmp_path: Path, digits_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    loaded = load(tmp_path, detection={"detectors": PROBE_DETECTION})
    with running_gateway(loaded, backend=digits_backend) as (base, _), httpx.Client() as c:
        codes = [
            c.post(base + "/v1/predict", json={"inputs": b}, headers=MALLORY).status_code
            for b in probe_stream(2)
        ]
        assert codes == [200, 403]
    (tmp_path / "gateway.yaml").write_text("# written by the test: hashes only\n")
    with running_gateway(loaded, backend=digits_backend) as (base, gw), httpx.Client() as c:
        assert gw.client("mallory").blocked_until > time.time()
        assert (
            c.post(base + "/v1/predict", json={"inputs": inputs(1)}, headers=MALLORY).status_code
            == 403
        )
        assert c.post(base + "/v1/predict", json={"inputs": inputs(1)}, headers=ALICE).is_success
    with AuditLog(tmp_path / "audit.db", readonly=True) as log:
        actions = [e.action for e in log.entries()]
        assert actions == [
            "gateway.start",
            "gateway.alert",
            "gateway.stop",
            "gateway.start",
            "gateway.stop",
        ]
        assert log.entries(action="gateway.start")[1].payload["restored_responses"] == 1
        assert log.verify().ok
    everything = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for key in KEYS.values():
        assert key.encode() not in everything
        assert key not in caplog.text


# ---------------------------------------------------------------------------------------------
# webhooks


class _Hook:
    """A real webhook receiver on loopback: records bodies and signatures; can be slow and fail."""

    def __init__(self, delay: float = 0.0, status: int = 200) -> None:
        self.delay = delay
        self.status = status
        self.bodies: list[bytes] = []
        self.signatures: list[str] = []

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        async def receive(request: Request) -> Response:
            self.bodies.append(await request.body())
            self.signatures.append(request.headers.get("x-invguard-signature", ""))
            await asyncio.sleep(self.delay)
            return Response(status_code=self.status)

        return Starlette(routes=[Route("/hook", receive, methods=["POST"])])


def test_webhook_receives_signed_alerts(
    serve_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "hook-secret-value-123")
    hook = _Hook()
    with serve_in_thread(hook.app()) as hook_base:
        over = {
            "detection": {"detectors": PROBE_DETECTION},
            "alerts": {"webhook": {"url": hook_base + "/hook", "secret_env": "HOOK_SECRET"}},
        }
        with serve_gateway(**over) as (base, gw), httpx.Client() as c:
            for b in probe_stream(2):
                c.post(base + "/v1/predict", json={"inputs": b}, headers=MALLORY)
            deadline = time.monotonic() + 10
            while not hook.bodies and time.monotonic() < deadline:
                time.sleep(0.05)
    assert len(hook.bodies) == 1
    body = hook.bodies[0]
    expected = hmac.new(b"hook-secret-value-123", body, hashlib.sha256).hexdigest()
    assert hook.signatures[0] == "sha256=" + expected
    alert = json.loads(body)
    assert alert["event"] == "invguard.gateway.alert"
    assert alert["key"] == "mallory"
    assert alert["detector"] == "knn"
    assert alert["audit_seq"] == 2  # after gateway.start
    assert gw.metrics.webhook.value("delivered") == 1


def test_failing_webhook_does_not_slow_predictions(serve_gateway: GatewayFactory) -> None:
    hook = _Hook(delay=0.5, status=503)  # slow and failing: every delivery is retried
    detectors = {**PROBE_DETECTION, "knn": {**PROBE_DETECTION["knn"], "action": "alert"}}
    with serve_in_thread(hook.app()) as hook_base:
        over = {
            "detection": {"detectors": detectors, "responses": {"realert_seconds": 0}},
            "alerts": {
                "webhook": {
                    "url": hook_base + "/hook",
                    "retries": 2,
                    "backoff": 0.1,
                    "queue_size": 2,
                    "drain_seconds": 1,
                }
            },
        }
        with serve_gateway(**over) as (base, gw), httpx.Client() as c:
            times = []
            for b in probe_stream(12):
                t0 = time.perf_counter()
                resp = c.post(base + "/v1/predict", json={"inputs": b}, headers=MALLORY)
                times.append(time.perf_counter() - t0)
                assert resp.status_code == 200
            alerts_sent = gw.metrics.alerts.value("knn")
    assert alerts_sent == 11  # every request after the first alerts (realert 0)
    assert max(times) < 0.5  # one delivery attempt alone takes 0.5 s
    assert gw.metrics.webhook.value("dropped") >= 5  # the queue holds 2
    assert gw.metrics.webhook.value("delivered") == 0
    assert len(hook.bodies) >= 2


# ---------------------------------------------------------------------------------------------
# metrics, health, models


def test_prometheus_metrics_parse(serve_gateway: GatewayFactory) -> None:
    with (
        serve_gateway(detection={"detectors": PROBE_DETECTION}) as (base, _gw),
        httpx.Client() as c,
    ):
        assert c.get(base + "/healthz").json() == {"status": "ok"}
        for b in probe_stream(3):
            c.post(base + "/v1/predict", json={"inputs": b}, headers=MALLORY)
        c.post(base + "/v1/predict", json={"inputs": inputs(2)}, headers=ALICE)
        c.post(base + "/v1/predict", json={"inputs": inputs(2)})
        resp = c.get(base + "/metrics")
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = parse_exposition(resp.text)
    req = "invguard_gateway_requests_total"
    assert sample_value(families, req, status="200") == 2
    assert sample_value(families, req, status="401") == 1
    assert sample_value(families, req, status="403") == 2
    hist = families["invguard_gateway_request_duration_seconds"]
    assert hist.type == "histogram"
    assert sample_value(families, "invguard_gateway_request_duration_seconds_count") == 5
    assert sample_value(families, "invguard_gateway_predictions_total") == 16 + 2
    assert sample_value(families, "invguard_gateway_alerts_total", detector="knn") == 1
    assert sample_value(families, "invguard_gateway_blocked_clients") == 1
    assert sample_value(families, "invguard_gateway_tracked_clients") == 2
    try:  # the reference parser, where installed
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return
    names = {f.name for f in text_string_to_metric_families(resp.text)}
    assert "invguard_gateway_request_duration_seconds" in names
    assert "invguard_gateway_requests" in names  # the client library drops _total


def test_upstream_forwarding(
    tmp_path: Path,
    digits_mlp: TrainedModel,
    digits: ImageDataset,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = digits.x_test[:5].tolist()
    monkeypatch.setenv("IG_TEST_UPSTREAM_KEY", "upstream-key-123456")
    upstream_cm = serve_model(
        digits_mlp.model, input_shape=(1, 8, 8), num_classes=10, api_keys=["upstream-key-123456"]
    )
    upstream = upstream_cm.__enter__()
    try:
        model = {
            "type": "upstream",
            "url": upstream.url,
            "headers": {"X-API-Key": "${IG_TEST_UPSTREAM_KEY}"},
            "input_shape": [1, 8, 8],
            "num_classes": 10,
            "timeout": 2,
            "retries": 0,
        }
        loaded = load(tmp_path, model=model, detection={"enabled": False})
        with running_gateway(loaded) as (base, gw), httpx.Client() as c:
            assert gw.backend.description == f"upstream {upstream.url}"
            got = c.post(base + "/v1/predict", json={"inputs": x}, headers=ALICE)
            direct = httpx.post(
                upstream.url, json={"inputs": x}, headers={"X-API-Key": "upstream-key-123456"}
            )
            assert np.allclose(got.json()["predictions"], direct.json()["predictions"])
            assert upstream.stats.served_inputs == 10
            upstream_cm.__exit__(None, None, None)  # the upstream goes away
            failed = c.post(base + "/v1/predict", json={"inputs": x}, headers=ALICE)
            assert failed.status_code == 502
            assert failed.json() == {"error": "the model behind the gateway failed on this batch"}
            assert "upstream-key" not in failed.text
    finally:
        upstream_cm.__exit__(None, None, None)


def test_local_model_files(tmp_path: Path, digits_mlp: TrainedModel, digits: ImageDataset) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "digits.safetensors"
    save_file({k: v.contiguous() for k, v in digits_mlp.model.state_dict().items()}, str(path))
    model = {
        "type": "pytorch",
        "model": "digits.safetensors",
        "arch": "mlp",
        "input_shape": [1, 8, 8],
        "num_classes": 10,
    }
    backend = load_backend(load(tmp_path, model=model))
    got = backend.predict(digits.x_test[:4])
    assert got.shape == (4, 10)
    assert np.allclose(got.sum(1), 1.0, atol=1e-5)
    with pytest.raises(
        GatewayConfigError,
        match=r"gateway.yaml: model.model: .* does not fit architecture 'mlp'",
    ):
        load_backend(load(tmp_path, model={**model, "num_classes": 12}))
    with pytest.raises(GatewayConfigError, match=r"model.model: model file not found"):
        load_backend(load(tmp_path, model={**model, "model": "nope.safetensors"}))

    from sklearn.linear_model import LogisticRegression

    from invguard.targets import save_sklearn_model

    est = LogisticRegression(max_iter=200).fit(
        digits.x_train.reshape(len(digits.x_train), -1), digits.y_train
    )
    save_sklearn_model(est, tmp_path / "lr.skops")
    sk = load_backend(
        load(tmp_path, model={"type": "sklearn", "model": "lr.skops", "input_shape": [1, 8, 8]})
    )
    assert sk.num_classes == 10
    assert sk.predict(digits.x_test[:3]).shape == (3, 10)


def test_your_own_model_behind_the_gateway(tmp_path: Path, digits: ImageDataset) -> None:
    """A CNN of the user's own design, as a torch.export program and as factory plus weights
    (ending in softmax: model_output probabilities), served with the same probabilities."""
    import torch
    from safetensors.torch import save_file

    from tests.models.user_cnn import SoftmaxEnded, train_user_cnn

    net = train_user_cnn(digits.x_train[:300], digits.y_train[:300], epochs=2)
    batch = torch.export.Dim("batch")
    program = torch.export.export(net, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "mine.pt2"))
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors")
    )
    shape = {"input_shape": [1, 8, 8], "num_classes": 10}
    expected = torch.softmax(net(torch.from_numpy(digits.x_test[:5])), 1).detach().numpy()
    served = load_backend(
        load(tmp_path, model={"type": "pytorch", "model": "mine.pt2", **shape})
    ).predict(digits.x_test[:5])
    assert np.allclose(served, expected, atol=1e-5)
    (tmp_path / "soft_cnn.py").write_text(
        "from tests.models.user_cnn import SoftmaxEnded, build_user_cnn\n"
        "def build():\n    return SoftmaxEnded(build_user_cnn())\n"
    )
    save_file(
        {k: v.contiguous() for k, v in SoftmaxEnded(net).state_dict().items()},
        str(tmp_path / "soft.safetensors"),
    )
    soft = {"type": "pytorch", "model": "soft.safetensors", "factory": "soft_cnn:build", **shape}
    got = load_backend(load(tmp_path, model={**soft, "model_output": "probabilities"})).predict(
        digits.x_test[:5]
    )
    assert np.allclose(got, expected, atol=1e-5)
    with pytest.raises(GatewayConfigError, match=r"model.model: .*holds weights only"):
        load_backend(load(tmp_path, model={"type": "pytorch", "model": "w.safetensors", **shape}))


def test_gateway_parts_close_cleanly(tmp_path: Path, digits_backend: Backend) -> None:
    loaded = load(tmp_path)
    gw = Gateway(loaded, backend=digits_backend)
    gw.close()
    gw.close()  # idempotent
    with AuditLog(tmp_path / "audit.db", readonly=True) as log:
        assert [e.action for e in log.entries()] == ["gateway.start", "gateway.stop"]


def test_gateway_normalises_pixel_inputs(tmp_path: Path, digits: ImageDataset) -> None:
    """A model trained on (x - mean) / std: requests stay in pixels, the gateway normalises."""
    import torch

    from tests.models.user_cnn import train_user_cnn

    mean, std = 0.5, 0.25
    x_train = (digits.x_train[:300] - mean) / std
    net = train_user_cnn(x_train, digits.y_train[:300], epochs=1)
    batch = torch.export.Dim("batch")
    program = torch.export.export(net, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "mine.pt2"))
    model = {"type": "pytorch", "model": "mine.pt2", "input_shape": [1, 8, 8], "num_classes": 10}
    x = digits.x_test[:5]
    expected = torch.softmax(net(torch.from_numpy((x - mean) / std)), 1).detach().numpy()
    norm = {**model, "normalize": {"mean": [mean], "std": [std]}}
    served = load_backend(load(tmp_path, model=norm)).predict(x)
    assert np.allclose(served, expected, atol=1e-5)
    with pytest.raises(GatewayConfigError, match=r"model.normalize.std\[0\]: .*greater than 0"):
        load(tmp_path, model={**model, "normalize": {"mean": [0.5], "std": [0]}})
    with pytest.raises(GatewayConfigError, match=r"model.normalize: .*must have 1 value"):
        load_backend(load(tmp_path, model={**model, "normalize": {"mean": [0, 0], "std": [1]}}))
