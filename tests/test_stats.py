"""Confidence intervals: they contain the estimate, shrink with data, and cover the truth."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from qcheck.stats import paired_drop_interval, proportion_interval


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=400))
def test_the_interval_contains_the_observed_drop(pairs: list[tuple[bool, bool]]) -> None:
    f = np.array([p[0] for p in pairs])
    q = np.array([p[1] for p in pairs])
    low, high = paired_drop_interval(f, q)
    drop = f.mean() - q.mean()
    assert -1 <= low <= drop + 1e-12 and drop - 1e-12 <= high <= 1


def test_no_changed_answer_still_leaves_uncertainty() -> None:
    same = np.array([True] * 334 + [False] * 6)
    low, high = paired_drop_interval(same, same)
    assert low < 0 < high  # a bootstrap would collapse to [0, 0]


def test_more_samples_give_a_narrower_interval() -> None:
    widths = []
    for n in (100, 1000, 10000):
        f = np.ones(n, bool)
        q = np.ones(n, bool)
        q[: n // 20] = False  # a 5-point drop
        low, high = paired_drop_interval(f, q)
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]


@settings(max_examples=5, deadline=None)
@given(st.floats(0.02, 0.2), st.floats(0.0, 0.1))
def test_coverage_is_close_to_95_percent(p_only_float: float, p_only_quant: float) -> None:
    rng = np.random.default_rng(1)
    truth = p_only_float - p_only_quant
    covered = 0
    trials = 2000  # the standard error of the coverage is then 0.5 points
    for _ in range(trials):
        u = rng.random(400)
        f = np.where(u < p_only_float, True, np.where(u < p_only_float + p_only_quant, False, rng.random(400) < 0.8))
        q = np.where(u < p_only_float, False, np.where(u < p_only_float + p_only_quant, True, f))
        low, high = paired_drop_interval(f, q)
        covered += low <= truth <= high
    assert covered / trials >= 0.93


def test_wilson_interval_of_a_proportion() -> None:
    low, high = proportion_interval(0, 50)
    assert low < 1e-12 and 0.05 < high < 0.1
    low, high = proportion_interval(25, 50)
    assert low < 0.5 < high and abs((0.5 - low) - (high - 0.5)) < 1e-12


def test_phi_is_continuity_corrected_as_newcombe_defines_it() -> None:
    # vww_96_int8 against vww_96_float on 120 labelled samples: no sample changed answer
    # (56 right in both, 64 wrong in both). Without Newcombe's correction of phi (AD - BC - n/2,
    # as in biostatUZH's confIntPairedProportion after Altman's "Statistics with confidence")
    # phi was 1 and the interval +-0.21 points, though 0 changes in 120 leaves up to ~3% likely.
    same = np.array([True] * 56 + [False] * 64)
    low, high = paired_drop_interval(same, same)
    assert high > 0.01 and low < -0.01
    assert abs(high - 0.016210) < 1e-5 and abs(low + 0.016210) < 1e-5
    # An unbalanced table (40 right in both, 5 only float, 2 only int8, 73 wrong in both), checked
    # against the same R formula transcribed: (-2.105, 7.106) points.
    f = np.array([True] * 45 + [False] * 75)
    q = np.array([True] * 40 + [False] * 5 + [True] * 2 + [False] * 73)
    low, high = paired_drop_interval(f, q)
    assert abs(low + 0.021052) < 1e-5 and abs(high - 0.071064) < 1e-5
