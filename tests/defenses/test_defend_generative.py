"""Generative-prior attacks in the defence evaluation: the white-box suite follows the ``auto`` rule
(IF-GMI for convolutional models, MI-FACE for the others), the image prior is prepared once and shared
by every model (PLG-MI's for each model), a prior that cannot be prepared is reported on its row
(fast), and a small PPA through `invguard defend evaluate` on the faces CNN (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from invguard.assess.config import SystemConfig
from invguard.assess.defend import attack_suites, evaluation_key, prior_provider
from invguard.assess.systems import BuiltTarget
from invguard.attacks.generative import PPA
from invguard.cli import main
from invguard.data import ImageDataset
from invguard.defenses.evaluation import evaluate_defenses
from invguard.errors import DataError
from invguard.metrics import Evaluator
from invguard.models import ModelCache, build_model, train_target
from invguard.targets import Target, TorchTarget


def _system(attacks: list[dict[str, Any]], **extra: Any) -> SystemConfig:
    return SystemConfig.model_validate(
        {
            "id": "faces",
            "target": {"type": "pytorch", "reference": {"arch": "cnn"}},
            "data": {"builtin": "att-faces"},
            "attacks": attacks,
            "defenses": {"training": [{"name": "label-smoothing", "params": {"alpha": -1.0}}]},
            **extra,
        }
    )


def _built(arch: str, faces: ImageDataset) -> BuiltTarget:
    model = build_model(arch, faces.image_shape, faces.num_classes)
    return BuiltTarget(TorchTarget(model, input_shape=faces.image_shape), {}, arch)


def test_white_box_suite_follows_the_auto_rule(faces: ImageDataset) -> None:
    only_api = _system([{"name": "miface-zo"}])
    white, black = attack_suites(only_api, _built("cnn", faces), False, faces)
    assert list(white) == ["ifgmi"]  # a CNN: the generative-prior attack, public face generator
    assert list(black) == ["miface-zo"]
    white, _ = attack_suites(only_api, _built("mlp", faces), False, faces)
    assert list(white) == ["miface"]  # MLP and softmax targets keep MI-FACE
    # listed attacks keep their params and budgets (iterations are PPA's steps)
    listed = _system([{"name": "ppa", "params": {"pool_size": 64}, "budget": {"iterations": 10}}])
    white, _ = attack_suites(listed, _built("cnn", faces), False, faces)
    assert isinstance(white["ppa"], PPA)
    assert (white["ppa"].steps, white["ppa"].pool_size) == (10, 64)


def test_priors_are_prepared_once_except_plg_per_model(
    faces: ImageDataset, model_cache: ModelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []

    def fake_build_prior(atk: Any, dataset: Any, target: Target, *args: Any, **kw: Any) -> object:
        calls.append((atk.name, id(target)))
        return object()

    monkeypatch.setattr("invguard.assess.defend.build_prior", fake_build_prior)
    system = _system(
        [{"name": "ppa"}, {"name": "plg"}, {"name": "miface"}],
        auxiliary={"builtin": "att-faces-public10"},
    )
    white, _ = attack_suites(system, _built("cnn", faces), True, faces)
    assert list(white) == ["ppa", "plg", "miface"]
    aux = np.zeros((3, *faces.image_shape), np.float32)
    prior = prior_provider(system, faces, white, model_cache, Path, aux, seed=0)
    one, two = _built("cnn", faces).target, _built("cnn", faces).target
    assert prior("ppa", one) is prior("ppa", two)  # depends on the public data only
    assert prior("plg", one) is not prior("plg", two)  # pseudo-labelled by each model
    assert prior("miface", one) is None
    assert [name for name, _ in calls] == ["ppa", "plg", "plg"]


def test_a_prior_that_cannot_be_prepared_is_reported_on_its_row(
    digits: ImageDataset, digits_evaluator: Evaluator, model_cache: ModelCache
) -> None:
    trained = train_target(digits, "softmax", cache=model_cache)
    target = TorchTarget(trained.model, input_shape=digits.image_shape)

    def no_prior(name: str, target: Target) -> None:
        raise DataError("no public images to train a generator on")

    ev = evaluate_defenses(
        digits,
        target,
        evaluator=digits_evaluator,
        white_box={"ppa": PPA(steps=1, pool_size=0)},
        black_box={},
        priors=no_prior,
    )
    assert ev.rows[0].error == "ppa: no public images to train a generator on"
    assert ev.rows[0].attacks == {}


def test_evaluation_key_follows_the_priors_and_keeps_the_others() -> None:
    system = _system([{"name": "miface"}])
    assert system.defenses is not None
    parts: dict[str, Any] = {
        "system_fingerprint": "t",
        "data_fingerprint": "d",
        "defenses": system.defenses,
        "attacks": {},
        "arch": "cnn",
        "auxiliary": None,
    }
    plain = evaluation_key(**parts)
    assert evaluation_key(**parts, priors={}) == plain  # no generative attack: the key as before
    auto = evaluation_key(**parts, priors={"ppa": {"kind": "auto", "auxiliary": None}})
    trained = evaluation_key(**parts, priors={"ppa": {"kind": "trained", "auxiliary": "a"}})
    assert len({plain, auto, trained}) == 3


def test_plg_without_auxiliary_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    system = _system([{"name": "miface"}]).model_dump(mode="json", exclude_none=True)
    system["attacks"] = [{"name": "plg"}]
    path = tmp_path / "invguard.yaml"
    path.write_text(yaml.safe_dump({"systems": [system]}))
    assert main(["defend", "evaluate", "-c", str(path), "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "systems[0].attacks[0].name: attack 'plg' needs auxiliary (public) images" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_defend_evaluate_runs_ppa_against_every_defended_cnn(
    tmp_path: Path,
    model_cache: ModelCache,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A small PPA (10 steps, 64 pooled latents) with the public face generator against the cached
    faces CNN and its negatively label-smoothed retraining: both rows get a measured verdict, the
    prior is prepared once for both, and the white-box comparison is PPA's."""
    import invguard.assess.defend as defend
    from invguard.assess.systems import build_prior as real_build_prior

    prepared: list[str] = []

    def counting(*args: Any, **kw: Any) -> Any:
        prior = real_build_prior(*args, **kw)
        prepared.append(prior.name if prior is not None else "none")
        return prior

    monkeypatch.setattr(defend, "build_prior", counting)
    cfg = {
        "systems": [
            {
                "id": "faces-cnn",
                "target": {"type": "pytorch", "reference": {"arch": "cnn"}},
                "data": {"builtin": "att-faces"},
                "attacks": [{"name": "ppa", "params": {"steps": 10, "pool_size": 64}}],
                "defenses": {
                    "max_accuracy_drop": 0.3,
                    "queries": 100,  # the default black-box attack on the undefended model
                    "training": [{"name": "label-smoothing", "params": {"alpha": -1.0}}],
                },
            }
        ]
    }
    path = tmp_path / "invguard.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "d"
    code = main(["defend", "evaluate", "-c", str(path), "--out", str(out), "--cache-dir",
                 str(model_cache.root), "--history-db", str(tmp_path / "h.db"), "-q"])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0
    assert "ppa verdict" in text
    data = json.loads((out / "defenses.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert set(rows) == {"none", "label-smoothing(alpha=-1.0)"}
    for row in rows.values():
        ppa = row["attacks"]["ppa"]
        assert 0.0 <= ppa["top1"] <= 1.0  # the judges' verdict
        assert ppa["evaluation_model_top1"] is not None
        assert set(ppa["judges_top1"]) >= {"evaluation-model", "pixel-ssim"}
        assert ppa["queries"] > 0
    assert prepared == ["public-faces"]  # one prior for both models
    white = data["threats"]["white-box"]
    assert white["attacks"] == ["ppa"]
    assert white["recommended"] in rows
    verdicts = {k: round(r["attacks"]["ppa"]["top1"], 3) for k, r in rows.items()}
    print(f"PPA verdicts {verdicts}, recommended {white['recommended']}")  # for the log
