"""The stateful detectors: what they flag, batching invariance, bounded memory."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invguard.errors import InvalidParameterError
from invguard.gateway.detectors import (
    BlacklightDetector,
    DetectionEngine,
    EngineSettings,
    Projection,
    Verdict,
    describe_verdicts,
)

SHAPE = (1, 16, 16)
D = 256


def engine(**kw: Any) -> DetectionEngine:
    base: dict[str, Any] = {"input_shape": SHAPE, "num_classes": 10, "seed": 0}
    return DetectionEngine(EngineSettings(**{**base, **kw}))


def natural(n: int, seed: int) -> np.ndarray:
    """Distinct smooth images (like natural ones): random low-frequency patterns."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (n, 1, 4, 4))
    return np.clip(coarse.repeat(4, 2).repeat(4, 3) + rng.normal(0, 0.05, (n, *SHAPE)), 0, 1)


def confident(n: int, seed: int) -> np.ndarray:
    """Probabilities a model gives inputs it recognises: confident, spread over classes."""
    rng = np.random.default_rng(seed)
    p = np.full((n, 10), 0.01)
    p[np.arange(n), rng.integers(0, 10, n)] = 0.91
    return p


def unsure(n: int, cls: int = 3) -> np.ndarray:
    p = np.full((n, 10), 0.7 / 9)
    p[:, cls] = 0.3
    return p


def probes(n: int, seed: int, sigma: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.2, 0.8, (1, *SHAPE))
    return np.clip(centre + rng.normal(0, sigma, (n, *SHAPE)), 0, 1)


def first_flags(
    eng: DetectionEngine, client: str, x: np.ndarray, p: np.ndarray, batch: int
) -> dict[str, int]:
    found: dict[str, int] = {}
    for i in range(0, len(x), batch):
        for v in eng.observe(client, x[i : i + batch], p[i : i + batch]):
            if v.flagged and v.detector not in found:
                assert v.first_index is not None
                found[v.detector] = v.first_index
    return found


def test_probe_stream_is_flagged_and_natural_traffic_is_not() -> None:
    eng = engine()
    attack = first_flags(eng, "attacker", probes(300, 0), unsure(300), 32)
    assert attack["knn"] == 20  # the first query with k = 20 earlier ones
    assert attack["inversion"] == 49  # the first query the detector scores (min_queries 50)
    benign = first_flags(eng, "user", natural(300, 1), confident(300, 1), 8)
    assert benign == {}


def test_detections_do_not_depend_on_batching() -> None:
    x = np.concatenate([natural(40, 2), probes(60, 3)])
    p = np.concatenate([confident(40, 2), unsure(60)])
    runs = [
        first_flags(engine(blacklight={"min_matches": 1}), "c", x, p, batch)
        for batch in (1, 7, 100)
    ]
    assert runs[0] == runs[1] == runs[2]
    assert set(runs[0]) == {"knn", "blacklight", "inversion"}


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 59), min_size=1, max_size=6, unique=True))
def test_first_detection_is_the_same_for_any_batching(cuts: list[int]) -> None:
    x = np.concatenate([natural(20, 4), probes(40, 5)])
    p = np.concatenate([confident(20, 4), unsure(40)])
    reference = first_flags(engine(), "c", x, p, 60)
    eng = engine()
    found: dict[str, int] = {}
    bounds = [0, *sorted(cuts), 60]
    for a, b in itertools.pairwise(bounds):
        for v in eng.observe("c", x[a:b], p[a:b]):
            if v.flagged and v.detector not in found:
                assert v.first_index is not None
                found[v.detector] = v.first_index
    assert found == reference


def test_clients_are_independent_and_bounded() -> None:
    eng = engine(max_clients=3, history=50)
    for c in range(5):
        eng.observe(f"c{c}", natural(10, c), confident(10, c))
    assert eng.tracked_clients() == 3
    assert eng.evicted == 2
    # a client's probes are never matched against another client's
    x = probes(40, 9)
    for i in range(0, 40, 2):
        verdicts = eng.observe(f"k{i}", x[i : i + 2], unsure(2))
        assert not any(v.flagged for v in verdicts)
    assert eng.bytes_per_client() < 2_000_000


def test_history_is_bounded_per_client() -> None:
    eng = engine(history=30, knn={"k": 5, "threshold": 0.05})
    x = probes(20, 1)
    first_flags(eng, "c", x, unsure(20), 20)
    state = eng._clients["c"]
    for i in range(10):  # 200 distinct inputs push the probes out of the history
        eng.observe("c", natural(20, 100 + i), confident(20, i))
    assert state.ring.filled == 30
    verdicts = eng.observe("c", x[:1], unsure(1))  # a probe again: its old neighbours are gone
    knn = next(v for v in verdicts if v.detector == "knn")
    assert not knn.flagged
    bl = state.states[1]
    assert bl.seqs.size + len(bl.recent_keys) <= (30 + 8) * 50 + 50 * 20


def test_knn_uses_the_projection_distance() -> None:
    proj = Projection(D, 64, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 1, (2, D)).astype(np.float32)
    rms = float(np.sqrt(np.mean((a - b) ** 2)))
    projected = float(np.linalg.norm(proj(a[None]) - proj(b[None])))
    assert projected == pytest.approx(rms, rel=0.3)  # Johnson-Lindenstrauss, 64 dimensions
    raw = Projection(D, None, np.random.default_rng(0))
    assert float(np.linalg.norm(raw(a[None]) - raw(b[None]))) == pytest.approx(rms, rel=1e-5)


def test_blacklight_fingerprints() -> None:
    det = BlacklightDetector(input_dim=D, rng=np.random.default_rng(0))
    img = natural(1, 0)[0]
    shifted = np.roll(img, 1, axis=2)  # one column: most windows survive (position-free hashes)
    noisy = np.clip(img + np.random.default_rng(1).normal(0, 0.05, img.shape), 0, 1)
    other = natural(1, 7)[0]
    fp = [
        det.fingerprint(h)
        for h in det.window_hashes(
            np.stack([img, shifted, noisy, other]).reshape(4, -1).astype(np.float32)
        )
    ]
    assert all(np.all(np.diff(f.astype(np.int64)) > 0) for f in fp)  # sorted, distinct

    def overlap(a: np.ndarray, b: np.ndarray) -> float:
        return len(np.intersect1d(a, b)) / det.hashes

    assert overlap(fp[0], fp[1]) > 0.5
    assert overlap(fp[0], fp[3]) < 0.2
    flat = np.full((1, D), 0.5, dtype=np.float32)  # one distinct window only
    assert det.fingerprint(det.window_hashes(flat)[0]).size == 1


def test_blacklight_min_matches() -> None:
    x = np.repeat(natural(1, 3), 8, axis=0)  # the same input, again and again
    for m, expected in ((1, 1), (5, 5)):
        eng = engine(knn=None, inversion=None, blacklight={"min_matches": m})
        assert first_flags(eng, "c", x, confident(8, 0), 1) == {"blacklight": expected}


def test_inversion_detector_explains_its_alert() -> None:
    eng = engine(knn=None, blacklight=None)
    verdicts: list[Verdict] = []
    for i in range(0, 120, 20):
        verdicts += eng.observe("c", probes(20, i), unsure(20, cls=4))
    flagged = next(v for v in verdicts if v.flagged)
    assert flagged.details["top_class"] == 4
    assert flagged.details["top_class_share"] == 1.0
    assert flagged.details["unsure_share"] == 1.0
    assert flagged.score == pytest.approx(1.0)
    assert "inversion 1 (>= 0.3) FLAGGED" in describe_verdicts([flagged])
    # unfamiliar inputs spread over classes, no probes: exploration alone scores U / 2
    eng2 = engine(knn=None, blacklight=None)
    spread = np.full((100, 10), 0.7 / 9)
    spread[np.arange(100), np.arange(100) % 10] = 0.3
    x = natural(100, 5)
    eng2.observe("d", x[:99], spread[:99])
    last = eng2.observe("d", x[99:], spread[99:])[0]  # its window: the 100 queries
    assert last.score == pytest.approx(0.5 * (1 + 0.1))


def test_engine_validates_inputs() -> None:
    eng = engine()
    with pytest.raises(InvalidParameterError, match="inputs have 64 values each"):
        eng.observe("c", np.zeros((2, 1, 8, 8)), confident(2, 0))
    with pytest.raises(InvalidParameterError, match=r"probabilities must have shape \(2, 10\)"):
        eng.observe("c", natural(2, 0), np.zeros((2, 3)))
    with pytest.raises(InvalidParameterError, match="min_queries"):
        engine(inversion={"window": 10, "min_queries": 20})
    assert (
        engine(knn=None, blacklight=None, inversion=None).observe(
            "c", natural(2, 0), confident(2, 0)
        )
        == []
    )
