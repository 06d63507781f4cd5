from __future__ import annotations

import pytest
from scipy.stats import binomtest

from invguard.errors import InvalidParameterError
from invguard.metrics import wilson_interval


@pytest.mark.parametrize(("k", "n"), [(21, 40), (19, 40), (0, 40), (40, 40), (3, 5), (1, 1)])
def test_matches_scipys_wilson_interval(k: int, n: int) -> None:
    want = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((want.low, want.high), abs=1e-12)


def test_known_values_and_width() -> None:
    lo, hi = wilson_interval(21, 40)  # the faces CNN's 0.525 on 40 identities
    assert (round(lo, 3), round(hi, 3)) == (0.375, 0.671)
    assert wilson_interval(0, 40)[0] == 0.0
    assert wilson_interval(40, 40)[1] == 1.0
    narrow, wide = wilson_interval(200, 400), wilson_interval(20, 40)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2  # 10 x the trials: ~3 x narrower
    lo99, hi99 = wilson_interval(21, 40, confidence=0.99)
    assert lo99 < lo
    assert hi99 > hi


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"successes": 1, "n": 0}, "The 'n' parameter must be an int >= 1, got 0"),
        ({"successes": 5, "n": 4}, r"The 'successes' parameter must be an int in \[0, 4\], got 5"),
        ({"successes": 1, "n": 4, "confidence": 1.0}, "The 'confidence' parameter"),
        ({"successes": True, "n": 4}, "The 'successes' parameter"),
    ],
)
def test_bad_input_names_the_parameter(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        wilson_interval(**kwargs)  # type: ignore[arg-type]
