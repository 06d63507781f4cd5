"""SklearnTarget, safe skops loading, and one model as scikit-learn, PyTorch and ONNX targets."""

from __future__ import annotations

import builtins
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier
from torch import nn

from invguard.data import ImageDataset
from invguard.errors import InvalidParameterError, ModelError, TargetError
from invguard.targets import (
    Capability,
    OutputSpec,
    QueryBudgetExceededError,
    Target,
    TorchTarget,
)
from invguard.targets.onnx import OnnxTarget, export_torch_to_onnx
from invguard.targets.sklearn import SklearnTarget, load_sklearn_model, save_sklearn_model

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "logistic": nn.Sigmoid,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


class Untrusted:
    """A type that no allowlist knows."""

    def __init__(self) -> None:
        self.note = "not an estimator"


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def _fit_mlp(digits: ImageDataset, activation: str) -> MLPClassifier:
    mlp = MLPClassifier(
        hidden_layer_sizes=(32,), activation=activation, max_iter=150, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(_flat(digits.x_train), digits.y_train)
    return mlp


def mlp_to_torch(mlp: MLPClassifier) -> nn.Sequential:
    """The same network as ``mlp`` in PyTorch, returning logits (softmax is the target's)."""
    layers: list[nn.Module] = [nn.Flatten()]
    pairs = list(zip(mlp.coefs_, mlp.intercepts_, strict=True))
    for i, (w, b) in enumerate(pairs):
        lin = nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.astype(np.float32)))
            lin.bias.copy_(torch.from_numpy(b.astype(np.float32)))
        layers.append(lin)
        if i < len(pairs) - 1:
            layers.append(ACTIVATIONS[mlp.activation]())
    return nn.Sequential(*layers).eval()


@pytest.fixture(scope="module")
def sk_mlp(digits: ImageDataset) -> MLPClassifier:
    return _fit_mlp(digits, "relu")


@pytest.mark.parametrize("activation", ["relu", "logistic"])
def test_one_model_as_sklearn_torch_and_onnx_targets(
    activation: str, digits: ImageDataset, sk_mlp: MLPClassifier, tmp_path: Path
) -> None:
    mlp = sk_mlp if activation == "relu" else _fit_mlp(digits, activation)
    assert mlp.score(_flat(digits.x_test), digits.y_test) > 0.9
    shape = digits.image_shape
    torch_model = mlp_to_torch(mlp)
    onnx_path = export_torch_to_onnx(torch_model, shape, tmp_path / "mlp.onnx")
    targets: dict[str, Any] = {
        "sklearn": SklearnTarget(mlp, input_shape=shape),
        "torch": TorchTarget(torch_model, input_shape=shape),
        "onnx": OnnxTarget(onnx_path, input_shape=shape),
    }
    x = digits.x_test
    out = {name: t.predict(x) for name, t in targets.items()}
    for name, t in targets.items():
        assert isinstance(t, Target)
        assert t.queries == len(x)
        assert out[name].shape == (len(x), 10)
    assert np.abs(out["sklearn"] - out["torch"]).max() < 1e-5
    assert np.abs(out["sklearn"] - out["onnx"]).max() < 1e-5
    assert np.abs(out["torch"] - out["onnx"]).max() < 1e-5
    assert np.array_equal(out["sklearn"].argmax(1), mlp.predict(_flat(x)))


def test_contract_output_spec_and_budget(digits: ImageDataset, sk_mlp: MLPClassifier) -> None:
    t = SklearnTarget(sk_mlp, input_shape=(1, 8, 8), query_budget=30)
    assert t.capabilities == frozenset(
        {Capability.PROBABILITIES, Capability.SCORES, Capability.LABELS}
    )
    assert t.num_classes == 10
    p = t.predict(digits.x_test[:20])
    assert np.allclose(p, sk_mlp.predict_proba(_flat(digits.x_test[:20])), atol=1e-6)
    with pytest.raises(QueryBudgetExceededError, match="budget of 30"):
        t.predict(digits.x_test[:11])
    assert t.queries == 20
    top = SklearnTarget(sk_mlp, input_shape=(1, 8, 8), output=OutputSpec(top_k=2, decimals=2))
    q = top.predict(digits.x_test[:20])
    assert ((q > 0).sum(1) <= 2).all()
    assert np.allclose(q * 100, np.round(q * 100), atol=1e-4)
    assert Capability.PROBABILITIES not in top.capabilities
    labels = SklearnTarget(sk_mlp, input_shape=(1, 8, 8), output=OutputSpec(scores=False))
    onehot = labels.predict(digits.x_test[:20])
    assert np.array_equal(onehot.argmax(1), sk_mlp.predict(_flat(digits.x_test[:20])))
    assert labels.capabilities == frozenset({Capability.LABELS})
    assert "MLPClassifier" in repr(t)


def test_classes_are_mapped_to_indices(digits: ImageDataset) -> None:
    keep = np.isin(digits.y_train, [2, 5, 7])
    x, y = _flat(digits.x_train[keep]), digits.y_train[keep]
    lr = LogisticRegression(max_iter=200).fit(x, y)
    t = SklearnTarget(lr, input_shape=(1, 8, 8))
    assert t.num_classes == 8
    p = t.predict(digits.x_train[keep][:10])
    assert np.allclose(p[:, [2, 5, 7]], lr.predict_proba(x[:10]), atol=1e-6)
    assert np.all(p[:, [0, 1, 3, 4, 6]] == 0)
    assert SklearnTarget(lr, input_shape=(1, 8, 8), num_classes=10).num_classes == 10
    names = np.array([{2: "two", 5: "five", 7: "seven"}[int(v)] for v in y])
    named = LogisticRegression(max_iter=200).fit(x, names)
    t_named = SklearnTarget(named, input_shape=(1, 8, 8))
    assert t_named.num_classes == 3  # 'five', 'seven', 'two': numbered in classes_ order
    assert np.allclose(t_named.predict(digits.x_train[keep][:10]), named.predict_proba(x[:10]))
    with pytest.raises(TargetError, match="knows 8 classes, but num_classes=5"):
        SklearnTarget(lr, input_shape=(1, 8, 8), num_classes=5)


def test_label_only_estimators(digits: ImageDataset) -> None:
    svc = LinearSVC().fit(_flat(digits.x_train), digits.y_train)
    t = SklearnTarget(svc, input_shape=(1, 8, 8))
    assert t.output == OutputSpec(scores=False)
    assert t.capabilities == frozenset({Capability.LABELS})
    out = t.predict(digits.x_test[:15])
    assert np.array_equal(out.argmax(1), svc.predict(_flat(digits.x_test[:15])))
    assert out.sum() == 15
    with pytest.raises(TargetError, match="has no predict_proba"):
        SklearnTarget(svc, input_shape=(1, 8, 8), output=OutputSpec())


def test_bad_estimators_and_inputs(sk_mlp: MLPClassifier) -> None:
    with pytest.raises(TargetError, match="not fitted or not a classifier"):
        SklearnTarget(MLPClassifier(), input_shape=(1, 8, 8))
    with pytest.raises(TargetError, match="has no predict method"):
        SklearnTarget(object(), input_shape=(1, 8, 8))
    with pytest.raises(TargetError, match=r"takes 64 features, but input_shape \(1, 9, 9\)"):
        SklearnTarget(sk_mlp, input_shape=(1, 9, 9))
    with pytest.raises(InvalidParameterError, match="'top_k' parameter must be <= the number"):
        SklearnTarget(sk_mlp, input_shape=(1, 8, 8), output=OutputSpec(top_k=11))
    t = SklearnTarget(sk_mlp, input_shape=(1, 8, 8))
    with pytest.raises(TargetError, match=r"must have shape \(n, 1, 8, 8\)"):
        t.predict(np.zeros((2, 64), np.float32))
    assert t.queries == 0


def test_skops_round_trip_and_allowlist(
    digits: ImageDataset, sk_mlp: MLPClassifier, tmp_path: Path
) -> None:
    path = save_sklearn_model(sk_mlp, tmp_path / "mlp.skops")
    loaded = load_sklearn_model(path)  # AdamOptimizer is on the default allowlist
    x = _flat(digits.x_test)
    assert np.array_equal(loaded.predict_proba(x), sk_mlp.predict_proba(x))
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(
        _flat(digits.x_train), digits.y_train
    )
    tree_back = load_sklearn_model(save_sklearn_model(tree, tmp_path / "tree.skops"))
    assert np.array_equal(tree_back.predict(x), tree.predict(x))


@pytest.mark.parametrize(
    ("extra", "type_name"),
    [(Untrusted(), f"{__name__}.Untrusted"), (builtins.eval, "builtins.eval")],
)
def test_untrusted_types_are_refused(
    extra: object, type_name: str, digits: ImageDataset, tmp_path: Path
) -> None:
    lr = LogisticRegression(max_iter=100).fit(_flat(digits.x_train[:300]), digits.y_train[:300])
    lr.extra_ = extra
    path = save_sklearn_model(lr, tmp_path / "bad.skops")
    with pytest.raises(ModelError) as info:
        load_sklearn_model(path)
    message = str(info.value)
    assert "\n" not in message
    assert f"contains types that are not trusted: {type_name}" in message
    assert f"trusted=['{type_name}']" in message
    if isinstance(extra, Untrusted):  # trusting it explicitly loads the file
        back = load_sklearn_model(path, trusted=[type_name])
        assert isinstance(back.extra_, Untrusted)


def test_not_a_skops_file_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelError, match="is not a readable skops file"):
        load_sklearn_model(path)
    with pytest.raises(ModelError, match="does not exist"):
        load_sklearn_model(tmp_path / "missing.skops")
    with pytest.raises(InvalidParameterError, match="sequence of type names"):
        load_sklearn_model(path, trusted="builtins.eval")
