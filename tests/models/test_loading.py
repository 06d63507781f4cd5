"""The user's own model from a file: torch.export programs, factories plus weights, and the
formats that are refused because loading them would unpickle code."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from invguard.api import invert
from invguard.attacks import MIFace
from invguard.data import ImageDataset
from invguard.errors import InvalidParameterError, InvGuardError, ModelError
from invguard.models.loading import ExportedModule, load_user_model
from invguard.targets import TorchTarget
from tests.models.user_cnn import UserCNN, train_user_cnn

FACTORY = "tests.models.user_cnn:build_user_cnn"
SHAPE = (1, 8, 8)


class _Marker:
    """Unpickling this creates ``path``: the stand-in for code a malicious file would run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.path,))


def _export(model: torch.nn.Module, path: Path, *, batch: int | None = None) -> Path:
    example = torch.zeros(batch or 2, *SHAPE)
    dynamic = None if batch else ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(model.eval(), (example,), dynamic_shapes=dynamic), path)
    return path


@pytest.fixture(scope="module")
def user_model(digits: ImageDataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("user-model")
    model = train_user_cnn(digits.x_train, digits.y_train, epochs=4)
    weights = root / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    torch.save(model.state_dict(), root / "mine.pt")
    return {
        "program": _export(model, root / "mine.pt2"),
        "program_b1": _export(model, root / "mine-b1.pt2", batch=1),
        "weights": weights,
        "state_dict": root / "mine.pt",
        "root": root,
    }


def _load(path: Path, **kw: object) -> torch.nn.Module:
    model, _ = load_user_model(path, shape=SHAPE, num_classes=10, **kw)  # type: ignore[arg-type]
    return model


def test_program_and_factory_agree_on_predictions_and_attack(
    user_model: dict[str, Path], digits: ImageDataset
) -> None:
    program = _load(user_model["program"])
    assert isinstance(program, ExportedModule)
    factory = _load(user_model["weights"], factory=FACTORY)
    assert isinstance(factory, UserCNN)
    assert not factory.training
    from_pt = _load(user_model["state_dict"], factory=FACTORY, kwargs={"width": 12})
    fixed = _load(user_model["program_b1"])
    x = torch.from_numpy(digits.x_test)
    with torch.no_grad():
        ref = factory(x)
        assert (ref.argmax(1).numpy() == digits.y_test).mean() > 0.7  # it learnt something
        for other in (program, from_pt, fixed):
            assert torch.allclose(other(x), ref, atol=1e-4)
    results = [
        invert(m, input_shape=SHAPE, attack=MIFace(max_iterations=20), classes=[0, 3, 7], rng=0)
        for m in (program, factory)
    ]
    np.testing.assert_allclose(results[0].reconstructions, results[1].reconstructions, atol=1e-3)
    np.testing.assert_allclose(
        results[0].target_confidence, results[1].target_confidence, atol=1e-3
    )


def test_program_gives_input_gradients(user_model: dict[str, Path]) -> None:
    target = TorchTarget(_load(user_model["program"]), input_shape=SHAPE)
    x = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(0))
    _, grad = target.class_gradient(x, torch.tensor([0, 1, 2, 3]))
    assert grad.shape == x.shape
    assert float(grad.abs().sum()) > 0
    _, grad1 = TorchTarget(_load(user_model["program_b1"]), input_shape=SHAPE).class_gradient(
        x, torch.tensor([0, 1, 2, 3])
    )
    assert torch.allclose(grad, grad1, atol=1e-5)


def _one_line(exc: pytest.ExceptionInfo[BaseException], *needles: str) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    assert "weights_only=False" not in text
    for n in needles:
        assert n in text, text
    return text


def _rewrite(src: Path, dst: Path, change: dict[str, bytes]) -> Path:
    """Copy a zip archive, replacing (or adding) the entries whose name ends in a key of change."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        names = zin.namelist()
        root = names[0].split("/", 1)[0]
        for name in names:
            tail = name.split("/", 1)[1]
            zout.writestr(name, change.pop(tail, zin.read(name)))
        for tail, data in change.items():
            zout.writestr(f"{root}/{tail}", data)
    return dst


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickles_in_a_pt2_run_nothing(
    user_model: dict[str, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Marker(marker))
    pickle.loads(payload)  # the payload is live: unpickling it creates the marker
    assert marker.exists()
    marker.unlink()
    plain = tmp_path / "plain.pt2"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("evil/data.pkl", payload)
        zf.writestr("evil/version", "3")
    weights_cfg = json.loads(
        zipfile.ZipFile(user_model["program"]).read("mine/data/weights/model_weights_config.json")
    )
    first = next(iter(weights_cfg["config"].values()))
    first["use_pickle"] = True
    evil_files = {
        "sample inputs": _rewrite(
            user_model["program"], tmp_path / "s.pt2", {"data/sample_inputs/model.pt": payload}
        ),
        "pickled weight": _rewrite(
            user_model["program"],
            tmp_path / "w.pt2",
            {
                "data/weights/model_weights_config.json": json.dumps(weights_cfg).encode(),
                f"data/weights/{first['path_name']}": payload,
            },
        ),
        "legacy weights": _rewrite(
            user_model["program"], tmp_path / "l.pt2", {"data/weights/model.pt": payload}
        ),
        "plain pickle": plain,
    }
    for what, path in evil_files.items():
        with pytest.raises(ModelError) as info:
            _load(path)
        text = _one_line(info, str(path))
        assert "refused" in text or "torch.save pickle" in text, text
        assert not marker.exists(), what


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("kw", [{}, {"factory": FACTORY}, {"arch": "cnn"}])
def test_refused_formats_get_a_one_line_hint(
    user_model: dict[str, Path], tmp_path: Path, kw: dict[str, str]
) -> None:
    marker = tmp_path / "pwned"
    model = UserCNN()
    script = tmp_path / "mine-script.pt"
    torch.jit.save(
        torch.jit.trace(  # type: ignore[no-untyped-call]
            model.eval(), torch.zeros(2, *SHAPE)
        ),
        str(script),
    )
    whole = tmp_path / "whole.pt"
    torch.save({"model": _Marker(marker)}, whole)
    joblib = tmp_path / "model.joblib"
    joblib.write_bytes(pickle.dumps(_Marker(marker)))
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    cases = {
        script: ("TorchScript", "torch.export.save"),
        whole: ("pickled Python object", "never unpickles code"),
        joblib: ("pickle/joblib", "skops"),
        onnx: ("ONNX", "type: onnx", "black box"),
    }
    for path, needles in cases.items():
        with pytest.raises(ModelError) as info:
            _load(path, **kw)
        _one_line(info, str(path), *needles)
    assert not marker.exists()


def test_weights_without_architecture_and_factory_mistakes(
    user_model: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ModelError) as info:
        _load(user_model["weights"])
    _one_line(info, "holds weights only", "factory", "torch.export.save")
    with pytest.raises(InvalidParameterError, match=r"must look like 'my_pkg\.models:build_model'"):
        _load(user_model["weights"], factory="tests.models.user_cnn.build_user_cnn")
    with pytest.raises(ModelError) as info:
        _load(user_model["weights"], factory="no_such_pkg.models:build")
    _one_line(info, "cannot import", "no_such_pkg", "PYTHONPATH")
    with pytest.raises(ModelError, match="has no function 'nope'"):
        _load(user_model["weights"], factory="tests.models.user_cnn:nope")
    with pytest.raises(ModelError, match=r"returned ndarray, not a torch\.nn\.Module"):
        _load(user_model["weights"], factory="numpy:zeros", kwargs={"shape": 3})
    with pytest.raises(ModelError) as info:
        _load(user_model["weights"], factory=FACTORY, kwargs={"width": 16})
    _one_line(info, "does not fit factory", "has shape")
    with pytest.raises(ModelError) as info:
        _load(user_model["weights"], arch="cnn")
    _one_line(info, "does not fit architecture 'cnn'", "parameter names differ")
    with pytest.raises(InvalidParameterError, match="drop arch/factory"):
        _load(user_model["program"], arch="cnn")
    with pytest.raises(ModelError, match="model file not found"):
        _load(tmp_path / "missing.pt2")


def test_program_for_other_images_is_named(user_model: dict[str, Path]) -> None:
    with pytest.raises(InvGuardError) as info:
        load_user_model(user_model["program"], shape=(1, 9, 9), num_classes=10)
    _one_line(info, "expects inputs of shape (n, 1, 8, 8)", "(1, 9, 9)")


def test_program_exported_in_training_mode_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = UserCNN().train()
    path = tmp_path / "train-mode.pt2"
    example = torch.zeros(2, *SHAPE)
    dynamic = ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes=dynamic), path)
    with pytest.raises(ModelError) as info:
        _load(path)
    _one_line(info, "exported in training mode", "model.eval()")
