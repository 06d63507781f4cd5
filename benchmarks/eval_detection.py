"""Detection of inversion query streams by the gateway, measured through a live gateway.

A gateway (``python -m invguard.gateway serve``, a separate process, loopback HTTP) serves the MLP
trained on the 30 private AT&T identities. Through it, with one API key per stream:

- attack streams: InvGuard's black-box (MI-FACE by zeroth-order gradients, ``miface-zo``), learned
  (Yang et al. 2019, ``learned``) and label-only (BREP-MI style, ``brep``, on a key whose output
  policy is labels only) attacks, run with an :class:`~invguard.targets.HttpTarget` pointed at the
  gateway, several seeds each, each stopped at ``--budget`` queries. The learned attack's decoder
  trains for 2 epochs only: its query stream (the augmented auxiliary faces) comes before training
  and does not depend on it.
- benign streams: the 90 held-out test images of the private identities, shuffled, alone or with
  noisy (sigma 0.01-0.05), shifted (1-3 pixels) or mixed (shift, brightness, noise) copies,
  sent in batches of 1 to 16 from several keys.

Every detector answers ``alert`` (so each detector's first detection is measured on the whole
stream); the detections are read back from the gateway's audit log. The cross-key detector sees
all keys in one table: a benign key that one of its alerts names counts as flagged. Printed per detector: the
share of attack streams detected, the median number of queries until detection, and the share
of benign keys flagged. ``--ablation`` replays the recorded streams offline through the same
detection engine with other settings (Blacklight's paper rule, a smaller kNN ``k``).
``--adaptive`` replays them spread over several keys or diluted with benign queries, with the
cross-key detector's threshold chosen on one half of the streams and the table measured on the
other (see ``_adaptive``).

    .venv/bin/python benchmarks/eval_detection.py [--budget 1000] [--seeds 3] [--ablation]
        [--adaptive]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml
from _common import cache, table
from numpy.typing import NDArray

from invguard.attacks import InversionRequest
from invguard.audit import AuditLog
from invguard.data import load_att_faces_with_auxiliary
from invguard.gateway.config import hash_api_key
from invguard.gateway.detectors import DetectionEngine, EngineSettings
from invguard.gateway.metrics import parse_exposition, sample_value
from invguard.models import train_target
from invguard.targets import HttpTarget, OutputSpec, TorchTarget

if TYPE_CHECKING:
    from prometheus_client import Metric  # the 'serve' extra, which the gateway needs anyway

FloatArray = NDArray[np.float32]
PER_KEY = ("knn", "blacklight", "inversion")
DETECTORS = (*PER_KEY, "cross_key")
GOAL_QUERIES = 200


@dataclass
class Stream:
    name: str
    kind: str  # "attack" or "benign"
    family: str
    key: str = field(default_factory=lambda: "igk_" + secrets.token_urlsafe(24))
    labels_only: bool = False
    sent: list[FloatArray] = field(default_factory=list)
    queries: int = 0
    note: str = ""


class Recorder:
    """A target that records what it sends (for the offline ablation) and passes it on."""

    def __init__(self, inner: HttpTarget, stream: Stream) -> None:
        self.inner = inner
        self.stream = stream

    @property
    def capabilities(self) -> Any:
        return self.inner.capabilities

    @property
    def num_classes(self) -> int:
        return self.inner.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.inner.input_shape

    @property
    def queries(self) -> int:
        return self.inner.queries

    def predict(self, x: FloatArray) -> FloatArray:
        out = self.inner.predict(x)
        self.stream.sent.append(np.asarray(x, dtype=np.float32).copy())
        return out


def shift(x: FloatArray, dy: int, dx: int, pad: int = 4) -> FloatArray:
    t = torch.nn.functional.pad(torch.from_numpy(x[None]), (pad,) * 4, mode="replicate")[0]
    h, w = x.shape[1:]
    out: FloatArray = t[:, pad + dy : pad + dy + h, pad + dx : pad + dx + w].numpy()
    return out


def benign_inputs(test: FloatArray, kind: str, copies: int, mag: int, seed: int) -> FloatArray:
    """The test images shuffled, each followed (somewhere in the stream) by ``copies - 1``
    perturbed copies: ``noisy``, ``shift`` (up to ``mag`` pixels), ``mixed``, or ``clean``."""
    rng = np.random.default_rng(seed)
    out = []
    for x in test:
        out.append(x)
        for _ in range(copies - 1):
            if kind == "noisy":
                sigma = rng.uniform(0.01, 0.05)
                out.append(np.clip(x + rng.normal(0, sigma, x.shape), 0, 1))
            elif kind == "shift":
                out.append(shift(x, *(int(v) for v in rng.integers(-mag, mag + 1, 2))))
            else:  # mixed
                y = shift(x, *(int(v) for v in rng.integers(-mag, mag + 1, 2)))
                out.append(np.clip(y * rng.uniform(0.9, 1.1) + rng.normal(0, 0.02, y.shape), 0, 1))
    arr: FloatArray = np.asarray(out, dtype=np.float32)
    shuffled: FloatArray = arr[rng.permutation(len(arr))]
    return shuffled


def start_gateway(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "invguard.gateway", "serve", "--config", str(config)]
    errlog = open(log, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stderr=errlog, stdout=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 600  # the first start may train the model
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        for line in text.splitlines():
            if "listening on " in line:
                return proc, line.rsplit("listening on ", 1)[1].strip()
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited ({proc.returncode}):\n{text[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the gateway did not start")


def gateway_config(streams: list[Stream], audit: Path, port: int) -> dict[str, Any]:
    detectors = {name: {"action": "alert"} for name in DETECTORS}
    return {
        "server": {"port": port, "max_batch": 256, "max_body_bytes": 64 * 2**20},
        "model": {"type": "pytorch", "reference": {"arch": "mlp", "data": "att-faces-private30"}},
        "rate_limit": None,
        "keys": [
            {
                "id": s.name,
                "sha256": hash_api_key(s.key),
                **({"output": [{"type": "label_only"}]} if s.labels_only else {}),
            }
            for s in streams
        ],
        "detection": {
            "seed": 7,
            "detectors": detectors,
            "responses": {"realert_seconds": 1e9},
        },
        "alerts": {"audit_log": str(audit)},
    }


def run_attack(
    stream: Stream, url: str, aux: FloatArray, budget: int, factory: Callable[[], Any], seed: int
) -> None:
    spec = OutputSpec(scores=False) if stream.labels_only else OutputSpec()
    with HttpTarget(
        url + "/v1/predict",
        num_classes=30,
        input_shape=(1, 56, 46),
        output=spec,
        headers={"X-API-Key": stream.key},
        max_batch=64,
        query_budget=budget,
        timeout=120,
    ) as target:
        rec = Recorder(target, stream)
        try:
            result = factory().run(rec, InversionRequest(auxiliary=aux), rng=seed)
            stream.note = f"{result.stop_reasons[0]}"
        except Exception as exc:  # a blocked key ends the attack: record why
            stream.note = f"stopped: {type(exc).__name__}"
        stream.queries = target.queries


def run_benign(stream: Stream, url: str, x: FloatArray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with HttpTarget(
        url + "/v1/predict",
        num_classes=30,
        input_shape=(1, 56, 46),
        headers={"X-API-Key": stream.key},
        max_batch=64,
        timeout=120,
    ) as target:
        rec = Recorder(target, stream)
        i = 0
        while i < len(x):
            n = int(rng.integers(1, 17))
            rec.predict(x[i : i + n])
            i += n
        stream.queries = target.queries


def detections(audit: Path) -> tuple[dict[str, dict[str, int]], set[str]]:
    """key id -> detector -> first flagged query (1-based count of queries until detection),
    and the keys that cross-key alerts name."""
    out: dict[str, dict[str, int]] = {}
    named: set[str] = set()
    with AuditLog(audit, readonly=True) as log:
        report = log.verify()
        if not report.ok:
            raise RuntimeError(f"audit log does not verify: {report.first_problem}")
        for e in log.entries(action="gateway.alert"):
            p = e.payload
            key, det, idx = p["key"], p["detector"], int(p["query_index"]) + 1
            out.setdefault(key, {})
            out[key][det] = min(idx, out[key].get(det, idx))
            named.update((p.get("details") or {}).get("keys", []))
    return out, named


def summarise(
    streams: list[Stream],
    found: dict[str, dict[str, int]],
    detectors: tuple[str, ...],
    named: set[str] | frozenset[str] = frozenset(),
) -> list[dict[str, object]]:
    attacks = [s for s in streams if s.kind == "attack"]
    benign = [s for s in streams if s.kind == "benign"]
    rows: list[dict[str, object]] = []
    for det in (*detectors, "any"):

        def first(s: Stream, det: str = det) -> int | None:
            hits = found.get(s.name, {})
            if det == "any":
                return min(hits.values()) if hits else None
            return hits.get(det)

        times = [t for s in attacks if (t := first(s)) is not None]
        fams = sorted({s.family for s in attacks})
        per_family = []
        for fam in fams:
            ts = [first(s) for s in attacks if s.family == fam]
            got = [t for t in ts if t is not None]
            med = f"{statistics.median(got):g}" if got else "-"
            per_family.append(f"{fam} {len(got)}/{len(ts)} (median {med})")
        flagged = [
            s.name
            for s in benign
            if first(s) is not None or (det in ("cross_key", "any") and s.name in named)
        ]
        rows.append(
            {
                "detector": det if det != "any" else "gateway (any detector)",
                "detected": f"{len(times)}/{len(attacks)}",
                f"within {GOAL_QUERIES}": f"{sum(t <= GOAL_QUERIES for t in times)}/{len(attacks)}",
                "median queries": f"{statistics.median(times):g}" if times else "-",
                "max queries": max(times) if times else "-",
                "benign keys flagged": f"{len(flagged)}/{len(benign)}",
                "by attack": "; ".join(per_family),
            }
        )
    return rows


def replay(
    streams: list[Stream],
    predict: Callable[[FloatArray], FloatArray],
    over: dict[str, dict[str, Any]],
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    """Replay the recorded streams offline through the engine with the defaults changed by
    ``over``: first detections, and each stream's most suspicious score per detector (attack
    streams: within their first ``GOAL_QUERIES`` queries)."""
    settings = EngineSettings(
        input_shape=(1, 56, 46),
        num_classes=30,
        seed=7,
        knn=over.get("knn", {}),
        blacklight=over.get("blacklight", {}),
        inversion=over.get("inversion", {}),
    )
    engine = DetectionEngine(settings)
    found: dict[str, dict[str, int]] = {}
    worst: dict[str, dict[str, float]] = {}
    for s in streams:
        seen = 0
        for batch in s.sent:
            for v in engine.observe(s.name, batch, predict(batch)):
                if v.flagged and v.detector not in found.get(s.name, {}):
                    assert v.first_index is not None
                    found.setdefault(s.name, {})[v.detector] = v.first_index + 1
                if (s.kind == "benign" or seen < GOAL_QUERIES) and v.score == v.score:
                    mine = worst.setdefault(s.name, {})
                    old = mine.get(v.detector)
                    below = v.direction == "below"
                    if old is None or (v.score < old if below else v.score > old):
                        mine[v.detector] = v.score
            seen += len(batch)
    return found, worst


def ablation(
    streams: list[Stream], predict: Callable[[FloatArray], FloatArray]
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Other settings (rows for the changed detector and the gateway), and the score margins of
    the defaults."""
    variants: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
        "defaults": ("", {}),
        "blacklight: paper rule, 1 matching query": (
            "blacklight",
            {"blacklight": {"min_matches": 1}},
        ),
        "knn: k=10, threshold 0.035": ("knn", {"knn": {"k": 10, "threshold": 0.035}}),
        "inversion: min_queries 20": ("inversion", {"inversion": {"min_queries": 20}}),
        "inversion: threshold 0.2": ("inversion", {"inversion": {"threshold": 0.2}}),
        "inversion: window 200": ("inversion", {"inversion": {"window": 200}}),
    }
    rows: list[dict[str, object]] = []
    margins: list[dict[str, object]] = []
    for label, (changed, over) in variants.items():
        found, worst = replay(streams, predict, over)
        for row in summarise(streams, found, PER_KEY):
            det = str(row["detector"])
            if det.startswith("gateway") or det == changed or not changed:
                rows.append({"setting": label, **row})
        if changed:
            continue
        for det in PER_KEY:
            below = det == "knn"
            pick = min if below else max
            benign = [
                w[det]
                for s in streams
                if s.kind == "benign" and det in (w := worst.get(s.name, {}))
            ]
            attack = [
                w[det]
                for s in streams
                if s.kind == "attack" and det in (w := worst.get(s.name, {}))
            ]
            margins.append(
                {
                    "detector": det,
                    "flag when": "score <= threshold" if below else "score >= threshold",
                    "most suspicious benign score": f"{pick(benign):.3f}" if benign else "-",
                    f"least suspicious attack score (first {GOAL_QUERIES})": (
                        f"{(max if below else min)(attack):.3f}" if attack else "-"
                    ),
                }
            )
    return rows, margins


def adaptive(streams: list[Stream], test: FloatArray, owner: TorchTarget) -> dict[str, Any]:
    """Attacks spread over keys or diluted, offline through the detection engine (see
    ``_adaptive``): the cross-key threshold chosen on one half, the table on the other."""
    import _adaptive

    from invguard.gateway.config import CrossKeyConfig

    def predict(x: FloatArray) -> FloatArray:
        out: FloatArray = owner.predict(x)
        return out

    longest = max(s.queries for s in streams if s.kind == "attack")
    copies = math.ceil(max(_adaptive.DILUTIONS) * longest / len(test)) + 1
    fillers = {
        s.name: benign_inputs(test, "mixed", copies, 2, 100 + i)
        for i, s in enumerate(streams)
        if s.kind == "attack"
    }
    order = [s.name for s in streams if s.kind == "benign"]
    tune, report = _adaptive.split(streams, order)
    cross = CrossKeyConfig().model_dump(exclude={"enabled", "action"})
    threshold, worst = _adaptive.choose_threshold(tune, fillers, predict, cross)
    print(
        f"\nAdaptive attackers (offline, through the detection engine): cross-key threshold "
        f"{threshold} near-duplicates, {_adaptive.MARGIN:g} x the most a benign query had on "
        f"the tuning half ({worst:g}; the gateway's default: {cross['threshold']}); measured on "
        f"the other half: {sum(s.kind == 'attack' for s in report)} attack streams (seeds "
        f"other than {sorted(_adaptive.TUNE_SEEDS)}) and "
        f"{sum(s.kind == 'benign' for s in report)} benign keys"
    )
    table_rows = _adaptive.rows(report, fillers, predict, {**cross, "threshold": threshold})
    print(table(table_rows, list(table_rows[0])))
    return {"threshold": threshold, "tuning_benign_max": worst, "rows": table_rows}


_BENIGN_PLAN = (  # kind, copies, shift in pixels, seed
    ("clean", 1, 0, 0),
    ("clean", 1, 0, 1),
    ("noisy", 4, 0, 2),
    ("noisy", 4, 0, 3),
    ("noisy", 8, 0, 4),
    ("shift", 4, 1, 5),
    ("shift", 4, 2, 6),
    ("shift", 4, 3, 7),
    ("mixed", 4, 2, 8),
    ("mixed", 8, 2, 9),
)


def _attack_factories() -> dict[str, tuple[Callable[[], Any], bool]]:
    """Each attack family's factory and whether it reads labels only."""
    from invguard.attacks.blackbox import MIFaceZO
    from invguard.attacks.label_only import BoundaryRepulsion
    from invguard.attacks.learned import LearnedInversion

    return {
        "miface-zo": (lambda: MIFaceZO(), False),
        "learned": (lambda: LearnedInversion(epochs=2), False),
        "brep": (lambda: BoundaryRepulsion(), True),
    }


def _plan_streams(
    attacks: dict[str, tuple[Callable[[], Any], bool]], seeds: int, x_test: FloatArray
) -> tuple[list[Stream], dict[str, FloatArray]]:
    """The attack streams (``seeds`` per family) and the benign keys with their inputs."""
    streams: list[Stream] = []
    for fam, (_, labels) in attacks.items():
        for seed in range(seeds):
            streams.append(Stream(f"attack-{fam}-{seed}", "attack", fam, labels_only=labels))
    benign_x: dict[str, FloatArray] = {}
    for kind, copies, mag, seed in _BENIGN_PLAN:
        name = f"benign-{kind}{'-' + str(mag) + 'px' if mag else ''}-x{copies}-{seed}"
        streams.append(Stream(name, "benign", kind))
        benign_x[name] = benign_inputs(x_test, kind, copies, mag, seed)
    return streams, benign_x


def _run_live(
    streams: list[Stream],
    benign_x: dict[str, FloatArray],
    attacks: dict[str, tuple[Callable[[], Any], bool]],
    aux: Any,
    budget: int,
) -> tuple[dict[str, Metric], dict[str, dict[str, int]], set[str]]:
    """Every stream through a live gateway; its metrics and the audit log's detections. Fails if
    an API key reached the gateway's log or the audit log."""
    import httpx

    with tempfile.TemporaryDirectory(prefix="invguard-eval-") as tmp:
        folder = Path(tmp)
        audit = folder / "audit.db"
        config = folder / "gateway.yaml"
        config.write_text(yaml.safe_dump(gateway_config(streams, audit, 0)))
        proc, url = start_gateway(config, folder / "gateway.log")
        try:
            for s in streams:
                t0 = time.perf_counter()
                if s.kind == "attack":
                    factory = attacks[s.family][0]
                    run_attack(s, url, aux, budget, factory, int(s.name.rsplit("-", 1)[1]))
                else:
                    run_benign(s, url, benign_x[s.name], seed=len(s.name))
                print(
                    f"  {s.name}: {s.queries} queries in {time.perf_counter() - t0:.1f} s"
                    + (f" ({s.note})" if s.note else ""),
                    file=sys.stderr,
                )
            metrics = parse_exposition(httpx.get(url + "/metrics").text)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        found, named = detections(audit)
        log_text = (folder / "gateway.log").read_text(errors="replace")
        leaked = [s.name for s in streams if s.key in log_text or s.key in config.read_text()]
        if leaked or any(s.key.encode() in audit.read_bytes() for s in streams):
            raise RuntimeError(f"an API key appears in the logs or the audit log: {leaked}")
    return metrics, found, named


def _print_ablation(streams: list[Stream], owner: TorchTarget) -> dict[str, Any]:
    """The offline replay of the same streams with other detector settings, printed."""
    print("\nOffline replay of the same streams with other settings:")

    def predict(x: FloatArray) -> FloatArray:
        out: FloatArray = owner.predict(x)
        return out

    abl, margins = ablation(streams, predict)
    cols = [
        "setting",
        "detector",
        "detected",
        f"within {GOAL_QUERIES}",
        "median queries",
        "benign keys flagged",
    ]
    print(table(abl, cols))
    print(
        "\nScore margins with the defaults (thresholds: knn 0.04, blacklight 0.5 with 5 "
        "matching queries, inversion 0.3):"
    )
    print(table(margins, list(margins[0])))
    return {"ablation": abl, "margins": margins}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=1000, help="queries per attack stream")
    parser.add_argument("--seeds", type=int, default=3, help="streams per attack")
    parser.add_argument("--ablation", action="store_true", help="offline variants too")
    parser.add_argument(
        "--adaptive", action="store_true", help="attacks spread over keys or diluted (offline)"
    )
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args()

    started = time.perf_counter()
    data, aux = load_att_faces_with_auxiliary()
    model = train_target(data, "mlp", cache=cache()).model  # the gateway loads the same
    owner = TorchTarget(model, input_shape=data.image_shape)
    attacks = _attack_factories()
    streams, benign_x = _plan_streams(attacks, args.seeds, data.x_test)
    metrics, found, named = _run_live(streams, benign_x, attacks, aux, args.budget)

    rows = summarise(streams, found, DETECTORS, named)
    print()
    print(
        f"Detection through a live gateway: {sum(s.kind == 'attack' for s in streams)} attack "
        f"streams (budget {args.budget} queries each), "
        f"{sum(s.kind == 'benign' for s in streams)} benign keys "
        f"({sum(s.queries for s in streams if s.kind == 'benign')} queries); "
        "queries counted until the first flagged query"
    )
    print(table(rows, list(rows[0])))
    print()
    per_stream: list[dict[str, object]] = [
        {
            "stream": s.name,
            "queries": s.queries,
            **{d: found.get(s.name, {}).get(d, "-") for d in DETECTORS},
        }
        for s in streams
    ]
    print(table(per_stream, ["stream", "queries", *DETECTORS]))
    requests_200 = sample_value(metrics, "invguard_gateway_requests_total", status="200")
    print(f"\ngateway: {requests_200:g} requests answered 200; audit log verified; no key leaked")
    result: dict[str, Any] = {"summary": rows, "streams": per_stream}
    if args.ablation:
        result |= _print_ablation(streams, owner)
    if args.adaptive:
        result["adaptive"] = adaptive(streams, data.x_test, owner)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
