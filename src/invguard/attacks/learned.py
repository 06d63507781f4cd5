"""Learned model inversion: a decoder trained from the target's outputs back to images.

Yang, Zhang, Chang and Liang, "Neural Network Inversion in Adversarial Setting via Background
Knowledge Alignment", ACM CCS 2019. The attacker queries the black-box target on its own auxiliary
images (here: faces of people outside the training set, augmented with flips and small shifts to
get more queries' worth of data), and trains an inversion network ``G`` that maps the prediction
vectors *as the target returns them* back to the images, by minimising the mean squared
reconstruction error. To invert a training class ``y`` (the paper's training-class inversion) the
decoder is fed a vector that says "class ``y``", and its output is the reconstruction.

Truncation alignment (the paper's Section IV-B): a target that releases only its top-``m`` scores
(or rounds them) is inverted by a decoder trained on vectors truncated the same way, so that
training and attack inputs come from the same distribution. Every vector, whether from the target
or built for a class, is cut to its ``m`` largest entries (``truncation``; by default the largest
number of non-zero scores seen in the target's answers, i.e. aligned to what the target releases)
and encoded like the paper's inversion model encodes it: the log of each kept score relative to a
floor, scaled to [0, 1], hidden scores as 0.

The decoder (``decoder="mlp"``, the default) is one hidden ReLU layer of ``hidden`` units and a
sigmoid per pixel; ``"conv"`` is a dense layer to a small feature map followed by transposed
convolutions, closer to the paper's. On the AT&T faces (100 auxiliary images of 10 people) the
convolutional decoder reached top-1 0.03-0.10 (full, top-3, rounded scores) against 0.10-0.20 for
the MLP decoder, and trains several times slower on a CPU.

A labels-only target is refused (``requires`` is ``SCORES``): its one-hot answers carry no more than
the class, so the decoder could only learn one average image per predicted class.

How far it gets is bounded by the auxiliary data: a decoder trained on 10 other people can only
blend what those faces share with the target's classes (``benchmarks/bench_blackbox.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from invguard.attacks._shared import AuxiliaryImageAttack, predict_batched
from invguard.attacks.base import ProgressFn, SearchContext, SearchOutcome
from invguard.errors import check_choice, check_float, check_int
from invguard.targets.base import Capability, QueryBudgetExceededError

ClassVector = Literal["onehot", "confident"]
DecoderKind = Literal["mlp", "conv"]


@dataclass(frozen=True, kw_only=True)
class LearnedInversion(AuxiliaryImageAttack):
    """Train an inversion decoder on the target's answers for auxiliary images, then decode classes.

    Defaults were chosen by measurement on the AT&T faces (30 private identities, the 100 images of
    the other 10 as auxiliary data; ``benchmarks/bench_blackbox.py``).
    """

    name: ClassVar[str] = "learned"
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.SCORES})

    augment_copies: int = 20
    max_shift: int = 3
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    decoder: DecoderKind = "mlp"
    hidden: int = 512
    width: int = 8
    truncation: int | None = None
    score_floor: float = 1e-6
    class_vector: ClassVector = "onehot"

    def __post_init__(self) -> None:
        check_int("augment_copies", self.augment_copies, minimum=1)
        check_int("max_shift", self.max_shift, minimum=0)
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("learning_rate", self.learning_rate, minimum=0.0, min_inclusive=False)
        check_choice("decoder", self.decoder, ("mlp", "conv"))
        check_int("hidden", self.hidden, minimum=1)
        check_int("width", self.width, minimum=1)
        if self.truncation is not None:
            check_int("truncation", self.truncation, minimum=1)
        check_float("score_floor", self.score_floor, minimum=0.0, maximum=1.0, min_inclusive=False)
        check_choice("class_vector", self.class_vector, ("onehot", "confident"))

    def _search(self, ctx: SearchContext) -> SearchOutcome:
        """Query, train, decode. Costs ``augment_copies * len(auxiliary)`` queries for training
        and one per class to measure the target's confidence in the reconstructions."""
        target, classes = ctx.target, ctx.classes
        shape = tuple(target.input_shape)
        c = target.num_classes

        # 1. The training set: augmented auxiliary images and the target's answers for them.
        aux, images = self._augmented_auxiliary(ctx, self.augment_copies, self.max_shift)
        tgen = ctx.torch_generator
        answers: list[torch.Tensor] = []
        reason = ""
        chunk = max(len(aux), 256)
        for i in range(0, len(images), chunk):
            try:
                answers.append(predict_batched(target, images[i : i + chunk]))
            except QueryBudgetExceededError:
                reason = "query_budget"
                break
        scores = torch.cat(answers) if answers else torch.zeros(0, c)
        images = images[: len(scores)]
        if Capability.PROBABILITIES in target.capabilities or not len(scores):
            seen = c  # full vectors (a probability may underflow to 0 without being hidden)
        else:
            seen = int((scores > 0).sum(1).max())
        m = min(self.truncation if self.truncation is not None else max(1, seen), c)

        # 2. Train the decoder.
        decoder = _build_decoder(c, shape, self.decoder, self.hidden, self.width, tgen)
        steps = 0
        losses: list[float] = []
        if len(scores):
            feats = encode(scores, m, self.score_floor)
            steps, losses, stopped = self._train(
                decoder, feats, images, tgen, ctx.expired, ctx.progress
            )
            reason = reason or stopped

        # 3. Decode one vector per attacked class.
        vectors = self._class_vectors(classes, scores, m)
        decoder.eval()
        with torch.no_grad():
            recon = decoder(encode(vectors, m, self.score_floor))
        conf = torch.zeros(len(classes))
        try:
            answer = predict_batched(target, recon)
            conf = answer[torch.arange(len(classes)), torch.from_numpy(classes)]
        except QueryBudgetExceededError:
            reason = reason or "query_budget"
        return SearchOutcome(
            reconstructions=recon,
            target_confidence=conf,
            iterations=np.full(len(classes), steps, dtype=np.int64),
            stop_reasons=[reason or "decoded"] * len(classes),
            extra={
                "training_images": len(scores),
                "truncation": m,
                "training_steps": steps,
                "final_training_mse": round(losses[-1], 6) if losses else None,
                "predicted_as_attacked": int(
                    (scores.argmax(1)[:, None] == torch.from_numpy(classes)[None]).any(1).sum()
                )
                if len(scores)
                else 0,
            },
        )

    def _train(
        self,
        decoder: nn.Module,
        feats: torch.Tensor,
        images: torch.Tensor,
        gen: torch.Generator,
        expired: Callable[[], bool],
        progress: ProgressFn | None,
    ) -> tuple[int, list[float], str]:
        n = len(feats)
        opt = torch.optim.Adam(decoder.parameters(), lr=self.learning_rate)
        per_epoch = math.ceil(n / self.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs * per_epoch)
        decoder.train()
        steps = 0
        losses: list[float] = []
        for epoch in range(self.epochs):
            if expired():
                return steps, losses, "time_budget"
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for i in range(0, n, self.batch_size):
                idx = perm[i : i + self.batch_size]
                if len(idx) < 2 and n >= 2:
                    continue  # batch norm needs two samples
                loss = F.mse_loss(decoder(feats[idx]), images[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                sched.step()
                steps += 1
                total += float(loss.detach()) * len(idx)
            losses.append(total / n)
            if progress is not None:
                progress(epoch + 1, self.epochs)
        return steps, losses, ""

    def _class_vectors(self, classes: np.ndarray, scores: torch.Tensor, m: int) -> torch.Tensor:
        """The vectors decoded for the attacked classes.

        ``"onehot"``: score 1 for the class, 0 elsewhere (the paper's training-class inversion).
        ``"confident"``: the auxiliary answers' mean (in the encoded, truncated space) with the class
        raised to the highest score seen in any answer, so that the vector looks like the target's
        answers for a face it is sure of.
        """
        n, c = len(classes), (scores.shape[1] if scores.ndim == 2 else 0)
        idx = torch.from_numpy(classes)
        if self.class_vector == "onehot" or len(scores) == 0:
            out = torch.zeros(n, c)
            out[torch.arange(n), idx] = 1.0
            return out
        kept = truncate(scores, m)
        mean = kept.mean(0)
        out = mean.expand(n, c).clone()
        out[torch.arange(n), idx] = float(kept.max())
        return out


def truncate(scores: torch.Tensor, m: int) -> torch.Tensor:
    """Keep each row's ``m`` largest scores, zero the others (the paper's ``trunc_m``)."""
    if m >= scores.shape[1]:
        return scores.clone()
    top = scores.topk(m, dim=1)
    return torch.zeros_like(scores).scatter_(1, top.indices, top.values)


def encode(scores: torch.Tensor, m: int, floor: float) -> torch.Tensor:
    """Decoder input: truncate to ``m``, then ``log(s / floor) / log(1 / floor)`` for kept scores
    (clipped to [0, 1]), 0 for hidden ones."""
    kept = truncate(scores, m)
    scale = math.log(1.0 / floor)
    enc = (torch.log(kept.clamp_min(floor)) - math.log(floor)) / scale
    return torch.where(kept > 0, enc.clamp(0.0, 1.0), torch.zeros_like(enc))


class _MLPDecoder(nn.Module):
    """Prediction vector -> image: one hidden ReLU layer, a sigmoid output per pixel."""

    def __init__(self, classes: int, shape: tuple[int, ...], hidden: int) -> None:
        super().__init__()
        self.shape = shape
        self.net = nn.Sequential(
            nn.Linear(classes, hidden), nn.ReLU(), nn.Linear(hidden, int(np.prod(shape)))
        )

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.sigmoid(self.net(v)).view(len(v), *self.shape)
        return out


class _Decoder(nn.Module):
    """Prediction vector -> image: a dense layer to a small feature map, transposed convolutions."""

    def __init__(self, classes: int, shape: tuple[int, ...], width: int) -> None:
        super().__init__()
        self.shape = shape
        self.spatial = len(shape) == 3
        if self.spatial:
            ch, h, w = shape
            ups = max(0, min(3, int(math.log2(max(1, min(h, w) // 2)))))
            self.base = (math.ceil(h / 2**ups), math.ceil(w / 2**ups))
            chans = [width * 2 ** (ups - i) for i in range(ups + 1)]
            self.chans0 = chans[0]
            self.fc = nn.Sequential(
                nn.Linear(classes, chans[0] * self.base[0] * self.base[1]),
                nn.BatchNorm1d(chans[0] * self.base[0] * self.base[1]),
                nn.ReLU(),
            )
            layers: list[nn.Module] = []
            for i in range(ups):
                layers += [
                    nn.ConvTranspose2d(chans[i], chans[i + 1], 4, stride=2, padding=1),
                    nn.BatchNorm2d(chans[i + 1]),
                    nn.ReLU(),
                ]
            layers.append(nn.Conv2d(chans[-1], ch, 3, padding=1))
            self.body = nn.Sequential(*layers)
        else:
            dim = int(np.prod(shape))
            self.fc = nn.Sequential(
                nn.Linear(classes, 8 * width), nn.BatchNorm1d(8 * width), nn.ReLU()
            )
            self.body = nn.Sequential(nn.Linear(8 * width, dim))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        h = self.fc(v)
        if self.spatial:
            _, hh, ww = self.shape
            h = h.view(len(v), self.chans0, *self.base)
            out: torch.Tensor = torch.sigmoid(self.body(h))[..., :hh, :ww]
            return out
        return torch.sigmoid(self.body(h)).view(len(v), *self.shape)


def _build_decoder(
    classes: int,
    shape: tuple[int, ...],
    kind: DecoderKind,
    hidden: int,
    width: int,
    gen: torch.Generator,
) -> nn.Module:
    """Build the decoder without touching torch's global RNG; initialise it from ``gen``."""
    decoder: nn.Module
    with torch.random.fork_rng(devices=[]):
        decoder = (
            _MLPDecoder(classes, shape, hidden)
            if kind == "mlp"
            else _Decoder(classes, shape, width)
        )
    with torch.no_grad():
        for mod in decoder.modules():
            if isinstance(mod, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_uniform_(mod.weight, a=math.sqrt(5), generator=gen)
                if mod.bias is not None:
                    fan_in = (
                        mod.weight[0].numel()
                        if not isinstance(mod, nn.ConvTranspose2d)
                        else (mod.weight.shape[0] * mod.weight[0, 0].numel())
                    )
                    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(mod.bias, -bound, bound, generator=gen)
    return decoder
