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
    phi = (a * d - b * c) / math.sqrt(margins) if margins > 0 else 0.0
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
    values = [statistic(rng.integers(0, n, n)) for _ in range(rounds)]
    finite = np.asarray([v for v in values if math.isfinite(v)])
    if len(finite) == 0:
        return (math.nan, math.nan)
    return (float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5)))
