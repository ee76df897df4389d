"""Did quantization cost accuracy? ``accuracy_drop``, per output head, by each head's task."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.errors import QcheckError
from qcheck.checks.layers import explain_layers, layer_hint
from qcheck.results import Measurement
from qcheck.units import one_of
from qcheck.tflite.inspect import ModelInfo
from qcheck.checks.tasks import (HeadResult, Limits, TaskError, cosine_bound, declared_tasks, judge_head, share,
                                 task_name, task_table)

if TYPE_CHECKING:
    from qcheck.data import Pairs


T = TypeVar("T")


def head_labels(evidence: Evidence, heads: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Labels keyed by head; ``y`` alone names the only head. Unknown names are errors."""
    data = evidence.evaluation_data()
    if data is None:
        return {}
    return _by_head(data.path, dict(data.labels), heads, "labels", "'y'", lambda h: f"'y_{h}'")


def head_pairs(evidence: Evidence, heads: tuple[str, ...]) -> dict[str, Pairs]:
    """Verification pairs keyed by head; ``pairs`` alone names the only head. Unknown names are errors."""
    data = evidence.evaluation_data()
    if data is None:
        return {}
    return _by_head(data.path, dict(data.pairs), heads, "verification pairs", "'pairs'",
                    lambda h: f"'pairs_{h}'/'same_{h}'")


def _by_head(path: str, arrays: dict[str, T], heads: tuple[str, ...], what: str, plain: str,
             named: Callable[[str], str]) -> dict[str, T]:
    """``arrays`` keyed by output head: the plain name ("") is the only head's; a name that is
    no head's is an error listing the heads' names."""
    if "" in arrays:
        if len(heads) != 1:
            raise QcheckError(path, f"{plain} is ambiguous for a model with {len(heads)} outputs",
                              "name them " + ", ".join(named(h) for h in heads))
        arrays[heads[0]] = arrays.pop("")
    unknown = sorted(set(arrays) - set(heads))
    if unknown:
        raise QcheckError(path, f"has {what} for unknown output(s) {', '.join(unknown)}",
                          "the model's outputs are " + ", ".join(named(h) for h in heads))
    return arrays


# Ops that requantize or reshape without computing: an output's integer scale is found through them.
_PASS_THROUGH = frozenset({"DEQUANTIZE", "QUANTIZE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS"})


def integer_output_scale(info: ModelInfo, name: str) -> float | None:
    """The scale of the integer tensor behind output ``name``: its own, or, for a float output
    (a DEQUANTIZE at the exit), the int8 tensor's the DEQUANTIZE reads. A float-output model is
    then judged like its int8-output twin (a sigmoid's fixed 1/256 scale shows through)."""
    tensor = next((io.tensor for io in info.outputs if io.name == name), None)
    if tensor is None and len(info.outputs) == 1:
        tensor = info.outputs[0].tensor  # a single output keyed by the reference's name (align_heads)
    seen = set()
    while tensor is not None and tensor.dtype not in ("int8", "uint8", "int16"):
        op = info.producer(tensor)
        if op is None or op.op not in _PASS_THROUGH or not op.inputs or (op.subgraph, op.index) in seen:
            return None
        seen.add((op.subgraph, op.index))
        tensor = info.tensor(op.subgraph, op.inputs[0])
    return tensor.scale[0] if tensor is not None and tensor.scale else None


def task_accuracy(evidence: Evidence, options: Mapping[str, Any]) -> list[HeadResult] | str:
    """Per-head results by each head's task, or the reason nothing can be measured."""
    data = evidence.evaluation_data()
    if data is None:
        return "needs evaluation data: pass --qcheck-data=val.npz"
    reference = evidence.reference()
    if reference is None:
        return evidence.no_reference_reason()
    run = evidence.tflm_evaluation("tflm") if options.get("runtime") == "tflm" else evidence.evaluation()
    assert run is not None  # data is present, so the quantized model ran
    labels = head_labels(evidence, reference.output_names)
    pairs = head_pairs(evidence, reference.output_names)
    try:
        declared = declared_tasks(options, reference.output_names)
    except TaskError as exc:
        raise QcheckError(evidence.model, str(exc), "name the model's outputs in [checks.accuracy_drop] tasks") from None
    limits = Limits.from_options(options)
    results = []
    for head in reference.output_names:
        f = reference.outputs[head]
        output = run.outputs[head]
        q = output.values.reshape(f.shape)
        scale = output.params.scale if output.params is not None else integer_output_scale(evidence.info(), head)
        try:
            results.append(judge_head(head, f, q, labels.get(head), data.x, declared.get(head), limits, scale,
                                      pairs.get(head)))
        except TaskError as exc:
            raise QcheckError(data.path, str(exc)) from None
    return results


# An already quantized .tflite was calibrated by whoever converted it: qcheck has no calibration
# of its own to change (--qcheck-remedies has no recipe for it).
QUANTIZED_ELSEWHERE = ("this .tflite was quantized elsewhere, so its ranges come from that conversion's calibration: "
                       "re-quantize its float model with 200-300 representative samples preprocessed exactly like "
                       "inference data, or give qcheck the float model (--qcheck-model) so that --qcheck-remedies "
                       "can try recipes")


@check("accuracy_drop", unit="fraction",
       options={"strict": bool, "task": task_name, "tasks": task_table, "max_score_change": share,
                "min_cosine": cosine_bound, "runtime": one_of("litert", "tflm")},
       sections=("accuracy",))
def accuracy_drop(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Accuracy lost by quantization, in each output head's task metric (worst head).

    Each head is judged by its task (declared with ``task``/``tasks``, or inferred): top-1 drop
    (classification), decision drop (binary), added error as a share of the output range
    (regression), anomaly-score AUC drop or rank agreement (reconstruction), cosine distance or,
    with verification pairs, the pairs' AUC drop (embedding); ``max`` bounds that share for every head, and ``max_score_change`` /
    ``min_cosine`` bound a reconstruction's mean score and an embedding's mean cosine. By default the point estimate is
    judged; with ``strict = true`` the upper end of its 95% interval is, so that a small
    evaluation set cannot pass by luck. With ``runtime = "tflm"`` the quantized model's outputs
    are TensorFlow Lite Micro's (its kernels, as the device computes them), not LiteRT's.
    """
    heads = task_accuracy(evidence, options)
    if isinstance(heads, str):
        return Measurement(None, skip=heads)
    strict = bool(options.get("strict", False))
    def judged(head: HeadResult) -> float:
        return head.ci_high if strict and math.isfinite(head.ci_high) else head.loss

    worst = max(heads, key=judged)
    details = "; ".join(h.describe() for h in heads)
    if len(heads) > 1:
        details = f"worst head '{worst.head}'; " + details
    if options.get("runtime") == "tflm":
        details = f"on TensorFlow Lite Micro's kernels (tflite-micro {evidence.tflm().version}); " + details
    if strict:
        details = f"strict: judged on the upper 95% bound {worst.ci_high * 100:.2f}%; " + details
    run = evidence.evaluation()
    explanation = explain_layers(run.analysis) if run is not None and run.analysis is not None else ""
    calibration = evidence.calibration_diagnosis()
    if calibration is not None and calibration.warnings:
        explanation = "; ".join([*calibration.warnings, *([explanation] if explanation else [])])
    hint = (QUANTIZED_ELSEWHERE if evidence.kind == "tflite" else
            "check that the calibration data is preprocessed exactly like inference data and give "
            "200-300 representative samples")
    return Measurement(
        judged(worst),
        details + (f". {explanation}" if explanation else ""),
        hint + ("; " + layer_hint(run.analysis) if explanation and run is not None and run.analysis is not None else ""),
        sections={"accuracy": {h.head: h.to_dict() for h in heads}},
        interval=None if strict else (worst.ci_low, worst.ci_high),
        samples=worst.samples,
        failures=tuple(f for h in heads for f in h.failures),
    )
