"""Confidence intervals for accuracy drops measured on a finite evaluation set.

At 500 samples one sample is 0.2 points, so a drop of 2.8 points may well be 3.5 on other data.
The drop is a paired quantity (the same samples through both models), so its interval comes
from the paired outcomes: only the samples on which exactly one model is right move it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Z95 = 1.959963984540054


def paired_drop_interval(float_correct: np.ndarray, quant_correct: np.ndarray) -> tuple[float, float]:
    """95% interval of ``mean(float_correct) - mean(quant_correct)`` on the same samples.

    Newcombe's hybrid score interval for paired proportions (method 10 of Newcombe, "Improved
    confidence intervals for the difference between binomial proportions based on paired
    data", Statistics in Medicine 17, 1998): it stays honest when no sample changed answer,
    where a bootstrap or Wald interval collapses to a single point.
    """
    n = len(float_correct)
    if n == 0:
        return (math.nan, math.nan)
    f, q = np.asarray(float_correct, bool), np.asarray(quant_correct, bool)
    a, b = int(np.sum(f & q)), int(np.sum(f & ~q))
    c, d = int(np.sum(~f & q)), int(np.sum(~f & ~q))
    p_float, p_quant = (a + b) / n, (a + c) / n
    l1, u1 = proportion_interval(a + b, n)
    l2, u2 = proportion_interval(a + c, n)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    # Newcombe's phi is continuity-corrected: AD - BC less n/2 when above n/2, 0 up to it. Without
    # it, a set where no sample changed answer has phi = 1 and the interval shrinks to a sliver
    # (0 of 120 changed: +-0.2 points, where 3.5 changed answers in 120 are still likely).
    excess = a * d - b * c
    corrected = excess - n / 2 if excess > n / 2 else (0.0 if excess >= 0 else excess)
    phi = corrected / math.sqrt(margins) if margins > 0 else 0.0
    delta = math.sqrt(max(0.0, (p_float - l1) ** 2 - 2 * phi * (p_float - l1) * (u2 - p_quant) + (u2 - p_quant) ** 2))
    epsilon = math.sqrt(max(0.0, (u1 - p_float) ** 2 - 2 * phi * (u1 - p_float) * (p_quant - l2) + (p_quant - l2) ** 2))
    drop = p_float - p_quant
    return (max(-1.0, drop - delta), min(1.0, drop + epsilon))


def proportion_interval(successes: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion (e.g. the share of changed top-1 answers)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denominator = 1 + Z95**2 / n
    center = (p + Z95**2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denominator
    return (max(0.0, center - half), min(1.0, center + half))


def mean_interval(values: np.ndarray) -> tuple[float, float]:
    """95% interval of the mean of per-sample ``values`` (normal approximation, n - 1 spread)."""
    n = len(values)
    if n == 0:
        return (math.nan, math.nan)
    mean = float(np.mean(values))
    if n == 1:
        return (mean, mean)
    half = Z95 * float(np.std(values, ddof=1)) / math.sqrt(n)
    return (mean - half, mean + half)


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n: int, rng: np.random.Generator,
                       rounds: int = 1000) -> tuple[float, float]:
    """95% percentile-bootstrap interval of ``statistic(indices)`` over ``n`` paired samples.

    For statistics without a closed-form interval (AUC, rank correlation): ``statistic`` gets the
    resampled indices, so both models are resampled together. Seeded by ``rng``: the same data
    gives the same interval. Resamples where the statistic is undefined (e.g. one class) are left out.
    """
    if n < 2:
        return (math.nan, math.nan)
    # Each round sorts n values: bound the work (200 rounds still place the 2.5% tails).
    rounds = max(200, min(rounds, 5_000_000 // n))
    values = [statistic(rng.integers(0, n, n)) for _ in range(rounds)]
    finite = np.asarray([v for v in values if math.isfinite(v)])
    if len(finite) == 0:
        return (math.nan, math.nan)
    return (float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5)))


def ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks of ``a``, ties given their average rank (vectorized: bootstraps call it often)."""
    a = np.asarray(a, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    first = np.r_[True, sorted_a[1:] != sorted_a[:-1]]  # where each group of equal values starts
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(a)]
    average = (starts + ends + 1) / 2.0  # mean of the ranks start+1 .. end
    result = np.empty(len(a), dtype=np.float64)
    result[order] = average[np.cumsum(first) - 1]
    return result


def paired_auc_drop_interval(scores_a: np.ndarray, scores_b: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """95% interval of ``AUC(scores_a) - AUC(scores_b)`` on the same samples (DeLong, DeLong and
    Clarke-Pearson 1988: the paired AUCs' covariance from each sample's placement values)."""
    positive = np.asarray(positive, bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 < 2 or n0 < 2:
        return (math.nan, math.nan)
    aucs, v10, v01 = [], [], []
    for scores in (scores_a, scores_b):
        everything, pos, neg = ranks(scores), ranks(scores[positive]), ranks(scores[~positive])
        # A positive's placement: the share of negatives it outranks (ties half); a negative's:
        # the share of positives that outrank it.
        placements_pos = (everything[positive] - pos) / n0
        placements_neg = 1.0 - (everything[~positive] - neg) / n1
        aucs.append(float(placements_pos.mean()))
        v10.append(placements_pos)
        v01.append(placements_neg)
    s10, s01 = np.cov(np.vstack(v10)), np.cov(np.vstack(v01))
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / n1 + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n0
    half = Z95 * math.sqrt(max(0.0, float(variance)))
    drop = aucs[0] - aucs[1]
    return (drop - half, drop + half)


def mcnemar_exact_p(lost: int, gained: int) -> float:
    """One-sided exact McNemar test on discordant pairs: the chance of ``lost`` or more of the
    ``lost + gained`` samples that changed answer going the worse way if either way were as
    likely (binomial, p = 1/2). Small p: the samples lost are more than noise."""
    changed = lost + gained
    if changed == 0 or lost == 0:
        return 1.0
    # Summed in log space: math.comb of tens of thousands overflows a float.
    log_half = changed * math.log(0.5)
    terms = [math.lgamma(changed + 1) - math.lgamma(k + 1) - math.lgamma(changed - k + 1) + log_half
             for k in range(lost, changed + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))
