"""Adaptive attackers against the gateway's detectors (``eval_detection.py --adaptive``).

The attack streams recorded through the live gateway are sent again, offline, through the
gateway's :class:`~invguard.gateway.detectors.DetectionEngine` (the same code, one engine per
scenario, as one gateway that serves every key of the scenario at once), changed the way an
adaptive attacker would (Feng et al., "Stateful defenses for machine learning models are not yet
secure against black-box attacks", CCS 2023): spread over 2, 5, 10 or 25 keys (each query to a
random key of the attacker's, or whole requests round-robin), or diluted on its key with 1 or 5
benign queries per attack query (perturbed copies of the held-out images, which the model
recognises). The attacks do not adapt to the answers here (every detector only alerts), so the
recorded queries are the queries these attackers send.

The streams are split in halves: the cross-key detector's threshold is chosen on the tuning half
(attack seed 0, five benign keys) and every row is measured on the other half (the other seeds,
the other five benign keys). All keys of a scenario take turns, one request each.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from invguard.gateway.detectors import DetectionEngine, EngineSettings

FloatArray = NDArray[np.float32]
MAX_REQUEST = 64  # inputs per request, as the live run's HttpTarget sends them
SPREADS = (2, 5, 10, 25)
DILUTIONS = (1, 5)
TUNE_SEEDS = frozenset({0})
TUNE_BENIGN = frozenset({0, 2, 4, 5, 8})  # positions in the benign plan
MARGIN = 2.0  # threshold: this times the most near-duplicates a tuning benign query had
DETECTORS = ("knn", "blacklight", "inversion", "cross_key")


class StreamLike(Protocol):
    name: str
    kind: str
    family: str
    sent: list[FloatArray]


Request = tuple[str, FloatArray, NDArray[np.bool_]]  # key, inputs, which are attack queries


@dataclass
class Sender:
    """One attacker or benign client of a scenario and the requests it sends, in order."""

    name: str
    kind: str
    family: str
    requests: list[Request] = field(default_factory=list)


def _chunks(
    x: FloatArray, mask: NDArray[np.bool_]
) -> Iterator[tuple[FloatArray, NDArray[np.bool_]]]:
    for i in range(0, len(x), MAX_REQUEST):
        yield x[i : i + MAX_REQUEST], mask[i : i + MAX_REQUEST]


def single(s: StreamLike) -> Sender:
    """The stream as sent: one key."""
    out = Sender(s.name, s.kind, s.family)
    for b in s.sent:
        out.requests += [(s.name, x, m) for x, m in _chunks(b, np.ones(len(b), dtype=bool))]
    return out


def spread_random(s: StreamLike, keys: int, rng: np.random.Generator) -> Sender:
    """Each query to one of ``keys`` keys at random (a batch becomes one request per key)."""
    out = Sender(s.name, s.kind, s.family)
    for b in s.sent:
        owner = rng.integers(0, keys, len(b))
        for j in range(keys):
            part = b[owner == j]
            out.requests += [
                (f"{s.name}#{j}", x, m) for x, m in _chunks(part, np.ones(len(part), dtype=bool))
            ]
    return out


def spread_round_robin(s: StreamLike, keys: int) -> Sender:
    """Whole requests to ``keys`` keys in turn."""
    one = single(s)
    one.requests = [(f"{s.name}#{i % keys}", x, m) for i, (_, x, m) in enumerate(one.requests)]
    return one


def diluted(s: StreamLike, ratio: int, filler: FloatArray, rng: np.random.Generator) -> Sender:
    """``ratio`` benign queries per attack query on the same key, mixed into each request."""
    out = Sender(s.name, s.kind, s.family)
    at = 0
    for b in s.sent:
        extra = filler[at : at + ratio * len(b)]
        at += len(extra)
        x = np.concatenate([b, extra])
        mask = np.arange(len(x)) < len(b)
        order = rng.permutation(len(x))
        out.requests += [(s.name, c, m) for c, m in _chunks(x[order], mask[order])]
    return out


@dataclass
class WorldResult:
    """First detections (attack queries sent until the first flagged query, all the attacker's
    keys together, benign filler not counted), benign senders flagged, the keys cross-key
    alerts named, and each sender's highest cross-key score."""

    first: dict[str, dict[str, int]] = field(default_factory=dict)
    named: set[str] = field(default_factory=set)
    bystanders: list[str] = field(default_factory=list)  # benign keys named, and by whom
    cross_score: dict[str, float] = field(default_factory=dict)


def run_world(
    senders: Sequence[Sender],
    predict: Callable[[FloatArray], FloatArray],
    cross_key: dict[str, Any],
    *,
    per_key: bool = True,
) -> WorldResult:
    """Send every sender's requests through one engine, the senders taking turns."""
    on: dict[str, Any] | None = {} if per_key else None
    engine = DetectionEngine(
        EngineSettings(
            input_shape=(1, 56, 46),
            num_classes=30,
            seed=7,
            knn=on,
            blacklight=on,
            inversion=on,
            cross_key=cross_key,
        )
    )
    owner = {key: s.name for s in senders for key, _, _ in s.requests}
    kinds = {s.name: s.kind for s in senders}
    seen: dict[str, int] = {}
    sent: dict[str, int] = {s.name: 0 for s in senders}
    out = WorldResult()
    longest = max(len(s.requests) for s in senders)
    for step in range(longest):
        for s in senders:
            if step >= len(s.requests):
                continue
            key, x, mask = s.requests[step]
            before = seen.get(key, 0)
            for v in engine.observe(key, x, predict(x)):
                if v.detector == "cross_key" and math.isfinite(v.score):
                    out.cross_score[s.name] = max(out.cross_score.get(s.name, 0.0), v.score)
                    for k, c in v.details.get("near_duplicates_by_key", {}).items():
                        who = owner.get(k, k)
                        if who not in out.named and kinds.get(who) == "benign":
                            out.bystanders.append(f"{who} ({c} near-duplicates) by {s.name}")
                        out.named.add(who)
                if v.flagged and v.first_index is not None:
                    upto = v.first_index - before + 1
                    attack = sent[s.name] + int(mask[:upto].sum())
                    out.first.setdefault(s.name, {}).setdefault(v.detector, max(attack, 1))
            seen[key] = before + len(x)
            sent[s.name] += int(mask.sum())
    return out


def scenarios(
    streams: Sequence[StreamLike], fillers: dict[str, FloatArray], seed: int
) -> dict[str, list[Sender]]:
    """Every scenario's senders: the attacks changed, the benign streams as they are."""
    rng = np.random.default_rng(seed)
    attacks = [s for s in streams if s.kind == "attack"]
    benign = [single(s) for s in streams if s.kind == "benign"]
    out: dict[str, list[Sender]] = {"one key (as measured live)": [single(s) for s in attacks]}
    for n in SPREADS:
        out[f"spread over {n} keys (random per query)"] = [
            spread_random(s, n, rng) for s in attacks
        ]
    out["spread over 5 keys (round-robin per request)"] = [
        spread_round_robin(s, 5) for s in attacks
    ]
    for r in DILUTIONS:
        out[f"diluted 1:{r} with benign queries"] = [
            diluted(s, r, fillers[s.name], rng) for s in attacks
        ]
    return {name: [*senders, *benign] for name, senders in out.items()}


def choose_threshold(
    tune: Sequence[StreamLike],
    fillers: dict[str, FloatArray],
    predict: Callable[[FloatArray], FloatArray],
    cross_key: dict[str, Any],
) -> tuple[int, float]:
    """The cross-key threshold from the tuning half: ``MARGIN`` times the highest score of a
    benign key in any scenario (scores do not depend on the threshold), and that score."""
    worst = 0.0
    probe = {**cross_key, "threshold": 10**9}
    for senders in scenarios(tune, fillers, seed=11).values():
        result = run_world(senders, predict, probe, per_key=False)
        benign = [result.cross_score.get(s.name, 0.0) for s in senders if s.kind == "benign"]
        worst = max(worst, *benign)
    return max(2, math.ceil(MARGIN * worst)), worst


def rows(
    report: Sequence[StreamLike],
    fillers: dict[str, FloatArray],
    predict: Callable[[FloatArray], FloatArray],
    cross_key: dict[str, Any],
) -> list[dict[str, object]]:
    """The table: per scenario and detector, attacks detected, queries to detection, benign
    keys flagged (cross-key: also benign keys named in an alert)."""
    table: list[dict[str, object]] = []
    for scenario, senders in scenarios(report, fillers, seed=12).items():
        result = run_world(senders, predict, cross_key)
        for line in result.bystanders:
            print(f"  {scenario}: cross-key alert named benign key {line}")
        attacks = [s for s in senders if s.kind == "attack"]
        benign = [s for s in senders if s.kind == "benign"]
        for det in (*DETECTORS, "any"):

            def first(s: Sender, det: str = det, result: WorldResult = result) -> int | None:
                hits = result.first.get(s.name, {})
                return (min(hits.values()) if hits else None) if det == "any" else hits.get(det)

            times = [t for s in attacks if (t := first(s)) is not None]
            named = det in ("cross_key", "any")
            flagged = [
                s for s in benign if first(s) is not None or (named and s.name in result.named)
            ]
            per_family = []
            for fam in sorted({s.family for s in attacks}):
                ts = [first(s) for s in attacks if s.family == fam]
                got = sorted(t for t in ts if t is not None)
                shown = ", ".join(str(t) for t in got) or "-"
                per_family.append(f"{fam} {len(got)}/{len(ts)} ({shown})")
            table.append(
                {
                    "scenario": scenario,
                    "detector": det if det != "any" else "any detector",
                    "attacks detected": f"{len(times)}/{len(attacks)}",
                    "median attack queries to detection": (
                        f"{statistics.median(times):g}" if times else "-"
                    ),
                    "benign keys flagged": f"{len(flagged)}/{len(benign)}",
                    "by attack (queries to detection)": "; ".join(per_family),
                }
            )
    return table


def split(
    streams: Sequence[StreamLike], benign_order: Sequence[str]
) -> tuple[list[Any], list[Any]]:
    """(tuning half, reporting half): attack seed 0 and five benign keys to tune on."""
    tune_benign = {benign_order[i] for i in TUNE_BENIGN}
    tune: list[Any] = []
    report: list[Any] = []
    for s in streams:
        if s.kind == "attack":
            is_tune = int(s.name.rsplit("-", 1)[1]) in TUNE_SEEDS
        else:
            is_tune = s.name in tune_benign
        (tune if is_tune else report).append(s)
    return tune, report
