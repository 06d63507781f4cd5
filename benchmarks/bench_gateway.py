"""Throughput and added latency of the gateway, against the bare model server, detection on and off.

Each server runs alone in its own process (``invguard.gateway.model_server`` for the bare model
server, ``python -m invguard.gateway serve`` for the gateway; one thread for torch and BLAS);
the load comes from another process: ``wrk`` (Debian's) with a Lua script that cycles over
distinct single-image bodies and several API keys, or, without wrk, a bounded asyncio/httpx
client (``--loadgen python``). Everything is on loopback, bounded in time.

For each model (the digits MLP, 8x8 inputs; the faces MLP, 46x56 inputs) and each server:

- saturated: ``--connections`` connections for ``--seconds`` s: requests per second, p50, p99,
  and the server's CPU time per request (from ``/proc``: less sensitive to other work on the
  machine than requests per second);
- sequential: one connection for ``--seconds`` s: p50 and p99 without queueing; the gateway's
  added latency is its p50/p99 minus the bare server's.

The three servers of a model run at once (idle ones cost nothing) and the load goes to one at a
time, in ``--repeats`` rounds; the tables show medians (and the range of requests per second).
wrk corrects its percentiles for coordinated omission: one stall of the server shows in p99.

The benign load must not trip the detectors (it would block a key and measure 403s): the bodies
are all distinct images (for faces, the 400 AT&T images; for digits, 1,797), spread over 7 keys
so that each key cycles through all of them; the script checks that no alert was raised.

    .venv/bin/python benchmarks/bench_gateway.py [--seconds 10] [--connections 8] [--models digits faces]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from _common import cache, table
from numpy.typing import NDArray

from invguard.gateway.config import hash_api_key
from invguard.gateway.metrics import parse_exposition, sample_value

KEYS = 7
MODELS = {  # name -> (built-in data set, reference architecture)
    "digits": ("digits", "mlp"),
    "faces": ("att-faces", "mlp"),
}
SERVERS = ("bare model server", "gateway, detection off", "gateway, detection on")

LUA = r"""
local bodies = {}
local keys = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  for line in io.lines(args[2]) do keys[#keys + 1] = line end
  i = math.random(#bodies)
end
request = function()
  i = i + 1
  local body = bodies[(i % #bodies) + 1]
  local key = keys[(i % #keys) + 1]
  return wrk.format("POST", "/v1/predict",
    {["Content-Type"] = "application/json", ["X-API-Key"] = key}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %.1f %.1f %.1f\n", summary.requests,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.duration, latency:percentile(50),
    latency:percentile(99), latency.mean))
end
"""


@dataclass
class Load:
    requests: int
    bad_status: int
    socket_errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


# ---------------------------------------------------------------------------------------------
# servers


def serve_bare(model: str, port_file: Path, keys: list[str]) -> None:
    """Run the bare model server (``create_model_app``) in this process until SIGTERM."""
    import socket

    import torch
    import uvicorn

    from invguard.data import load_builtin
    from invguard.gateway.app import limit_compute_threads
    from invguard.gateway.model_server import create_model_app
    from invguard.models import train_target

    limit_compute_threads(1)
    data_name, arch = MODELS[model]
    data = load_builtin(data_name)
    net = train_target(data, arch, cache=cache()).model.eval()

    def predict(x: NDArray[np.float32]) -> NDArray[np.float32]:
        with torch.no_grad():
            out: NDArray[np.float32] = torch.softmax(net(torch.from_numpy(x)), 1).numpy()
        return out

    app = create_model_app(
        predict,
        input_shape=data.image_shape,
        num_classes=data.num_classes,
        api_keys=keys,
        max_batch=256,
        max_body_bytes=64 * 2**20,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None, ws="none")
    server = uvicorn.Server(config)
    port_file.write_text(f"http://127.0.0.1:{sock.getsockname()[1]}")
    signal.signal(signal.SIGTERM, lambda s, f: None)  # uvicorn re-raises it after shutting down
    server.run(sockets=[sock])


def gateway_config(model: str, keys: list[str], detection: bool, audit: Path) -> dict[str, Any]:
    data_name, arch = MODELS[model]
    return {
        "server": {"port": 0, "max_body_bytes": 64 * 2**20},
        "model": {"type": "pytorch", "reference": {"arch": arch, "data": data_name}},
        "rate_limit": None,
        "keys": [{"id": f"bench-{i}", "sha256": hash_api_key(k)} for i, k in enumerate(keys)],
        "detection": {
            "enabled": detection,
            "detectors": {d: {"action": "alert"} for d in ("knn", "blacklight", "inversion")},
        },
        "alerts": {"audit_log": str(audit)},
    }


def start(
    kind: str, model: str, keys: list[str], folder: Path
) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    log = folder / f"{model}-{kind.replace(' ', '_').replace(',', '')}.log"
    if kind == SERVERS[0]:
        port_file = folder / "port"
        port_file.unlink(missing_ok=True)
        (folder / "keys.json").write_text(json.dumps(keys))
        cmd = [sys.executable, __file__, "--serve-bare", model, "--port-file", str(port_file)]
    else:
        tag = kind[-3:].strip()
        config = folder / f"gateway-{model}-{tag}.yaml"
        audit = folder / f"audit-{model}-{tag}.db"
        raw = gateway_config(model, keys, kind == SERVERS[2], audit)
        config.write_text(yaml.safe_dump(raw))
        cmd = [sys.executable, "-m", "invguard.gateway", "serve", "--config", str(config)]
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=folder)
    deadline = time.monotonic() + 900  # the first start may train the model
    while time.monotonic() < deadline:
        url = None
        if kind == SERVERS[0]:
            if (folder / "port").exists() and (folder / "port").read_text():
                url = (folder / "port").read_text()
        else:
            m = re.search(r"listening on (\S+)", log.read_text(errors="replace"))
            url = m.group(1) if m else None
        if url:
            for _ in range(200):
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        return proc, url
                except httpx.HTTPError:
                    time.sleep(0.05)
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{kind} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def detector_costs(model: str, queries: int = 3000) -> dict[str, float]:
    """CPU microseconds per single-image query of each detector, in this process (one thread)."""
    from invguard.data import load_builtin
    from invguard.gateway.app import limit_compute_threads
    from invguard.gateway.detectors import DetectionEngine, EngineSettings
    from invguard.models import train_target
    from invguard.targets import TorchTarget

    limit_compute_threads(1)
    data_name, arch = MODELS[model]
    data = load_builtin(data_name)
    x = np.concatenate([data.x_train, data.x_test])
    p = TorchTarget(train_target(data, arch, cache=cache()).model, input_shape=data.image_shape)
    probs = p.predict(x)
    out: dict[str, float] = {}
    off: dict[str, Any] = {"knn": None, "blacklight": None, "inversion": None}
    plans: tuple[tuple[str, dict[str, Any]], ...] = (
        ("knn", {**off, "knn": {}}),
        ("blacklight", {**off, "blacklight": {}}),
        ("inversion", {**off, "inversion": {}}),
        ("all three", {}),
    )
    for label, kw in plans:
        eng = DetectionEngine(
            EngineSettings(input_shape=data.image_shape, num_classes=data.num_classes, seed=0, **kw)
        )
        for i in range(1000):  # fill the histories first
            eng.observe(f"k{i % KEYS}", x[i % len(x)][None], probs[i % len(x)][None])
        t0 = time.thread_time()
        for i in range(1000, 1000 + queries):
            eng.observe(f"k{i % KEYS}", x[i % len(x)][None], probs[i % len(x)][None])
        out[label] = (time.thread_time() - t0) / queries * 1e6
    return out


# ---------------------------------------------------------------------------------------------
# load


def wrk(url: str, bodies: Path, keys: Path, connections: int, seconds: float, folder: Path) -> Load:
    script = folder / "bench.lua"
    script.write_text(LUA)
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        str(bodies),
        str(keys),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", out.stdout)
    if m is None:
        raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")
    req, bad, sock_err, dur_us, p50, p99, _ = m.groups()
    return Load(
        int(req), int(bad), int(sock_err), int(dur_us) / 1e6, float(p50) / 1e3, float(p99) / 1e3
    )


PY_LOADGEN = r"""
import asyncio, json, sys, time
import httpx
url, bodies_path, keys_path, conns, seconds = sys.argv[1:6]
bodies = open(bodies_path, "rb").read().splitlines()
keys = open(keys_path).read().split()
conns, seconds = int(conns), float(seconds)
lat, bad = [], 0
async def worker(w, client, stop):
    global bad
    i = w * 7919
    while time.perf_counter() < stop:
        i += 1
        t0 = time.perf_counter()
        r = await client.post(url + "/v1/predict", content=bodies[i % len(bodies)],
            headers={"Content-Type": "application/json", "X-API-Key": keys[i % len(keys)]})
        lat.append(time.perf_counter() - t0)
        bad += r.status_code != 200
async def main():
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w, client, t0 + seconds) for w in range(conns)))
        dur = time.perf_counter() - t0
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6
    print(f"RESULT {len(lat)} {bad} 0 {int(dur * 1e6)} {p(0.5):.1f} {p(0.99):.1f} 0")
asyncio.run(main())
"""


def python_load(url: str, bodies: Path, keys: Path, connections: int, seconds: float) -> Load:
    cmd = [
        sys.executable,
        "-c",
        PY_LOADGEN,
        url,
        str(bodies),
        str(keys),
        str(connections),
        str(seconds),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)", out.stdout)
    if m is None:
        raise RuntimeError(f"the load generator printed no result:\n{out.stderr}")
    req, bad, sock_err, dur_us, p50, p99 = m.groups()
    return Load(
        int(req), int(bad), int(sock_err), int(dur_us) / 1e6, float(p50) / 1e3, float(p99) / 1e3
    )


def bodies_for(model: str, folder: Path) -> Path:
    from invguard.data import load_builtin

    data = load_builtin(MODELS[model][0])
    x = np.concatenate([data.x_train, data.x_test])
    path = folder / f"bodies-{model}.txt"
    with path.open("w") as fh:
        for img in x:  # one single-image request per line, as HttpTarget encodes it
            fh.write(json.dumps({"inputs": [img.tolist()]}, separators=(",", ":")) + "\n")
    return path


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load run")
    parser.add_argument("--connections", type=int, default=8, help="connections when saturated")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the servers (medians)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["digits", "faces"])
    parser.add_argument("--loadgen", choices=("wrk", "python"), default=None)
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--serve-bare", choices=sorted(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        keys = json.loads((args.port_file.parent / "keys.json").read_text())
        serve_bare(args.serve_bare, args.port_file, keys)
        return 0
    has_wrk = subprocess.run(["which", "wrk"], capture_output=True).returncode == 0
    loadgen = args.loadgen or ("wrk" if has_wrk else "python")
    keys = ["igk_" + secrets.token_urlsafe(24) for _ in range(KEYS)]
    load_before = os.getloadavg()
    rows: list[dict[str, object]] = []
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="invguard-bench-") as tmp:
        folder = Path(tmp)
        keys_file = folder / "keys.txt"
        keys_file.write_text("\n".join(keys) + "\n")
        for model in args.models:
            bodies = bodies_for(model, folder)
            size = bodies.stat().st_size // sum(1 for _ in bodies.open())

            def run(url: str, conns: int, seconds: float, bodies: Path = bodies) -> Load:
                if loadgen == "wrk":
                    return wrk(url, bodies, keys_file, conns, seconds, folder)
                return python_load(url, bodies, keys_file, conns, seconds)

            # all three servers up at once (an idle server costs nothing); the load goes to one
            # at a time, in rounds, so that the machine's other work hits them alike
            procs: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
            sat: dict[str, list[Load]] = {k: [] for k in SERVERS}
            seq: dict[str, list[Load]] = {k: [] for k in SERVERS}
            cpu: dict[str, list[float]] = {k: [] for k in SERVERS}
            metrics: dict[str, Any] = {}
            try:
                for kind in SERVERS:
                    procs[kind] = start(kind, model, keys, folder)
                for kind in SERVERS:
                    run(procs[kind][1], 4, 2)  # warm-up
                for rep in range(args.repeats):
                    for kind in SERVERS:
                        proc, url = procs[kind]
                        cpu0 = cpu_seconds(proc.pid)
                        s = run(url, args.connections, args.seconds)
                        cpu[kind].append((cpu_seconds(proc.pid) - cpu0) / max(1, s.requests) * 1e6)
                        sat[kind].append(s)
                        seq[kind].append(run(url, 1, args.seconds))
                        print(
                            f"  {model}, {kind}, round {rep + 1}: {s.rps:.0f} req/s",
                            file=sys.stderr,
                        )
                for kind in SERVERS[1:]:
                    metrics[kind] = parse_exposition(httpx.get(procs[kind][1] + "/metrics").text)
            finally:
                for proc, _ in procs.values():
                    stop(proc)

            def med(values: list[float]) -> float:
                return float(np.median(values))

            base_p50 = med([x.p50_ms for x in seq[SERVERS[0]]])
            base_p99 = med([x.p99_ms for x in seq[SERVERS[0]]])
            for kind in SERVERS:
                alerts = sum(
                    sample_value(metrics.get(kind, {}), "invguard_gateway_alerts_total", detector=d)
                    for d in ("knn", "blacklight", "inversion")
                )
                bad = sum(x.bad_status + x.socket_errors for x in sat[kind] + seq[kind])
                rps = [x.rps for x in sat[kind]]
                p50, p99 = med([x.p50_ms for x in seq[kind]]), med([x.p99_ms for x in seq[kind]])
                unit = "kB" if size >= 1000 else "B"
                rows.append(
                    {
                        "model": f"{model} ({size // 1000 if size >= 1000 else size} {unit}/request)",
                        "server": kind,
                        "req/s (saturated)": f"{med(rps):.0f} ({min(rps):.0f}-{max(rps):.0f})",
                        "server CPU us/req": f"{med(cpu[kind]):.0f}" if med(cpu[kind]) else "-",
                        "p50 / p99 ms (saturated)": (
                            f"{med([x.p50_ms for x in sat[kind]]):.2f} / "
                            f"{med([x.p99_ms for x in sat[kind]]):.2f}"
                        ),
                        "p50 / p99 ms (sequential)": f"{p50:.2f} / {p99:.2f}",
                        "added p50 / p99 ms": "-"
                        if kind == SERVERS[0]
                        else f"{p50 - base_p50:+.2f} / {p99 - base_p99:+.2f}",
                        "errors": bad,
                        "alerts": "-" if kind == SERVERS[0] else int(alerts),
                    }
                )
                results[f"{model}/{kind}"] = {
                    "saturated": [vars(x) for x in sat[kind]],
                    "sequential": [vars(x) for x in seq[kind]],
                    "server_cpu_us_per_request": cpu[kind],
                    "alerts": alerts,
                }
    load_after = os.getloadavg()
    print(
        f"\nGateway throughput and latency ({loadgen}, 1 load thread; {args.connections} "
        f"connections saturated, 1 sequential; {args.seconds:g} s runs, median of "
        f"{args.repeats} rounds (range); single-image requests, {KEYS} keys; machine load "
        f"average {load_before[0]:.1f} before, {load_after[0]:.1f} after, {os.cpu_count()} CPUs)"
    )
    print(table(rows, list(rows[0])))
    print(
        "\nDetection cost per single-image query (CPU microseconds, one thread, 1,000 queries of "
        f"history per key, {KEYS} keys):"
    )
    cost_rows: list[dict[str, object]] = []
    for model in args.models:
        costs = detector_costs(model)
        results[f"{model}/detector_cpu_us"] = costs
        cost_rows.append({"model": model, **{k: f"{v:.0f}" for k, v in costs.items()}})
    print(table(cost_rows, list(cost_rows[0])))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
