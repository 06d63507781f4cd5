"""Independent judges of reconstructions, calibration rows and the verdict.

>>> from invguard.judges import reference_panel, judge_run       # doctest: +SKIP
>>> panel, evaluator, _ = reference_panel(dataset, cache=cache)   # doctest: +SKIP
>>> judgement = judge_run(panel, dataset, recons, classes, target)  # doctest: +SKIP
>>> judgement.summary()["verdict_top1"]                           # doctest: +SKIP
"""

from invguard.judges.base import Judge, JudgeVotes, votes
from invguard.judges.calibration import CALIBRATION_ROWS, CalibrationSet, fooling_images
from invguard.judges.classifier import EvaluationModelJudge
from invguard.judges.evaluate import (
    Calibration,
    Judgement,
    calibrate,
    headline,
    judge_images,
    judge_run,
    run_calibration,
)
from invguard.judges.face_embedding import (
    FaceEmbeddingJudge,
    face_detection_rate,
    face_detections,
    face_embedding_available,
)
from invguard.judges.panel import (
    MIN_AGREE,
    VERDICT_RULE,
    JudgePanel,
    PanelJudgement,
    agreement,
    kappa,
    verdict,
)
from invguard.judges.pixel import PixelStructureJudge, pairwise_ssim
from invguard.judges.reference import is_face_data, reference_evaluator, reference_panel

__all__ = [
    "CALIBRATION_ROWS",
    "MIN_AGREE",
    "VERDICT_RULE",
    "Calibration",
    "CalibrationSet",
    "EvaluationModelJudge",
    "FaceEmbeddingJudge",
    "Judge",
    "JudgePanel",
    "JudgeVotes",
    "Judgement",
    "PanelJudgement",
    "PixelStructureJudge",
    "agreement",
    "calibrate",
    "face_detection_rate",
    "face_detections",
    "face_embedding_available",
    "fooling_images",
    "headline",
    "is_face_data",
    "judge_images",
    "judge_run",
    "kappa",
    "pairwise_ssim",
    "reference_evaluator",
    "reference_panel",
    "run_calibration",
    "verdict",
    "votes",
]
