"""The cross-key detector: one attack spread over several keys is flagged and its keys named,
benign keys that share inputs are not, the table stays within its cap; and through a gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from invguard.audit import AuditLog
from invguard.errors import InvalidParameterError
from invguard.gateway.config import GatewayConfigError
from invguard.gateway.detectors import CrossKeyDetector, DetectionEngine, EngineSettings
from tests.gateway.conftest import KEYS, GatewayFactory, load

SHAPE = (1, 16, 16)
D = 256


def engine(**cross: Any) -> DetectionEngine:
    """The cross-key detector alone (the per-key detectors off)."""
    return DetectionEngine(
        EngineSettings(
            input_shape=SHAPE,
            num_classes=10,
            seed=0,
            knn=None,
            blacklight=None,
            inversion=None,
            cross_key={"threshold": 20, **cross},
        )
    )


def natural(n: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct smooth images: random low-frequency patterns."""
    coarse = rng.uniform(0, 1, (n, 1, 4, 4))
    return np.clip(coarse.repeat(4, 2).repeat(4, 3) + rng.normal(0, 0.05, (n, *SHAPE)), 0, 1)


def probs(n: int, top: float, rng: np.random.Generator) -> np.ndarray:
    p = np.full((n, 10), (1.0 - top) / 9)
    p[np.arange(n), rng.integers(0, 10, n)] = top
    return p


def benign_keys(
    rng: np.random.Generator, keys: int = 10, copies: int = 2
) -> dict[str, list[np.ndarray]]:
    """Each key: its own 40 images, and 10 popular images every key sends too, each ``copies``
    times with a little noise (so that every popular image reaches the table ``keys * copies``
    times)."""
    popular = natural(10, rng)
    out: dict[str, list[np.ndarray]] = {}
    for k in range(keys):
        noisy = [np.clip(popular + rng.normal(0, 0.01, popular.shape), 0, 1) for _ in range(copies)]
        x = np.concatenate([natural(40, rng), *noisy])
        x = x[rng.permutation(len(x))]
        out[f"benign-{k}"] = [x[i : i + 8] for i in range(0, len(x), 8)]
    return out


def attack_over(keys: list[str], rng: np.random.Generator, n: int = 400) -> list[tuple[str, Any]]:
    """Gradient-estimation probes around one point, each query sent with a random key."""
    centre = rng.uniform(0.2, 0.8, (1, *SHAPE))
    x = np.clip(centre + rng.normal(0, 0.01, (n, *SHAPE)), 0, 1)
    owner = rng.integers(0, len(keys), n)
    out = []
    for i in range(0, n, 20):
        for j, key in enumerate(keys):
            part = x[i : i + 20][owner[i : i + 20] == j]
            if len(part):
                out.append((key, part))
    return out


def run(
    eng: DetectionEngine,
    requests: list[tuple[str, Any]],
    top: dict[str, float],
    alerts: list[list[str]] | None = None,
) -> tuple[dict[str, int], set[str]]:
    """Each key's first flagged query and the keys the alerts named (each alert's keys are
    appended to ``alerts``)."""
    rng = np.random.default_rng(0)
    first: dict[str, int] = {}
    named: set[str] = set()
    for key, x in requests:
        kind = key.split("-")[0]
        for v in eng.observe(key, x, probs(len(x), top[kind], rng)):
            assert v.detector == "cross_key"
            if v.flagged:
                assert v.first_index is not None
                first.setdefault(key, v.first_index)
                named.update(v.details["keys"])
                if alerts is not None:
                    alerts.append(v.details["keys"])
                assert v.details["near_duplicates"] >= 20
    return first, named


def interleave(*streams: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    out = []
    for i in range(max(len(s) for s in streams)):
        out += [s[i] for s in streams if i < len(s)]
    return out


def test_attack_spread_over_five_keys_is_flagged_and_named() -> None:
    rng = np.random.default_rng(1)
    attackers = [f"attack-{j}" for j in range(5)]
    benign = [(k, b) for k, batches in benign_keys(rng).items() for b in batches]
    rng.shuffle(benign)
    attack = attack_over(attackers, rng)
    eng = engine()
    widest: list[list[str]] = []
    first, named = run(eng, interleave(attack, benign), {"attack": 0.3, "benign": 0.9}, widest)
    assert named == set(attackers)  # all five, and no benign key
    assert max(len(k) for k in widest) >= 4  # one alert names most of them at once
    assert set(first) == set(attackers)
    # each attacker key is flagged within its first few queries (about 80 each in all)
    assert max(first.values()) < 40


def test_benign_keys_sharing_inputs_flag_none() -> None:
    """Ten keys that all send the same popular images twice (unsure ones: the confidence filter
    does not hide them) have at most 19 near-duplicates each: under the threshold of 20. With a
    third copy each (29) they are flagged: the count is what separates them."""
    for copies, flagged in ((2, False), (3, True)):
        rng = np.random.default_rng(2)
        benign = [(k, b) for k, batches in benign_keys(rng, copies=copies).items() for b in batches]
        rng.shuffle(benign)
        eng = engine()
        first, named = run(eng, benign, {"benign": 0.3})
        assert bool(first) is flagged
        assert bool(named) is flagged
        assert eng.cross_key is not None
        assert eng.cross_key.table_queries() == 10 * (40 + 10 * copies)


def test_confident_queries_are_not_kept() -> None:
    rng = np.random.default_rng(3)
    attack = attack_over([f"attack-{j}" for j in range(5)], rng)
    eng = engine(confidence=0.5)
    first, named = run(eng, attack, {"attack": 0.9})
    assert first == {}
    assert named == set()
    assert eng.cross_key is not None
    assert eng.cross_key.table_queries() == 0


def test_table_never_exceeds_its_capacity_and_forgets_old_queries() -> None:
    rng = np.random.default_rng(4)
    eng = engine(capacity=64, confidence=1.0)
    det = eng.cross_key
    assert det is not None
    attack = attack_over(["attack-0", "attack-1"], rng, n=100)
    first, _ = run(eng, attack, {"attack": 0.3})
    assert first  # the cluster is seen while it is in the table
    sizes = []
    for i in range(150):
        key = f"benign-{i % 3}"
        x = natural(int(rng.integers(1, 9)), rng)
        eng.observe(key, x, probs(len(x), 0.3, rng))
        sizes.append(det.table_queries())
        assert det.nbytes() <= 64 * det.bands * 12 + 64 * 8 + 120 * 8 * det.bands * 2
    assert max(sizes) <= 64
    assert sizes[-1] >= 48  # full, less the queries not merged yet
    # the attack's cluster has left the table: a new probe near it has no near-duplicate
    centre = attack[-1][1][:1]
    v = eng.observe("attack-2", centre, probs(1, 0.3, rng))[0]
    assert v.score == 0
    assert not v.flagged


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(InvalidParameterError, match="min_shared"):
        CrossKeyDetector(input_dim=D, bands=4, min_shared=5, rng=np.random.default_rng(0))
    with pytest.raises(InvalidParameterError, match="capacity"):
        CrossKeyDetector(input_dim=D, capacity=3, rng=np.random.default_rng(0))


def test_config_checks_min_shared(tmp_path: Path) -> None:
    over = {"detection": {"detectors": {"cross_key": {"bands": 4, "min_shared": 5}}}}
    with pytest.raises(GatewayConfigError, match="min_shared"):
        load(tmp_path, **over)


def test_gateway_alert_names_every_key_of_a_spread_attack(
    serve_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """Probes sent by alice, bob and mallory in turn, through HTTP: cross-key alerts in the
    audit log name all three keys (the per-key detectors are off)."""
    detectors = {
        "knn": {"enabled": False},
        "blacklight": {"enabled": False},
        "inversion": {"enabled": False},
        "cross_key": {"threshold": 10, "confidence": 1.0, "action": "alert"},
    }
    rng = np.random.default_rng(0)
    centre = rng.uniform(0.2, 0.8, (1, 1, 8, 8))
    names = ["alice", "bob", "mallory"]
    with serve_gateway(detection={"detectors": detectors}) as (base, _gw), httpx.Client() as c:
        for i in range(12):
            x = np.clip(centre + rng.normal(0, 0.01, (4, 1, 8, 8)), 0, 1)
            key = KEYS[names[i % 3]]
            resp = c.post(
                base + "/v1/predict", json={"inputs": x.tolist()}, headers={"X-API-Key": key}
            )
            assert resp.status_code == 200
        other = c.post(
            base + "/v1/predict",
            json={"inputs": rng.uniform(0, 1, (2, 1, 8, 8)).tolist()},
            headers={"X-API-Key": KEYS["alice"]},
        )
        assert other.status_code == 200
    with AuditLog(tmp_path / "audit.db", readonly=True) as log:
        found = [e.payload for e in log.entries(action="gateway.alert")]
    assert found
    assert {a["detector"] for a in found} == {"cross_key"}
    named = {k for a in found for k in a["details"]["keys"]}
    assert named == set(names)
    assert all(a["score"] >= 10 and a["action"] == "alert" for a in found)
    assert all(KEYS[n] not in str(found) for n in names)


def test_a_key_with_one_similar_query_is_counted_not_named() -> None:
    rng = np.random.default_rng(5)
    attack = attack_over(["attack-0", "attack-1"], rng, n=200)
    bystander = [("benign-0", attack[0][1][:1])]  # one query like the attack's first
    eng = engine()
    widest: list[list[str]] = []
    first, named = run(eng, bystander + attack, {"attack": 0.3, "benign": 0.3}, widest)
    assert named == {"attack-0", "attack-1"}
    assert set(first) == {"attack-0", "attack-1"}
    v = eng.observe("attack-0", attack[-1][1], probs(len(attack[-1][1]), 0.3, rng))[0]
    assert v.flagged
    assert v.details["unnamed_keys"] == 1
    assert set(v.details["near_duplicates_by_key"]) == {"attack-0", "attack-1"}
