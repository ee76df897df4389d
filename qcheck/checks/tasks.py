"""Task-aware accuracy: what quantization costs each output head, measured the way its task is judged.

Pure functions of numpy arrays (no TensorFlow, no interpreter), so each metric is unit-testable.
Every task reports one *share lost* (a fraction, larger is worse) that ``accuracy_drop``'s ``max``
judges, whatever the task:

- classification: top-1 points lost against the labels (without labels: the share of samples
  whose top-1 changed);
- binary: points lost at the decision threshold (0.5 for a sigmoid, 0 for a logit);
- regression: the error quantization adds (mean absolute error against the labels, or against the
  float model without labels), as a share of the float output's range;
- reconstruction: with normal/anomaly labels the AUC points lost by the anomaly score (the
  per-sample reconstruction error); without, 1 - Spearman's rank correlation of the quantized
  scores with the float scores; the mean score's change is judged on its own threshold;
- embedding: the mean cosine distance (1 - cosine) of the quantized embeddings to the float ones,
  and the mean cosine on its own threshold; with verification pairs (same/different identity), the
  AUC points lost by the pairs' cosine similarity, the mean cosine still on its own threshold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from qcheck.errors import suggest
from qcheck.stats import (bootstrap_interval, mean_interval, paired_auc_drop_interval, paired_drop_interval,
                          proportion_interval, ranks)
from qcheck.units import parse_quantity

if TYPE_CHECKING:
    from qcheck.data import Pairs

TASKS = ("classification", "binary", "regression", "reconstruction", "embedding")
# A head whose float top-1 is this one index on at least this share of samples says nothing by top-1.
CONSTANT_TOP1 = 0.95


@dataclass(frozen=True)
class Limits:
    """The task thresholds of a head's own, besides the check's ``max`` (suite options).

    ``max_score_change``: how much the mean anomaly score of a reconstruction may move without
    labels (ad01's int8 moves it 6%; a crushed activation range doubles it). ``min_cosine``: the
    mean cosine of the quantized to the float embeddings (0.99, the usual bar for int8 outputs,
    lets them be ~14% off; the check's 3% cosine distance alone would let them be ~25% off).
    """

    max_score_change: float = 0.25
    min_cosine: float = 0.99

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Limits:
        defaults = cls()
        return cls(float(options.get("max_score_change", defaults.max_score_change)),
                   float(options.get("min_cosine", defaults.min_cosine)))


class TaskError(ValueError):
    """Labels or a declared task that do not fit a head: a sentence for the user."""


@dataclass(frozen=True)
class HeadResult:
    """What quantization cost one output head, in its task's metric.

    ``loss`` is the share lost that the check's ``max`` judges; ``ci_low``/``ci_high`` its 95%
    interval; ``numbers`` the task's own figures (for the report); ``failures`` the thresholds of
    the head's own (besides ``max``) that it broke.
    """

    head: str
    task: str
    metric: str
    loss: float
    ci_low: float
    ci_high: float
    samples: int
    labelled: bool
    summary: str
    why: str = ""  # how the task was chosen (declared, or what it was inferred from)
    numbers: dict[str, float | None] = field(default_factory=dict)
    failures: tuple[str, ...] = ()

    def describe(self) -> str:
        interval = f"95% CI {self.ci_low * 100:.2f} to {self.ci_high * 100:.2f}"
        why = f"; {self.why}" if self.why else ""
        return (f"'{self.head}' ({self.task}{why}): {self.summary}; "
                f"{self.metric} {self.loss * 100:.2f}% ({interval}; {self.samples} samples)")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "task": self.task,
            "metric": self.metric,
            "summary": self.summary,
            "task_reason": self.why,
            "drop": self.loss,
            "samples": self.samples,
            "labelled": self.labelled,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "float": None,
            "quantized": None,
        }
        data.update(self.numbers)
        return data


# -- options ---------------------------------------------------------------------------------


def task_name(value: Any) -> str:
    """Validate one task name (a suite, marker or API option)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a task name, not {value!r}; tasks: {', '.join(TASKS)}")
    if value not in TASKS:
        raise ValueError(f"unknown task '{value}'{suggest(value, TASKS)}; tasks: {', '.join(TASKS)}")
    return value


def task_table(value: Any) -> dict[str, str]:
    """Validate ``{head = "task"}``; the head names are checked against the model when it runs."""
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a table of output name = task, e.g. {{ out = \"regression\" }}, not {value!r}")
    table = {}
    for head, task in value.items():
        try:
            table[str(head)] = task_name(task)
        except ValueError as exc:
            raise ValueError(f"'{head}': {exc}") from None
    return table


def share(value: Any) -> float:
    """A fraction option ("25%" or 0.25)."""
    return parse_quantity(value, "fraction")


def cosine_bound(value: Any) -> float:
    """A cosine similarity option, -1 to 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1 <= value <= 1:
        raise ValueError(f"must be a cosine similarity between -1 and 1, e.g. 0.99, not {value!r}")
    return float(value)


def declared_tasks(options: Mapping[str, Any], heads: tuple[str, ...]) -> dict[str, str]:
    """The task each head is declared to have (``tasks`` over ``task``); unknown heads are errors."""
    table: Mapping[str, str] = options.get("tasks") or {}
    unknown = sorted(set(table) - set(heads))
    if unknown:
        raise TaskError(f"tasks names output '{unknown[0]}'{suggest(unknown[0], heads)}, which the model does not "
                        f"have; its outputs are " + ", ".join(f"'{h}'" for h in heads))
    default: str | None = options.get("task")
    declared = {h: table.get(h, default) for h in heads}
    return {h: task for h, task in declared.items() if task is not None}


# -- inference -------------------------------------------------------------------------------


def _integral(y: np.ndarray) -> bool:
    return y.dtype.kind in "iub" or bool(np.all(y == np.round(y)))


def _softmax_like(f: np.ndarray) -> bool:
    return f.shape[1] >= 2 and bool(np.all(f >= -1e-6)) and bool(np.allclose(f.sum(axis=1), 1.0, atol=1e-3))


def _targets(y: np.ndarray) -> bool:
    """Labels with several values per sample: targets of the output's shape (class labels are
    one index per sample once :func:`qcheck.data._labels` has read one-hot rows)."""
    return y.ndim >= 2 and math.prod(y.shape[1:]) > 1


def reconstructs(f: np.ndarray, x: Any) -> bool:
    """Whether the float output follows its input: an affine map of the input explains at least
    half of the output's variance (a segmentation mask or a per-pixel class map does not)."""
    if x is None or len(x) != len(f) or math.prod(x.shape[1:]) != math.prod(f.shape[1:]):
        return False
    _, _, explained = _affine_fit(np.asarray(x, dtype=np.float64).reshape(-1), f.astype(np.float64).reshape(-1))
    return explained >= 0.5


def infer_task(f: np.ndarray, y: np.ndarray | None, input_shape: tuple[int, ...] | None,
               sigmoid: bool | None = None, x: Any = None) -> tuple[str, str]:
    """(task, why) for a head with float outputs ``f`` (samples, ...), labels ``y`` and the
    model's per-sample input shape (None for several inputs). ``sigmoid``: whether the quantized
    output has a sigmoid's fixed scale, None when unknown. ``x``: the inputs, when given, show
    whether an output of the input's shape reconstructs it."""
    flat = f.reshape(len(f), -1)
    values = flat.shape[1]
    same_as_input = input_shape is not None and values >= 2 and tuple(f.shape[1:]) == tuple(input_shape)
    # A softmax is a classifier whatever its shape (10 features, 10 classes).
    softmax = _softmax_like(flat)
    # By shape alone an output that does not follow its input (a sigmoid mask) is no reconstruction.
    reconstruction = same_as_input and not softmax and (x is None or reconstructs(f, x))
    if y is not None:
        if not _integral(y):
            return "regression", "inferred: float labels"
        if _targets(y):
            return "regression", "inferred: several label values per sample"
        if reconstruction:
            return "reconstruction", "inferred: the output has the input's shape; labels are normal/anomaly"
        if (same_as_input and not softmax and set(np.unique(y).tolist()) == {0, 1}
                and float(np.mean(flat.argmax(axis=1) == y.reshape(-1))) < 0.5):
            # An autoencoder fed data unlike its training data does not follow it, but its 0/1 labels
            # are still normal/anomaly: as class indices they would name 2 of its many outputs, and
            # top-1 over a reconstruction is no metric (the float model scores 0%, so nothing drops).
            # A classifier whose logits happen to have the input's shape (2 features, 2 classes)
            # gets its labels right as class indices, better than a coin: it stays a classifier.
            return "reconstruction", ("inferred: the output has the input's shape and labels are normal/anomaly "
                                      "(0/1), though the float output hardly follows this input: check that the "
                                      "data is preprocessed as the model's training data was")
        if values == 1:
            if set(np.unique(y).tolist()) <= {0, 1}:
                return "binary", "inferred: one value per sample and 0/1 labels"
            return "regression", "inferred: one value per sample and numeric labels"
        return "classification", "inferred: class labels"
    if values == 1:
        # A sigmoid's quantized output has a fixed scale; a regression that stays in [0, 1] does not,
        # so values in [0, 1] alone are not taken for a sigmoid.
        if sigmoid:
            return "binary", "inferred: one value per sample with a sigmoid's fixed output scale"
        return "regression", "inferred: one value per sample"
    if softmax:
        return "classification", "inferred: a softmax output"
    if reconstruction:
        return "reconstruction", "inferred: the output has the input's shape and follows it"
    if same_as_input:
        return "regression", "inferred: the output has the input's shape but does not reconstruct it (e.g. a mask)"
    return "embedding", "inferred: no softmax, no labels, several values per sample"


# -- metrics (numpy only) ----------------------------------------------------------------------


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's correlation of the (tie-averaged) ranks."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float(np.sum(ra * ra)) * float(np.sum(rb * rb)))
    if denominator == 0:
        return 1.0 if np.array_equal(ranks(a), ranks(b)) else 0.0
    return float(np.sum(ra * rb)) / denominator


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for positive ``labels`` (Mann-Whitney U / n1 n0)."""
    positive = np.asarray(labels).astype(bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return math.nan
    r = ranks(scores)
    u = float(r[positive].sum()) - n1 * (n1 + 1) / 2.0
    return u / (n1 * n0)


def sqnr_db(f: np.ndarray, q: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``q`` against ``f``, in dB (inf when equal)."""
    noise = float(np.sum((q.astype(np.float64) - f) ** 2))
    signal = float(np.sum(f.astype(np.float64) ** 2))
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


# -- one head per task -----------------------------------------------------------------------


def classification(head: str, f: np.ndarray, q: np.ndarray, y: np.ndarray | None, why: str) -> HeadResult:
    """Top-1 drop against integer labels, or top-1 disagreement with the float model."""
    f_top, q_top = f.argmax(axis=1), q.argmax(axis=1)
    n = len(f)
    agreement = float(np.mean(f_top == q_top))
    if y is None:
        low, high = proportion_interval(int(np.sum(f_top != q_top)), n)
        return HeadResult(head, "classification", "top-1 disagreement", 1.0 - agreement, low, high, n, False,
                          f"top-1 agrees with the float model on {agreement:.1%} (no labels)", why,
                          {"agreement": agreement})
    y = y.reshape(n).astype(np.int64)
    if int(y.min()) < 0:
        raise TaskError(f"labels for '{head}' go down to {int(y.min())}: class indices are never negative; "
                        "declare its task (e.g. task = \"regression\") if they are targets")
    if int(y.max()) >= f.shape[1]:
        raise TaskError(f"labels for '{head}' go up to {int(y.max())} but the head has {f.shape[1]} classes")
    fa, qa = float(np.mean(f_top == y)), float(np.mean(q_top == y))
    low, high = paired_drop_interval(f_top == y, q_top == y)
    return HeadResult(head, "classification", "top-1 drop", fa - qa, low, high, n, True,
                      f"top-1 float {fa:.1%} -> quantized {qa:.1%}, agreement {agreement:.1%}", why,
                      {"float": fa, "quantized": qa, "agreement": agreement})


def binary(head: str, f: np.ndarray, q: np.ndarray, y: np.ndarray | None, why: str) -> HeadResult:
    """Decisions at 0.5 (sigmoid outputs) or 0 (logits): accuracy drop with labels, else disagreement."""
    f, q = f.reshape(len(f), -1)[:, 0], q.reshape(len(q), -1)[:, 0]
    threshold = 0.5 if bool(np.all((f >= 0) & (f <= 1))) else 0.0
    f_yes, q_yes = f >= threshold, q >= threshold
    n = len(f)
    agreement = float(np.mean(f_yes == q_yes))
    at = f"at the decision threshold {threshold:g}"
    if y is None:
        low, high = proportion_interval(int(np.sum(f_yes != q_yes)), n)
        return HeadResult(head, "binary", "decision disagreement", 1.0 - agreement, low, high, n, False,
                          f"decisions {at} agree with the float model on {agreement:.1%} (no labels)", why,
                          {"agreement": agreement, "threshold": threshold})
    truth = y.reshape(n).astype(bool)
    fa, qa = float(np.mean(f_yes == truth)), float(np.mean(q_yes == truth))
    low, high = paired_drop_interval(f_yes == truth, q_yes == truth)
    return HeadResult(head, "binary", "accuracy drop", fa - qa, low, high, n, True,
                      f"accuracy {at}: float {fa:.1%} -> quantized {qa:.1%}, agreement {agreement:.1%}", why,
                      {"float": fa, "quantized": qa, "agreement": agreement, "threshold": threshold})


def regression(head: str, f: np.ndarray, q: np.ndarray, y: np.ndarray | None, why: str) -> HeadResult:
    """Error added by quantization as a share of the float output's range, with SQNR."""
    n = len(f)
    f2, q2 = f.reshape(n, -1).astype(np.float64), q.reshape(n, -1).astype(np.float64)
    span = float(f2.max() - f2.min())
    scale = span if span > 0 else max(float(np.abs(f2).max()), 1e-12)
    sqnr = sqnr_db(f2, q2)
    numbers: dict[str, float | None] = {"output_range": span, "sqnr_db": sqnr if math.isfinite(sqnr) else None}
    if y is None:
        per_sample = np.mean(np.abs(q2 - f2), axis=1)
        mae = float(per_sample.mean())
        numbers["mae_vs_float"] = mae
        summary = f"MAE against the float model {mae:.4g} over an output range of {span:.4g}, SQNR {sqnr:.1f} dB"
        metric, labelled = "error added (share of the output range)", False
    else:
        y2 = y.reshape(n, -1).astype(np.float64)
        if y2.shape[1] != f2.shape[1]:
            raise TaskError(f"labels for '{head}' have {y2.shape[1]} value(s) per sample but the output has "
                            f"{f2.shape[1]}; regression labels have the output's shape")
        f_err, q_err = np.abs(f2 - y2), np.abs(q2 - y2)
        per_sample = np.mean(q_err, axis=1) - np.mean(f_err, axis=1)
        mae_f, mae_q = float(f_err.mean()), float(q_err.mean())
        rmse_f, rmse_q = math.sqrt(float(np.mean(f_err**2))), math.sqrt(float(np.mean(q_err**2)))
        numbers.update({"mae_float": mae_f, "mae_quantized": mae_q, "rmse_float": rmse_f, "rmse_quantized": rmse_q})
        summary = (f"MAE against the labels float {mae_f:.4g} -> quantized {mae_q:.4g} (RMSE {rmse_f:.4g} -> "
                   f"{rmse_q:.4g}) over an output range of {span:.4g}, SQNR {sqnr:.1f} dB")
        metric, labelled = "error added (share of the output range)", True
    low, high = mean_interval(per_sample / scale)
    return HeadResult(head, "regression", metric, float(per_sample.mean()) / scale, low, high, n, labelled,
                      summary, why, numbers)


def _affine_fit(x: np.ndarray, f: np.ndarray) -> tuple[float, float, float]:
    """(a, b, share of f's variance explained) of the least-squares fit f ~ a x + b."""
    x, f = x.astype(np.float64), f.astype(np.float64)
    var_x, var_f = float(np.var(x)), float(np.var(f))
    if var_x == 0 or var_f == 0:
        return 1.0, 0.0, 1.0 if np.allclose(f, x) else 0.0
    a = float(np.mean((x - x.mean()) * (f - f.mean()))) / var_x
    b = float(f.mean()) - a * float(x.mean())
    return a, b, 1.0 - float(np.mean((f - (a * x + b)) ** 2)) / var_f


def reconstruction_target(f: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, str]:
    """The input in the output's units, and how it was put there.

    An autoencoder that preprocesses its input (a Rescaling(1/255) in the model, uint8 frames)
    reconstructs ``x`` in other units: its error against raw ``x`` would be ``x`` itself, the same
    for the float and the quantized model. When the float output's range is not the input's
    (beyond a factor of 2), ``x`` is mapped into the output's units by the least-squares affine fit
    of the float output on it, and both models' errors are measured against that.
    """
    n = len(f)
    xf, ff = x.reshape(n, -1).astype(np.float64), f.reshape(n, -1).astype(np.float64)
    span_x, span_f = float(xf.max() - xf.min()), float(ff.max() - ff.min())
    if span_x == 0 or span_f == 0 or 0.5 <= span_f / span_x <= 2.0:
        return xf, ""
    a, b, _ = _affine_fit(xf.reshape(-1), ff.reshape(-1))
    return a * xf + b, f"the input mapped into the output's units ({a:.4g} x {b:+.4g})"


def anomaly_scores(out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per-sample reconstruction error: the mean squared difference between output and input
    (the input as :func:`reconstruction_target` puts it in the output's units)."""
    n = len(out)
    return np.asarray(np.mean((out.reshape(n, -1).astype(np.float64) - x.reshape(n, -1)) ** 2, axis=1))


def reconstruction(head: str, f: np.ndarray, q: np.ndarray, y: np.ndarray | None, why: str,
                   x: Any, max_score_change: float = Limits.max_score_change) -> HeadResult:
    """Anomaly scores of both models: AUC drop with 0/1 labels; rank agreement and mean change without."""
    n = len(f)
    if x is None or len(x) != n or math.prod(x.shape[1:]) != math.prod(f.shape[1:]):
        raise TaskError(f"'{head}' is judged as a reconstruction, but the model's input does not have its shape "
                        f"{tuple(f.shape[1:])}; declare its task (e.g. task = \"regression\")")
    target, units = reconstruction_target(f, np.asarray(x, dtype=np.float64))
    sf, sq = anomaly_scores(f, target), anomaly_scores(q, target)
    mean_f, mean_q = float(sf.mean()), float(sq.mean())
    change = mean_q / mean_f - 1.0 if mean_f > 0 else (0.0 if mean_q == 0 else math.inf)
    numbers: dict[str, float | None] = {"mean_score_float": mean_f, "mean_score_quantized": mean_q,
                                        "mean_score_change": change}
    scores = f"mean anomaly score (reconstruction MSE) float {mean_f:.4g} -> quantized {mean_q:.4g} ({change:+.1%})"
    if units:
        scores += f", against {units}"
    failures: tuple[str, ...] = ()
    if abs(change) > max_score_change:
        failures = (f"'{head}' mean anomaly score changed {change:+.1%} > max_score_change {max_score_change:.0%}",)
    if y is not None:
        truth = y.reshape(n).astype(np.int64)
        if not set(np.unique(truth).tolist()) <= {0, 1} or len(np.unique(truth)) < 2:
            raise TaskError(f"labels for reconstruction head '{head}' must be 0 (normal) and 1 (anomaly), "
                            "with both present")
        auc_f, auc_q = auc(sf, truth), auc(sq, truth)
        low, high = paired_auc_drop_interval(sf, sq, truth.astype(bool))
        numbers.update({"float": auc_f, "quantized": auc_q})
        if auc_f < 0.5:
            # Scores rank the 'anomalies' below the normal samples: the labels are the wrong way
            # round (image folders are labelled in name order: anomaly/ < normal/, defect/ < good/).
            # An AUC drop against reversed labels rewards a model that gets worse.
            failures += (f"'{head}': the float model's anomaly AUC is {auc_f:.3f} < 0.5, so the labels look "
                         "reversed (1 must mean anomaly, 0 normal; image sub-folders are numbered in name order, "
                         "e.g. anomaly/ = 0, normal/ = 1): swap them (y = 1 - y) or drop them",)
        return HeadResult(head, "reconstruction", "AUC drop", auc_f - auc_q, low, high, n, True,
                          f"anomaly AUC float {auc_f:.3f} -> quantized {auc_q:.3f}; {scores}", why, numbers, failures)
    rho = spearman(sf, sq)
    low, high = bootstrap_interval(lambda i: 1.0 - spearman(sf[i], sq[i]), n, np.random.default_rng(0))
    numbers["spearman"] = rho
    return HeadResult(head, "reconstruction", "1 - Spearman of the anomaly scores", 1.0 - rho, low, high, n, False,
                      f"Spearman {rho:.4f} of quantized against float anomaly scores (no labels); {scores}",
                      why, numbers, failures)


def pair_cosines(e: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Cosine similarity of the two embeddings of each pair (0 where one is all zeros)."""
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    unit = e / np.where(norms > 0, norms, 1.0)
    return np.asarray(np.sum(unit[index[:, 0]] * unit[index[:, 1]], axis=1))


def best_threshold(similarity: np.ndarray, same: np.ndarray) -> float:
    """The similarity threshold (``same`` when at or above it) with the highest accuracy on these pairs;
    midway between two observed similarities, the lowest of equally good ones."""
    s = np.sort(similarity)
    values = np.unique(s)
    candidates = np.r_[values[0] - 1.0, (values[:-1] + values[1:]) / 2.0, values[-1] + 1.0]
    below = np.searchsorted(s, candidates, side="left")  # pairs called "different" at each threshold
    ordered = same[np.argsort(similarity, kind="mergesort")]
    same_below = np.r_[0, np.cumsum(ordered)][below]
    correct = (below - same_below) + (int(ordered.sum()) - same_below)
    return float(candidates[int(np.argmax(correct))])


def verification(head: str, f: np.ndarray, q: np.ndarray,
                 pairs: Pairs) -> tuple[float, float, float, dict[str, float | None], str]:
    """(AUC drop, its DeLong interval, numbers, summary) of same/different-identity pairs
    told apart by cosine similarity, and the accuracy of both at the float model's best threshold."""
    index, same = pairs.index, pairs.same
    if int(same.sum()) < 2 or int((~same).sum()) < 2:
        raise TaskError(f"only {len(same)} of the {pairs.given} verification pairs for '{head}' have both samples "
                        f"in the evaluation set ({int(same.sum())} same, {int((~same).sum())} different; 2 of each "
                        "are needed): give more pairs, or a separate calibration set (--qcheck-calibration) so that "
                        "every sample is evaluated")
    sf, sq = pair_cosines(f, index), pair_cosines(q, index)
    auc_f, auc_q = auc(sf, same), auc(sq, same)
    low, high = paired_auc_drop_interval(sf, sq, same)
    threshold = best_threshold(sf, same)
    acc_f, acc_q = float(np.mean((sf >= threshold) == same)), float(np.mean((sq >= threshold) == same))
    numbers: dict[str, float | None] = {
        "float": auc_f, "quantized": auc_q, "pairs": len(same), "pairs_given": pairs.given,
        "verification_threshold": threshold, "verification_accuracy_float": acc_f,
        "verification_accuracy_quantized": acc_q}
    left = pairs.given - len(same)
    used = f"{len(same)} pairs" + (f" of {pairs.given} ({left} with a sample used to calibrate)" if left else "")
    summary = (f"verification AUC of the pairs' cosine similarity float {auc_f:.3f} -> quantized {auc_q:.3f} on "
               f"{used}; accuracy at the float model's best threshold {threshold:.3f}: float {acc_f:.1%} -> "
               f"quantized {acc_q:.1%}")
    return auc_f - auc_q, low, high, numbers, summary


def embedding(head: str, f: np.ndarray, q: np.ndarray, why: str, min_cosine: float = Limits.min_cosine,
              pairs: Pairs | None = None) -> HeadResult:
    """Cosine similarity and relative error of the quantized embeddings to the float ones; with
    verification ``pairs``, judged by the AUC points the pairs' cosine similarity loses."""
    n = len(f)
    f2, q2 = f.reshape(n, -1).astype(np.float64), q.reshape(n, -1).astype(np.float64)
    norm_f, norm_q = np.linalg.norm(f2, axis=1), np.linalg.norm(q2, axis=1)
    both = norm_f * norm_q
    cosine = np.where(both > 0, np.sum(f2 * q2, axis=1) / np.where(both > 0, both, 1.0),
                      np.where((norm_f == 0) & (norm_q == 0), 1.0, 0.0))
    relative = np.linalg.norm(q2 - f2, axis=1) / np.where(norm_f > 0, norm_f, 1.0)
    low, high = mean_interval(1.0 - cosine)
    numbers: dict[str, float | None] = {"cosine_mean": float(cosine.mean()), "cosine_worst": float(cosine.min()),
                                        "relative_error_mean": float(relative.mean()),
                                        "relative_error_worst": float(relative.max())}
    failures: tuple[str, ...] = ()
    if cosine.mean() < min_cosine:
        failures = (f"'{head}' mean cosine to the float embeddings {cosine.mean():.4f} < min_cosine {min_cosine:g}",)
    summary = (f"cosine to the float embeddings mean {cosine.mean():.4f}, worst {cosine.min():.4f}; relative "
               f"error mean {relative.mean():.1%}, worst {relative.max():.1%}")
    if pairs is not None:
        drop, low, high, pair_numbers, pair_summary = verification(head, f2, q2, pairs)
        numbers.update(pair_numbers)
        return HeadResult(head, "embedding", "verification AUC drop", drop, low, high, n, True,
                          f"{pair_summary}; {summary}", why, numbers, failures)
    return HeadResult(head, "embedding", "cosine distance (1 - mean cosine)", float(1.0 - cosine.mean()), low, high,
                      n, False, summary, why, numbers, failures)


def judge_head(head: str, f: np.ndarray, q: np.ndarray, y: np.ndarray | None, x: Any,
               declared: str | None, limits: Limits = Limits(), output_scale: float | None = None,
               pairs: Pairs | None = None) -> HeadResult:
    """Measure one head by its declared or inferred task.

    ``f``/``q``: float and dequantized quantized outputs (samples first); ``y``: its labels or None;
    ``x``: the evaluation inputs, an array or a lazily read one (read only for a reconstruction);
    ``output_scale``: the quantized output's scale, when it is an integer tensor; ``pairs``: its
    verification pairs (which make it an embedding head), or None.
    """
    n = len(f)
    input_shape = tuple(x.shape[1:]) if x is not None else None
    if pairs is not None and declared not in (None, "embedding"):
        raise TaskError(f"has verification pairs for '{head}', which is declared {declared}; pairs judge an "
                        "embedding head (declare it task = \"embedding\", or leave the pairs out)")
    if declared is not None:
        task, why = declared, "declared"
    elif pairs is not None:
        task, why = "embedding", "inferred: verification pairs"
    else:
        # TFLite fixes a LOGISTIC output's scale: 1/256 in int8/uint8, 1/32768 in int16.
        sigmoid = None if output_scale is None else any(
            math.isclose(output_scale, fixed, rel_tol=1e-6) for fixed in (1 / 256, 1 / 32768))
        task, why = infer_task(f, y, input_shape, sigmoid, x if input_shape == tuple(f.shape[1:]) else None)
    flat_f, flat_q = f.reshape(n, -1), q.reshape(n, -1)
    if task == "classification" and y is None and flat_f.shape[1] >= 2:
        counts = np.bincount(flat_f.argmax(axis=1), minlength=flat_f.shape[1])
        top = int(counts.argmax())
        if counts[top] >= CONSTANT_TOP1 * n:
            # Agreement on an index the float model always picks says nothing about the values.
            why = (f"{why}; top-1 is not informative: the float model's top-1 is index {top} on "
                   f"{counts[top] / n:.0%} of samples, so judged as an embedding")
            task = "embedding"
    if task in ("classification", "binary") and y is not None and not _integral(y):
        raise TaskError(f"labels for '{head}' are not class indices, but its task is {task}")
    result = _judge_task(head, task, why, f, q, y, x, limits, pairs)
    collapse = collapsed(head, flat_f, flat_q)
    if collapse is None:
        return result
    return replace(result, failures=(*result.failures, collapse))


def collapsed(head: str, f: np.ndarray, q: np.ndarray) -> str | None:
    """A failure when the quantized output is (nearly) constant while the float output varies.

    One or two distinct quantized outputs over the evaluation data, explaining less than half of
    the float output's variation (averaged over the values that vary, each against its own
    variance): whatever the task's metric says (a cosine dominated by one large constant value, a
    top-1 on an index the float model rarely leaves), such a head has lost what it computes. A
    binary head whose int8 output is 0 or 1 where its float output is near 0 or 1 is not this.
    """
    n = len(f)
    distinct_q = len(np.unique(q, axis=0))
    if n < 3 or distinct_q > 2 or len(np.unique(f, axis=0)) <= 2:
        return None
    f64, q64 = f.astype(np.float64), q.astype(np.float64)
    variance = np.sum((f64 - f64.mean(axis=0)) ** 2, axis=0)
    varying = variance > 0
    explained = 1.0 - np.sum((q64 - f64) ** 2, axis=0)[varying] / variance[varying]
    share = float(np.mean(explained))
    if share >= 0.5:
        return None
    same = "the same for all" if distinct_q == 1 else "one of two values on all"
    return (f"'{head}' quantized output is {same} {n} samples while the float output varies (it explains "
            f"{max(share, 0.0):.0%} of the float output's variation): quantization has collapsed this output, "
            "usually because one large value sets the output's scale")


def _judge_task(head: str, task: str, why: str, f: np.ndarray, q: np.ndarray, y: np.ndarray | None, x: Any,
                limits: Limits, pairs: Pairs | None = None) -> HeadResult:
    n = len(f)
    flat_f, flat_q = f.reshape(n, -1), q.reshape(n, -1)
    if task == "classification":
        if flat_f.shape[1] < 2:
            raise TaskError(f"'{head}' has one value per sample: top-1 needs two classes or more; "
                            "declare it binary or regression")
        return classification(head, flat_f, flat_q, y, why)
    if task == "binary":
        if flat_f.shape[1] != 1:
            raise TaskError(f"'{head}' has {flat_f.shape[1]} values per sample; a binary head has one")
        return binary(head, flat_f, flat_q, y, why)
    if task == "regression":
        return regression(head, f, q, y, why)
    if task == "reconstruction":
        return reconstruction(head, f, q, y, why, x, limits.max_score_change)
    if y is not None:
        why += " (its labels are not used: embeddings are compared with the float model's)"
    return embedding(head, flat_f, flat_q, why, limits.min_cosine, pairs)

