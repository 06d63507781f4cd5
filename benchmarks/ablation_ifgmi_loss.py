"""Levers from the literature added to IF-GMI, on the faces zoo (by default its tuning half).

Each lever changes one part of IF-GMI's default search, the loss of both stages or (``poolaug``) the
initial selection; the rest is the default.
Scored like ``benchmarks/tune_ifgmi.py`` (every judge, the verdict, faces detected) on the zoo's
convolutional models (``--models``, by default the tuning half), for several attack seeds:

- ``tone@W``: a tone prior, ``W * ((mean - m)^2 / var_m + (std - s)^2 / var_s)`` per image, where
  ``m``, ``s`` and their variances are the grey-level mean and standard deviation of 2,048 of the
  generator's own images: it keeps reconstructions from washing out or turning black.
- ``preg@W``: LOMMA's feature regulariser (Nguyen et al., "Re-thinking Model Inversion Attacks
  Against Deep Neural Networks", CVPR 2023): ``W * ||f(x) - mu_y||^2 / E||f||^2`` with ``f`` the
  input of the target's last linear layer and ``mu_y`` its mean over the 8 of 4,096 generator
  images that the target ranks highest for class ``y``.
- ``surrogate@W``: LOMMA's model augmentation: a CNN distilled from the target on 4,096 generator
  images (soft labels under crops and flips, 5 epochs), whose logits, weighted ``W``, are averaged
  with the target's in the loss and in the selections.
- ``cap@K``: the max-margin loss clamped at ``-K`` per view (the confidence ``kappa`` of Carlini and
  Wagner, S&P 2017): a candidate whose margin already exceeds ``K`` gets no more identity gradient,
  so the search stops adding detail that only the target responds to.
- ``consensus@W``: each candidate pulled toward its class's candidate mean (detached), ``W`` times
  the mean squared pixel distance: the candidates line up, so their final mean is less blurred.
- ``blur@S``: every view the target scores is first blurred by a Gaussian of ``S`` pixels, so the
  gradient is smoothed as in translation-invariant transfer attacks (Dong et al., CVPR 2019): the
  search follows the cues that survive a low-pass filter, not the fine detail only the target sees.
- ``poolaug@T``: not a loss: the initial selection scores each pool latent by the target's mean
  log-probability over the image and ``T`` randomly cropped and flipped copies (PPA scores its
  initial candidates under augmentation too), so the starts are the ones whose class survives them.

    python benchmarks/ablation_ifgmi_loss.py --levers "none;tone@1;preg@32;surrogate@1" --seeds 0,1,2
    python benchmarks/ablation_ifgmi_loss.py --levers "none;blur@1;blur@2;cap@5;consensus@100" --seeds 0,1
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _common import cache, judged_row, table
from _zoo_models import conv_models
from torch import nn

from invguard.attacks import InversionRequest
from invguard.attacks.generative import (
    _POOL_BATCH,
    IFGMI,
    _Search,
    identity_loss,
    random_transform,
)
from invguard.data import load_builtin
from invguard.judges import judge_run, reference_panel
from invguard.models.architectures import Standardize, small_cnn
from invguard.priors import ImagePrior, load_public_face_prior
from invguard.targets import TorchTarget

SAMPLES = 4096


class _State:
    """What a lever precomputed for one target (shared, never copied into the attack's config)."""

    def __init__(self, lever: str, weight: float, values: dict[str, Any]) -> None:
        self.lever, self.weight, self.values = lever, weight, values

    def __deepcopy__(self, memo: dict[int, Any]) -> _State:
        return self


@dataclass(frozen=True, kw_only=True)
class _LeverIFGMI(IFGMI):
    state: Any = field(default=None, compare=False, repr=False)

    def _search_type(self) -> type[_Search]:
        return _LeverSearch


class _LeverSearch(_Search):
    def _state(self) -> _State:
        state = getattr(self.cfg, "state", None)
        assert isinstance(state, _State)
        return state

    def _pool_scores(self, pool: torch.Tensor, ys: torch.Tensor | None) -> torch.Tensor:
        st = self._state()
        if st.lever != "poolaug" or ys is not None:
            return super()._pool_scores(pool, ys)
        outs = []
        with torch.no_grad():
            for i in range(0, len(pool), _POOL_BATCH):
                x = self.prior(pool[i : i + _POOL_BATCH])
                logp = self.logits(self._views(x, int(st.weight))).log_softmax(1)
                outs.append(logp.view(-1, len(x), logp.shape[1]).mean(0))
        return torch.cat(outs)

    def _views(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """``x`` and ``n`` randomly cropped and flipped copies of it, stacked."""
        cfg = self.cfg
        copies = [
            random_transform(x, self.gen, min_scale=cfg.min_crop, hflip=cfg.hflip) for _ in range(n)
        ]
        return torch.cat([x, *copies])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = super().logits(x)
        st = self._state()
        if st.lever != "surrogate":
            return out
        surrogate: nn.Module = st.values["model"]
        mixed: torch.Tensor = (out + st.weight * surrogate(x)) / (1.0 + st.weight)
        return mixed

    def loss_raw(self, raw: torch.Tensor) -> torch.Tensor:
        st = self._state()
        if st.lever == "preg":
            return self._preg_loss(raw, st)
        if st.lever in ("cap", "blur"):
            return self._view_loss(raw, st)
        total = super().loss_raw(raw)
        if st.lever == "consensus":
            x = self.prior.output_map(raw)
            grouped = x.view(-1, self.cfg.candidates, *x.shape[1:])
            pull = (grouped - grouped.mean(1, keepdim=True).detach()).pow(2).flatten(2).mean(2)
            consensus: torch.Tensor = total + st.weight * pull.sum()
            return consensus
        if st.lever != "tone":
            return total
        v = st.values
        x = self.prior.output_map(raw).flatten(1)
        pen = (x.mean(1) - v["mean"]) ** 2 / v["var_mean"] + (x.std(1) - v["std"]) ** 2 / v[
            "var_std"
        ]
        out: torch.Tensor = total + st.weight * pen.sum()
        return out

    def _view_loss(self, raw: torch.Tensor, st: _State) -> torch.Tensor:
        """The default loss with the margin capped (``cap``) or the views blurred (``blur``)."""
        cfg = self.cfg
        x = self.prior.output_map(raw)
        views = self._views(x, cfg.transforms)
        if st.lever == "blur":
            views = _gaussian_blur(views, st.weight)
        ident = identity_loss(self.logits(views), self.y.repeat(len(views) // len(x)), cfg.loss)
        if st.lever == "cap":
            ident = ident.clamp_min(-st.weight)
        out: torch.Tensor = (cfg.identity_weight * ident.view(-1, len(x)).mean(0)).sum()
        return out

    def _preg_loss(self, raw: torch.Tensor, st: _State) -> torch.Tensor:
        cfg = self.cfg
        x = self.prior.output_map(raw)
        views = self._views(x, cfg.transforms)
        seen: list[torch.Tensor] = []
        head: nn.Linear = st.values["head"]
        hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        try:
            logits = self.logits(views)
        finally:
            hook.remove()
        y = self.y.repeat(len(views) // len(x))
        ident = identity_loss(logits, y, cfg.loss)
        reg = ((seen[-1] - st.values["mu"][y]) ** 2).sum(1) / st.values["scale"]
        per = (cfg.identity_weight * ident + st.weight * reg).view(-1, len(x)).mean(0)
        summed: torch.Tensor = per.sum()
        return summed


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each channel convolved with a normalised Gaussian of ``sigma`` pixels (reflect padding)."""
    radius = max(1, round(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _images(prior: ImagePrior, gen: torch.Generator) -> torch.Tensor:
    with torch.no_grad():
        z = prior.sample_latents(SAMPLES, gen)
        return torch.cat([prior(z[i : i + 512]) for i in range(0, SAMPLES, 512)])


def _last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1]


def _distil(model: nn.Module, xs: torch.Tensor, gen: torch.Generator) -> nn.Module:
    with torch.no_grad():
        num_classes = model(xs[:2]).shape[1]
    shape = (int(xs.shape[1]), int(xs.shape[2]), int(xs.shape[3]))
    student = nn.Sequential(Standardize(), small_cnn(shape, num_classes, width=24))
    for p in student.parameters():
        if p.dim() > 1:
            nn.init.kaiming_uniform_(p, a=5**0.5, generator=gen)
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    for _ in range(5):
        perm = torch.randperm(len(xs), generator=gen)
        for idx in (perm[i : i + 128] for i in range(0, len(xs), 128)):
            xb = random_transform(xs[idx], gen, min_scale=0.85, hflip=True)
            with torch.no_grad():
                soft = model(xb).softmax(1)
            loss = F.kl_div(student(xb).log_softmax(1), soft, reduction="batchmean")
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        agree = (student(xs[:1024]).argmax(1) == model(xs[:1024]).argmax(1)).float().mean()
    print(f"  surrogate agrees with the target's top class on {agree:.2f} of 1,024 images")
    return student


def _state(lever: str, model: nn.Module, prior: ImagePrior) -> _State:
    name, _, w = lever.partition("@")
    weight = float(w or 0.0)
    gen = torch.Generator().manual_seed(7)
    if name == "tone":
        flat = _images(prior, gen).flatten(1)
        m, s = flat.mean(1), flat.std(1)
        tone = {"mean": m.mean(), "std": s.mean(), "var_mean": m.var(), "var_std": s.var()}
        return _State(name, weight, dict(tone))
    if name == "preg":
        xs, head, seen = _images(prior, gen), _last_linear(model), []
        hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        with torch.no_grad():
            logp = torch.cat([model(xs[i : i + 512]) for i in range(0, SAMPLES, 512)])
        hook.remove()
        feats = torch.cat(seen)
        top = logp.log_softmax(1).topk(8, dim=0).indices  # (8, classes)
        values: dict[str, Any] = {"head": head, "mu": feats[top].mean(0)}
        values["scale"] = (feats**2).sum(1).mean()
        return _State(name, weight, values)
    if name == "surrogate":
        return _State(name, weight, {"model": _distil(model, _images(prior, gen), gen)})
    if name in ("cap", "consensus", "blur", "poolaug"):
        return _State(name, weight, {})
    return _State("none", 0.0, {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levers", default="none;tone@1;preg@32;surrogate@1")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default="cnn-a,cnn-b-wd")
    args = parser.parse_args()
    started = time.perf_counter()
    data = load_builtin("att-faces")
    panel, _, _ = reference_panel(data, cache=cache())
    prior = load_public_face_prior(data.image_shape)
    rows: list[dict[str, object]] = []
    for zm in conv_models(data, Path(cache().root) / "zoo", tuple(args.models.split(","))):
        spec, model = zm.spec, zm.model.eval()
        for lever in args.levers.split(";"):
            t0 = time.perf_counter()
            attack = _LeverIFGMI(state=_state(lever, model, prior))
            prep = time.perf_counter() - t0
            for seed in (int(v) for v in args.seeds.split(",")):
                target = TorchTarget(model, input_shape=data.image_shape)
                result = attack.run(target, InversionRequest(prior=prior), rng=seed)
                recon = result.reconstructions
                s = judge_run(panel, data, recon, result.classes, target).summary()
                keys = {"model": spec.name, "lever": lever, "seed": seed}
                rows.append(judged_row(keys, s, prep + result.seconds))
    print()
    print(table(rows, list(rows[0])))
    print()
    print(table(_means(rows), ["model", "lever", *_scores(rows)]))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def _scores(rows: list[dict[str, object]]) -> list[str]:
    return [k for k in rows[0] if k not in {"model", "lever", "seed", "seconds"}]


def _means(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Per model and lever (and over all models: ``mean``), each score's mean over the seeds."""
    out: list[dict[str, object]] = []
    models = [*dict.fromkeys(str(r["model"]) for r in rows), "mean"]
    for model in models:
        for lever in dict.fromkeys(str(r["lever"]) for r in rows):
            sel = [r for r in rows if r["lever"] == lever and model in ("mean", r["model"])]
            row: dict[str, object] = {"model": model, "lever": lever}
            for k in _scores(rows):
                row[k] = f"{sum(float(str(r[k])) for r in sel) / len(sel):.3f}"
            out.append(row)
    return out


if __name__ == "__main__":
    main()
