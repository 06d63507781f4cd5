"""Training-time defences: train a defended model from the same data and architecture.

Each defence is a frozen, keyword-only config dataclass with
``train(dataset, arch, *, seed, cache=None, auxiliary=None) -> DefendedModel``. Training is
deterministic for a seed (explicit ``torch.Generator`` objects, no global seeding) and cached on disk
like every reference model, under a key that includes the defence and all its parameters. The
returned ``DefendedModel.model`` is a plain :class:`~invguard.models.FeatureClassifier` mapping
images to logits, ready for :class:`~invguard.targets.TorchTarget`.

* :class:`DPSGD` - differentially private SGD with Opacus (Abadi et al., CCS 2016): per-sample
  clipping, Gaussian noise, Poisson sampling, the RDP accountant; reports the epsilon spent.
* :class:`LabelSmoothing` - label smoothing with a positive or negative factor (Struppek,
  Hintersdorf and Kersting, ICLR 2024): negative factors are the defence, positive ones are known
  to help the attacker. Negative smoothing follows the authors' schedule (none for the first half of
  training, then ramped in).
* :class:`MID` - mutual information regularisation by a variational information bottleneck on the
  prediction (Wang, Song, Zhang et al., AAAI 2021); the deployed model uses the latent's mean.
* :class:`BiDO` - bilateral dependency optimisation with HSIC (Peng, Liu, Zhang et al., KDD 2022):
  lower HSIC(input, hidden), raise HSIC(hidden, label), Gaussian kernels, the paper's weights.
* :class:`TransferLearning` - TL-DMI (Ho, Tran et al., CVPR 2024): pre-train on public data, then
  fine-tune on the private data with the first ``freeze`` layers frozen.

Except for DP-SGD (which needs its own optimiser settings) every defence trains with the reference
target recipe of the architecture (``invguard.models.TARGET_RECIPES``) unless given another
``recipe``, with the same sequence of random draws: ``LabelSmoothing(alpha=0.0)`` reproduces the
reference target bit for bit.

Measured against MI-FACE on the AT&T faces: ``benchmarks/eval_training_defenses.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from invguard.data.base import ImageDataset
from invguard.data.faces import DEFAULT_FACE_SIZE, load_att_faces
from invguard.defenses import _dp, _hsic, _loop, _vib
from invguard.errors import (
    DataError,
    InvalidParameterError,
    check_choice,
    check_float,
    check_int,
)
from invguard.models.architectures import (
    ARCHITECTURES,
    ImageShape,
    build_model,
    init_parameters,
)
from invguard.models.cache import ModelCache, cache_key, locked
from invguard.models.training import TrainConfig, accuracy, smoothed_cross_entropy
from invguard.models.zoo import TARGET_RECIPES

log = logging.getLogger(__name__)

DEFENSE_FORMAT = 1  # bump when a defence's training changes, so cached models are not reused
DEFAULT_RECIPE = TrainConfig()
# the defences that retrain any architecture; the others need a reference one (features + head)
ANY_ARCHITECTURE = ("dp-sgd", "label-smoothing")


@dataclass(frozen=True)
class UserArchitecture:
    """The user's own architecture, built by a factory (``pkg.module:function`` called with
    ``kwargs``): what the training-time defences that take any architecture retrain.

    Importing the factory's module runs the user's own code, as when their model is loaded.
    ``search_path`` is put on ``sys.path`` while it is imported.
    """

    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    search_path: str | None = None

    @property
    def name(self) -> str:
        kw = json.dumps(self.kwargs, sort_keys=True, default=str)
        return f"{self.factory}({kw})" if self.kwargs else self.factory

    def source_fingerprint(self) -> str:
        """SHA-256 of the factory module's source file (so edited code is not served a cached
        model), or of the factory's name when the source cannot be read."""
        import inspect

        fn = self._factory()
        try:
            source = inspect.getsourcefile(fn)
            blob = Path(source).read_bytes() if source else self.factory.encode()
        except (OSError, TypeError):
            blob = self.factory.encode()
        return hashlib.sha256(blob).hexdigest()

    def _factory(self) -> Any:
        from invguard.models.loading import import_factory

        return import_factory(self.factory, Path(self.search_path) if self.search_path else None)

    def build(
        self, shape: ImageShape, num_classes: int, *, generator: torch.Generator | None = None
    ) -> nn.Module:
        """A fresh model; with ``generator`` torch's default initialisation is seeded from it."""
        from invguard.errors import ModelError

        fn = self._factory()
        seed = 0 if generator is None else int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                model = fn(**self.kwargs)
            except TypeError as exc:
                raise ModelError(
                    f"factory {self.factory!r} cannot be called with kwargs {self.kwargs}: {exc}"
                ) from exc
        if not isinstance(model, nn.Module):
            raise ModelError(
                f"factory {self.factory!r} returned {type(model).__name__}, not a torch.nn.Module"
            )
        return model


Architecture = str | UserArchitecture


def arch_name(arch: Architecture) -> str:
    """A reference architecture's name, or ``factory:pkg.mod:fn(kwargs)`` for a user's one."""
    return arch if isinstance(arch, str) else f"factory:{arch.name}"


def _build(
    arch: Architecture,
    shape: ImageShape,
    num_classes: int,
    *,
    generator: torch.Generator | None = None,
) -> nn.Module:
    if isinstance(arch, UserArchitecture):
        return arch.build(shape, num_classes, generator=generator)
    return build_model(arch, shape, num_classes, generator=generator)


def _reference(arch: Architecture, defense: str) -> str:
    """``arch`` when it is a reference architecture; a one-line refusal for a user's own."""
    if isinstance(arch, str):
        return arch
    raise InvalidParameterError(
        f"{defense} changes the layers of an InvGuard reference architecture (its features and "
        f"head) and cannot retrain your factory's model {arch.factory!r}; the defences that "
        f"retrain any architecture are {', '.join(ANY_ARCHITECTURE)}"
    )


@dataclass
class DefendedModel:
    """A model trained with a training-time defence and what was measured while training it.

    ``facts`` holds what is specific to the defence (e.g. ``epsilon_spent`` for DP-SGD, the frozen
    layers for transfer learning); all of it is JSON-serialisable.
    """

    defense: str
    params: dict[str, Any]
    model: nn.Module
    arch: str
    input_shape: ImageShape
    num_classes: int
    seed: int
    train_accuracy: float
    test_accuracy: float | None
    seconds: float
    facts: dict[str, Any] = field(default_factory=dict)
    cache_key: str = ""
    from_cache: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "defense": self.defense,
            "params": self.params,
            "arch": self.arch,
            "seed": self.seed,
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "seconds": self.seconds,
            **self.facts,
        }


@dataclass
class _Fitted:
    model: nn.Module
    seconds: float
    facts: dict[str, Any]


def _check_recipe(recipe: object) -> None:
    if recipe is not None and not isinstance(recipe, TrainConfig):
        raise InvalidParameterError(
            f"The 'recipe' parameter must be a TrainConfig or None, got {type(recipe).__name__}"
        )


def _generators(seed: int, n: int) -> list[torch.Generator]:
    """``n`` independent generators derived from ``seed`` (the first is seeded with ``seed``)."""
    extra = np.random.SeedSequence(seed).generate_state(max(0, n - 1), dtype=np.uint64)
    return [torch.Generator().manual_seed(seed)] + [
        torch.Generator().manual_seed(int(s) & (2**63 - 1)) for s in extra
    ]


def _fit_every_parameter(
    model: nn.Module,
    dataset: ImageDataset,
    recipe: TrainConfig,
    gen: torch.Generator,
    loss: _loop.BatchLoss,
) -> float:
    """Train all of ``model``'s parameters on ``dataset``'s training split; the seconds spent."""
    return _loop.fit(
        model,
        list(model.parameters()),
        dataset.x_train,
        dataset.y_train,
        config=recipe,
        generator=gen,
        loss_fn=loss,
    )


def _param_names(model: nn.Module) -> list[str]:
    """Layers with parameters of their own, in registration order (for the reference
    architectures: from the input to the head)."""
    return [n for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]


class TrainingDefense(ABC):
    """Base class: validation, the cache, accuracies; subclasses implement ``_fit``."""

    name: ClassVar[str]
    needs_auxiliary: ClassVar[bool] = False

    def train(
        self,
        dataset: ImageDataset,
        arch: Architecture,
        *,
        seed: int = 0,
        cache: ModelCache | None = None,
        auxiliary: ImageDataset | None = None,
    ) -> DefendedModel:
        """Train (or load from ``cache``) a defended ``arch`` on ``dataset``'s training split.

        ``arch`` is a reference architecture's name or a :class:`UserArchitecture` (the user's
        factory; only the defences in ``ANY_ARCHITECTURE`` retrain it).

        ``auxiliary`` is labelled public data, used only by defences that need it
        (:class:`TransferLearning`); the others ignore it.
        """
        version = self._validate(dataset, arch, seed, cache)
        aux = auxiliary if self.needs_auxiliary else None
        self._check(dataset, arch, aux)
        key = cache_key(
            role="defended-target",
            defense=self.name,
            params=self,
            recipe=self._recipe(arch),
            dataset=dataset.fingerprint(),
            auxiliary=aux.fingerprint() if aux is not None else None,
            arch=arch_name(arch),
            arch_version=version,
            seed=seed,
            defense_format=DEFENSE_FORMAT,
        )
        with locked(cache, key):  # parallel processes sharing the cache train it once
            return self._load_or_train(key, dataset, arch, seed, cache, aux)

    def _load_or_train(
        self,
        key: str,
        dataset: ImageDataset,
        arch: Architecture,
        seed: int,
        cache: ModelCache | None,
        aux: ImageDataset | None,
    ) -> DefendedModel:
        """The defended model ``key`` from ``cache``, else trained (and stored there)."""
        cached = self._from_cache(cache, key, dataset, arch, seed) if cache is not None else None
        if cached is not None:
            return cached
        log.info(
            "training %s-defended '%s' on %s (seed %d)",
            self.name,
            arch_name(arch),
            dataset.name,
            seed,
        )
        if isinstance(arch, UserArchitecture):  # its dropout or noise draw from torch's global RNG
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                fitted = self._fit(dataset, arch, seed, aux)
        else:
            fitted = self._fit(dataset, arch, seed, aux)
        model = fitted.model.eval()
        train_acc = accuracy(model, dataset.x_train, dataset.y_train)
        test_acc = accuracy(model, dataset.x_test, dataset.y_test) if len(dataset.y_test) else None
        record = {
            "role": "defended-target",
            "defense": self.name,
            "params": dataclasses.asdict(self),  # type: ignore[call-overload]
            "arch": arch_name(arch),
            "dataset": dataset.name,
            "dataset_fingerprint": dataset.fingerprint(),
            "auxiliary": aux.name if aux is not None else None,
            "input_shape": list(dataset.image_shape),
            "num_classes": dataset.num_classes,
            "seed": seed,
            "train_accuracy": train_acc,
            "test_accuracy": test_acc,
            "seconds": fitted.seconds,
            "facts": fitted.facts,
        }
        if cache is not None:
            cache.save(key, model.state_dict(), record)
        return self._defended(model, dataset, arch, seed, record, key, from_cache=False)

    def _validate(self, dataset: object, arch: Architecture, seed: int, cache: object) -> int | str:
        """Check ``train``'s arguments; the architecture's version (part of the cache key)."""
        if not isinstance(dataset, ImageDataset):
            raise InvalidParameterError(
                f"The 'dataset' parameter must be an ImageDataset, got {type(dataset).__name__}"
            )
        if isinstance(arch, UserArchitecture):
            if self.name not in ANY_ARCHITECTURE:
                _reference(arch, self.name)
            version: int | str = arch.source_fingerprint()
        elif arch not in ARCHITECTURES:
            raise InvalidParameterError(
                f"The 'arch' parameter must be one of {', '.join(sorted(ARCHITECTURES))}, "
                f"got {arch!r}"
            )
        else:
            version = ARCHITECTURES[arch].version
        check_int("seed", seed, minimum=0)
        if cache is not None and not isinstance(cache, ModelCache):
            raise InvalidParameterError(
                f"The 'cache' parameter must be a ModelCache or None, got {type(cache).__name__}"
            )
        return version

    def _from_cache(
        self, cache: ModelCache, key: str, dataset: ImageDataset, arch: Architecture, seed: int
    ) -> DefendedModel | None:
        """The defended model stored under ``key``, or None (missing or unusable: retrain)."""
        hit = cache.load(key)
        if hit is None:
            return None
        state, record = hit
        model = self._skeleton(arch, dataset.image_shape, dataset.num_classes)
        try:
            model.load_state_dict(state)
            if not isinstance(record.get("train_accuracy"), float):
                raise RuntimeError("no training record")
        except RuntimeError:
            log.warning("cached %s model %s is unusable; retraining", self.name, key[:12])
            return None
        return self._defended(model.eval(), dataset, arch, seed, record, key, from_cache=True)

    def _defended(
        self,
        model: nn.Module,
        dataset: ImageDataset,
        arch: Architecture,
        seed: int,
        record: Mapping[str, Any],
        key: str,
        *,
        from_cache: bool,
    ) -> DefendedModel:
        return DefendedModel(
            defense=self.name,
            params=dataclasses.asdict(self),  # type: ignore[call-overload]
            model=model,
            arch=arch_name(arch),
            input_shape=dataset.image_shape,
            num_classes=dataset.num_classes,
            seed=seed,
            train_accuracy=float(record["train_accuracy"]),
            test_accuracy=record.get("test_accuracy"),
            seconds=float(record.get("seconds", 0.0)),
            facts=dict(record.get("facts", {})),
            cache_key=key,
            from_cache=from_cache,
        )

    def _recipe(self, arch: Architecture) -> TrainConfig:
        own = getattr(self, "recipe", None)
        if isinstance(own, TrainConfig):
            return own
        return TARGET_RECIPES.get(arch, DEFAULT_RECIPE) if isinstance(arch, str) else DEFAULT_RECIPE

    def _check(  # noqa: B027 - an optional hook: most defences accept every architecture
        self, dataset: ImageDataset, arch: Architecture, auxiliary: ImageDataset | None
    ) -> None:
        """Raise for an architecture or data the defence cannot work with (before training)."""

    def _skeleton(self, arch: Architecture, shape: ImageShape, num_classes: int) -> nn.Module:
        """An untrained model of the deployed structure (to load cached weights into)."""
        return _build(arch, shape, num_classes)

    @abstractmethod
    def _fit(
        self, dataset: ImageDataset, arch: Architecture, seed: int, auxiliary: ImageDataset | None
    ) -> _Fitted: ...


# --------------------------------------------------------------------------------------------------
# DP-SGD


@dataclass(frozen=True, kw_only=True)
class DPSGD(TrainingDefense):
    """DP-SGD with Opacus to a target ``(epsilon, delta)`` (Abadi et al. 2016).

    ``make_private_with_epsilon`` with the RDP accountant picks the noise multiplier for ``epochs``
    passes at sample rate ``batch_size / n``; batches are Poisson samples; each per-sample gradient
    is clipped to ``max_grad_norm``. The noise and the sampler draw from generators derived from the
    seed. ``facts['epsilon_spent']`` is what the accountant reports after training (at most the
    target). ``delta`` must be below ``1 / n``. Architectures with BatchNorm (``evalnet``) are
    refused with Opacus' explanation.

    Defaults (SGD with momentum 0.9, learning rate 0.5, constant; 30 epochs; expected batch 64) were
    chosen on the AT&T faces, where they beat Adam at 1e-3 (softmax at epsilon 100: test accuracy
    0.66 against 0.41). DP-SGD has its own recipe: the reference recipes are not tuned for clipped,
    noisy gradients.
    """

    name: ClassVar[str] = "dp-sgd"

    epsilon: float
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.5
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        check_float("epsilon", self.epsilon, minimum=0.0, min_inclusive=False)
        if math.isinf(self.epsilon):
            raise InvalidParameterError(
                "The 'epsilon' parameter must be a finite float > 0, got inf (train without a "
                "defence for no privacy)"
            )
        check_float(
            "delta", self.delta, minimum=0.0, maximum=1.0, min_inclusive=False, max_inclusive=False
        )
        check_float("max_grad_norm", self.max_grad_norm, minimum=0.0, min_inclusive=False)
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("lr", self.lr, minimum=0.0, min_inclusive=False)
        check_choice("optimizer", self.optimizer, ("adam", "sgd"))

    def _recipe(self, arch: Architecture) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer=self.optimizer
        )

    def _check(
        self, dataset: ImageDataset, arch: Architecture, auxiliary: ImageDataset | None
    ) -> None:
        n = len(dataset.y_train)
        if self.delta >= 1.0 / n:
            raise InvalidParameterError(
                f"The 'delta' parameter must be a float < 1/n = {1.0 / n:.3g} for the {n} training "
                f"images (a larger delta allows leaking a whole record), got {self.delta}"
            )
        if self.batch_size > n:
            raise InvalidParameterError(
                f"The 'batch_size' parameter must be an int <= {n} (the training images), "
                f"got {self.batch_size}"
            )
        _dp.check_opacus_compatible(
            _build(arch, dataset.image_shape, dataset.num_classes),
            f"architecture '{arch_name(arch)}'",
        )

    def _fit(
        self, dataset: ImageDataset, arch: Architecture, seed: int, auxiliary: ImageDataset | None
    ) -> _Fitted:
        init, sampler, noise = _generators(seed, 3)
        model = _build(arch, dataset.image_shape, dataset.num_classes, generator=init)
        facts = _dp.train_dp(
            model,
            dataset.x_train,
            dataset.y_train,
            epsilon=self.epsilon,
            delta=self.delta,
            max_grad_norm=self.max_grad_norm,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer=self.optimizer,
            sampler_generator=sampler,
            noise_generator=noise,
        )
        clean = _build(arch, dataset.image_shape, dataset.num_classes)
        clean.load_state_dict(model.state_dict())  # a plain module, free of Opacus' hooks
        return _Fitted(clean.eval(), float(facts.pop("seconds_training")), facts)


# --------------------------------------------------------------------------------------------------
# Label smoothing


@dataclass(frozen=True, kw_only=True)
class LabelSmoothing(TrainingDefense):
    """Label smoothing ``(1 - alpha) * onehot + alpha / C`` (Struppek et al., ICLR 2024).

    ``alpha < 0`` (negative smoothing) is the defence; ``alpha > 0`` is ordinary label smoothing,
    known to *increase* model inversion leakage, offered for comparison. ``alpha`` lies in
    ``[-10, 1)``; against MI-FACE on the faces MLP the paper's magnitudes (-0.05 to -0.1) do little,
    ``alpha`` of -1 to -2 halves the leak at no accuracy cost (see the benchmark). ``schedule='paper'``
    follows the authors' code: positive factors apply from the start; a negative factor is 0 for the
    first half of training (negative smoothing from scratch does not train), is
    ``alpha * (e + 1 - E/2) / (E/2)`` in epoch ``e`` (from 0) of ``E`` during the third quarter
    (reaching ``alpha / 2``) and ``alpha`` in the last quarter; for ``E = 100`` exactly the
    authors' ``ls_scheduler``. ``schedule='constant'`` applies ``alpha`` throughout.
    """

    name: ClassVar[str] = "label-smoothing"

    alpha: float
    schedule: str = "paper"
    recipe: TrainConfig | None = None

    def __post_init__(self) -> None:
        check_float("alpha", self.alpha, minimum=-10.0, maximum=1.0, max_inclusive=False)
        check_choice("schedule", self.schedule, ("paper", "constant"))
        _check_recipe(self.recipe)
        if self.recipe is not None and self.recipe.label_smoothing != 0.0:
            raise InvalidParameterError(
                "The 'recipe' parameter must have label_smoothing=0.0 (the defence sets it), "
                f"got {self.recipe.label_smoothing}"
            )

    def factor(self, epoch: int, epochs: int) -> float:
        """The smoothing factor used in ``epoch`` (from 0) of ``epochs``."""
        if self.schedule == "constant" or self.alpha >= 0:
            return self.alpha
        half, three_quarters = epochs // 2, (3 * epochs) // 4
        if epoch < half:
            return 0.0
        if epoch < three_quarters:
            return self.alpha * (epoch + 1 - half) / (epochs - half)
        return self.alpha

    def _fit(
        self, dataset: ImageDataset, arch: Architecture, seed: int, auxiliary: ImageDataset | None
    ) -> _Fitted:
        recipe = self._recipe(arch)
        gen = torch.Generator().manual_seed(seed)
        model = _build(arch, dataset.image_shape, dataset.num_classes, generator=gen)

        def loss(xb: torch.Tensor, yb: torch.Tensor, epoch: int) -> torch.Tensor:
            return smoothed_cross_entropy(model(xb), yb, self.factor(epoch, recipe.epochs))

        seconds = _fit_every_parameter(model, dataset, recipe, gen, loss)
        factors = [self.factor(e, recipe.epochs) for e in range(recipe.epochs)]
        first = next((e for e, f in enumerate(factors) if f != 0.0), None)
        full = next((e for e, f in enumerate(factors) if f == self.alpha), None)
        facts = {
            "alpha": self.alpha,
            "epochs": recipe.epochs,
            "first_smoothed_epoch": None if first is None else first + 1,
            "first_full_epoch": None if full is None else full + 1,
        }
        return _Fitted(model, seconds, facts)


# --------------------------------------------------------------------------------------------------
# MID


@dataclass(frozen=True, kw_only=True)
class MID(TrainingDefense):
    """Variational information bottleneck on the prediction (Wang et al., AAAI 2021).

    A stochastic encoder on the penultimate features gives the mean and standard deviation of a
    ``bottleneck``-dimensional latent (default: half the feature width, as in the authors' code);
    the loss is cross-entropy on a sampled latent plus ``beta`` times its KL divergence from
    N(0, I). The deployed model classifies the latent's mean (``head(mu(features(x)))``).
    """

    name: ClassVar[str] = "mid"

    beta: float
    bottleneck: int | None = None
    recipe: TrainConfig | None = None

    def __post_init__(self) -> None:
        check_float("beta", self.beta, minimum=0.0)
        if self.bottleneck is not None:
            check_int("bottleneck", self.bottleneck, minimum=1)
        _check_recipe(self.recipe)

    def _width(self, arch: Architecture, shape: ImageShape, num_classes: int) -> tuple[int, int]:
        d = build_model(_reference(arch, self.name), shape, num_classes).head.in_features
        return d, self.bottleneck if self.bottleneck is not None else max(1, d // 2)

    def _skeleton(self, arch: Architecture, shape: ImageShape, num_classes: int) -> nn.Module:
        base = build_model(_reference(arch, self.name), shape, num_classes)
        d, k = self._width(arch, shape, num_classes)
        return _vib.inference_model(base.features, nn.Linear(d, k), nn.Linear(k, num_classes))

    def _fit(
        self, dataset: ImageDataset, arch: Architecture, seed: int, auxiliary: ImageDataset | None
    ) -> _Fitted:
        recipe = self._recipe(arch)
        shape, c = dataset.image_shape, dataset.num_classes
        gen = torch.Generator().manual_seed(seed)
        base = build_model(_reference(arch, self.name), shape, c, generator=gen)
        d = base.head.in_features
        k = self.bottleneck if self.bottleneck is not None else max(1, d // 2)
        vib = _vib.VIBClassifier(base.features, d, k, c)
        init_parameters(nn.ModuleList([vib.mu, vib.std, vib.head]), gen)
        last_kl: list[float] = []

        def loss(xb: torch.Tensor, yb: torch.Tensor, epoch: int) -> torch.Tensor:
            logits, mu, std = vib.sample(xb, gen)
            kl = _vib.kl_to_standard_normal(mu, std)
            if epoch == recipe.epochs - 1:
                last_kl.append(float(kl.detach()))
            return smoothed_cross_entropy(logits, yb, recipe.label_smoothing) + self.beta * kl

        seconds = _fit_every_parameter(vib, dataset, recipe, gen, loss)
        facts = {
            "beta": self.beta,
            "bottleneck": k,
            "feature_width": d,
            "kl_nats_last_epoch": float(np.mean(last_kl)) if last_kl else None,
        }
        return _Fitted(vib.deterministic().eval(), seconds, facts)


# --------------------------------------------------------------------------------------------------
# BiDO


@dataclass(frozen=True, kw_only=True)
class BiDO(TrainingDefense):
    """BiDO-HSIC (Peng et al., KDD 2022): ``CE + sum_j lambda_x HSIC(X, Z_j) - lambda_y HSIC(Z_j, Y)``
    over the hidden layers ``Z_j`` (every activation of the features, and the penultimate layer).

    Defaults are the paper's weights for its main (CelebA, GMI/KED-MI) setting, (0.05, 0.5); the
    authors used (0.1, 2) against VMI. HSIC is the normalised estimator with Gaussian kernels of
    width ``sigma`` scaled by the square root of the dimension (``sigma = 5``, as in their code).
    Needs an architecture with a hidden layer (not ``softmax``).
    """

    name: ClassVar[str] = "bido"

    lambda_x: float = 0.05
    lambda_y: float = 0.5
    sigma: float = 5.0
    recipe: TrainConfig | None = None

    def __post_init__(self) -> None:
        check_float("lambda_x", self.lambda_x, minimum=0.0)
        check_float("lambda_y", self.lambda_y, minimum=0.0)
        check_float("sigma", self.sigma, minimum=0.0, min_inclusive=False)
        _check_recipe(self.recipe)

    def _check(
        self, dataset: ImageDataset, arch: Architecture, auxiliary: ImageDataset | None
    ) -> None:
        if not _param_names(
            build_model(
                _reference(arch, self.name), dataset.image_shape, dataset.num_classes
            ).features
        ):
            raise InvalidParameterError(
                f"BiDO constrains hidden layers and architecture '{arch}' has none (its features "
                "are the input pixels): use an architecture with a hidden layer, e.g. 'mlp'"
            )

    def _fit(
        self, dataset: ImageDataset, arch: Architecture, seed: int, auxiliary: ImageDataset | None
    ) -> _Fitted:
        recipe = self._recipe(arch)
        c = dataset.num_classes
        gen = torch.Generator().manual_seed(seed)
        model = build_model(_reference(arch, self.name), dataset.image_shape, c, generator=gen)
        layers = _hsic.hidden_layers(model)
        recorder = _hsic.HiddenRecorder(layers)
        last: list[tuple[float, float]] = []

        def loss(xb: torch.Tensor, yb: torch.Tensor, epoch: int) -> torch.Tensor:
            recorder.take()
            logits = model(xb)
            penalty, hx, hy = _hsic.bido_penalty(
                xb,
                yb,
                recorder.take(),
                c,
                lambda_x=self.lambda_x,
                lambda_y=self.lambda_y,
                sigma=self.sigma,
            )
            if epoch == recipe.epochs - 1:
                last.append((hx, hy))
            return smoothed_cross_entropy(logits, yb, recipe.label_smoothing) + penalty

        try:
            seconds = _fit_every_parameter(model, dataset, recipe, gen, loss)
        finally:
            recorder.close()
        facts = {
            "lambda_x": self.lambda_x,
            "lambda_y": self.lambda_y,
            "sigma": self.sigma,
            "hidden_layers": [n for n, _ in layers],
            "hsic_xz_last_epoch": float(np.mean([a for a, _ in last])) if last else None,
            "hsic_yz_last_epoch": float(np.mean([b for _, b in last])) if last else None,
        }
        return _Fitted(model, seconds, facts)


# --------------------------------------------------------------------------------------------------
# Transfer learning


@dataclass(frozen=True, kw_only=True)
class TransferLearning(TrainingDefense):
    """TL-DMI (Ho, Tran et al., CVPR 2024): pre-train on public data, fine-tune on the private data
    with the first ``freeze`` parameterised layers frozen.

    ``train(..., auxiliary=public)`` needs the labelled public data as an :class:`ImageDataset` of
    the same image shape (for the AT&T faces: :func:`load_att_faces_public`, identities s31-s40).
    The model is pre-trained on ``public``'s training split with ``pretrain`` (default: the
    architecture's target recipe); its head is then replaced by a new one for the private classes
    and the model fine-tuned with ``recipe``, the first ``freeze`` layers (counted from the input:
    for ``mlp`` layer 1 is the hidden layer, for ``cnn`` layers 1-3 are the two convolutions and the
    dense layer) keeping their public weights. The head is always trained, so ``freeze`` is at most
    the number of layers minus one.
    """

    name: ClassVar[str] = "transfer-learning"
    needs_auxiliary: ClassVar[bool] = True

    freeze: int = 1
    pretrain: TrainConfig | None = None
    recipe: TrainConfig | None = None

    def __post_init__(self) -> None:
        check_int("freeze", self.freeze, minimum=0)
        if self.pretrain is not None and not isinstance(self.pretrain, TrainConfig):
            raise InvalidParameterError(
                "The 'pretrain' parameter must be a TrainConfig or None, got "
                f"{type(self.pretrain).__name__}"
            )
        _check_recipe(self.recipe)

    def _check(
        self, dataset: ImageDataset, arch: Architecture, auxiliary: ImageDataset | None
    ) -> None:
        if auxiliary is None:
            raise InvalidParameterError(
                "transfer learning needs labelled public data: pass auxiliary=<ImageDataset> "
                "(for the AT&T faces: load_att_faces_public())"
            )
        if not isinstance(auxiliary, ImageDataset):
            raise InvalidParameterError(
                "The 'auxiliary' parameter must be an ImageDataset of labelled public images, "
                f"got {type(auxiliary).__name__}"
            )
        if auxiliary.image_shape != dataset.image_shape:
            raise DataError(
                f"public data '{auxiliary.name}' has images of shape {auxiliary.image_shape}, the "
                f"private data {dataset.image_shape}"
            )
        if auxiliary.fingerprint() == dataset.fingerprint():
            raise InvalidParameterError(
                "The 'auxiliary' parameter must be public data, not the private data set itself"
            )
        layers = _param_names(
            build_model(_reference(arch, self.name), dataset.image_shape, dataset.num_classes)
        )
        if self.freeze > len(layers) - 1:
            raise InvalidParameterError(
                f"The 'freeze' parameter must be an int in [0, {len(layers) - 1}] for architecture "
                f"'{arch}', whose layers are {', '.join(layers)} (the head is always trained), "
                f"got {self.freeze}"
            )

    def _fit(
        self, dataset: ImageDataset, arch: Architecture, seed: int, auxiliary: ImageDataset | None
    ) -> _Fitted:
        assert auxiliary is not None
        recipe = self._recipe(arch)
        pre_recipe = self.pretrain or recipe
        shape = dataset.image_shape
        gen = torch.Generator().manual_seed(seed)
        public = build_model(
            _reference(arch, self.name), shape, auxiliary.num_classes, generator=gen
        )
        pre_seconds = _fit_every_parameter(
            public,
            auxiliary,
            pre_recipe,
            gen,
            lambda xb, yb, _e: smoothed_cross_entropy(public(xb), yb, pre_recipe.label_smoothing),
        )
        public_acc = accuracy(public, auxiliary.x_train, auxiliary.y_train)
        model = build_model(
            _reference(arch, self.name), shape, dataset.num_classes, generator=gen
        )  # new head
        own = {k: v for k, v in public.state_dict().items() if not k.startswith("head.")}
        model.load_state_dict({**model.state_dict(), **own})
        names = _param_names(model)
        frozen_names = names[: self.freeze]
        modules = dict(model.named_modules())
        frozen = [modules[n] for n in frozen_names]
        for m in frozen:
            for p in m.parameters(recurse=False):
                p.requires_grad_(False)
        trainable = [p for p in model.parameters() if p.requires_grad]
        seconds = _loop.fit(
            model,
            trainable,
            dataset.x_train,
            dataset.y_train,
            config=recipe,
            generator=gen,
            loss_fn=lambda xb, yb, _e: smoothed_cross_entropy(
                model(xb), yb, recipe.label_smoothing
            ),
            frozen=frozen,
        )
        for p in model.parameters():
            p.requires_grad_(True)
        facts = {
            "freeze": self.freeze,
            "frozen_layers": frozen_names,
            "trained_layers": names[self.freeze :],
            "public_data": auxiliary.name,
            "public_images": len(auxiliary.y_train),
            "public_classes": auxiliary.num_classes,
            "public_train_accuracy": public_acc,
            "pretrain_seconds": pre_seconds,
        }
        return _Fitted(model, pre_seconds + seconds, facts)


# --------------------------------------------------------------------------------------------------

TRAINING_DEFENSES: dict[str, type[TrainingDefense]] = {
    cls.name: cls for cls in (DPSGD, LabelSmoothing, MID, BiDO, TransferLearning)
}


def load_att_faces_public(
    size: tuple[int, int] = DEFAULT_FACE_SIZE, *, private_identities: int = 30
) -> ImageDataset:
    """The AT&T faces of the public identities ``s{private_identities + 1}``-``s40`` *with labels*
    (class ``i`` is identity ``s{private_identities + 1 + i}``), all ten images of each as training
    images: the same 100 images as the auxiliary data of
    :func:`invguard.data.load_att_faces_with_auxiliary`, for pre-training (TL-DMI)."""
    k = check_int("private_identities", private_identities, minimum=2)
    full = load_att_faces(size)
    if k >= full.num_classes:
        raise DataError(
            f"The 'private_identities' parameter must be an int < {full.num_classes}, got {k}"
        )
    x = np.concatenate([full.x_train[full.y_train >= k], full.x_test[full.y_test >= k]])
    y = np.concatenate([full.y_train[full.y_train >= k], full.y_test[full.y_test >= k]]) - k
    return ImageDataset(
        name=f"{full.name}-public{full.num_classes - k}",
        x_train=x,
        y_train=y.astype(np.int64),
        x_test=np.zeros((0, *x.shape[1:]), np.float32),
        y_test=np.zeros(0, np.int64),
        class_names=full.class_names[k:],
        description=(
            f"AT&T faces, identities s{k + 1}-s{full.num_classes}, all ten images each, labelled: "
            "public data for pre-training"
        ),
    )


__all__ = [
    "ANY_ARCHITECTURE",
    "DPSGD",
    "MID",
    "TRAINING_DEFENSES",
    "BiDO",
    "DefendedModel",
    "LabelSmoothing",
    "TrainingDefense",
    "TransferLearning",
    "UserArchitecture",
    "arch_name",
    "load_att_faces_public",
]
