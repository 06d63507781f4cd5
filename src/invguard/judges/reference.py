"""The reference judge panel of a private data set: three judges of different families.

* faces: the robust evaluation model, dlib's face embedding (``invguard[faces]``), pixel SSIM;
* other images (or faces without dlib): the robust evaluation model, a second evaluation model of
  another family trained adversarially (an MLP), pixel SSIM.

Given the attacker's ``public`` images the panel is open-set (:mod:`invguard.judges.open_set`):
each judge also knows a ``public`` class and abstains on images it ranks as public.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from invguard.data.base import ImageDataset
from invguard.judges.base import FloatArray
from invguard.judges.classifier import EvaluationModelJudge
from invguard.judges.face_embedding import FaceEmbeddingJudge, face_embedding_available
from invguard.judges.open_set import RejectPublicJudge, open_set_dataset
from invguard.judges.panel import JudgePanel
from invguard.judges.pixel import PixelStructureJudge
from invguard.metrics.evaluate import Evaluator
from invguard.models.cache import ModelCache, default_cache_dir
from invguard.models.training import ProgressFn, TrainedModel
from invguard.models.zoo import (
    EVALUATION_ARCH,
    train_evaluation_model,
    train_second_evaluation_model,
)

log = logging.getLogger(__name__)

FACE_HINT = (
    "the face-embedding judge needs dlib and its weights: pip install 'invguard[faces]' "
    "(dlib-bin, face-recognition-models); a second evaluation model judges instead"
)


def reference_evaluator(
    dataset: ImageDataset,
    *,
    cache: ModelCache | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> tuple[Evaluator, dict[str, Any]]:
    """The independent evaluation model for ``dataset`` (trained once, then cached) and its record.

    Without ``cache`` the model cache in ``$INVGUARD_CACHE_DIR`` (or ``~/.cache/invguard``) is used.
    """
    if cache is None:
        cache = ModelCache(default_cache_dir())
    trained = train_evaluation_model(dataset, seed=seed, cache=cache, progress=progress)
    aug = trained.config.augment
    info = {
        "name": EVALUATION_ARCH,
        "description": (
            "residual CNN (batch norm, global average pooling), a different architecture from "
            f"every target, trained on the {len(dataset.y_train)} private training images (never on "
            f"the held-out photos) for {trained.config.epochs} epochs with light augmentation"
            + (
                f" (affine jitter, flips, brightness/contrast, noise, blend <= {aug.blend})"
                if aug
                else ""
            )
            + f" and FGSM adversarial training at eps {trained.config.adversarial_eps:.4f}"
            + "; never attacked"
        ),
        "seed": seed,
        "held_out_accuracy": trained.test_accuracy,
        "train_accuracy": trained.train_accuracy,
        "cache_key": trained.cache_key,
        "weights": trained.source,  # trained now, from the model cache, or shipped in the package
    }
    return Evaluator(trained.model), info


def is_face_data(dataset: ImageDataset) -> bool:
    """True for the AT&T faces and data sets whose name says they are faces."""
    name = dataset.name.lower()
    return name.startswith("att-faces") or "face" in name


def _classifier_info(trained: TrainedModel, role: str) -> dict[str, Any]:
    cfg = trained.config
    return {
        "description": (
            f"{role}: {trained.arch}, trained on the "
            f"private training images for {cfg.epochs} epochs with augmentation"
            + (
                f" and FGSM adversarial training at eps {cfg.adversarial_eps:.4f}"
                if cfg.adversarial_eps
                else ""
            )
            + "; never attacked"
        ),
        "arch": trained.arch,
        "held_out_accuracy": trained.test_accuracy,
        "train_accuracy": trained.train_accuracy,
        "adversarial_eps": cfg.adversarial_eps,
        "seed": trained.seed,
        "cache_key": trained.cache_key,
    }


def reference_panel(
    dataset: ImageDataset,
    *,
    cache: ModelCache | None = None,
    faces: bool | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    public: FloatArray | None = None,
) -> tuple[JudgePanel, Evaluator, dict[str, Any]]:
    """The panel, the evaluation model (also used for KNN distance) and its record.

    With ``public`` images the panel is open-set: its judges are built on ``dataset`` plus one
    ``public`` class (half of those images) and abstain on images they rank as public.
    """
    private_classes = dataset.num_classes
    want_faces = is_face_data(dataset) if faces is None else faces
    if public is not None:
        dataset = open_set_dataset(dataset, public)
    trained = train_evaluation_model(dataset, seed=seed, cache=cache, progress=progress)
    evaluator = Evaluator(trained.model, num_classes=private_classes)  # metrics: private classes
    ev_info = _classifier_info(trained, "robust evaluation model (residual CNN)")
    judges: list[Any] = [EvaluationModelJudge(Evaluator(trained.model), info=ev_info)]
    notes: list[str] = []
    if want_faces and face_embedding_available():
        root = Path(cache.root) if cache is not None else None
        judges.append(
            FaceEmbeddingJudge(
                dataset.x_train, dataset.y_train, dataset.num_classes, cache_dir=root
            )
        )
    else:
        if want_faces:
            notes.append(FACE_HINT)
            log.warning("%s", FACE_HINT)
        second = train_second_evaluation_model(dataset, seed=seed, cache=cache)
        judges.append(
            EvaluationModelJudge(
                Evaluator(second.model),
                name="second-evaluation-model",
                info=_classifier_info(second, "second evaluation model (MLP)"),
            )
        )
    judges.append(PixelStructureJudge(dataset.x_train, dataset.y_train, dataset.num_classes))
    if public is not None:
        judges = [RejectPublicJudge(j, private_classes) for j in judges]
        notes.append(
            "open-set judges: each abstains on images it ranks as the attacker's public images"
        )
    return JudgePanel(judges, notes=notes), evaluator, ev_info
