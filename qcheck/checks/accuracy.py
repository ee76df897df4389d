"""Did quantization cost accuracy? ``accuracy_drop``, per output head."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.errors import QcheckError
from qcheck.checks.calibration import calibration_diagnosis
from qcheck.checks.layers import explain_layers, layer_hint
from qcheck.results import Measurement
from qcheck.stats import paired_drop_interval, proportion_interval


@dataclass(frozen=True)
class HeadAccuracy:
    """Float and quantized top-1 of one classification head (accuracies None without labels)."""

    head: str
    samples: int
    agreement: float
    float_accuracy: float | None
    quantized_accuracy: float | None
    ci_low: float = math.nan  # 95% interval of the drop
    ci_high: float = math.nan

    @property
    def drop(self) -> float:
        """Accuracy lost; without labels, the share of samples whose top-1 changed."""
        if self.float_accuracy is None or self.quantized_accuracy is None:
            return 1.0 - self.agreement
        return self.float_accuracy - self.quantized_accuracy

    def to_dict(self) -> dict[str, Any]:
        return {
            "float": self.float_accuracy,
            "quantized": self.quantized_accuracy,
            "drop": self.drop,
            "agreement": self.agreement,
            "samples": self.samples,
            "labelled": self.float_accuracy is not None,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
        }

    def describe(self) -> str:
        interval = f"95% CI {self.ci_low * 100:.2f} to {self.ci_high * 100:.2f}"
        if self.float_accuracy is None or self.quantized_accuracy is None:
            return (f"'{self.head}': top-1 agrees with the float model on {self.agreement:.1%} "
                    f"of {self.samples} samples (no labels; disagreement {interval})")
        return (f"'{self.head}': float {self.float_accuracy:.1%} -> quantized {self.quantized_accuracy:.1%} "
                f"(drop {self.drop * 100:.2f} points, {interval}; agreement {self.agreement:.1%}, "
                f"{self.samples} samples)")


def head_labels(evidence: Evidence, heads: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Labels keyed by head; ``y`` alone names the only head. Unknown names are errors."""
    data = evidence.evaluation_data()
    if data is None:
        return {}
    labels = dict(data.labels)
    if "" in labels:
        if len(heads) != 1:
            raise QcheckError(data.path, f"'y' is ambiguous for a model with {len(heads)} outputs",
                              "name the label arrays " + ", ".join(f"'y_{h}'" for h in heads))
        labels[heads[0]] = labels.pop("")
    unknown = sorted(set(labels) - set(heads))
    if unknown:
        raise QcheckError(data.path, f"has labels for unknown output(s) {', '.join(unknown)}",
                          "the model's outputs are " + ", ".join(f"'y_{h}'" for h in heads))
    return labels


def classification_accuracy(evidence: Evidence) -> list[HeadAccuracy] | str:
    """Per-head accuracy, or the reason it cannot be measured."""
    if evidence.evaluation_data() is None:
        return "needs evaluation data: pass --qcheck-data=val.npz"
    reference = evidence.reference()
    if reference is None:
        return evidence.no_reference_reason()
    run = evidence.evaluation()
    assert run is not None  # data is present, so the quantized model ran
    labels = head_labels(evidence, reference.output_names)
    results = []
    for head in reference.output_names:
        f = reference.outputs[head].reshape(len(reference.outputs[head]), -1)
        q = run.outputs[head].values.reshape(len(f), -1)
        if f.shape[1] < 2:
            continue  # one value per sample: a regression or binary-logit head, not top-1
        f_top, q_top = f.argmax(axis=1), q.argmax(axis=1)
        agreement = float(np.mean(f_top == q_top))
        y = labels.get(head)
        if y is None:
            low, high = proportion_interval(int(np.sum(f_top != q_top)), len(f))
            results.append(HeadAccuracy(head, len(f), agreement, None, None, low, high))
            continue
        if int(y.max()) >= f.shape[1]:
            data = evidence.evaluation_data()
            raise QcheckError(data.path if data else None,
                              f"labels for '{head}' go up to {int(y.max())} but the head has {f.shape[1]} classes")
        low, high = paired_drop_interval(f_top == y, q_top == y)
        results.append(HeadAccuracy(head, len(f), agreement,
                                    float(np.mean(f_top == y)), float(np.mean(q_top == y)), low, high))
    if not results:
        return "no classification head (every output has one value per sample)"
    return results


@check("accuracy_drop", unit="fraction", options={"strict": bool})
def accuracy_drop(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Top-1 accuracy lost by quantization (worst output head).

    By default the point estimate is judged; with ``strict = true`` the upper end of its 95%
    confidence interval is, so that a small evaluation set cannot pass by luck.
    """
    heads = classification_accuracy(evidence)
    if isinstance(heads, str):
        return Measurement(None, skip=heads)
    strict = bool(options.get("strict", False))
    def judged(head: HeadAccuracy) -> float:
        return head.ci_high if strict else head.drop

    worst = max(heads, key=judged)
    details = "; ".join(h.describe() for h in heads)
    if len(heads) > 1:
        details = f"worst head '{worst.head}'; " + details
    if strict:
        details = f"strict: judged on the upper 95% bound {worst.ci_high * 100:.2f} points; " + details
    run = evidence.evaluation()
    explanation = explain_layers(run.analysis) if run is not None and run.analysis is not None else ""
    calibration = calibration_diagnosis(evidence)
    if calibration is not None and calibration.warnings:
        explanation = "; ".join([*calibration.warnings, *([explanation] if explanation else [])])
    hint = ("check that the calibration data is preprocessed exactly like inference data and give "
            "200-300 representative samples")
    return Measurement(
        judged(worst),
        details + (f". {explanation}" if explanation else ""),
        hint + ("; " + layer_hint(run.analysis) if explanation and run is not None and run.analysis is not None else ""),
        sections={"accuracy": {h.head: h.to_dict() for h in heads}},
        interval=None if strict else (worst.ci_low, worst.ci_high),
        samples=worst.samples,
    )
