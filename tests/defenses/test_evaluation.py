"""Defence evaluation: the comparison logic (pure), and a real run on digits models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invguard.attacks import MIFace
from invguard.data import ImageDataset
from invguard.defenses import LabelOnly, RoundScores, TopK
from invguard.defenses.evaluation import (
    AttackScore,
    DefenseEvaluation,
    DefenseRow,
    compare,
    evaluate_defenses,
)
from invguard.defenses.training import DPSGD, LabelSmoothing
from invguard.errors import InvalidParameterError
from invguard.metrics import Evaluator
from invguard.models import ModelCache, train_target
from invguard.report.defenses import render_text, write_defense_report
from invguard.targets import TorchTarget


def _row(name: str, kind: str, acc: float, **top1: float) -> DefenseRow:
    return DefenseRow(
        name=name,
        kind=kind,
        defense=name,
        params={},
        description=name,
        test_accuracy=acc,
        attacks={a: AttackScore(a, v, v, 10.0, 100, 1.0) for a, v in top1.items()},
    )


ROWS = [
    _row("none", "none", 0.95, miface=0.9, zo=0.6),
    _row("ls-2", "training", 0.94, miface=0.4),  # within 3 points, lower leakage
    _row("dp", "training", 0.50, miface=0.05),  # lowest leakage, far outside the budget
    _row("ls+", "training", 0.96, miface=0.95),  # more accurate, leaks more: on the front
    _row("worse", "training", 0.90, miface=0.95),  # dominated
    _row("round1", "output", 0.95, zo=0.3),
    _row("labels", "output", 0.95, brep=0.1),  # a different attack: still the API threat
]


def test_compare_recommends_the_lowest_leakage_within_the_accuracy_budget() -> None:
    t = compare("white-box", ROWS, ["miface"], 0.03)
    assert t is not None
    assert t.candidates == ["none", "ls-2", "dp", "ls+", "worse"]
    assert t.recommended == "ls-2"
    assert set(t.pareto) == {"none", "ls-2", "dp", "ls+"}  # "worse" is dominated
    assert "miface top-1 0.900 -> 0.400" in t.recommendation
    assert "test accuracy 0.950 -> 0.940" in t.recommendation
    # a budget wide enough for DP-SGD picks it
    wide = compare("white-box", ROWS, ["miface"], 0.5)
    assert wide is not None
    assert wide.recommended == "dp"
    # no budget at all: nothing beats the undefended model on accuracy, so no defence is advised
    none = compare("white-box", ROWS[:1] + ROWS[4:5], ["miface"], 0.0)
    assert none is not None
    assert none.recommended == "none"
    assert none.recommendation.startswith("No evaluated training defence lowered")


def test_compare_judges_output_defences_by_their_strongest_fitting_black_box_attack() -> None:
    t = compare("black-box", ROWS, ["zo", "brep"], 0.03)
    assert t is not None
    assert t.candidates == ["none", "round1", "labels"]
    assert t.recommended == "labels"
    assert compare("black-box", ROWS, ["learned"], 0.03) is None  # never run on the baseline


def test_evaluation_round_trips_through_json() -> None:
    ev = DefenseEvaluation(
        dataset="d",
        arch="mlp",
        num_classes=10,
        max_accuracy_drop=0.03,
        rows=ROWS,
        threats={
            k: t
            for k, t in (
                ("white-box", compare("white-box", ROWS, ["miface"], 0.03)),
                ("black-box", compare("black-box", ROWS, ["zo", "brep"], 0.03)),
            )
            if t is not None
        },
        seconds=1.0,
    )
    back = DefenseEvaluation.from_dict(json.loads(json.dumps(ev.to_dict())))
    assert back.to_dict() == ev.to_dict()
    text = render_text(back)
    assert "RECOMMENDED (white-box)" in text
    assert "ls-2" in text


@pytest.fixture(scope="module")
def digits_softmax(digits: ImageDataset, model_cache: ModelCache) -> TorchTarget:
    trained = train_target(digits, "softmax", cache=model_cache)
    return TorchTarget(trained.model, input_shape=digits.image_shape)


def test_bad_parameters_are_rejected_with_the_parameter_named(
    digits: ImageDataset, digits_softmax: TorchTarget, digits_evaluator: Evaluator
) -> None:
    with pytest.raises(InvalidParameterError, match="'max_accuracy_drop' parameter"):
        evaluate_defenses(
            digits,
            digits_softmax,
            evaluator=digits_evaluator,
            white_box={},
            black_box={},
            max_accuracy_drop=-0.1,
        )
    with pytest.raises(InvalidParameterError, match="'arch' parameter is required"):
        evaluate_defenses(
            digits,
            digits_softmax,
            evaluator=digits_evaluator,
            training=[LabelSmoothing(alpha=-1.0)],
            white_box={},
            black_box={},
        )


@pytest.mark.slow
def test_real_evaluation_on_digits_softmax(
    digits: ImageDataset,
    digits_softmax: TorchTarget,
    digits_evaluator: Evaluator,
    model_cache: ModelCache,
    tmp_path: Path,
) -> None:
    """DP-SGD at epsilon 1 costs accuracy and leakage; the output defences keep every label; a
    top-k larger than the classes is reported on its row, not raised."""
    ev = evaluate_defenses(
        digits,
        digits_softmax,
        evaluator=digits_evaluator,
        arch="softmax",
        training=[DPSGD(epsilon=1.0)],
        output=[RoundScores(decimals=1), LabelOnly(), TopK(k=11)],
        white_box={"miface": MIFace()},
        black_box={},
        cache=model_cache,
        max_accuracy_drop=0.03,
    )
    base, dp = ev.rows[0], ev.row("dp-sgd(epsilon=1.0)")
    assert base.attacks["miface"].top1 >= 0.9
    assert base.test_accuracy is not None
    assert base.test_accuracy >= 0.9
    assert dp.test_accuracy is not None
    assert dp.test_accuracy < base.test_accuracy - 0.03
    assert dp.attacks["miface"].top1 <= base.attacks["miface"].top1 - 0.2
    assert dp.facts["epsilon_spent"] <= 1.0
    # outside the 3-point budget: the recommendation says no defence fits it
    assert ev.threats["white-box"].recommended == "none"
    assert "dp-sgd(epsilon=1.0)" in ev.threats["white-box"].pareto
    for name in ("round(decimals=1)", "label_only"):
        assert ev.row(name).test_accuracy == base.test_accuracy
        assert ev.row(name).error is not None  # no black-box attack was given
    assert "'k' parameter must be <= the number of classes (10)" in (
        ev.row("top_k(k=11)").error or ""
    )
    paths = write_defense_report(ev, tmp_path / "out")
    html = paths["html"].read_text()
    assert "dp-sgd(epsilon=1.0)" in html
    assert "data:image/png;base64," in html
    with Image.open(paths["png"]) as img:
        assert img.size[0] > 400
    data = json.loads(paths["json"].read_text())
    assert data["threats"]["white-box"]["recommended"] == "none"
    assert np.isclose(data["chance"], 0.1)


def test_an_attack_that_cannot_run_is_reported_on_its_row(
    digits: ImageDataset, digits_softmax: TorchTarget, digits_evaluator: Evaluator
) -> None:
    """The label-only attack needs auxiliary images; without them its failure is recorded on the
    row and the evaluation goes on."""
    from invguard.attacks import BoundaryRepulsion

    ev = evaluate_defenses(
        digits,
        digits_softmax,
        evaluator=digits_evaluator,
        output=[LabelOnly()],
        white_box={},
        black_box={"brep": BoundaryRepulsion()},
    )
    assert (ev.rows[0].error or "").startswith("brep: ")
    assert ev.row("label_only").attacks == {}
    assert ev.threats == {}
