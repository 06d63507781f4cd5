"""Defences for the user's own model: training-time defences retrain the user's architecture
through its factory (or say why they cannot), output defences wrap any loaded model, and a
torch.export program (no architecture to retrain) has its training-time defences skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from invguard.cli import main
from invguard.data import ImageDataset
from invguard.defenses import MID, LabelSmoothing, UserArchitecture
from invguard.errors import InvalidParameterError
from invguard.models import ModelCache
from invguard.models.training import TrainConfig
from tests.models.user_cnn import UserCNN, train_user_cnn

USER_CNN = UserArchitecture("tests.models.user_cnn:build_user_cnn", {"width": 6})


class TinyConvNet(nn.Module):
    """A user's model without batch norm (so that DP-SGD can train it)."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.out = nn.Linear(width * 64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.out(nn.functional.gelu(self.conv(x)).flatten(1))
        return out


def build_tiny(width: int = 4) -> TinyConvNet:
    return TinyConvNet(width)


def test_label_smoothing_retrains_the_factory_architecture(
    digits: ImageDataset, model_cache: ModelCache
) -> None:
    defence = LabelSmoothing(alpha=-0.5, schedule="constant", recipe=TrainConfig(epochs=3))
    first = defence.train(digits, USER_CNN, seed=3)
    assert isinstance(first.model, UserCNN)
    assert first.arch == 'factory:tests.models.user_cnn:build_user_cnn({"width": 6})'
    assert first.test_accuracy is not None
    assert first.test_accuracy > 0.5
    again = defence.train(digits, USER_CNN, seed=3)  # seeded: the same weights
    for (name, a), b in zip(
        first.model.state_dict().items(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    stored = defence.train(digits, USER_CNN, seed=3, cache=model_cache)
    cached = defence.train(digits, USER_CNN, seed=3, cache=model_cache)
    assert cached.from_cache
    assert isinstance(cached.model, UserCNN)
    assert cached.test_accuracy == stored.test_accuracy


def test_reference_only_defences_refuse_a_factory_in_one_line(digits: ImageDataset) -> None:
    with pytest.raises(InvalidParameterError) as info:
        MID(beta=0.001).train(digits, USER_CNN)
    text = str(info.value)
    assert "cannot retrain your factory's model 'tests.models.user_cnn:build_user_cnn'" in text
    assert "dp-sgd, label-smoothing" in text
    assert "\n" not in text


def test_defend_evaluate_with_a_factory_and_a_program(
    tmp_path: Path,
    digits: ImageDataset,
    model_cache: ModelCache,
    capsys: pytest.CaptureFixture[str],
) -> None:
    torch.manual_seed(0)
    tiny = build_tiny()
    opt = torch.optim.Adam(tiny.parameters(), lr=1e-2)
    x, y = torch.from_numpy(digits.x_train), torch.from_numpy(digits.y_train)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(tiny(x), y).backward()  # type: ignore[no-untyped-call]
        opt.step()
    save_file(
        {k: v.contiguous() for k, v in tiny.state_dict().items()},
        str(tmp_path / "tiny.safetensors"),
    )
    cnn = train_user_cnn(digits.x_train, digits.y_train, epochs=2)
    program = torch.export.export(
        cnn.eval(), (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("b")},)
    )
    torch.export.save(program, tmp_path / "mine.pt2")
    attacks = [
        {"name": "miface", "classes": [0, 1], "budget": {"iterations": 10}},
        {"name": "miface-zo", "classes": [0, 1], "budget": {"iterations": 3}},
    ]
    dp_sgd = {"name": "dp-sgd", "params": {"epsilon": 50.0, "epochs": 1, "delta": 1e-4}}
    defenses: dict[str, Any] = {
        "max_accuracy_drop": 1.0,
        "queries": 2000,
        "training": [dp_sgd, {"name": "mid", "params": {"beta": 0.001}}],
        "output": [{"name": "round", "params": {"decimals": 1}}],
    }
    factory = "tests.defenses.test_defend_user_model:build_tiny"
    cfg = {
        "name": "user models with defences",
        "systems": [
            {
                "id": "factory",
                "target": {
                    "type": "pytorch",
                    "model": "tiny.safetensors",
                    "factory": factory,
                    "kwargs": {"width": 4},
                },
                "data": {"builtin": "digits"},
                "attacks": attacks,
                "defenses": defenses,
            },
            {
                "id": "program",
                "target": {"type": "pytorch", "program": "mine.pt2"},
                "data": {"builtin": "digits"},
                "attacks": attacks,
                "defenses": {**defenses, "training": [dp_sgd]},
            },
        ],
    }
    path = tmp_path / "invguard.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg))))  # no anchors for shared parts
    out = tmp_path / "d"
    common = ["--cache-dir", str(model_cache.root), "--history-db", str(tmp_path / "h.db")]
    code = main(["defend", "evaluate", "-c", str(path), "--out", str(out), *common, "-q", "--json"])
    stdout, err = capsys.readouterr()
    assert code == 1, err  # requested defences that could not run (mid, dp-sgd on the program)
    data = json.loads(stdout)
    rows_by_system = {
        sid: {r["name"].split("(")[0]: r for r in ev["rows"]} for sid, ev in data.items()
    }
    assert (out / "factory" / "defenses.json").is_file()

    rows = rows_by_system["factory"]
    dp = rows["dp-sgd"]
    assert dp["error"] is None, dp["error"]
    assert dp["test_accuracy"] is not None
    assert "miface" in dp["attacks"]
    assert "cannot retrain your factory's model" in rows["mid"]["error"]
    assert rows["round"]["error"] is None
    assert "miface-zo" in rows["round"]["attacks"]

    rows = rows_by_system["program"]
    skipped = rows["dp-sgd"]["error"]
    assert skipped.startswith("skipped: a torch.export program carries no architecture")
    assert rows["round"]["error"] is None
    assert "miface" in rows["none"]["attacks"]
