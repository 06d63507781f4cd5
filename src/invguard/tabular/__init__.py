"""Attribute inference on tabular models: the original model inversion.

Fredrikson et al. (USENIX Security 2014) recovered patients' genotypes from a warfarin dosing
model; Fredrikson, Jha and Ristenpart (CCS 2015) inferred survey answers from decision trees;
Mehnaz et al. (USENIX Security 2022) sharpened the black-box attacks. This package runs those
attacks on scikit-learn, PyTorch, ONNX and HTTP models of tabular data (the Adult census data, or
your CSV), always beside the baselines that say whether the model leaks more than the population
already reveals.

Names are loaded lazily so that ``import invguard.tabular`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invguard._lazy import lazy_exports

if TYPE_CHECKING:
    from invguard.tabular.attacks import (
        ATTACKS,
        CSMIA,
        AttributeAttack,
        AttributeInferenceRequest,
        AttributeInferenceResult,
        AuxiliaryRows,
        ConfidenceScoreAttack,
        DecisionTreeWhiteBox,
        FredriksonMAP,
        ImputationBaseline,
        PriorBaseline,
    )
    from invguard.tabular.data import (
        RowSplit,
        SensitiveAttribute,
        TabularData,
        TabularEncoder,
        load_adult,
        load_csv,
        split_rows,
    )
    from invguard.tabular.metrics import (
        AttributeMetrics,
        McNemarResult,
        accuracy,
        advantage,
        attribute_metrics,
        g_mean,
        mcc,
        mcnemar_test,
    )
    from invguard.tabular.models import (
        TABULAR_ARCHS,
        load_tabular_target,
        save_tabular_model,
        tabular_target,
        train_tabular_model,
    )
    from invguard.tabular.report import (
        TabularAssessment,
        default_attacks,
        format_assessment,
        run_assessment,
        write_report,
    )
    from invguard.tabular.scenario import TabularScenario, build_scenario, shuffle_sensitive
    from invguard.tabular.table import Table

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "ATTACKS",
            "CSMIA",
            "AttributeAttack",
            "AttributeInferenceRequest",
            "AttributeInferenceResult",
            "AuxiliaryRows",
            "ConfidenceScoreAttack",
            "DecisionTreeWhiteBox",
            "FredriksonMAP",
            "ImputationBaseline",
            "PriorBaseline",
        ),
        "attacks",
    ),
    **dict.fromkeys(
        (
            "RowSplit",
            "SensitiveAttribute",
            "TabularData",
            "TabularEncoder",
            "load_adult",
            "load_csv",
            "split_rows",
        ),
        "data",
    ),
    **dict.fromkeys(
        (
            "AttributeMetrics",
            "McNemarResult",
            "accuracy",
            "advantage",
            "attribute_metrics",
            "g_mean",
            "mcc",
            "mcnemar_test",
        ),
        "metrics",
    ),
    **dict.fromkeys(
        (
            "TABULAR_ARCHS",
            "load_tabular_target",
            "save_tabular_model",
            "tabular_target",
            "train_tabular_model",
        ),
        "models",
    ),
    **dict.fromkeys(
        (
            "TabularAssessment",
            "default_attacks",
            "format_assessment",
            "run_assessment",
            "write_report",
        ),
        "report",
    ),
    **dict.fromkeys(("TabularScenario", "build_scenario", "shuffle_sensitive"), "scenario"),
    "Table": "table",
}

__all__ = [
    "ATTACKS",
    "CSMIA",
    "TABULAR_ARCHS",
    "AttributeAttack",
    "AttributeInferenceRequest",
    "AttributeInferenceResult",
    "AttributeMetrics",
    "AuxiliaryRows",
    "ConfidenceScoreAttack",
    "DecisionTreeWhiteBox",
    "FredriksonMAP",
    "ImputationBaseline",
    "McNemarResult",
    "PriorBaseline",
    "RowSplit",
    "SensitiveAttribute",
    "Table",
    "TabularAssessment",
    "TabularData",
    "TabularEncoder",
    "TabularScenario",
    "accuracy",
    "advantage",
    "attribute_metrics",
    "build_scenario",
    "default_attacks",
    "format_assessment",
    "g_mean",
    "load_adult",
    "load_csv",
    "load_tabular_target",
    "mcc",
    "mcnemar_test",
    "run_assessment",
    "save_tabular_model",
    "shuffle_sensitive",
    "split_rows",
    "tabular_target",
    "train_tabular_model",
    "write_report",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
