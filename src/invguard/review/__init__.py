"""Human review of reconstructions: a blind HTML sheet out, a person's labels back in.

>>> from invguard.review import export_sheet, import_labels         # doctest: +SKIP
>>> sheet, key = export_sheet("invguard-report", seed=0)            # doctest: +SKIP
>>> review = import_labels("review-labels.json", "invguard-report")  # doctest: +SKIP
>>> review["kappa"]                                                  # doctest: +SKIP

The sheet shows each reconstruction beside a private image of its own identity and beside images of
other identities, shuffled, with nothing about the judges or the classes; the answer key is written
to a separate file. Imported labels become the highest-ranked judge of the report's verdict, with
Cohen's kappa against each automatic judge.
"""

from invguard.review.labels import (
    Labels,
    ReviewKey,
    apply_review,
    human_decisions,
    import_labels,
    import_review,
    read_key,
    read_labels,
)
from invguard.review.sheet import (
    KEY_NAME,
    KEY_SCHEMA,
    LABEL_VALUES,
    LABELS_SCHEMA,
    SHEET_NAME,
    Pair,
    ReviewError,
    export_sheet,
    make_pairs,
)

__all__ = [
    "KEY_NAME",
    "KEY_SCHEMA",
    "LABELS_SCHEMA",
    "LABEL_VALUES",
    "SHEET_NAME",
    "Labels",
    "Pair",
    "ReviewError",
    "ReviewKey",
    "apply_review",
    "export_sheet",
    "human_decisions",
    "import_labels",
    "import_review",
    "make_pairs",
    "read_key",
    "read_labels",
]
