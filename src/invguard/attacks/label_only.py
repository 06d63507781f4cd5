"""Label-only model inversion by boundary repulsion in a generator's latent space.

In the spirit of BREP-MI (Kahla, Chen, Just and Jia, "Label-Only Model Inversion Attacks via
Boundary Repulsion", CVPR 2022), with a simple generator instead of a GAN: a PCA model of the
attacker's auxiliary images (augmented with flips and small shifts), ``G(z) = clip(mean + V S z)``
with standardised latents ``z ~ N(0, I)``. The target answers with a label only.

1. Start points: latent points are drawn from the prior (and the auxiliary images' own latent codes
   are tried first) until the target labels one as each attacked class, within ``init_queries``.
2. Boundary repulsion: around the current point ``z`` of class ``y``, ``points`` points
   ``z + R u_i`` on a sphere of radius ``R`` are labelled by the target; the point moves away from
   those labelled otherwise, ``z <- z + step_size * R * d / |d|`` with ``d = -sum_{i: label != y} u_i``.
   When every point on the sphere keeps the label, the sphere lies inside the class region and
   ``R`` grows by ``radius_growth``. A move that leaves the class is undone and ``R`` shrinks.
3. The reconstruction is ``G(z)`` for the point with the largest all-inside sphere: the image
   deepest inside the class's region.

All classes run in one batch: one ``predict`` call per step labels every running class's centre
and sphere. Classes for which no start point is found keep the generator's mean image (stop reason
``"no_start"``).

Latent points are kept within ``max_norm * sqrt(latent_dim)`` of the origin: with ``max_norm=1``
the search stays in the typical set of the prior (projections of real faces have norms near
``0.8 sqrt(latent_dim)``), where decoded images look like faces; with a looser bound the deepest
points drift to saturated images that the target labels confidently but nobody recognises. Defaults
(256 components, ``max_norm=1``) were chosen by measurement on the AT&T faces
(``benchmarks/bench_blackbox.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from invguard.attacks._shared import AuxiliaryImageAttack, BatchSearch, check_bounds
from invguard.attacks.base import ProgressFn, SearchContext, SearchOutcome
from invguard.errors import check_float, check_int
from invguard.targets.base import Capability, Target


@dataclass(frozen=True, kw_only=True)
class BoundaryRepulsion(AuxiliaryImageAttack):
    """Label-only inversion (BREP-MI style) in a PCA latent space; see the module docstring."""

    name: ClassVar[str] = "brep"
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.LABELS})

    latent_dim: int = 256
    augment_copies: int = 10
    max_shift: int = 2
    init_queries: int = 5000
    init_scale: float = 1.0
    points: int = 16
    initial_radius: float = 0.5
    radius_growth: float = 1.3
    max_radius: float = 8.0
    step_size: float = 0.5
    max_norm: float = 1.0
    max_iterations: int = 150
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        check_int("latent_dim", self.latent_dim, minimum=1)
        check_int("augment_copies", self.augment_copies, minimum=1)
        check_int("max_shift", self.max_shift, minimum=0)
        check_int("init_queries", self.init_queries, minimum=0)
        check_float("init_scale", self.init_scale, minimum=0.0, min_inclusive=False)
        check_int("points", self.points, minimum=1)
        check_float("initial_radius", self.initial_radius, minimum=0.0, min_inclusive=False)
        check_float("radius_growth", self.radius_growth, minimum=1.0, min_inclusive=False)
        check_float("max_radius", self.max_radius, minimum=self.initial_radius)
        check_float("step_size", self.step_size, minimum=0.0, min_inclusive=False)
        check_float("max_norm", self.max_norm, minimum=0.0, min_inclusive=False)
        check_int("max_iterations", self.max_iterations, minimum=1)
        check_bounds(self.bounds)

    def _search(self, ctx: SearchContext) -> SearchOutcome:
        """Invert every requested class from the target's labels, all classes in one batch."""
        classes = ctx.classes
        aux, augmented = self._augmented_auxiliary(ctx, self.augment_copies, self.max_shift)
        gen_model = _PCAGenerator.fit(augmented, self.latent_dim, self.bounds)
        state = _State(
            self, ctx.target, gen_model, torch.from_numpy(classes), ctx.torch_generator, ctx.expired
        )
        state.find_starts(aux)
        state.repel(ctx.progress)
        recon = gen_model.decode(state.final())
        return SearchOutcome(
            reconstructions=recon,
            target_confidence=state.confidence,
            iterations=state.iters,
            stop_reasons=state.reasons,
            extra={
                "latent_dim": gen_model.dim,
                "start_queries": state.start_queries,
                "no_start": [
                    int(c) for c, f in zip(classes, state.found.tolist(), strict=True) if not f
                ],
                "best_radius": [round(float(r), 4) for r in state.best_radius],
            },
        )


class _PCAGenerator:
    """``G(z) = clip(mean + components^T (scales * z))``: PCA with standardised latents."""

    def __init__(
        self,
        mean: torch.Tensor,
        components: torch.Tensor,
        scales: torch.Tensor,
        shape: tuple[int, ...],
        bounds: tuple[float, float],
    ) -> None:
        self.mean = mean
        self.components = components
        self.scales = scales
        self.shape = shape
        self.bounds = bounds
        self.dim = len(scales)

    @classmethod
    def fit(cls, x: torch.Tensor, dim: int, bounds: tuple[float, float]) -> _PCAGenerator:
        flat = x.reshape(len(x), -1).double()
        mean = flat.mean(0)
        _, s, vt = torch.linalg.svd(flat - mean, full_matrices=False)
        k = max(1, min(dim, int((s > 1e-8 * s[0]).sum())))
        # sign convention: largest entry of each component positive (SVD signs are arbitrary)
        sign = torch.sign(vt[:k].gather(1, vt[:k].abs().argmax(1, keepdim=True))).squeeze(1)
        comps = (vt[:k] * sign.view(-1, 1)).float()
        scales = (s[:k] / math.sqrt(max(1, len(x) - 1))).float()
        return cls(mean.float(), comps, scales, tuple(x.shape[1:]), bounds)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        flat = self.mean + (z * self.scales) @ self.components
        return flat.view(len(z), *self.shape).clamp(*self.bounds)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.reshape(len(x), -1) - self.mean) @ self.components.T) / self.scales


class _State(BatchSearch):
    """The state of one label-only inversion: all classes in one batch, per-sample bookkeeping."""

    def __init__(
        self,
        cfg: BoundaryRepulsion,
        target: Target,
        g: _PCAGenerator,
        classes: torch.Tensor,
        gen: torch.Generator,
        expired: Callable[[], bool],
    ) -> None:
        super().__init__(target, classes, gen, expired)
        self.cfg = cfg
        self.g = g
        n = self.n
        self.z = torch.zeros(n, g.dim)
        self.best_z = torch.zeros(n, g.dim)
        self.last_in = torch.zeros(n, g.dim)
        self.radius = torch.full((n,), cfg.initial_radius)
        self.best_radius = torch.zeros(n)
        self.found = torch.zeros(n, dtype=torch.bool)
        self.running = torch.zeros(n, dtype=torch.bool)
        self.iters = torch.zeros(n, dtype=torch.long)
        self.confidence = torch.zeros(n)
        self.reasons = ["no_start"] * n
        self.start_queries = 0

    def final(self) -> torch.Tensor:
        """The deepest point found (largest all-inside sphere), else the last point inside."""
        deep = (self.best_radius > 0).view(-1, 1)
        return torch.where(deep, self.best_z, self.last_in)

    def labels(self, z: torch.Tensor) -> torch.Tensor | None:
        """The target's labels for ``G(z)``, or None (and the stop reason set) past a budget."""
        scores = self.ask(self.g.decode(z))
        return None if scores is None else scores.argmax(1)

    def _project(self, z: torch.Tensor) -> torch.Tensor:
        limit = self.cfg.max_norm * math.sqrt(self.g.dim)
        norm = z.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return z * torch.clamp(limit / norm, max=1.0)

    def _claim(self, z: torch.Tensor, labels: torch.Tensor) -> None:
        """Take, for every attacked class without a start, the first candidate labelled as it."""
        match = (labels.view(-1, 1) == self.classes.view(1, -1)) & ~self.found.view(1, -1)
        hit = match.any(0)
        if bool(hit.any()):
            first = match.float().argmax(0)
            self.z[hit] = z[first[hit]]
            self.found |= hit

    def find_starts(self, aux: torch.Tensor) -> None:
        """Latent start points labelled as each class: the auxiliary codes first, then prior draws."""
        cfg = self.cfg
        budget = cfg.init_queries
        batch = max(100, 10 * self.n)
        candidates = [self._project(self.g.encode(aux))[:budget]]
        spent = 0
        while spent < budget and not bool(self.found.all()):
            z = candidates.pop(0) if candidates else None
            if z is None:
                size = min(batch, budget - spent)
                z = self._project(
                    cfg.init_scale * torch.randn(size, self.g.dim, generator=self.gen)
                )
            labels = self.labels(z)
            if labels is None:
                break
            spent += len(z)
            self._claim(z, labels)
        self.start_queries = spent
        self.best_z = self.z.clone()
        self.last_in = self.z.clone()
        self.running = self.found.clone()

    def repel(self, progress: ProgressFn | None) -> None:
        cfg = self.cfg
        k, p = self.g.dim, cfg.points
        for it in range(1, cfg.max_iterations + 1):
            if self.stop_reason:
                break
            run = self.running.nonzero().squeeze(1)
            if run.numel() == 0:
                break
            r = run.numel()
            u = torch.randn(r, p, k, generator=self.gen)
            u = u / u.norm(dim=2, keepdim=True).clamp_min(1e-12)
            z = self.z[run]
            rad = self.radius[run]
            sphere = z.unsqueeze(1) + rad.view(r, 1, 1) * u
            pts = torch.cat([z.unsqueeze(1), sphere], 1).reshape(r * (1 + p), k)
            answer = self.labels(self._project(pts))
            if answer is None:
                break
            labels = answer.view(r, 1 + p)
            self.iters[run] += 1
            y = self.classes[run]
            inside = labels == y.view(r, 1)
            centre_in = inside[:, 0]
            self.confidence[run] = centre_in.float()
            all_in = inside[:, 1:].all(1) & centre_in
            # A centre that left the class (the last move crossed the boundary): go back, shrink.
            self.last_in[run[centre_in]] = z[centre_in]
            back = ~centre_in
            self.z[run[back]] = self.last_in[run[back]]
            self.radius[run[back]] = rad[back] / cfg.radius_growth
            # Every sphere point kept the label: remember the point, grow the sphere.
            better = all_in & (rad > self.best_radius[run])
            self.best_radius[run[better]] = rad[better]
            self.best_z[run[better]] = z[better]
            self.radius[run[all_in]] = rad[all_in] * cfg.radius_growth
            # Otherwise move away from the points labelled as another class.
            move = centre_in & ~all_in
            if bool(move.any()):
                out = (~inside[:, 1:]).float().unsqueeze(2)
                d = -(out * u).sum(1)
                d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
                new = self._project(z + cfg.step_size * rad.view(r, 1) * d)
                self.z[run[move]] = new[move]
            done = self.radius[run] >= cfg.max_radius
            for j in run[done].tolist():
                self.reasons[j] = "max_radius"
            self.running[run[done]] = False
            if progress is not None and it % 10 == 0:
                progress(it, cfg.max_iterations)
        for j in self.running.nonzero().squeeze(1).tolist():
            self.reasons[j] = self.stop_reason or "max_iterations"
        if self.stop_reason:
            for j in (~self.found).nonzero().squeeze(1).tolist():
                self.reasons[j] = "no_start"
        if progress is not None:
            progress(cfg.max_iterations, cfg.max_iterations)
