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

The attack scenario (``--scenarios attack``): one gateway with its default body limits; one key,
limited to 1 request/s, sends ``--attack-bytes`` bodies that end in 422 (valid JSON nested as
deep as a batch of images, one row of numbers: parsed in full, the wrong shape) on ``--attack-fast`` connections at
``--attack-rate`` bodies/s each (0: back to back), and the same bodies at 20 kB/s on
``--attack-slow`` connections, while the 7 other keys measure p50/p99 (one connection) and
requests per second (4 connections), quiet and under attack, in ``--repeats`` rounds; the
gateway's peak RSS (with its worker processes) and the ratio of the p99s (goal: below 2).

    .venv/bin/python benchmarks/bench_gateway.py [--seconds 10] [--connections 8] [--models digits faces]
    .venv/bin/python benchmarks/bench_gateway.py --scenarios attack --seconds 5 --repeats 2
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
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from _common import cache, table
from numpy.typing import NDArray
from prometheus_client.parser import text_string_to_metric_families

from invguard.gateway.config import hash_api_key

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
    if kind != SERVERS[0]:
        tag = kind[-3:].strip()
        raw = gateway_config(model, keys, kind == SERVERS[2], folder / f"audit-{model}-{tag}.db")
        return start_gateway(raw, f"gateway-{model}-{tag}", folder)
    port_file = folder / "port"
    port_file.unlink(missing_ok=True)
    (folder / "keys.json").write_text(json.dumps(keys))
    cmd = [sys.executable, __file__, "--serve-bare", model, "--port-file", str(port_file)]
    log = folder / f"{model}-bare.log"

    def url() -> str | None:
        return port_file.read_text() or None if port_file.exists() else None

    return _launch(cmd, log, folder, url)


def start_gateway(
    raw: dict[str, Any], name: str, folder: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``python -m invguard.gateway serve`` on the configuration ``raw``; (process, URL)."""
    config = folder / f"{name}.yaml"
    config.write_text(yaml.safe_dump(raw))
    log = folder / f"{name}.log"
    cmd = [sys.executable, "-m", "invguard.gateway", "serve", "--config", str(config)]

    def url() -> str | None:
        m = re.search(r"listening on (\S+)", log.read_text(errors="replace"))
        return m.group(1) if m else None

    return _launch(cmd, log, folder, url)


def _launch(
    cmd: list[str], log: Path, folder: Path, find_url: Any
) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=folder)
    deadline = time.monotonic() + 900  # the first start may train the model
    while time.monotonic() < deadline:
        url = find_url()
        if url:
            for _ in range(200):
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        return proc, url
                except httpx.HTTPError:
                    time.sleep(0.05)
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[-1]} exited:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd[-1]} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The samples of a gateway's ``/metrics``, by (name, labels), read by prometheus_client."""
    text = httpx.get(url + "/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The value of one sample (0 if absent)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (Linux ``/proc``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            continue
        out.append(p)
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, in MB."""
    total = 0.0
    for p in process_tree(pid):
        try:
            m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text())
        except OSError:
            continue
        total += int(m.group(1)) / 1000 if m else 0.0
    return total


class PeakRss:
    """Samples :func:`rss_mb` of ``pid`` every 0.1 s in a thread while in the ``with`` block."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self._stop.wait(0.1)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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
# one key attacks, the others measure

ATTACKER = r"""
import os, signal, socket, sys, threading, time
host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
size, fast, slow = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rate = float(sys.argv[7])  # bodies per second per connection; 0: back to back
# valid JSON nested as deep as an image batch, of the wrong shape (one row of numbers): a
# 422, after a full parse
body = b'{"inputs":[[[[' + b"0.5," * ((size - 24) // 4) + b'0.5]]]]}'
head = ("POST /v1/predict HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        "X-API-Key: %s\r\nContent-Length: %d\r\n\r\n" % (host, key, len(body))).encode()
counts, lock = {}, threading.Lock()
def count(what):
    with lock:
        counts[what] = counts.get(what, 0) + 1
def answer(s):
    data = s.recv(64)
    return data.split(b" ")[1].decode() if data.startswith(b"HTTP/") else "closed"
def fast_worker():  # whole bodies, at ``rate`` (or back to back), a new connection each
    while True:
        started = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=60) as s:
                s.sendall(head + body)
                count(answer(s))
        except OSError:
            count("reset")
        if rate > 0:
            time.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))
def slow_worker():  # the headers, then the body at 20 kB/s
    while True:
        try:
            with socket.create_connection((host, port), timeout=60) as s:
                s.sendall(head)
                for i in range(0, len(body), 1024):
                    s.sendall(body[i:i + 1024])
                    time.sleep(0.05)
                count(answer(s))
        except OSError:
            count("slow reset")
def done(sig, frame):
    print("ATTACK " + " ".join("%s=%d" % kv for kv in sorted(counts.items())), flush=True)
    os._exit(0)
signal.signal(signal.SIGTERM, done)
for target, n in ((fast_worker, fast), (slow_worker, slow)):
    for _ in range(n):
        threading.Thread(target=target, daemon=True).start()
while True:
    time.sleep(1)
"""


@dataclass
class Phase:
    name: str
    sequential: Load
    saturated: Load
    rss_peak_mb: float
    cpu_percent: float  # the gateway's processes, of one CPU, during the measurement
    attacker: str


def attack_config(model: str, keys: list[str], attacker: str, audit: Path) -> dict[str, Any]:
    """The gateway with its default limits; the attacker's key is limited to 1 request/s."""
    raw = gateway_config(model, keys, True, audit)
    raw["server"] = {"port": 0}  # the default body limits
    raw["keys"].append(
        {"id": "attacker", "sha256": hash_api_key(attacker), "rate_limit": {"rate": 1, "burst": 1}}
    )
    return raw


def attack_phase(name: str, url: str, pid: int, measure: Any, attack: list[str] | None) -> Phase:
    """Measure the quiet keys (sequential, then saturated), with ``attack`` running if given."""
    proc = None
    if attack is not None:
        proc = subprocess.Popen(
            [sys.executable, "-c", ATTACKER, *attack], stdout=subprocess.PIPE, text=True
        )
        time.sleep(1.5)  # the attack in its stride
    try:
        t0, cpu0 = time.monotonic(), sum(cpu_seconds(p) for p in process_tree(pid))
        with PeakRss(pid) as rss:
            seq = measure(url, 1)
            sat = measure(url, 4)
        cpu = sum(cpu_seconds(p) for p in process_tree(pid)) - cpu0
        cpu_percent = 100 * cpu / (time.monotonic() - t0)
    finally:
        told = ""
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
            told = out.strip().removeprefix("ATTACK ")
    if httpx.get(url + "/healthz", timeout=5).status_code != 200:
        raise RuntimeError("the gateway stopped answering after the attack")
    return Phase(name, seq, sat, rss.peak, cpu_percent, told)


def attack_scenario(
    args: argparse.Namespace, model: str, keys: list[str], folder: Path, loadgen: Any
) -> tuple[list[dict[str, object]], dict[str, Any]]:
    """One key sends large and slow bad bodies while the other keys measure p50/p99."""
    attacker = "igk_" + secrets.token_urlsafe(24)
    raw = attack_config(model, keys, attacker, folder / f"audit-attack-{model}.db")
    proc, url = start_gateway(raw, f"gateway-attack-{model}", folder)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    attack = [host, port, attacker, str(args.attack_bytes), str(args.attack_fast)]
    attack += [str(args.attack_slow), str(args.attack_rate)]
    bodies = bodies_for(model, folder)
    phases: list[Phase] = []
    try:
        loadgen(url, bodies, 4, 2)  # warm-up
        for _ in range(args.repeats):
            for name, what in (("quiet", None), ("under attack", attack)):
                phases.append(
                    attack_phase(
                        name, url, proc.pid, lambda u, c: loadgen(u, bodies, c, args.seconds), what
                    )
                )
        metrics = scrape(url)
    finally:
        stop(proc)

    def med(phase: str, get: Any) -> float:
        return float(np.median([get(p) for p in phases if p.name == phase]))

    rows: list[dict[str, object]] = []
    for phase in ("quiet", "under attack"):
        rows.append(
            {
                "model": model,
                "phase": phase,
                "p50 / p99 ms (sequential)": f"{med(phase, lambda p: p.sequential.p50_ms):.2f} / "
                f"{med(phase, lambda p: p.sequential.p99_ms):.2f}",
                "req/s (4 connections)": f"{med(phase, lambda p: p.saturated.rps):.0f}",
                "p99 ms (4 connections)": f"{med(phase, lambda p: p.saturated.p99_ms):.2f}",
                "errors": sum(
                    p.sequential.bad_status + p.saturated.bad_status
                    for p in phases
                    if p.name == phase
                ),
                "peak RSS MB": f"{med(phase, lambda p: p.rss_peak_mb):.0f}",
                "gateway CPU %": f"{med(phase, lambda p: p.cpu_percent):.0f}",
                "attacker's answers": "; ".join(
                    p.attacker for p in phases if p.name == phase and p.attacker
                )
                or "-",
            }
        )
    quiet = med("quiet", lambda p: p.saturated.p99_ms)
    loud = med("under attack", lambda p: p.saturated.p99_ms)
    seq_ratio = med("under attack", lambda p: p.sequential.p99_ms) / med(
        "quiet", lambda p: p.sequential.p99_ms
    )
    refused = {
        dict(labels)["status"]: int(v)
        for (name, labels), v in metrics.items()
        if name == "invguard_gateway_requests_total"
    }
    summary = {
        "model": model,
        "quiet_p99_ms": quiet,
        "attack_p99_ms": loud,
        "ratio": loud / quiet,
        "sequential_p99_ratio": seq_ratio,
        "rps_quiet": med("quiet", lambda p: p.saturated.rps),
        "rps_attack": med("under attack", lambda p: p.saturated.rps),
        "requests_by_status": refused,
        "phases": [
            vars(p) | {"sequential": vars(p.sequential), "saturated": vars(p.saturated)}
            for p in phases
        ],
    }
    return rows, summary


# ---------------------------------------------------------------------------------------------
# throughput and added latency


def throughput_scenario(
    args: argparse.Namespace, model: str, keys: list[str], folder: Path, loadgen: Any
) -> tuple[list[dict[str, object]], dict[str, Any]]:
    """The three servers of ``model`` under the same load, in rounds."""
    bodies = bodies_for(model, folder)
    size = bodies.stat().st_size // sum(1 for _ in bodies.open())
    # all three servers up at once (an idle server costs nothing); the load goes to one at a
    # time, in rounds, so that the machine's other work hits them alike
    procs: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    sat: dict[str, list[Load]] = {k: [] for k in SERVERS}
    seq: dict[str, list[Load]] = {k: [] for k in SERVERS}
    cpu: dict[str, list[float]] = {k: [] for k in SERVERS}
    metrics: dict[str, Any] = {}
    try:
        for kind in SERVERS:
            procs[kind] = start(kind, model, keys, folder)
        for kind in SERVERS:
            loadgen(procs[kind][1], bodies, 4, 2)  # warm-up
        for rep in range(args.repeats):
            for kind in SERVERS:
                proc, url = procs[kind]
                cpu0 = cpu_seconds(proc.pid)
                s = loadgen(url, bodies, args.connections, args.seconds)
                cpu[kind].append((cpu_seconds(proc.pid) - cpu0) / max(1, s.requests) * 1e6)
                sat[kind].append(s)
                seq[kind].append(loadgen(url, bodies, 1, args.seconds))
                print(f"  {model}, {kind}, round {rep + 1}: {s.rps:.0f} req/s", file=sys.stderr)
        for kind in SERVERS[1:]:
            metrics[kind] = scrape(procs[kind][1])
    finally:
        for proc, _ in procs.values():
            stop(proc)

    def med(values: list[float]) -> float:
        return float(np.median(values))

    base_p50 = med([x.p50_ms for x in seq[SERVERS[0]]])
    base_p99 = med([x.p99_ms for x in seq[SERVERS[0]]])
    rows: list[dict[str, object]] = []
    results: dict[str, Any] = {}
    for kind in SERVERS:
        alerts = sum(
            sample(metrics.get(kind, {}), "invguard_gateway_alerts_total", detector=d)
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
    return rows, results


# ---------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load run")
    parser.add_argument("--connections", type=int, default=8, help="connections when saturated")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the servers (medians)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["digits", "faces"])
    parser.add_argument("--loadgen", choices=("wrk", "python"), default=None)
    parser.add_argument(
        "--scenarios", nargs="+", choices=("throughput", "attack"), default=["throughput", "attack"]
    )
    parser.add_argument(
        "--attack-bytes", type=int, default=16_000_000, help="size of the attacker's bad bodies"
    )
    parser.add_argument("--attack-fast", type=int, default=2, help="attacker's whole-body loops")
    parser.add_argument(
        "--attack-rate",
        type=float,
        default=1.0,
        help="bodies per second of each whole-body loop (0: back to back, a flood)",
    )
    parser.add_argument("--attack-slow", type=int, default=4, help="attacker's slow bodies")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--serve-bare", choices=sorted(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.serve_bare:
        keys = json.loads((args.port_file.parent / "keys.json").read_text())
        serve_bare(args.serve_bare, args.port_file, keys)
        return 0
    has_wrk = subprocess.run(["which", "wrk"], capture_output=True).returncode == 0
    loadgen_name = args.loadgen or ("wrk" if has_wrk else "python")
    keys = ["igk_" + secrets.token_urlsafe(24) for _ in range(KEYS)]
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    tables: dict[str, list[dict[str, object]]] = {"throughput": [], "attack": []}
    with tempfile.TemporaryDirectory(prefix="invguard-bench-") as tmp:
        folder = Path(tmp)
        keys_file = folder / "keys.txt"
        keys_file.write_text("\n".join(keys) + "\n")

        def loadgen(url: str, bodies: Path, conns: int, seconds: float) -> Load:
            if loadgen_name == "wrk":
                return wrk(url, bodies, keys_file, conns, seconds, folder)
            return python_load(url, bodies, keys_file, conns, seconds)

        for model in args.models:
            if "throughput" in args.scenarios:
                rows, res = throughput_scenario(args, model, keys, folder, loadgen)
                tables["throughput"] += rows
                results.update(res)
            if "attack" in args.scenarios:
                rows, res = attack_scenario(args, model, keys, folder, loadgen)
                tables["attack"] += rows
                results[f"{model}/attack"] = res
    load_after = os.getloadavg()
    machine = (
        f"machine load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, "
        f"{os.cpu_count()} CPUs"
    )
    if tables["throughput"]:
        print(
            f"\nGateway throughput and latency ({loadgen_name}, 1 load thread; {args.connections} "
            f"connections saturated, 1 sequential; {args.seconds:g} s runs, median of "
            f"{args.repeats} rounds (range); single-image requests, {KEYS} keys; {machine})"
        )
        rows = tables["throughput"]
        print(table(rows, list(rows[0])))
    if tables["attack"]:
        print_attack(args, tables["attack"], results, loadgen_name, machine)
    if "throughput" in args.scenarios:
        print_detector_costs(args, results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def print_attack(
    args: argparse.Namespace,
    rows: list[dict[str, object]],
    results: dict[str, Any],
    loadgen_name: str,
    machine: str,
) -> None:
    pace = f"{args.attack_rate:g} bodies/s each" if args.attack_rate > 0 else "back to back"
    print(
        f"\nOne key (limited to 1 request/s) sends {args.attack_bytes / 1e6:g} MB bad bodies "
        f"({args.attack_fast} connections at {pace}, {args.attack_slow} at 20 kB/s) while "
        f"{KEYS} other keys measure ({loadgen_name}; {args.seconds:g} s runs, median of "
        f"{args.repeats} rounds; {machine})"
    )
    print(table(rows, list(rows[0])))
    for model in args.models:
        res = results.get(f"{model}/attack")
        if res:
            print(
                f"{model}: p99 (4 connections) quiet {res['quiet_p99_ms']:.2f} ms, under attack "
                f"{res['attack_p99_ms']:.2f} ms, ratio {res['ratio']:.2f} (goal < 2; "
                f"sequential p99 ratio {res['sequential_p99_ratio']:.2f}); req/s "
                f"{res['rps_quiet']:.0f} -> {res['rps_attack']:.0f}; requests by status "
                f"{res['requests_by_status']}"
            )


def print_detector_costs(args: argparse.Namespace, results: dict[str, Any]) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
