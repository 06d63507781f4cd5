"""Stateful detection of model-inversion query streams, per client, with bounded memory.

A black-box inversion attack sends thousands of queries that are near each other in input space
(gradient estimates, boundary probes, a random walk towards one class). These detectors watch each
client's stream and score every query. The work over a client's history is numpy (distances to
all stored queries, sorted-array lookups of hashes); Python loops only run once per *new* query,
with constant work (the inversion window's counts) or work in the fingerprint's size (Blacklight's
last few queries are kept in a dict until merged into the sorted arrays).

- :class:`KnnDetector`: Chen, Carlini and Wagner, "Stateful Detection of Black-Box Adversarial
  Attacks" (2019): the mean distance from a query to its ``k`` nearest earlier queries of the same
  client; a stream of small perturbations makes it small. Inputs are reduced by a fixed random
  (Johnson-Lindenstrauss) projection instead of the paper's learned encoder.
- :class:`BlacklightDetector`: Li et al., "Blacklight: Scalable Defense for Neural Networks against
  Query-Based Black-Box Attacks" (USENIX Security 2022): pixels are quantised, every window of
  ``window`` consecutive values is hashed, the ``hashes`` largest distinct hashes form the query's
  fingerprint, and a query is flagged when it shares at least ``threshold`` of its fingerprint with
  an earlier query (with ``min_matches`` > 1: with that many earlier queries, so that a client may
  resend a few near-copies of an input). Hashes are a seeded, position-free polynomial rolling hash
  (mod 2^64) with a multiply-xorshift finaliser instead of SHA-256, for all windows at once.
- :class:`InversionDetector` (InvGuard's own): *exploration and targeting*. A black-box inversion
  attacker does not hold the private data, so until the attack succeeds it sends inputs the model
  is unsure about (auxiliary faces of strangers, generated faces, a grey start); and while it
  optimises it either probes locally (gradient estimates, boundary spheres) or works on one class
  (or starts all classes from one point). Over a client's last ``window`` queries the score is
  ``U * (1 + max(P, F)) / 2``: ``U`` the share of queries whose top probability is below
  ``confidence``, ``P`` the share of *probes* (within ``probe_radius`` of an earlier input, exact
  repeats excluded), ``F`` the share of the most frequent predicted class. Benign clients mostly
  send inputs the model recognises, spread over classes, even with noisy or shifted copies. The
  alert names the top class and its confidence trend.

All distances are RMS distances per input value (the projection is scaled so that
``||P(x - x')|| ~ ||x - x'|| / sqrt(D)``); a client's history holds its last ``history``
queries, and at most ``max_clients`` clients are tracked (least recently used dropped first).
"""

from __future__ import annotations

import math
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from invguard.errors import InvalidParameterError, check_float, check_int

FloatArray = NDArray[np.float32]
Direction = Literal["below", "above"]

_MASK64 = (1 << 64) - 1
_EXACT_REPEAT = 1e-6  # RMS distance under which two inputs count as the same input


# ---------------------------------------------------------------------------------------------
# verdicts


@dataclass(frozen=True)
class Verdict:
    """One detector's view of one batch of a client's queries.

    ``score`` is the batch's most suspicious score (``nan`` when the detector had too little
    history to score any query); ``flagged`` is true when any query crossed ``threshold``
    (``direction`` says which way); ``first_index`` is the client's stream index (0-based) of the
    first flagged query of the batch and ``flagged_queries`` how many of the batch were flagged.
    """

    detector: str
    score: float
    threshold: float
    direction: Direction
    flagged: bool
    first_index: int | None
    flagged_queries: int
    details: dict[str, Any] = field(default_factory=dict)


def _verdict(
    name: str,
    scores: NDArray[np.float64],
    flags: NDArray[np.bool_],
    threshold: float,
    direction: Direction,
    start: int,
    details: dict[str, Any] | None = None,
) -> Verdict:
    values = [v for v in scores.tolist() if math.isfinite(v)]
    score = math.nan if not values else (min(values) if direction == "below" else max(values))
    hits = flags.nonzero()[0].tolist()
    return Verdict(
        detector=name,
        score=score,
        threshold=threshold,
        direction=direction,
        flagged=bool(hits),
        first_index=start + hits[0] if hits else None,
        flagged_queries=len(hits),
        details=details or {},
    )


# ---------------------------------------------------------------------------------------------
# shared per-batch context


class Projection:
    """A fixed random projection ``R^D -> R^d`` scaled so that distances are RMS distances.

    With ``dim`` None (or ``dim >= D``) the inputs are kept as they are, divided by ``sqrt(D)``.
    """

    def __init__(self, input_dim: int, dim: int | None, rng: np.random.Generator) -> None:
        self.input_dim = check_int("input_dim", input_dim, minimum=1)
        if dim is None or dim >= input_dim:
            self.dim = input_dim
            self.matrix: FloatArray | None = None
        else:
            self.dim = check_int("projection_dim", dim, minimum=1)
            scale = 1.0 / math.sqrt(self.dim * input_dim)
            self.matrix = (rng.standard_normal((input_dim, self.dim)) * scale).astype(np.float32)
        self._raw_scale = np.float32(1.0 / math.sqrt(input_dim))

    def __call__(self, x: FloatArray) -> FloatArray:
        if self.matrix is None:
            out: FloatArray = x * self._raw_scale
            return out
        projected: FloatArray = x @ self.matrix
        return projected


@dataclass
class Batch:
    """What the detectors see of one batch: flat inputs, projections, the model's probabilities,
    the stream index of the first query, and the shared nearest-neighbour distances."""

    x: FloatArray  # (n, D) flat inputs
    y: FloatArray  # (n, d) projected
    probs: FloatArray  # (n, C) the model's full probabilities (never the shaped output)
    start: int
    knn_mean: NDArray[np.float64]  # (n,) mean distance to the k nearest earlier queries, or nan
    nearest: NDArray[np.float64]  # (n,) distance to the nearest earlier query, or inf


class _Ring:
    """The projected inputs of a client's last ``capacity`` queries (order does not matter)."""

    def __init__(self, capacity: int, dim: int) -> None:
        self.y = np.zeros((capacity, dim), dtype=np.float32)
        self.sq = np.zeros(capacity, dtype=np.float32)
        self.filled = 0
        self.head = 0

    def nbytes(self) -> int:
        return int(self.y.nbytes + self.sq.nbytes)

    def neighbours(self, y: FloatArray, k: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Mean distance to the ``k`` nearest earlier queries, and to the nearest, per row of
        ``y``: earlier means stored, or earlier in the same batch."""
        n = len(y)
        m = self.filled
        sq_new = np.einsum("ij,ij->i", y, y)
        d2 = y @ self.y[:m].T  # (n, m), float32: distances of inputs in [0, 1] need no more
        d2 *= -2.0
        d2 += sq_new[:, None]
        d2 += self.sq[:m]
        if n > 1:
            within = sq_new[:, None] + sq_new[None, :] - 2.0 * (y @ y.T)
            within[np.triu_indices(n)] = np.inf  # only queries earlier in the batch
            d2 = np.concatenate([d2, within], axis=1)
        width = d2.shape[1]
        if width == 0:
            return np.full(n, np.nan), np.full(n, np.inf)
        kk = min(k, width)
        part = np.partition(d2, kk - 1, axis=1)[:, :kk] if kk < width else d2
        dist = np.sqrt(np.maximum(part, 0.0), dtype=np.float64)
        nearest = dist.min(axis=1)
        if m >= k:
            return dist.mean(axis=1), nearest
        if kk < k:
            return np.full(n, np.nan), nearest
        knn = dist.mean(axis=1)
        knn[m + np.arange(n) < k] = np.nan  # fewer than k earlier queries
        return knn, nearest

    def add(self, y: FloatArray) -> None:
        cap = len(self.y)
        if len(y) == 1:
            self.y[self.head] = y[0]
            self.sq[self.head] = float(y[0] @ y[0])
            self.head = (self.head + 1) % cap
            self.filled = min(cap, self.filled + 1)
            return
        if len(y) >= cap:
            y = y[-cap:]
        n = len(y)
        idx = (self.head + np.arange(n)) % cap
        self.y[idx] = y
        self.sq[idx] = np.einsum("ij,ij->i", y, y)
        self.head = int((self.head + n) % cap)
        self.filled = min(cap, self.filled + n)


# ---------------------------------------------------------------------------------------------
# the detectors


class KnnDetector:
    """Chen, Carlini and Wagner (2019): flag when the mean distance to the ``k`` nearest earlier
    queries is at most ``threshold`` (the distances are computed once per batch, shared)."""

    name = "knn"
    direction: Direction = "below"

    def __init__(self, *, k: int = 20, threshold: float = 0.04) -> None:
        self.k = check_int("k", k, minimum=1)
        self.threshold = check_float("threshold", threshold, minimum=0.0, min_inclusive=False)

    def new_state(self, history: int) -> None:
        return None

    def state_bytes(self, history: int) -> int:
        return 0

    def observe(self, state: None, batch: Batch) -> Verdict:
        scores = batch.knn_mean
        flags = np.isfinite(scores) & (scores <= self.threshold)
        return _verdict(self.name, scores, flags, self.threshold, self.direction, batch.start)


class _HashIndex:
    """A client's Blacklight fingerprints: (hash, stream index) pairs sorted by hash in two
    arrays, plus the last few queries' pairs in a dict, merged into the arrays every few queries.
    Pairs older than the client's history are dropped at each merge and ignored before."""

    def __init__(
        self, history: int, hashes: int, *, recent_limit: int | None = None, merge_every: int = 0
    ) -> None:
        self.history = history
        self.merge_every = merge_every or history + 1  # also merge after this many queries
        self.recent_queries = 0
        self.keys = np.zeros(0, dtype=np.uint32)
        self.seqs = np.zeros(0, dtype=np.int64)
        self.recent: dict[int, list[int]] = {}  # hash -> stream indices
        self.recent_keys: list[int] = []  # the same pairs, in order of arrival
        self.recent_seqs: list[int] = []
        self.recent_limit = recent_limit if recent_limit is not None else max(8 * hashes, 64)

    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.seqs.nbytes) + 120 * len(self.recent_keys)

    def held(self) -> int:
        """How many distinct queries the index holds hashes of (expired ones included)."""
        merged = np.unique(self.seqs).size if self.seqs.size else 0
        return merged + len(set(self.recent_seqs))

    def best_match(self, h: NDArray[np.uint32], seq: int, rank: int = 1) -> int:
        """The number of ``h``'s (distinct) hashes that the earlier query sharing the
        ``rank``-th most of them shares (``rank`` 1: the best match)."""
        matched = self.matched(h, seq)
        if matched.size == 0:
            return 0
        counts = np.bincount(matched - int(matched.min()))
        if rank == 1:
            return int(counts.max())
        if rank > counts.size:
            return 0
        return int(np.partition(counts, counts.size - rank)[counts.size - rank])

    def matched(self, h: NDArray[np.uint32], seq: int) -> NDArray[np.int64]:
        """The stream indices of the earlier queries (within the history) that share a hash
        with ``h`` (distinct hashes), once per shared hash."""
        none = np.zeros(0, dtype=np.int64)
        if h.size == 0:
            return none
        parts: list[NDArray[np.int64]] = []
        if self.keys.size:
            lo = np.searchsorted(self.keys, h, side="left")
            hi = np.searchsorted(self.keys, h, side="right")
            counts = hi - lo
            total = int(counts.sum())
            if total:
                starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
                parts.append(self.seqs[starts + np.arange(total)])
        if self.recent:
            recent = self.recent
            found = [s for v in h.tolist() if v in recent for s in recent[v]]
            if found:
                parts.append(np.asarray(found, dtype=np.int64))
        if not parts:
            return none
        matched = np.concatenate(parts) if len(parts) > 1 else parts[0]
        cutoff = seq - self.history
        if int(matched.min()) < cutoff:
            matched = matched[matched >= cutoff]
        return matched

    def add(self, h: NDArray[np.uint32], seq: int) -> None:
        """Add a query's fingerprint ``h`` (distinct hashes) as stream index ``seq``."""
        recent = self.recent
        values = h.tolist()
        for v in values:
            if v in recent:
                recent[v].append(seq)
            else:
                recent[v] = [seq]
        self.recent_keys.extend(values)
        self.recent_seqs.extend([seq] * len(values))
        self.recent_queries += 1
        if len(self.recent_keys) > self.recent_limit or self.recent_queries >= self.merge_every:
            self._merge(seq)

    def _merge(self, seq: int) -> None:
        """Merge the recent pairs into the sorted arrays, dropping pairs out of the history."""
        keep = self.seqs >= seq - self.history
        keys, seqs = self.keys[keep], self.seqs[keep]
        rk = np.asarray(self.recent_keys, dtype=np.uint32)
        order = np.argsort(rk, kind="stable")
        rk = rk[order]
        rs = np.asarray(self.recent_seqs, dtype=np.int64)[order]
        at = np.searchsorted(keys, rk, side="right") + np.arange(rk.size)  # final positions
        total = keys.size + rk.size
        old = np.ones(total, dtype=bool)
        old[at] = False
        self.keys = np.empty(total, dtype=np.uint32)
        self.seqs = np.empty(total, dtype=np.int64)
        self.keys[at], self.keys[old] = rk, keys
        self.seqs[at], self.seqs[old] = rs, seqs
        self.recent = {}
        self.recent_keys = []
        self.recent_seqs = []
        self.recent_queries = 0


_MIX = np.uint64(0x9E3779B97F4A7C15)


class BlacklightDetector:
    """Li et al. (2022): quantised sliding-window hashes, the ``hashes`` largest distinct ones per
    query, and the share of them that the best-matching earlier query has too."""

    name = "blacklight"
    direction: Direction = "above"

    def __init__(
        self,
        *,
        input_dim: int,
        quantization: float = 0.2,
        window: int = 20,
        hashes: int = 50,
        threshold: float = 0.5,
        min_matches: int = 5,
        rng: np.random.Generator,
    ) -> None:
        self.input_dim = check_int("input_dim", input_dim, minimum=1)
        self.quantization = check_float(
            "quantization", quantization, minimum=0.0, maximum=1.0, min_inclusive=False
        )
        self.window = min(check_int("window", window, minimum=1), self.input_dim)
        self.hashes = check_int("hashes", hashes, minimum=1)
        self.threshold = check_float(
            "threshold", threshold, minimum=0.0, maximum=1.0, min_inclusive=False
        )
        self.min_matches = check_int("min_matches", min_matches, minimum=1)
        self.levels = float(math.floor(1.0 / self.quantization))
        self._scale = np.float32(1.0 / self.quantization)
        base = int(rng.integers(1 << 62)) * 2 + 1  # odd: invertible modulo 2^64
        inverse = pow(base, -1, 1 << 64)
        self._pow = _powers(base, self.input_dim)
        self._inv = _powers(inverse, self.input_dim - self.window + 1)
        # (sum over a window of (q + 1) b^t) b^-i is (sum of q b^t) b^-i plus the window's
        # sum of b^t: added (with a salt), so that a window of zeros does not hash to 0
        offset = sum(int(v) for v in self._pow[: self.window]) & _MASK64
        self._add = np.uint64(offset ^ int(rng.integers(1 << 63)))

    def new_state(self, history: int) -> _HashIndex:
        return _HashIndex(history, self.hashes)

    def state_bytes(self, history: int) -> int:
        return (history + 8) * self.hashes * 12

    def window_hashes(self, x: FloatArray) -> NDArray[np.uint64]:
        """``(n, D - window + 1)`` hashes of every window of quantised values, by seeded,
        position-free rolling polynomial hashing (mod 2^64) and a multiply-xorshift finaliser."""
        q = np.minimum(x * self._scale, self.levels).astype(np.uint64)  # floor, as x >= 0
        prefix = np.zeros((len(x), self.input_dim + 1), dtype=np.uint64)
        np.cumsum(q * self._pow, axis=1, out=prefix[:, 1:])
        w = self.window
        h = (prefix[:, w:] - prefix[:, :-w]) * self._inv + self._add
        h *= _MIX  # a multiply-xorshift finaliser: the top bits pick the fingerprint
        h ^= h >> np.uint64(29)
        return h

    def fingerprint(self, h: NDArray[np.uint64]) -> NDArray[np.uint32]:
        """The ``hashes`` largest distinct values of one row of window hashes, as sorted 32-bit
        values (fewer for inputs with fewer distinct windows)."""
        s = self.hashes
        m = 4 * s
        if m < h.size:  # candidates first: the top 4s values, then all when duplicates crowd them
            top = _distinct(np.partition(h, h.size - m)[h.size - m :])
            if top.size < s:
                top = _distinct(h)
        else:
            top = _distinct(h)
        out: NDArray[np.uint32] = _distinct((top[-s:] >> np.uint64(32)).astype(np.uint32))
        return out

    def observe(self, state: _HashIndex, batch: Batch) -> Verdict:
        hashes = self.window_hashes(batch.x)
        n = len(hashes)
        scores = np.zeros(n, dtype=np.float64)
        for i in range(n):  # once per *new* query; each is vectorised over the history
            fp = self.fingerprint(hashes[i])
            seq = batch.start + i
            scores[i] = state.best_match(fp, seq, self.min_matches) / self.hashes
            state.add(fp, seq)
        flags = scores >= self.threshold
        return _verdict(self.name, scores, flags, self.threshold, self.direction, batch.start)


class _Window:
    """A client's last ``size`` queries for the inversion detector, oldest first:
    (predicted class, probe?, unsure?, top probability), with running counts."""

    def __init__(self, size: int, num_classes: int) -> None:
        self.size = size
        self.items: deque[tuple[int, bool, bool, float]] = deque()
        self.counts = [0] * num_classes
        self.probes = 0
        self.unsure = 0

    def nbytes(self) -> int:
        return 100 * self.size + 8 * len(self.counts)


class InversionDetector:
    """Exploration and targeting: ``U * (1 + max(P, F)) / 2`` over the last ``window`` queries,
    where ``U`` is the share the model is unsure about (top probability below ``confidence``),
    ``P`` the share of probes and ``F`` the share of the most frequent predicted class (see the
    module docstring)."""

    name = "inversion"
    direction: Direction = "above"

    def __init__(
        self,
        *,
        num_classes: int,
        window: int = 100,
        min_queries: int = 50,
        confidence: float = 0.5,
        probe_radius: float = 0.05,
        threshold: float = 0.3,
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.window = check_int("window", window, minimum=2)
        self.min_queries = check_int("min_queries", min_queries, minimum=1)
        if self.min_queries > self.window:
            raise InvalidParameterError(
                f"The 'min_queries' parameter must be <= window ({self.window}), "
                f"got {self.min_queries}"
            )
        self.confidence = check_float(
            "confidence", confidence, minimum=0.0, maximum=1.0, min_inclusive=False
        )
        self.probe_radius = check_float(
            "probe_radius", probe_radius, minimum=0.0, min_inclusive=False
        )
        self.threshold = check_float(
            "threshold", threshold, minimum=0.0, maximum=1.0, min_inclusive=False
        )

    def new_state(self, history: int) -> _Window:
        return _Window(self.window, self.num_classes)

    def state_bytes(self, history: int) -> int:
        return 100 * self.window + 8 * self.num_classes

    def observe(self, state: _Window, batch: Batch) -> Verdict:
        probs = batch.probs
        n = len(probs)
        cls = probs.argmax(axis=1)
        conf = probs[np.arange(n), cls].tolist()
        nearest = batch.nearest.tolist()
        radius, floor, size = self.probe_radius, self.confidence, self.window
        items, counts = state.items, state.counts
        scores = np.full(n, np.nan)
        details: dict[str, Any] = {}
        for i, c in enumerate(cls.tolist()):  # O(1) per *new* query: running counts
            if len(items) == size:
                c0, p0, u0, _ = items.popleft()
                counts[c0] -= 1
                state.probes -= p0
                state.unsure -= u0
            probe = _EXACT_REPEAT < nearest[i] <= radius
            unsure = conf[i] < floor
            items.append((c, probe, unsure, conf[i]))
            counts[c] += 1
            state.probes += probe
            state.unsure += unsure
            filled = len(items)
            if filled < self.min_queries:
                continue
            top = max(counts)
            f, p, u = top / filled, state.probes / filled, state.unsure / filled
            scores[i] = u * (1.0 + max(p, f)) / 2.0
            if not details and scores[i] >= self.threshold:  # the alert's explanation
                k = counts.index(top)
                mine = [q for (c2, _, _, q) in items if c2 == k]
                half = len(mine) // 2
                details = {
                    "window": filled,
                    "unsure_share": round(u, 4),
                    "probe_share": round(p, 4),
                    "top_class": k,
                    "top_class_share": round(f, 4),
                    "top_class_confidence": [
                        round(sum(mine[:half]) / half, 4) if half else None,
                        round(sum(mine[half:]) / (len(mine) - half), 4),
                    ],
                }
        flags = np.isfinite(scores) & (scores >= self.threshold)
        return _verdict(
            self.name, scores, flags, self.threshold, self.direction, batch.start, details
        )


class CrossKeyDetector:
    """Near-duplicate queries across API keys, in the spirit of Blacklight (Li et al. 2022) with
    one table for all keys (as the paper's, which does not trust account identities).

    Each input is projected by a fixed Gaussian matrix (``bands * band_size`` directions, scaled
    so that a direction's difference between two inputs has the spread of their RMS distance),
    the projections are quantised to cells of ``width`` with random offsets, and each of the
    ``bands`` sub-vectors of ``band_size`` cells is hashed (E2LSH, Datar et al. 2004): inputs
    within a small RMS distance share most bands, even when every pixel moved (per-pixel noise
    breaks Blacklight's pixel windows, not projections). One table (a :class:`_HashIndex`)
    holds the bands of the last ``capacity`` queries of all keys, and a ring their keys. An
    earlier query sharing at least ``min_shared`` bands is a near-duplicate; a query is flagged
    when it has at least ``threshold`` near-duplicates and they and the query come from at
    least ``min_keys`` keys (its score: the count, 0 with fewer keys). The verdict's details
    name the keys that sent at least ``name_min`` of the near-duplicates (and the querying key;
    the others are only counted: one similar query among an attacker's many is likelier a
    bystander's), with their counts. Only queries whose top probability is below ``confidence`` are hashed and
    stored (1.0: all): benign clients that send the same popular, recognised input do not fill
    the table.
    """

    name = "cross_key"
    direction: Direction = "above"

    def __init__(
        self,
        *,
        input_dim: int,
        bands: int = 16,
        band_size: int = 4,
        width: float = 0.25,
        min_shared: int = 8,
        threshold: int = 46,
        min_keys: int = 2,
        name_min: int = 2,
        confidence: float = 0.5,
        capacity: int = 20_000,
        rng: np.random.Generator,
    ) -> None:
        self.input_dim = check_int("input_dim", input_dim, minimum=1)
        self.bands = check_int("bands", bands, minimum=1)
        self.band_size = check_int("band_size", band_size, minimum=1)
        self.width = check_float("width", width, minimum=0.0, min_inclusive=False)
        self.min_shared = check_int("min_shared", min_shared, minimum=1)
        if self.min_shared > self.bands:
            raise InvalidParameterError(
                f"The 'min_shared' parameter must be <= bands ({self.bands}), got {min_shared}"
            )
        self.threshold = check_int("threshold", threshold, minimum=1)
        self.min_keys = check_int("min_keys", min_keys, minimum=1)
        self.name_min = check_int("name_min", name_min, minimum=1)
        self.confidence = check_float(
            "confidence", confidence, minimum=0.0, maximum=1.0, min_inclusive=False
        )
        self.capacity = check_int("capacity", capacity, minimum=16)
        dirs = self.bands * self.band_size
        scale = 1.0 / math.sqrt(self.input_dim)
        self._matrix = (rng.standard_normal((self.input_dim, dirs)) * scale).astype(np.float32)
        self._offset = rng.uniform(0.0, self.width, dirs).astype(np.float32)
        self._mult = rng.integers(1, 1 << 63, (self.bands, self.band_size), dtype=np.uint64) | 1
        self._salt = rng.integers(0, 1 << 63, self.bands, dtype=np.uint64)
        merge = max(1, min(256, self.capacity // 8))
        # at most capacity queries held: the history plus the queries not yet merged, plus one
        self._index = _HashIndex(
            self.capacity - merge - 1,
            self.bands,
            recent_limit=merge * self.bands,
            merge_every=merge,
        )
        self._owners: NDArray[Any] = np.empty(self.capacity, dtype=object)  # seq % capacity
        self._seq = 0
        self._lock = threading.Lock()

    def band_hashes(self, x: FloatArray) -> NDArray[np.uint32]:
        """``(n, bands)`` 32-bit hashes of the quantised projection's sub-vectors, salted per
        band (so that all bands share one table)."""
        cells = np.floor((x @ self._matrix + self._offset) / np.float32(self.width))
        c = cells.astype(np.int64).view(np.uint64).reshape(len(x), self.bands, self.band_size)
        h = (c * self._mult).sum(axis=2, dtype=np.uint64) + self._salt
        h *= _MIX
        h ^= h >> np.uint64(29)
        h *= _MIX
        out: NDArray[np.uint32] = (h >> np.uint64(32)).astype(np.uint32)
        return out

    def nbytes(self) -> int:
        """Memory the table holds now (numpy arrays and the unmerged pairs; key names shared)."""
        return self._index.nbytes() + int(self._owners.nbytes)

    def table_queries(self) -> int:
        """How many queries the table holds (never more than ``capacity``)."""
        with self._lock:
            return self._index.held()

    def observe(self, client: str, start: int, x: FloatArray, probs: FloatArray) -> Verdict:
        """Score ``client``'s batch (flat inputs, full probabilities; ``start`` its stream
        index) against all keys' recent queries, then add it to the table."""
        n = len(x)
        scores = np.zeros(n, dtype=np.float64)
        keep = np.flatnonzero(probs.max(axis=1) < self.confidence)
        involved: dict[str, int] = {}
        bystanders: set[str] = set()
        most = 0
        if keep.size:
            hashes = self.band_hashes(x[keep])
            with self._lock:  # one table for all keys: batches are serialised here
                for row, i in enumerate(keep.tolist()):  # once per new query, vectorised within
                    count, keys = self._near(hashes[row], client)
                    if len(keys) >= self.min_keys:
                        scores[i] = count
                        if count >= self.threshold:
                            for k, c in keys.items():
                                if c >= self.name_min or k == client:
                                    involved[k] = max(involved.get(k, 0), c)
                                else:
                                    bystanders.add(k)
                            most = max(most, count)
                    self._add(hashes[row], client)
        flags = scores >= self.threshold
        details: dict[str, Any] = {}
        if involved:
            details = {
                "keys": sorted(involved),
                "near_duplicates": most,
                "near_duplicates_by_key": dict(sorted(involved.items())),
                "unnamed_keys": len(bystanders - involved.keys()),
            }
        return _verdict(self.name, scores, flags, float(self.threshold), "above", start, details)

    def _near(self, h: NDArray[np.uint32], client: str) -> tuple[int, dict[str, int]]:
        """The number of near-duplicates of a query among the table's queries, and how many
        of them each key sent (``client`` included, with 0 if none)."""
        matched = self._index.matched(h, self._seq)
        if matched.size == 0:
            return 0, {client: 0}
        base = int(matched.min())
        counts = np.bincount(matched - base)
        near = np.flatnonzero(counts >= self.min_shared) + base
        if near.size == 0:
            return 0, {client: 0}
        names, per_key = np.unique(self._owners[near % self.capacity], return_counts=True)
        by_key = {client: 0, **dict(zip(names.tolist(), per_key.tolist(), strict=True))}
        return int(near.size), by_key

    def _add(self, h: NDArray[np.uint32], client: str) -> None:
        self._owners[self._seq % self.capacity] = client
        self._index.add(h, self._seq)
        self._seq += 1


def _distinct(a: NDArray[Any]) -> NDArray[Any]:
    """The distinct values of ``a``, sorted (a lean ``np.unique``)."""
    a = np.sort(a)
    if a.size < 2:
        return a
    keep = np.empty(a.size, dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def _powers(base: int, n: int) -> NDArray[np.uint64]:
    out = np.empty(n, dtype=np.uint64)
    v = 1
    for i in range(n):  # once, at start-up
        out[i] = v
        v = (v * base) & _MASK64
    return out


# ---------------------------------------------------------------------------------------------
# per-client state and the engine


class ClientState:
    """One client's detection state; ``lock`` serialises its batches."""

    def __init__(self, ring: _Ring, states: list[Any]) -> None:
        self.lock = threading.Lock()
        self.ring = ring
        self.states = states
        self.seen = 0


Detector = KnnDetector | BlacklightDetector | InversionDetector


@dataclass(frozen=True)
class EngineSettings:
    """Settings of a :class:`DetectionEngine` (the config's ``detection`` section, resolved)."""

    input_shape: tuple[int, ...]
    num_classes: int
    history: int = 1000
    max_clients: int = 1000
    projection_dim: int | None = 64
    seed: int | None = None
    knn: dict[str, Any] | None = field(default_factory=dict)
    blacklight: dict[str, Any] | None = field(default_factory=dict)
    inversion: dict[str, Any] | None = field(default_factory=dict)
    cross_key: dict[str, Any] | None = None


class DetectionEngine:
    """Runs the enabled detectors on each client's stream.

    ``observe(client, x, probs)`` scores a batch (inputs ``(n, *input_shape)`` in order, and the
    model's full probabilities) against the client's history, then adds it to the history. A
    ``None`` entry in the settings disables that detector (``cross_key`` is off unless given).
    Thread-safe: clients are independent, one client's batches are serialised, and the
    cross-key table (one for all clients) has its own lock.
    """

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.input_dim = int(np.prod(settings.input_shape))
        self.history = check_int("history", settings.history, minimum=2)
        self.max_clients = check_int("max_clients", settings.max_clients, minimum=1)
        seed = settings.seed if settings.seed is not None else secrets.randbits(63)
        rng = np.random.default_rng(seed)
        self.projection = Projection(self.input_dim, settings.projection_dim, rng)
        self.detectors: list[Detector] = []
        self.k = 20
        if settings.knn is not None:
            knn = KnnDetector(**settings.knn)
            self.k = knn.k
            self.detectors.append(knn)
        if settings.blacklight is not None:
            self.detectors.append(
                BlacklightDetector(input_dim=self.input_dim, rng=rng, **settings.blacklight)
            )
        if settings.inversion is not None:
            self.detectors.append(
                InversionDetector(num_classes=settings.num_classes, **settings.inversion)
            )
        self.cross_key: CrossKeyDetector | None = None
        if settings.cross_key is not None:
            self.cross_key = CrossKeyDetector(
                input_dim=self.input_dim, rng=rng, **settings.cross_key
            )
        self._needs_neighbours = any(
            isinstance(d, KnnDetector | InversionDetector) for d in self.detectors
        )
        self._clients: OrderedDict[str, ClientState] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    @property
    def names(self) -> tuple[str, ...]:
        cross = (CrossKeyDetector.name,) if self.cross_key is not None else ()
        return (*(d.name for d in self.detectors), *cross)

    def bytes_per_client(self) -> int:
        """Memory one tracked client takes at most (numpy arrays only)."""
        ring = self.history * (self.projection.dim + 1) * 4 if self._needs_neighbours else 0
        return ring + sum(d.state_bytes(self.history) for d in self.detectors)

    def tracked_clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def forget(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)

    def _state(self, client: str) -> ClientState:
        with self._lock:
            state = self._clients.get(client)
            if state is not None:
                self._clients.move_to_end(client)
                return state
            dim = self.projection.dim if self._needs_neighbours else 1
            cap = self.history if self._needs_neighbours else 1
            state = ClientState(
                _Ring(cap, dim), [d.new_state(self.history) for d in self.detectors]
            )
            self._clients[client] = state
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
                self.evicted += 1
            return state

    def observe(self, client: str, x: np.ndarray, probs: np.ndarray) -> list[Verdict]:
        flat = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
        if flat.shape[1] != self.input_dim:
            raise InvalidParameterError(
                f"inputs have {flat.shape[1]} values each, the engine expects {self.input_dim}"
            )
        p = np.asarray(probs, dtype=np.float32)
        if p.shape != (len(flat), self.settings.num_classes):
            raise InvalidParameterError(
                f"probabilities must have shape ({len(flat)}, {self.settings.num_classes}), "
                f"got {p.shape}"
            )
        if (not self.detectors and self.cross_key is None) or len(flat) == 0:
            return []
        state = self._state(client)
        with state.lock:
            n = len(flat)
            if self._needs_neighbours:
                y = self.projection(flat)
                knn, nearest = state.ring.neighbours(y, self.k)
            else:
                y = flat[:, :1]
                knn, nearest = np.full(n, np.nan), np.full(n, np.inf)
            batch = Batch(flat, y, p, state.seen, knn, nearest)
            verdicts = [
                d.observe(s, batch) for d, s in zip(self.detectors, state.states, strict=True)
            ]
            if self.cross_key is not None:
                verdicts.append(self.cross_key.observe(client, state.seen, flat, p))
            if self._needs_neighbours:
                state.ring.add(y)
            state.seen += n
        return verdicts


def describe_verdicts(verdicts: Sequence[Verdict]) -> str:
    """One line: ``knn 0.012 (<= 0.035) FLAGGED, blacklight 0.06 (>= 0.5), ...``."""
    parts = []
    for v in verdicts:
        op = "<=" if v.direction == "below" else ">="
        flag = " FLAGGED" if v.flagged else ""
        parts.append(f"{v.detector} {v.score:.4g} ({op} {v.threshold:g}){flag}")
    return ", ".join(parts)
