"""A pooled zeroth-order estimate of a classifier's logit Jacobian from antithetic score pairs.

A pair of queries ``x + s u`` and ``x - s u`` gives, for every class ``c`` whose score is visible at
both points, ``d_c = (log s_c(x + s u) - log s_c(x - s u)) / (2 s) ~ (J u)_c - o`` where ``J`` is the
Jacobian of the logits and ``o`` the same unknown offset for every class of the pair (the change of
the log-normaliser). Only differences between classes are identified, so the estimate is of the
*class-centred* Jacobian, which is all a gradient of ``log p_y = J^T (e_y - p)`` needs.

* Rows where every class is visible (full probabilities): the offset is removed by centring over
  the classes; all such rows share one Gram matrix (ridge least squares, closed form).
* Rows where only some classes are visible (top-k, rounding): per-class least squares on the
  entries seen, with each row's offset aligned to the current estimate (alternating updates, which
  start from the centring over the visible classes). This needs one Gram matrix per class.

Directions are given in subspace coordinates ``z`` (``u = Q z`` for an orthonormal ``Q``), so the
estimate is ``J Q`` and the gradient ``Q (J Q)^T w``.
"""

from __future__ import annotations

import torch

MAX_PER_CLASS_ENTRIES = 2**27  # classes * dim * dim float32 entries (512 MiB)


class JacobianEstimate:
    """Ridge least-squares estimate of the class-centred Jacobian ``(classes, dim)``."""

    def __init__(self, classes: int, dim: int, *, ridge: float, refit_every: int) -> None:
        self.classes = classes
        self.dim = dim
        self.ridge = ridge
        self.refit_every = refit_every
        self.gram = torch.zeros(dim, dim, dtype=torch.float64)
        self.cross = torch.zeros(classes, dim, dtype=torch.float64)
        self.matrix = torch.zeros(classes, dim, dtype=torch.float64)
        # partial rows (top-k / rounded answers), kept for the offset alignment
        self.class_gram: torch.Tensor | None = None
        self.part_z: list[torch.Tensor] = []
        self.part_d: list[torch.Tensor] = []
        self.part_seen: list[torch.Tensor] = []
        self.rows = 0
        self.updates = 0
        self.dirty = False

    @staticmethod
    def per_class_fits(classes: int, dim: int) -> bool:
        return classes * dim * dim <= MAX_PER_CLASS_ENTRIES

    def add(self, z: torch.Tensor, diff: torch.Tensor, seen: torch.Tensor) -> None:
        """Add pairs: directions ``z (n, dim)``, differences ``diff (n, classes)``, ``seen`` mask."""
        count = seen.sum(1)
        z, diff = z.double(), diff.double()
        full = count == self.classes
        if bool(full.any()):
            zf, df = z[full], diff[full]
            df = df - df.mean(1, keepdim=True)
            self.gram += zf.T @ zf
            self.cross += df.T @ zf
        part = ~full & (count >= 2)
        if bool(part.any()):
            zp, dp, sp = z[part], diff[part], seen[part]
            if self.class_gram is None:
                self.class_gram = torch.zeros(self.classes, self.dim, self.dim)
            for c in sp.any(0).nonzero().squeeze(1).tolist():
                zc = zp[sp[:, c]].float()
                self.class_gram[c] += zc.T @ zc
            self.part_z.append(zp.float())
            self.part_d.append(torch.where(sp, dp, torch.zeros_like(dp)).float())
            self.part_seen.append(sp)
        self.rows += int(full.sum()) + int(part.sum())
        self.dirty = True

    def refresh(self, *, force: bool = False) -> torch.Tensor:
        """Refit on schedule (every call for the first 20, then every ``refit_every``)."""
        if self.dirty:
            self.updates += 1
            if force or self.updates <= 20 or self.updates % self.refit_every == 0:
                self._fit()
                self.dirty = False
        return self.matrix

    def _fit(self, alternations: int = 2) -> None:
        eye = torch.eye(self.dim, dtype=torch.float64)
        if self.class_gram is None:
            damp = self.ridge * max(float(self.gram.diagonal().mean()), 1e-12)
            chol = torch.linalg.cholesky(self.gram + damp * eye)
            self.matrix = torch.cholesky_solve(self.cross.T, chol).T
            return
        z = torch.cat(self.part_z)
        d = torch.cat(self.part_d)
        seen = torch.cat(self.part_seen)
        count = seen.sum(1, keepdim=True).float()
        lhs = self.gram.float().unsqueeze(0) + self.class_gram
        diag = lhs.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)
        lhs = lhs + (self.ridge * diag).view(-1, 1, 1) * torch.eye(self.dim).unsqueeze(0)
        chol, _ = torch.linalg.cholesky_ex(lhs)
        mat = self.matrix.float()
        for _ in range(alternations):
            pred = z @ mat.T
            offset = ((pred - d) * seen).sum(1, keepdim=True) / count
            target = torch.where(seen, d + offset, torch.zeros_like(d))
            rhs = self.cross.float() + target.T @ z  # (classes, dim)
            mat = torch.cholesky_solve(rhs.unsqueeze(2), chol).squeeze(2)
            mat = mat - mat.mean(0, keepdim=True)
        self.matrix = mat.double()

    def gradient(self, weights: torch.Tensor) -> torch.Tensor:
        """``(J Q)^T w`` for each row of ``weights (n, classes)``: shape ``(n, dim)``."""
        out: torch.Tensor = (weights.double() @ self.matrix).float()
        return out
