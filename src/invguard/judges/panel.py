"""A panel of independent judges, the verdict rule, and agreement between judges.

The verdict (what findings, risk scores, the CI gate and defence recommendations use): an identity
counts as reconstructed when at least :data:`MIN_AGREE` judges that are reliable on this run name it
(top-1; top-5 likewise). Human review, when imported, outranks the automatic judges: where a person
labelled a reconstruction, that label is the verdict. Judges that the calibration rows flag as
unreliable (fooled by noise or artefacts) do not vote; if fewer than :data:`MIN_AGREE` reliable
judges remain, every judge votes and the verdict is marked ``degraded``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import cohen_kappa_score

from invguard.errors import InvalidParameterError
from invguard.judges.base import FloatArray, Judge, JudgeVotes, votes

MIN_AGREE = 2
VERDICT_RULE = (
    f"an identity counts as reconstructed when at least {MIN_AGREE} independent judges that are "
    "reliable on this run name it first (top-1; top-5: among their first five); a human review "
    "label, where present, decides"
)


@dataclass
class PanelJudgement:
    """Every judge's votes on one image set, and the verdict."""

    classes: NDArray[np.int64]
    votes: dict[str, JudgeVotes]
    voters: tuple[str, ...]
    verdict_top1: NDArray[np.bool_]
    verdict_top5: NDArray[np.bool_]
    degraded: bool = False
    human: NDArray[np.int8] | None = None  # 1 same person, 0 different, -1 not reviewed

    @property
    def num_classes(self) -> int:
        return next(iter(self.votes.values())).num_classes

    def agreeing(self) -> NDArray[np.int64]:
        """How many voting judges name each identity first."""
        hits = np.stack([self.votes[j].top1 for j in self.voters]) if self.voters else None
        if hits is None:
            return np.zeros(len(self.classes), dtype=np.int64)
        out: NDArray[np.int64] = hits.sum(axis=0).astype(np.int64)
        return out

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "verdict_top1": float(self.verdict_top1.mean()),
            "verdict_top5": float(self.verdict_top5.mean()),
            "judges": {name: v.summary() for name, v in self.votes.items()},
            "voters": list(self.voters),
            "degraded": self.degraded,
        }
        if self.human is not None:
            reviewed = self.human >= 0
            out["human_reviewed"] = int(reviewed.sum())
            out["human_same"] = int((self.human == 1).sum())
        return out


def verdict(
    hits: Mapping[str, NDArray[np.bool_]],
    voters: Sequence[str],
    *,
    min_agree: int = MIN_AGREE,
    human: NDArray[np.int8] | None = None,
) -> NDArray[np.bool_]:
    """The verdict rule on per-judge hit vectors: ``min_agree`` of ``voters``, human label first."""
    if not voters:
        raise InvalidParameterError("the verdict needs at least one voting judge")
    stacked = np.stack([hits[j] for j in voters])
    out: NDArray[np.bool_] = stacked.sum(axis=0) >= min(min_agree, len(voters))
    if human is not None:
        out = np.where(human >= 0, human == 1, out)
    return out


class JudgePanel:
    """Independent judges of one private data set; :meth:`judge` scores an image set with all."""

    def __init__(self, judges: Sequence[Judge], *, notes: Sequence[str] = ()) -> None:
        if len(judges) < 1:
            raise InvalidParameterError("a judge panel needs at least one judge")
        names = [j.name for j in judges]
        if len(set(names)) != len(names):
            raise InvalidParameterError(f"judge names must be unique, got {names}")
        k = {j.num_classes for j in judges}
        if len(k) != 1:
            raise InvalidParameterError(f"judges disagree on the number of classes: {sorted(k)}")
        self.judges = tuple(judges)
        self.num_classes = k.pop()
        self.notes = tuple(notes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.judges)

    def votes(self, images: FloatArray, classes: NDArray[np.int64]) -> dict[str, JudgeVotes]:
        return {j.name: votes(j.name, j.scores(images), classes) for j in self.judges}

    def judge(
        self,
        images: FloatArray,
        classes: NDArray[np.int64],
        *,
        unreliable: Sequence[str] = (),
        human: NDArray[np.int8] | None = None,
    ) -> PanelJudgement:
        """All judges' votes on ``images`` (one per entry of ``classes``) and the verdict."""
        v = self.votes(images, classes)
        return combine(v, classes, unreliable=unreliable, human=human)

    def info(self) -> list[dict[str, Any]]:
        return [j.info() for j in self.judges]


def combine(
    v: dict[str, JudgeVotes],
    classes: NDArray[np.int64],
    *,
    unreliable: Sequence[str] = (),
    human: NDArray[np.int8] | None = None,
) -> PanelJudgement:
    """Apply the verdict rule to precomputed votes."""
    voters = tuple(n for n in v if n not in set(unreliable))
    degraded = len(voters) < MIN_AGREE
    if degraded:
        voters = tuple(v)
    top1 = {n: x.top1 for n, x in v.items()}
    top5 = {n: x.top5 for n, x in v.items()}
    return PanelJudgement(
        classes=classes,
        votes=v,
        voters=voters,
        verdict_top1=verdict(top1, voters, human=human),
        verdict_top5=verdict(top5, voters, human=human),
        degraded=degraded,
        human=human,
    )


def kappa(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float | None:
    """Cohen's kappa of two binary decision vectors (None when undefined: one constant rating)."""
    if len(a) == 0:
        return None
    if np.all(a == a[0]) and np.all(b == b[0]):
        return 1.0 if bool(a[0]) == bool(b[0]) else None
    value = float(cohen_kappa_score(a.astype(int), b.astype(int)))
    return None if np.isnan(value) else value


def agreement(judgement: PanelJudgement) -> list[dict[str, Any]]:
    """Raw agreement and Cohen's kappa between every pair of judges (and the human, if any)."""
    hits = {n: v.top1 for n, v in judgement.votes.items()}
    if judgement.human is not None and (judgement.human >= 0).any():
        hits["human"] = judgement.human == 1
    names = list(hits)
    out: list[dict[str, Any]] = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            mask = (
                judgement.human >= 0
                if "human" in (a, b) and judgement.human is not None
                else np.ones(len(judgement.classes), dtype=bool)
            )
            x, y = hits[a][mask], hits[b][mask]
            out.append(
                {
                    "a": a,
                    "b": b,
                    "n": int(mask.sum()),
                    "agreement": float((x == y).mean()) if mask.any() else None,
                    "kappa": kappa(x, y),
                }
            )
    return out
