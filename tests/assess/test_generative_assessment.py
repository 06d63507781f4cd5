"""The generative-prior attacks (PPA, GMI, PLG-MI) in an assessment: their registry entries and
budgets, the ``auto`` rule (PPA for convolutional models), one-line config errors naming the field
(fast), and a small PPA through `invguard assess` on the faces CNN (slow)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from invguard.assess.config import Budget, ConfigError, SystemConfig, load_config
from invguard.assess.findings import measure_leakage, measured_finding, severity_of
from invguard.assess.registry import (
    ATTACK_REGISTRY,
    AUTO_WHITE_BOX_RULE,
    build_attack,
    select_attacks,
)
from invguard.assess.systems import BuiltTarget, expand_attacks, prior_fingerprint
from invguard.attacks.generative import IFGMI, PPA
from invguard.cli import main
from invguard.data import ImageDataset
from invguard.models import ModelCache, build_model
from invguard.priors import PUBLIC_FACE_INSTALL
from invguard.targets import Capability, TorchTarget

WHITE = frozenset(Capability) - {Capability.LOGITS}


def _reasons(skipped: list[dict[str, str]]) -> dict[str, str]:
    return {s["attack"]: s["reason"] for s in skipped}


def test_registry_entries_rules_references_and_budgets() -> None:
    for name, rule, paper in (
        ("ppa", "IG-MI-005", "PPA, Struppek et al. 2022"),
        ("gmi", "IG-MI-006", "GMI, Zhang et al. 2020"),
        ("plg", "IG-MI-007", "PLG-MI, Yuan et al. 2023"),
        ("ifgmi", "IG-MI-008", "IF-GMI, Qiu et al. 2024"),
        ("ppdg", "IG-MI-009", "PPDG-MI, Peng et al. 2024"),
    ):
        info = ATTACK_REGISTRY[name]
        assert (info.rule_id, info.access, info.iterations_field) == (rule, "white-box", "steps")
        assert info.needs_prior
        assert paper in info.title
        # the same mapping as every other attack: OWASP ML03:2023 and MITRE ATLAS AML.T0024.001
        finding, _ = measured_finding(
            system="s",
            rule_id=info.rule_id,
            title=info.title,
            attack=name,
            access=info.access,
            outcomes=[
                {
                    "key": "k",
                    "seed": 0,
                    "metrics": {"top1_accuracy": 0.5, "top5_accuracy": 0.8, "knn_distance": 1.0,
                                "ssim": 0.5, "psnr": 15.0, "target_confidence": 0.9},
                    "per_class": [{}] * 40,
                    "attack_summary": {"queries": 10, "seconds": 1.0},
                }
            ],
            num_classes=40,
        )  # fmt: skip
        assert finding.id == f"{rule}/s/{name}"
        assert {r.id for r in finding.references} >= {"OWASP ML03:2023", "AML.T0024.001"}
    assert ATTACK_REGISTRY["plg"].needs_auxiliary
    assert not ATTACK_REGISTRY["ppa"].needs_auxiliary  # the public face generator may do
    assert not ATTACK_REGISTRY["miface"].needs_prior
    # the iteration budget is the latent search's steps; params keep the rest
    attack = build_attack("ppa", {"pool_size": 64, "steps": 99}, Budget(iterations=10))
    assert isinstance(attack, PPA)
    assert (attack.steps, attack.pool_size) == (10, 64)

    from invguard.report.assessment import _rules

    rules = {r["id"]: r for r in _rules({})}
    assert rules["IG-MI-005"]["name"] == "PpaModelInversion"
    assert rules["IG-MI-008"]["name"] == "IfgmiModelInversion"
    assert rules["IG-MI-009"]["name"] == "PpdgModelInversion"
    assert {"OWASP-ML03", "AML.T0024.001"} <= set(rules["IG-MI-007"]["properties"]["tags"])


def test_auto_runs_ifgmi_for_convolutional_models_where_a_prior_exists(
    faces: ImageDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    cnn = build_model("cnn", faces.image_shape, faces.num_classes)
    mlp = build_model("mlp", faces.image_shape, faces.num_classes)

    chosen, skipped = select_attacks(WHITE, has_auxiliary=False, model=cnn, faces=True)
    assert chosen == ["ifgmi", "miface-zo"]
    reasons = _reasons(skipped)
    assert reasons["miface"] == reasons["ppa"] == reasons["plg"] == AUTO_WHITE_BOX_RULE

    chosen, _ = select_attacks(WHITE, has_auxiliary=False, model=mlp, faces=True)
    assert chosen == ["miface", "miface-zo"]  # MLP and softmax targets keep MI-FACE

    # a CNN on data with no prior to search (not faces, no public images): MI-FACE, and why
    chosen, skipped = select_attacks(WHITE, has_auxiliary=False, model=cnn, faces=False)
    assert chosen[0] == "miface"
    assert _reasons(skipped)["ifgmi"] == (
        "needs an image prior: set the system's 'auxiliary' (public images to train one); "
        "auto runs miface instead"
    )
    chosen, _ = select_attacks(WHITE, has_auxiliary=True, model=cnn, faces=False)
    assert chosen[0] == "ifgmi"  # a DCGAN trained on the auxiliary images

    from invguard.errors import DataError

    def missing() -> Path:
        raise DataError("not installed")

    monkeypatch.setattr("invguard.attacks.priors_setup.public_face_weights_path", missing)
    chosen, skipped = select_attacks(WHITE, has_auxiliary=False, model=cnn, faces=True)
    assert chosen[0] == "miface"
    assert PUBLIC_FACE_INSTALL in _reasons(skipped)["ifgmi"]


def test_auto_expands_to_ifgmi_with_the_iteration_budget_as_steps(faces: ImageDataset) -> None:
    system = SystemConfig.model_validate(
        {
            "id": "cnn",
            "target": {"type": "pytorch", "reference": {"arch": "cnn"}},
            "data": {"builtin": "att-faces"},
            "attacks": [{"name": "auto", "seeds": [0, 1], "budget": {"iterations": 10}}],
        }
    )
    model = build_model("cnn", faces.image_shape, faces.num_classes)
    built = BuiltTarget(TorchTarget(model, input_shape=faces.image_shape), {}, "fingerprint")
    expanded, skipped = expand_attacks(system, built, faces)
    assert [a.name for a in expanded.attacks] == ["ifgmi", "miface-zo"]
    ifgmi = expanded.attacks[0]
    assert ifgmi.seeds == [0, 1]
    attack = build_attack(ifgmi.name, ifgmi.params, ifgmi.budget)
    assert isinstance(attack, IFGMI)
    assert (attack.steps, attack.feature_steps) == (10, 10)  # each stage within the budget
    listed = build_attack(
        "ifgmi", {"feature_layers": [3], "feature_steps": 5}, Budget(iterations=8)
    )
    assert isinstance(listed, IFGMI)
    assert (listed.feature_layers, listed.steps, listed.feature_steps) == ((3,), 8, 5)
    assert {s["attack"] for s in skipped} >= {"miface", "gmi", "plg"}


def _system(**overrides: Any) -> dict[str, Any]:
    system: dict[str, Any] = {
        "id": "digits",
        "target": {"type": "pytorch", "reference": {"arch": "softmax"}},
        "data": {"builtin": "digits"},
        "attacks": [{"name": "ppa"}],
    }
    system.update(overrides)
    return system


def _write(tmp_path: Path, system: dict[str, Any]) -> Path:
    path = tmp_path / "invguard.yaml"
    path.write_text(yaml.safe_dump({"systems": [system]}))
    return path


@pytest.mark.parametrize(
    ("system", "message"),
    [
        (_system(attacks=[{"name": "plg"}]),
         "systems[0].attacks[0].name: attack 'plg' needs auxiliary (public) images to train its "
         "conditional GAN on, pseudo-labelled by the target: set the system's 'auxiliary'"),
        (_system(attacks=[{"name": "miface"}, {"name": "miface", "prior": "trained"}]),
         "systems[0].attacks[1].prior: attack 'miface' takes no prior: 'prior' applies to the "
         "generative-prior attacks ifgmi, ppdg, ppa and gmi"),
        (_system(attacks=[{"name": "plg", "prior": "trained"}],
                 auxiliary={"builtin": "att-faces-public10"}),
         "systems[0].attacks[0].prior: attack 'plg' takes no prior"),
        (_system(attacks=[{"name": "auto", "prior": "trained"}]),
         "systems[0].attacks[0].prior: attack 'auto' takes no prior"),
        (_system(attacks=[{"name": "ppa", "params": {"steps": 0}}]),
         "systems[0].attacks[0]: The 'steps' parameter must be an int >= 1, got 0"),
        (_system(attacks=[{"name": "gmi", "params": {"stpes": 5}}]),
         "systems[0].attacks[0]: unknown parameter 'stpes' for attack 'gmi'"),
    ],
)  # fmt: skip
def test_config_errors_name_the_field(tmp_path: Path, system: dict[str, Any], message: str) -> None:
    path = _write(tmp_path, system)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "\n" not in text
    assert re.match(rf"{re.escape(str(path))}(:\d+)?: {re.escape(message)}", text), text


@pytest.mark.parametrize(
    ("system", "message"),
    [
        (_system(),
         "systems[0].attacks[0]: attack 'ppa' needs an image prior: set the system's 'auxiliary' "
         "(public images to train a generator on) or 'prior' (a generator file)"),
        (_system(attacks=[{"name": "gmi", "prior": "public-faces"}]),
         "systems[0].attacks[0].prior: attack 'gmi' weighs the discriminator's realism term "
         "(prior_weight > 0), but the 'public-faces' prior has no discriminator: set prior: "
         "trained (with the system's 'auxiliary') or params: {prior_weight: 0}"),
        (_system(attacks=[{"name": "ppa", "prior": "generators/G.safetensors"}]),
         "systems[0].attacks[0].prior: generator file not found: generators/G.safetensors"),
    ],
)  # fmt: skip
def test_prior_problems_stop_the_assessment_before_any_job(
    tmp_path: Path,
    model_cache: ModelCache,
    capsys: pytest.CaptureFixture[str],
    system: dict[str, Any],
    message: str,
) -> None:
    """Checked when the systems are prepared (they need the data and the target): exit 2, one
    line naming the field, no report and no history."""
    path = _write(tmp_path, system)
    out = tmp_path / "out"
    code = main(["assess", "-c", str(path), "--out", str(out), "--cache-dir",
                 str(model_cache.root), "--no-audit", "-q"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0
    assert f"{path}: {message}" in err, err
    assert not out.exists()
    assert not (tmp_path / "invguard-history.db").exists()


def test_job_keys_follow_the_prior(tmp_path: Path) -> None:
    from invguard.assess.config import AttackConfig

    gen = tmp_path / "G.safetensors"
    gen.write_bytes(b"one")
    resolve = lambda p: p if p.is_absolute() else tmp_path / p  # noqa: E731
    auto = prior_fingerprint(AttackConfig(name="ppa"), resolve, None)
    trained = prior_fingerprint(AttackConfig(name="ppa", prior="trained"), resolve, "aux")
    first = prior_fingerprint(AttackConfig(name="ppa", prior="G.safetensors"), resolve, None)
    gen.write_bytes(b"two")
    second = prior_fingerprint(AttackConfig(name="ppa", prior="G.safetensors"), resolve, None)
    assert auto == {"kind": "auto", "auxiliary": None}
    assert trained == {"kind": "trained", "auxiliary": "aux"}
    assert first["file"] != second["file"]  # a changed generator file is a new job


@pytest.mark.slow
def test_a_small_ppa_assessment_of_the_faces_cnn(
    tmp_path: Path, model_cache: ModelCache, capsys: pytest.CaptureFixture[str]
) -> None:
    """PPA (10 steps, a pool of 64 latents) with the public face generator against the cached
    reference CNN: a measured finding of its own rule, judged by the panel, mapped like the others;
    a second run reuses the job."""
    system = {
        "id": "faces-cnn",
        "target": {"type": "pytorch", "reference": {"arch": "cnn"}},
        "data": {"builtin": "att-faces"},
        "attacks": [{"name": "ppa", "params": {"steps": 10, "pool_size": 64}}],
    }
    path = _write(tmp_path, system)
    base = ["assess", "-c", str(path), "--cache-dir", str(model_cache.root), "--no-audit", "-q",
            "--fail-on", "none"]  # fmt: skip
    assert main(base) == 0
    report = json.loads((tmp_path / "invguard-assessment" / "assessment.json").read_text())
    s = report["systems"][0]
    assert [(j["attack"], j["status"]) for j in s["jobs"]] == [("ppa", "ok")]
    finding = next(f for f in s["findings"] if f["kind"] == "measured")
    ev = finding["evidence"]
    assert finding["rule_id"] == "IG-MI-005"
    assert finding["id"] == "IG-MI-005/faces-cnn/ppa"
    assert (ev["attack"], ev["access"], ev["identities_attacked"]) == ("ppa", "white-box", 40)
    assert ev["prior"] == "public-faces"
    # the finding's number is the judges' verdict, every judge shown; severity follows the rules
    assert 0.0 <= ev["top1_accuracy"] <= 1.0
    assert set(ev["judges"]) >= {"evaluation-model", "pixel-ssim"}
    assert finding["severity"] == severity_of(measure_leakage(ev["top1_accuracy"], 40, 40))
    assert ev["queries"] > 0
    refs = {r["id"] for r in finding["references"]}
    assert {"OWASP ML03:2023", "AML.T0024.001", "AML.M0001"} <= refs
    sarif = json.loads((tmp_path / "invguard-assessment" / "assessment.sarif").read_text())
    assert "IG-MI-005" in {r["ruleId"] for r in sarif["runs"][0]["results"]}

    capsys.readouterr()
    assert main(base) == 0
    assert "1 jobs, 1 reused" in capsys.readouterr().out
    print(f"PPA verdict {ev['top1_accuracy']:.3f}, severity {finding['severity']}")  # for the log
