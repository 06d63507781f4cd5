"""A hostile client on loopback against a real gateway (uvicorn on 127.0.0.1): every malformed
request gets its 4xx, is counted in ``/metrics`` by status, and the gateway keeps serving; idle
and slow connections beyond the cap do not stop a normal client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import select
import socket
import time
from typing import Any

import httpx
import numpy as np
import pytest

from invguard.data import ImageDataset
from invguard.gateway.config import hash_api_key
from invguard.gateway.metrics import parse_exposition, sample_value
from invguard.gateway.parsing import InputError, InputSpec, ParsePool, nesting_depth, parse_inputs
from tests._servers import FakeClock
from tests.gateway.conftest import KEYS, GatewayFactory, inputs

JSON = {"Content-Type": "application/json"}
ALICE = {"X-API-Key": KEYS["alice"], **JSON}
BOB = {"X-API-Key": KEYS["bob"], **JSON}
DIGITS = InputSpec((1, 8, 8), 256)


def _address(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _head(key: str, length: int | None, ctype: str = "application/json") -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
        f"X-API-Key: {key}\r\n{size}\r\n\r\n"
    ).encode()


def _response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """Read one HTTP response (status, JSON body) from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ")[1]), json.loads(body)


def _raw(base: str, head: bytes, body_parts: list[bytes], pause: float = 0.0) -> tuple[int, str]:
    """Send ``head`` then the parts of a body (stopping when the server answers or closes)."""
    with socket.create_connection(_address(base), timeout=10) as sock:
        sock.sendall(head)
        try:
            for part in body_parts:
                sock.sendall(part)
                time.sleep(pause)
        except OSError:  # the server answered and closed before the body's end
            pass
        status, body = _response(sock)
    return status, str(body["error"])


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (EOF or reset) within the socket's timeout."""
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def _metrics(c: httpx.Client, base: str) -> dict[str, Any]:
    return parse_exposition(c.get(base + "/metrics").text)


def test_malformed_bodies_are_refused_counted_and_the_gateway_keeps_serving(
    serve_gateway: GatewayFactory, digits: ImageDataset
) -> None:
    deep = b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    flat = json.dumps({"inputs": inputs(1)}).encode()
    with_bool = json.dumps({"inputs": [[[[True] * 8] * 8]]}).encode()
    big_bad = json.dumps({"inputs": [*inputs(199), [[[0.5] * 7 + [None]] * 8]]}).encode()
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("deep", {"content": deep, "headers": ALICE}, 400, "nested 5001 levels deep; at most 32"),
        (
            "text/plain",
            {"content": flat, "headers": {**ALICE, "Content-Type": "text/plain"}},
            415,
            "Content-Type must be application/json, got 'text/plain'",
        ),
        ("no type", {"content": flat, "headers": {"X-API-Key": KEYS["alice"]}}, 415, "got none"),
        (
            "latin-1",
            {
                "content": flat,
                "headers": {**ALICE, "Content-Type": "application/json; charset=latin-1"},
            },
            415,
            "latin-1",
        ),
        (
            "booleans",
            {"content": with_bool, "headers": ALICE},
            422,
            r"^'inputs' must contain only numbers .*found true at inputs\[0\]\[0\]\[0\]\[0\]",
        ),
        (
            "strings",
            {"json": {"inputs": [[["0.5"] * 8] * 8]}, "headers": ALICE},
            422,
            "'inputs' must contain only numbers .*found \"0.5\"",
        ),
        (
            "null, large body parsed by a worker process",
            {"content": big_bad, "headers": ALICE},
            422,
            r"found null at inputs\[199\]\[0\]\[0\]\[7\]",
        ),
        ("no key", {"content": flat, "headers": JSON}, 401, "missing API key"),
    ]
    over = {"server": {"body_timeout": 0.5}}
    with serve_gateway(**over) as (base, gw), httpx.Client(timeout=10) as c:
        url = base + "/v1/predict"
        assert len(big_bad) > gw.config.server.inline_parse_bytes
        for i, (name, kwargs, status, pattern) in enumerate(cases):
            resp = c.post(url, **kwargs)
            assert resp.status_code == status, (name, resp.text)
            error = resp.json()["error"]
            assert "\n" not in error
            assert re.search(pattern, error), (name, error)
            good = digits.x_test[2 * i : 2 * i + 2].tolist()  # varied, like a real client's
            assert c.post(url, json={"inputs": good}, headers=ALICE).status_code == 200, name
        cap = gw.io.max_body_bytes
        assert cap == 256 * 64 * 48 + 65536  # below max_body_bytes (16 MiB) for 8x8 inputs
        # 16 MB declared: refused on the headers, before the body is read
        status, error = _raw(base, _head(KEYS["alice"], 16_000_000), [b"[" * 65536])
        assert (status, error) == (
            413,
            f"request body is larger than the limit of {cap} bytes (Content-Length 16000000)",
        )
        # no length declared (chunked): refused once the cap is passed
        chunk = b"10000\r\n" + b" " * 65536 + b"\r\n"
        status, error = _raw(base, _head(KEYS["alice"], None), [chunk] * 20)
        assert (status, error) == (413, f"request body is larger than the limit of {cap} bytes")
        # a body that never ends: 408 after body_timeout
        t0 = time.monotonic()
        status, error = _raw(base, _head(KEYS["alice"], 1000), [b'{"inputs": '])
        assert (status, error) == (408, "the request body did not arrive within 0.5 s")
        assert time.monotonic() - t0 < 5
        big = digits.x_test[100:300].tolist()
        big_ok = c.post(url, json={"inputs": big}, headers=ALICE)  # parsed by a worker process
        assert big_ok.status_code == 200
        assert len(big_ok.json()["predictions"]) == 200
        metrics = _metrics(c, base)
    counted = {
        s: sample_value(metrics, "invguard_gateway_requests_total", status=s)
        for s in ("200", "400", "401", "408", "413", "415", "422")
    }
    assert counted == {"200": 9, "400": 1, "401": 1, "408": 1, "413": 2, "415": 3, "422": 3}
    assert gw.engine is not None
    assert gw.engine.tracked_clients() == 1  # the detectors never saw a refused request


def test_rate_limits_count_queries_and_requests(serve_gateway: GatewayFactory) -> None:
    clock = FakeClock()
    limited = {"rate": 10, "burst": 20, "requests": 5, "request_burst": 3}
    over = {
        "keys": [
            {"id": "alice", "sha256": hash_api_key(KEYS["alice"]), "rate_limit": limited},
            {"id": "bob", "sha256": hash_api_key(KEYS["bob"])},
        ],
        "rate_limit": {"rate": 100, "burst": 256},  # requests: null, the same numbers
        "detection": {"enabled": False},  # the same inputs again and again
    }
    with (
        serve_gateway(gateway_kwargs={"monotonic": clock}, **over) as (base, _gw),
        httpx.Client() as c,
    ):
        url = base + "/v1/predict"

        def post(n: int, headers: dict[str, str] = ALICE) -> httpx.Response:
            return c.post(url, json={"inputs": inputs(n)}, headers=headers)

        over_burst = post(21)  # more inputs than the burst: can never pass
        assert over_burst.status_code == 422
        assert over_burst.json()["error"] == (
            "'inputs' has 21 items, more than this key's burst of 20 queries "
            "(10 queries per second); send smaller batches"
        )
        assert post(20).status_code == 200  # the whole burst at once
        refused = post(5)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert "at most 10 queries (inputs) per second (burst 20)" in refused.json()["error"]
        clock.now += 0.5  # 5 queries and 2.5 requests back
        assert [post(1).status_code for _ in range(2)] == [200, 200]
        too_often = post(1)
        assert too_often.status_code == 429
        assert "at most 5 requests per second (burst 3)" in too_often.json()["error"]
        clock.now += 0.2
        assert post(1).status_code == 200
        # the default bucket counts queries: 256 per request at most, 100 per second
        assert post(256, BOB).status_code == 200
        assert post(1, BOB).status_code == 429
        metrics = _metrics(c, base)
    req = "invguard_gateway_requests_total"
    assert sample_value(metrics, req, status="429") == 3
    assert sample_value(metrics, req, status="422") == 1
    assert sample_value(metrics, "invguard_gateway_predictions_total") == 20 + 3 + 256


def test_slow_bodies_of_one_key_are_bounded(serve_gateway: GatewayFactory) -> None:
    over = {"server": {"key_concurrency": 1, "body_timeout": 5}}
    with serve_gateway(**over) as (base, _gw), httpx.Client() as c:
        url = base + "/v1/predict"
        with socket.create_connection(_address(base), timeout=10) as slow:
            slow.sendall(_head(KEYS["alice"], 1000) + b'{"inputs": ')  # in progress, stalled
            time.sleep(0.2)
            second = c.post(url, json={"inputs": inputs(1)}, headers=ALICE)
            assert second.status_code == 429
            assert "has 1 requests in progress, the most allowed" in second.json()["error"]
            assert c.post(url, json={"inputs": inputs(1)}, headers=BOB).status_code == 200
        deadline = time.monotonic() + 5  # the stalled request ends when its socket closes
        while time.monotonic() < deadline:
            if c.post(url, json={"inputs": inputs(1)}, headers=ALICE).status_code == 200:
                break
            time.sleep(0.05)
        else:
            pytest.fail("alice's slot was not released")
        metrics = _metrics(c, base)
    req = "invguard_gateway_requests_total"
    assert sample_value(metrics, req, status="499") == 1  # closed during its body
    assert sample_value(metrics, req, status="429") >= 1


def test_the_rest_of_a_refused_body_is_not_read_for_ever(serve_gateway: GatewayFactory) -> None:
    with serve_gateway() as (base, _gw), httpx.Client() as c:
        with socket.create_connection(_address(base), timeout=10) as sock:
            sock.sendall(_head(KEYS["alice"], 16_000_000, ctype="text/plain"))
            assert _response(sock)[0] == 415  # answered on the headers
            sent = 0  # uvicorn alone would read all 15.99 MB (through h11) and drop them
            with contextlib.suppress(OSError):  # reset once DRAIN_BYTES are dropped
                while sent < 15_000_000:
                    sock.sendall(b"0" * 65536)
                    sent += 65536
            assert sent < 15_000_000
        assert c.get(base + "/healthz").status_code == 200


def test_idle_and_slow_connections_beyond_the_cap_do_not_stop_a_normal_client(
    serve_gateway: GatewayFactory,
) -> None:
    over = {"server": {"max_connections": 16, "header_timeout": 1.5}}
    with serve_gateway(**over) as (base, _gw), httpx.Client(timeout=5) as c:
        url = base + "/v1/predict"
        address = _address(base)
        idle = []
        for _ in range(48):  # three times the cap, each with half a request's headers
            s = socket.create_connection(address, timeout=5)
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")
            idle.append(s)
        dribbler = socket.create_connection(address, timeout=5)
        t0 = time.monotonic()
        answered = c.post(url, json={"inputs": inputs(1)}, headers=ALICE)
        assert answered.status_code == 200
        assert time.monotonic() - t0 < 1.0  # no wait for the idle ones to time out
        readable, _, _ = select.select(idle, [], [], 0.2)
        evicted = sum(_closed(s) for s in readable)
        if time.monotonic() - t0 < 1.2:  # before any header timeout: closed for the cap
            assert evicted >= 48 + 1 - 16
        big_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20_000
        with socket.create_connection(address, timeout=5) as s:
            s.sendall(big_header)  # still incomplete beyond max_header_bytes: 400
            assert s.recv(64).startswith(b"HTTP/1.1 400")
        closed_by = None
        for i in range(40):  # one header byte every 0.05 s: closed at header_timeout anyway
            try:
                dribbler.sendall(b"POST /v1/predict HTTP/1.1\r\n"[i % 10 : i % 10 + 1])
            except OSError:
                closed_by = time.monotonic() - t0
                break
            time.sleep(0.05)
        if closed_by is None:
            dribbler.settimeout(2)
            assert _closed(dribbler)
            closed_by = time.monotonic() - t0
        assert closed_by < 2.5
        open_after = 0
        for s in idle:  # all closed: evicted for the cap, or at the header timeout
            s.settimeout(2)
            open_after += not _closed(s)
            s.close()
        dribbler.close()
        assert open_after == 0
        assert c.get(base + "/healthz").status_code == 200


def test_parse_inputs_refuses_what_numpy_would_take() -> None:
    x = parse_inputs(json.dumps({"inputs": inputs(2), "note": "null"}).encode(), DIGITS)
    assert x.shape == (2, 1, 8, 8)  # "null" in a string is fine
    assert x.dtype == np.float32
    for bad, status, message in [
        (b"[" * 40 + b"]" * 40, 400, "nested 40 levels deep"),
        (json.dumps({"inputs": [[[[1, True] * 4] * 8]]}).encode(), 422, "found true"),
        (
            json.dumps({"inputs": [[[[0, 1] * 4] * 8], [[[False] * 8] * 8]]}).encode(),
            422,
            r"found false at inputs\[1\]\[0\]\[0\]\[0\]",
        ),
        (b'{"inputs": [1e999]}', 422, "must have shape"),
        (b'{"inputs": [[[' + b"1" * 5000 + b"]]]}", 400, "not valid JSON"),
    ]:
        with pytest.raises(InputError) as info:
            parse_inputs(bad, DIGITS)
        assert info.value.status == status
        assert re.search(message, info.value.message), info.value.message
    assert nesting_depth(b'{"a": [[1], [[2]]], "b": "]]]"}') == 4


def test_parse_pool_one_body_per_key_and_a_bounded_queue() -> None:
    body = json.dumps({"inputs": inputs(256)}).encode()
    pool = ParsePool(DIGITS, workers=1, queue=2)

    async def scenario() -> list[Any]:
        return await asyncio.gather(  # type: ignore[return-value]
            pool.parse("a", body),
            pool.parse("a", body),  # the same key, while its first body is parsed: 429
            pool.parse("b", body),
            pool.parse("c", body),  # the queue holds two: 503
            return_exceptions=True,
        )

    try:
        first, same_key, other, third = asyncio.run(scenario())
    finally:
        pool.close()
    assert first.shape == (256, 1, 8, 8)
    assert other.shape == (256, 1, 8, 8)
    assert isinstance(same_key, InputError)
    assert same_key.status == 429
    assert isinstance(third, InputError)
    assert (third.status, third.retry_after) == (503, 1)


def test_a_dead_parse_worker_costs_one_503_and_is_replaced() -> None:
    body = json.dumps({"inputs": inputs(256)}).encode()
    pool = ParsePool(DIGITS, workers=1, queue=2)
    try:
        assert pool.parse_blocking(body).shape == (256, 1, 8, 8)
        worker = pool._started[0]  # killed, as for memory
        worker.kill()
        worker.wait()
        with pytest.raises(InputError) as info:
            pool.parse_blocking(body)
        assert info.value.status == 503
        assert pool.parse_blocking(body).shape == (256, 1, 8, 8)  # a new worker
        assert pool._started[0] is not worker
    finally:
        pool.close()
    assert pool._started == []
