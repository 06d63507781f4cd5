"""Reference architectures, deterministic training, the safe on-disk model cache, and the safe
loader of the user's own models (``load_user_model``)."""

from invguard.models.architectures import (
    ARCHITECTURES,
    TARGET_ARCHITECTURES,
    FeatureClassifier,
    build_model,
    init_parameters,
)
from invguard.models.cache import ModelCache, default_cache_dir, load_state_dict_file
from invguard.models.loading import load_exported_program, load_user_model
from invguard.models.training import AugmentConfig, TrainConfig, TrainedModel, train_classifier
from invguard.models.zoo import (
    EVALUATION_ARCH,
    EVALUATION_RECIPE,
    TARGET_RECIPES,
    train_evaluation_model,
    train_second_evaluation_model,
    train_target,
)

__all__ = [
    "ARCHITECTURES",
    "EVALUATION_ARCH",
    "EVALUATION_RECIPE",
    "TARGET_ARCHITECTURES",
    "TARGET_RECIPES",
    "AugmentConfig",
    "FeatureClassifier",
    "ModelCache",
    "TrainConfig",
    "TrainedModel",
    "build_model",
    "default_cache_dir",
    "init_parameters",
    "load_exported_program",
    "load_state_dict_file",
    "load_user_model",
    "train_classifier",
    "train_evaluation_model",
    "train_second_evaluation_model",
    "train_target",
]
