"""Does it run on a microcontroller? ``tflm_ops``, ``arena``, ``tflm_parity``; ``tflm_cpu_ops`` and
``tflm_cpu_parity`` beside an Ethos-U NPU.

Each asks TensorFlow Lite Micro itself (the ``tflite-micro`` package's interpreter, in a child
process, :mod:`qcheck.tflm`): whether it loads the model, the arena its allocator used, and what
its kernels compute on the evaluation samples; and, on an Ethos-U system, the same of the
operators Vela leaves on the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.checks.tasks import TaskError, declared_tasks, share, task_name, task_table
from qcheck.checks.vela import TARGET_OPTIONS, already_compiled, compile_ahead, describe_config, vela_config
from qcheck.errors import QcheckError, StepFailed
from qcheck.results import Measurement
from qcheck.tflm import float_output_step
from qcheck.units import format_quantity, parse_quantity

if TYPE_CHECKING:
    from qcheck.tflite.inspect import ModelInfo
    from qcheck.tflite.run import HeadOutput
    from qcheck.tflm import CpuParity, CpuPartLoad, EarlyRead, TflmLoad
    from qcheck.tflm_kernels import Operator

_LISTED = 8
_ANALYSED = 4  # samples run layer by layer in both runtimes when the outputs differ
_NPU = "needs the Ethos-U NPU (this model was compiled by Vela)"


def _npu_ops(evidence: Evidence) -> int:
    from qcheck.tflm.steps import ETHOS_U

    return sum(1 for op in evidence.info().operators if op.custom and op.op == ETHOS_U)


def _runtime(loaded: TflmLoad) -> str:
    return f"TFLite Micro (tflite-micro {loaded.version})"


@check("tflm_ops", unit="count", sections=("tflm",))
def tflm_ops(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Operators TensorFlow Lite Micro cannot load, as TFLite Micro itself reports."""
    from qcheck.tflm_kernels import resolver_calls
    from qcheck.vela import COMPILED_MODEL_HINT

    info = evidence.info()
    operators = info.operators
    npu = _npu_ops(evidence)
    if npu:
        # TFLM's 'ethos-u' kernel drives the NPU; without one the model does not run.
        unsupported = [{"op": "custom op 'ethos-u'", "count": npu, "reason": _NPU}]
        return Measurement(float(npu), f"{npu} of {len(operators)} operator(s) cannot run on TFLite Micro without "
                           f"the NPU: custom op 'ethos-u' x{npu}: {_NPU}", COMPILED_MODEL_HINT,
                           sections={"tflm": {"resolver": [], "unsupported": unsupported}})
    loaded = evidence.tflm()
    resolver, custom = resolver_calls(operators)
    if loaded.loaded:
        needs = ", ".join(f"{method}()" for method in resolver) or "nothing"
        details = (f"{_runtime(loaded)} loads all {len(operators)} operator(s); your MicroMutableOpResolver<"
                   f"{len(resolver)}> needs {needs}")
        if custom:
            details += "; custom operator(s) " + ", ".join(f"'{code}'" for code in custom) + " are registered by hand"
        section = {"runtime": f"tflite-micro {loaded.version}", "resolver": resolver, "unsupported": []}
        return Measurement(0.0, details, sections={"tflm": section})
    refused = _refused_ops(evidence, loaded)
    total = sum(n for _, n in refused)
    listed = "; ".join(f"{key} x{n}" for key, n in refused[:_LISTED])
    unsupported = [{"op": key, "count": n, "reason": loaded.reason} for key, n in refused]
    hint = ("replace the operator with one TFLite Micro has a kernel for, or register your own kernel for it; "
            "TFLite Micro stops at the first operator it cannot load, so fix that one and run again")
    if evidence.census().hybrid_ops:
        hint = ("convert to full integer (a representative dataset and TFLITE_BUILTINS_INT8): TFLite Micro runs "
                "int8 models, not dynamic-range ones")
    return Measurement(
        float(total),
        f"{_runtime(loaded)} cannot load the model: {loaded.reason} ({listed})",
        hint,
        sections={"tflm": {"runtime": f"tflite-micro {loaded.version}", "resolver": resolver,
                           "unsupported": unsupported}},
    )


def _refused_ops(evidence: Evidence, loaded: TflmLoad) -> list[tuple[str, int]]:
    """What TFLM's refusal is about, as (kind of operator, how many of them the model has)."""
    return _refused_kinds(evidence.info().operators, loaded, evidence.census().hybrid_ops)


def _refused_kinds(operators: Sequence[Operator], loaded: TflmLoad,
                   hybrid: Sequence[Any] = ()) -> list[tuple[str, int]]:
    """What TFLM's refusal of ``operators`` is about, as (kind of operator, how many of them)."""
    if hybrid:  # every kernel exists, but TFLite Micro refuses float activations with int8 weights
        return [("hybrid (dynamic-range: int8 weights, float activations) operators", len(hybrid))]
    if loaded.failed_op == "CUSTOM":  # TFLM names no custom code: the model's custom operators are the suspects
        codes: dict[str, int] = {}
        for op in operators:
            if op.custom:
                codes[op.op] = codes.get(op.op, 0) + 1
        return [(f"custom op '{code}'", n) for code, n in codes.items()] or [("custom op", 1)]
    if loaded.failed_op:
        n = sum(1 for op in operators if not op.custom and op.op == loaded.failed_op)
        return [(loaded.failed_op, max(n, 1))]
    return [("the model", 1)]


@check("arena", unit="bytes", sections=("arena",))
def arena(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Tensor arena TensorFlow Lite Micro needs for the model (measured by TFLM: head, tail, and more while preparing).

    The recording allocator's head and tail are what stays allocated; the value is the smallest
    arena TFLM allocates the model in, larger where its kernels take temporary memory while they
    prepare."""
    from qcheck.tflite.arena import estimate_arena

    if _npu_ops(evidence):
        return Measurement(None, skip="the model is compiled for Ethos-U: its arena is the one Vela reports "
                                      "(see the sram check); give qcheck the model before compilation")
    loaded = evidence.tflm()
    if not loaded.loaded:
        return Measurement(None, skip=f"{_runtime(loaded)} cannot load the model, so it has no arena: "
                                      f"{loaded.reason} (see tflm_ops)")
    estimate = estimate_arena(evidence.info())
    records = sorted(loaded.records, key=lambda r: -r.used)
    named = sum(r.used for r in records)
    tail = ", ".join(f"{r.what} {format_quantity(r.used, 'bytes')}" for r in records)
    rest = f", TFLite Micro's own structures {format_quantity(loaded.tail - named, 'bytes')}" if loaded.tail > named else ""
    head_note = ""
    if estimate.peak_operator >= 0 and loaded.head:
        head_note = (f"; the activations alive at once need at least {format_quantity(estimate.peak_bytes, 'bytes')} "
                     f"(at operator {estimate.peak_operator}, {estimate.peak_op})")
    needed = max(loaded.needed, loaded.total)
    prepare = ""
    if needed > loaded.total:
        prepare = (f"; allocating it needs an arena of {format_quantity(needed, 'bytes')} ({needed} B, the smallest "
                   f"{_runtime(loaded)} allocates the model in): its kernels take {needed - loaded.total} B more "
                   "from the arena while they prepare, freed before the model runs")
    details = (f"{format_quantity(loaded.total, 'bytes')} ({loaded.total} B) measured by {_runtime(loaded)}: head "
               f"{format_quantity(loaded.head, 'bytes')} (activation tensors as its memory planner lays them out, "
               f"and kernel scratch buffers{head_note}), tail {format_quantity(loaded.tail, 'bytes')} (persistent: "
               f"{tail}{rest}){prepare}; a board's build adds its optimized kernels' scratch buffers (CMSIS-NN)")
    if needed > loaded.total:
        details = f"{format_quantity(needed, 'bytes')} to allocate; " + details
    section = loaded.to_dict()
    section["lower_bound"] = estimate.to_dict()
    return Measurement(
        float(needed),
        details,
        "shrink the tensors alive at once (input resolution, channels of the widest layers); the head is the "
        "part that grows with them",
        sections={"arena": section},
    )


def _steps(value: Any) -> float:
    """A ``layer_steps`` option: a number of quantization steps, 0 or more."""
    return parse_quantity(value, "count")


@check("tflm_parity", unit="count", options={"max_changed": share, "layer_steps": _steps, "task": task_name,
                                             "tasks": task_table},
       sections=("tflm_parity",))
def tflm_parity(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Largest difference between TensorFlow Lite Micro and LiteRT outputs, in quantization steps.

    Both run the evaluation samples: TFLM on its kernels, LiteRT on TFLite's reference kernels
    (those TFLM's kernels are ported from; LiteRT's default XNNPACK delegate and its optimized
    kernels round their own way; for a model with an operator the reference kernels lack, such as
    ELU, its built-in kernels without XNNPACK, said in the message). Per output head: the largest
    difference in the output's quantization steps, and the share of samples whose decision (top-1, a binary head's side of its threshold) changes,
    bounded by ``max_changed`` (default 0). When they differ, the first few differing samples
    run layer by layer in both, and the first operator where the two part is named (and the
    first that differs by more than ``layer_steps``, default 1).
    """
    if evidence.evaluation_data() is None:
        return Measurement(None, skip="needs evaluation data: pass --qcheck-data=val.npz")
    if _npu_ops(evidence):
        return Measurement(None, skip="the model is compiled for Ethos-U: its 'ethos-u' operators run on the NPU, "
                                      "not in TFLite Micro's kernels; give qcheck the model before compilation")
    loaded = evidence.tflm()
    if not loaded.loaded:
        return Measurement(None, skip=f"{_runtime(loaded)} cannot load the model: {loaded.reason} (see tflm_ops)")
    litert, micro = evidence.tflm_evaluation("litert"), evidence.tflm_evaluation("tflm")
    assert litert is not None and micro is not None  # there is data
    info = evidence.info()
    heads = sorted(litert.outputs)
    try:
        declared = declared_tasks(options, tuple(heads))
    except TaskError as exc:
        raise QcheckError(evidence.model, str(exc), "name the model's outputs in [checks.tflm_parity] tasks") from None
    max_changed = float(options.get("max_changed", 0.0))
    per_head: dict[str, dict[str, Any]] = {}
    worst_per_sample = np.zeros(len(next(iter(litert.outputs.values())).raw))
    for head in heads:
        per_head[head], sample_steps = _head_parity(info, head, litert.outputs[head], micro.outputs[head],
                                                    declared.get(head))
        worst_per_sample = np.maximum(worst_per_sample, sample_steps)
    value = max(h["max_steps"] for h in per_head.values())
    failures = tuple(f"head '{h}': the decision changes on {p['changed']:.1%} of samples in TFLite Micro "
                     f"(max {max_changed:.1%})" for h, p in per_head.items()
                     if p["changed"] is not None and p["changed"] > max_changed)
    described = "; ".join(_describe_head(h, p) for h, p in per_head.items())
    details = (f"{_runtime(loaded)} against {_litert_kernels(litert.note)} on {len(worst_per_sample)} samples: "
               f"{described}")
    details += f" ({litert.note})" if litert.note else ""
    section: dict[str, Any] = {"parity": per_head, "note": litert.note}
    if value > 0:
        where, divergence = _where(evidence, worst_per_sample, float(options.get("layer_steps", 1.0)))
        details += f". {where}"
        if divergence is not None:
            section["divergence"] = divergence
    xnnpack = _against_default_litert(evidence, micro.outputs, info)
    if xnnpack:
        details += f". {xnnpack}"
    return Measurement(
        float(value), details,
        "a kernel of TFLite Micro computes the layer named above otherwise than TFLite: check that the TFLite "
        "Micro version supports that operator with these types and quantization (per-channel), or report it "
        "with the model to tensorflow/tflite-micro",
        sections={"tflm_parity": section}, samples=len(worst_per_sample), failures=failures,
    )


def _litert_kernels(note: str) -> str:
    """The LiteRT kernels TFLM was compared with: its built-in ones when ``note`` says they stood
    in for reference kernels it lacks."""
    return "LiteRT's built-in kernels (without XNNPACK)" if note else "LiteRT's reference kernels"


def _head_parity(info: ModelInfo, head: str, litert: HeadOutput, micro: HeadOutput,
                 declared: str | None) -> tuple[dict[str, Any], np.ndarray]:
    """One head: its largest difference in steps, per sample too, and how often its decision changes."""
    from qcheck.checks.accuracy import integer_output_scale

    n = len(litert.raw)
    a, b = litert.raw.reshape(n, -1), micro.raw.reshape(n, -1)
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        per_sample = np.abs(a.astype(np.int64) - b.astype(np.int64)).max(axis=1).astype(np.float64)
        unit = "steps"
    else:
        scale = litert.params.scale if litert.params is not None else integer_output_scale(info, head)
        difference = np.abs(a.astype(np.float64) - b.astype(np.float64)).max(axis=1)
        if scale:
            per_sample, unit = difference / scale, "steps"
        else:  # a float output with no quantized source (a float model): an int8 grid over its values
            low, high = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
            step, unit = float_output_step(low, high)
            per_sample = difference / step
    f = litert.values.reshape(n, -1)
    # The decision of a head whose task is not declared (the float model's outputs, which task
    # inference needs, are not here): none for an output of an input's shape (a reconstruction),
    # else top-1 of several values, the side of the threshold of one.
    inputs = {io.tensor.shape[1:] for io in info.inputs}
    task = declared or ("reconstruction" if f.shape[1] >= 2 and tuple(litert.values.shape[1:]) in inputs
                        else "classification" if f.shape[1] >= 2 else "binary")
    changed: float | None = None
    if task == "classification" and f.shape[1] >= 2:
        changed = float(np.mean(f.argmax(axis=1) != micro.values.reshape(n, -1).argmax(axis=1)))
    elif task == "binary":
        threshold = 0.5 if bool(np.all((f >= 0) & (f <= 1))) else 0.0
        changed = float(np.mean((f[:, 0] >= threshold) != (micro.values.reshape(n, -1)[:, 0] >= threshold)))
    result = {"max_steps": float(per_sample.max(initial=0.0)), "unit": unit, "task": task,
              "samples_differing": float(np.mean(per_sample > 0)), "changed": changed}
    return result, per_sample


def _describe_head(head: str, p: Mapping[str, Any]) -> str:
    decision = (f"no decision ({p['task']} head)" if p["changed"] is None
                else f"decision changed on {p['changed']:.1%}")
    return (f"'{head}' up to {p['max_steps']:g} {p['unit']}, {p['samples_differing']:.1%} of samples differ, "
            f"{decision}")


def _where(evidence: Evidence, worst: np.ndarray, steps: float) -> tuple[str, dict[str, Any] | None]:
    """The first operator where the runtimes part, on the samples that differ most."""
    samples = np.sort(np.argsort(-worst, kind="stable")[: min(_ANALYSED, int(np.sum(worst > 0)))])
    try:
        found = evidence.tflm_divergence(samples, steps)
    except (QcheckError, StepFailed) as exc:
        return f"the layers could not be compared ({str(exc).splitlines()[0]})", None
    on = f"on sample(s) {', '.join(str(int(s)) for s in samples)}"
    if found.first_any is None:
        return f"no operator's output differed {on} ({found.note or 'the outputs differ elsewhere'})", found.to_dict()
    text = (f"first operator whose output differs {on}: {found.first_any.label} (operator {found.first_any.operator}, "
            f"up to {found.first_any.steps:g} {found.first_any.unit})")
    if found.first_over is not None and found.first_over != found.first_any:
        text += (f"; first beyond {steps:g} step(s): {found.first_over.label} (operator {found.first_over.operator}, "
                 f"up to {found.first_over.steps:g} {found.first_over.unit})")
    return text, found.to_dict()


def _against_default_litert(evidence: Evidence, micro: Mapping[str, HeadOutput], info: ModelInfo) -> str:
    """How far qcheck's own evaluation (LiteRT as it runs by default, with XNNPACK) is from TFLM,
    when it ran already: the accuracy checks judge those outputs."""
    try:
        run = evidence.evaluation()
    except (QcheckError, StepFailed):
        return ""
    if run is None or set(run.outputs) != set(micro):
        return ""
    worst = 0.0
    for head, output in run.outputs.items():
        parity, _ = _head_parity(info, head, output, micro[head], None)
        worst = max(worst, parity["max_steps"])
    # This check does not see accuracy_drop's options: the sentence holds whether it sets runtime or not.
    default = ("LiteRT's default run (XNNPACK: what accuracy_drop judges unless [checks.accuracy_drop] "
               "runtime = \"tflm\", and what saturation and layer_error measure)")
    if worst == 0:
        return f"{default} agrees with TFLite Micro exactly"
    return (f"{default} differs from TFLite Micro by up to {worst:g} steps: with runtime = \"tflm\" accuracy_drop "
            "judges TFLite Micro's outputs instead")


@check("tflm_cpu_ops", unit="count", options=TARGET_OPTIONS, per_accelerator=True, prepare=compile_ahead,
       sections=("tflm_cpu",))
def tflm_cpu_ops(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Operators Vela leaves on the CPU that TensorFlow Lite Micro cannot load, as TFLite Micro itself reports.

    On an Ethos-U system, TFLM runs the model: its 'ethos-u' kernel hands the NPU its part, and
    TFLM's own kernels run every other operator on the Cortex-M. Those operators are cut out of
    Vela's output (:mod:`qcheck.tflm.cpu_part`) and loaded in TFLM alone; one it has no kernel
    for means the model cannot run on the device at all.
    """
    accelerator = str(options.get("accelerator", ""))
    if already_compiled(evidence):
        part, where = evidence.tflm_cpu_part(None), "the model as given, compiled by Vela already"
    else:
        config = vela_config(options)
        part, where = evidence.tflm_cpu_part(config), describe_config(evidence.vela(config))
    section = {"tflm_cpu": {accelerator: {"accelerator": accelerator, **part.to_dict()}}}
    if part.unjudged:
        return Measurement(None, skip=f"{part.unjudged} ({where})", sections=section)
    if part.load is None:
        return Measurement(0.0, f"Vela puts every operator on the NPU ({part.npu_ops} 'ethos-u' operator(s)): nothing "
                                f"runs on TensorFlow Lite Micro's CPU kernels ({where})", sections=section)
    loaded = part.load
    count = len(part.operators)
    listed = ", ".join(op.label for op in part.operators[:_LISTED])
    listed += f" and {count - _LISTED} more" if count > _LISTED else ""
    if loaded.loaded:
        return Measurement(0.0, f"{_runtime(loaded)} loads the {count} operator(s) Vela leaves on the CPU ({where}): "
                                f"{listed}; {_cpu_arena(loaded)}; {_cpu_resolver(part)}{_order_note(evidence, part)}",
                           sections=section)
    hybrid = evidence.census().hybrid_ops  # float activations: never on the NPU, refused by TFLM
    refused = _refused_kinds(part.operators, loaded, hybrid)
    total = sum(n for _, n in refused)
    at = ""
    if 0 <= loaded.failed_node < count:  # TFLM numbers the CPU part's operators: name the compiled model's
        at = f"; the operator it stopped at: {part.operators[loaded.failed_node].label}"
    kinds = "; ".join(f"{key} x{n}" for key, n in refused[:_LISTED])
    hint = ("replace the operator with one Vela puts on the NPU (the vela check says why it stays on the CPU) or "
            "with one TFLite Micro has a kernel for, or register your own kernel for it in the application's op "
            "resolver; TFLite Micro stops at the first operator it cannot load, so fix that one and run again")
    if hybrid:
        hint = ("convert to full integer (a representative dataset and TFLITE_BUILTINS_INT8): Vela and TFLite Micro "
                "run int8 models, not dynamic-range ones")
    return Measurement(
        float(total),
        f"{_runtime(loaded)} cannot load the operator(s) Vela leaves on the CPU ({where}), so the model cannot run "
        f"on the device: {loaded.reason} ({kinds}{at}); CPU operators: {listed}",
        hint, sections=section,
    )


def _order_note(evidence: Evidence, part: CpuPartLoad) -> str:
    """What the order of the compiled model's operators does to its resource variables: those it
    reads before their CALL_ONCE initialises them, where the model given to Vela does not ("" for none)."""
    from qcheck.tflm.cpu_part import early_reads

    reads = part.early_reads
    if reads and not already_compiled(evidence):
        already = {variable for _, _, variable in early_reads(evidence.info())}
        reads = tuple(e for e in reads if e.variable not in already)
    if not reads:
        return ""
    return (f". But the order of Vela's output differs from the model's: {early_reads_text(reads)}; TFLite Micro runs "
            "operators in that order, so on the device that read gets the variable's zero point (0 for a float "
            "variable), not its initial value (tflm_cpu_parity measures what that changes, with --qcheck-data)")


def _cpu_arena(loaded: TflmLoad) -> str:
    """The arena TFLM allocates for the CPU part alone, said for what it is."""
    return (f"TFLite Micro allocates {format_quantity(loaded.total, 'bytes')} for the CPU part alone (head "
            f"{format_quantity(loaded.head, 'bytes')}: its own tensors; tail {format_quantity(loaded.tail, 'bytes')}: "
            "its kernels' data and TFLM's structures), not the device's arena, which also holds the NPU part's "
            "tensors and scratch as Vela plans them")


def _cpu_resolver(part: CpuPartLoad) -> str:
    """The ``AddXxx()`` calls the application's op resolver needs for the CPU part and the NPU."""
    from qcheck.tflm_kernels import CUSTOM_KERNELS, resolver_calls
    from qcheck.vela import NPU_CUSTOM_CODE

    methods, custom = resolver_calls(part.operators)
    if part.npu_ops:
        methods = sorted({*methods, CUSTOM_KERNELS[NPU_CUSTOM_CODE]})
    text = f"your MicroMutableOpResolver<{len(methods)}> needs " + ", ".join(f"{m}()" for m in methods)
    if custom:
        text += "; custom operator(s) " + ", ".join(f"'{code}'" for code in custom) + " are registered by hand"
    return text


@check("tflm_cpu_parity", unit="count", options=TARGET_OPTIONS, per_accelerator=True, prepare=compile_ahead,
       sections=("tflm_cpu_parity",))
def tflm_cpu_parity(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Largest difference between TensorFlow Lite Micro and LiteRT on the operators Vela leaves on the CPU, in steps.

    The CPU part of Vela's output runs in TFLM on the first evaluation samples, fed what LiteRT
    (TFLite's reference kernels) computes in the model for the tensors it reads from the NPU or
    the input; what it writes is compared with LiteRT's values of the same tensors, found by
    name in the model (a float output in steps of the quantized tensor its operator reads).
    """
    from qcheck.pipeline import CPU_PARITY_SAMPLES

    if evidence.evaluation_data() is None:
        return Measurement(None, skip="needs evaluation data: pass --qcheck-data=val.npz")
    if already_compiled(evidence):
        return Measurement(None, skip="the model is Vela's output: LiteRT cannot run its NPU part to feed the CPU "
                                      "part; give qcheck the model before compilation")
    config = vela_config(options)
    part = evidence.tflm_cpu_part(config)
    if part.unjudged:
        return Measurement(None, skip=part.unjudged)
    if part.load is None:
        return Measurement(None, skip="Vela puts every operator on the NPU: nothing runs on TensorFlow Lite Micro's "
                                      "CPU kernels, nothing to compare")
    if not part.load.loaded:
        return Measurement(None, skip=f"{_runtime(part.load)} cannot load the CPU part: {part.load.reason} "
                                      "(see tflm_cpu_ops)")
    parity = evidence.tflm_cpu_parity(config)
    assert parity is not None  # there is data
    accelerator = str(options.get("accelerator", ""))
    section = {"tflm_cpu_parity": {accelerator: {"accelerator": accelerator, **parity.to_dict()}}}
    if parity.unmatched or parity.ambiguous:
        return Measurement(None, skip=_unmatched(parity), sections=section)
    where = describe_config(evidence.vela(config))
    value = max((o.steps for o in parity.outputs), default=0.0)
    described = "; ".join(f"'{o.name}' up to {o.steps:g} {o.unit}" for o in parity.outputs)
    described += f" ({parity.note})" if parity.note else ""
    first = f"the first {parity.samples}" if parity.samples == CPU_PARITY_SAMPLES else f"{parity.samples}"
    operators = ", ".join(op.label for op in part.operators[:_LISTED])
    operators += f" and {len(part.operators) - _LISTED} more" if len(part.operators) > _LISTED else ""
    details = (f"{_runtime(part.load)} against {_litert_kernels(parity.note)} on the operator(s) Vela leaves on the "
               f"CPU ({where}: {operators}), on {first} evaluation sample(s) fed what LiteRT computes for the tensors "
               f"they read: {described}")
    hint = _KERNEL_HINT
    if parity.early_reads:
        details += f". {_early_reads(parity, value)}"
        in_order = max((o.steps for o in parity.in_order), default=0.0)
        if value > in_order:  # the order changes what the device computes
            hint = _ORDER_HINT + ("" if in_order == 0 else f"; {hint}")
    return Measurement(float(value), details, hint, sections=section, samples=parity.samples,
                       failures=changed_values(parity))


_KERNEL_HINT = ("a kernel of TFLite Micro computes one of these operators otherwise than TFLite: check that the "
                "TFLite Micro version supports it with these types and quantization, or report it with the model to "
                "tensorflow/tflite-micro")
_ORDER_HINT = ("Vela's output reads a resource variable before initialising it (Vela moves CALL_ONCE, which reads and "
               "writes no tensor, after the READ_VARIABLE; the device would run that order): move CALL_ONCE back to "
               "the front of the compiled model's main graph before deploying it, "
               "give the variable the initial value 0 (what TFLite Micro fills an unassigned variable with, so that "
               "the order does not matter), or keep the state outside the model (an input and an output that the "
               "application carries from one invoke to the next)")


def _early_reads(parity: CpuParity, value: float) -> str:
    """Why the CPU part reads a resource variable other than the model does (its largest
    difference is ``value``): Vela's operator order, with what TFLM gives once that order is undone."""
    reads = early_reads_text(parity.early_reads)
    worst = max((o.steps for o in parity.in_order), default=0.0)
    if value <= worst:
        return (f"Vela's output reads a resource variable before initialising it ({reads}), which does not change "
                "the largest difference on these samples: with CALL_ONCE put back first, the same")
    text = (f"The operator order of Vela's output is the cause, not a TFLite Micro kernel: {reads}, where the model "
            "given to Vela runs CALL_ONCE first. TFLite Micro runs CALL_ONCE's initializer at its place in the "
            "order, on the first invoke, so that read gets the variable's zero point (0 for a float variable), "
            "which TFLite Micro fills it with, not its initial value: on the device after every start, here on "
            "every sample that starts from the initial state")
    again = "; ".join(f"'{o.name}' up to {o.steps:g} {o.unit}" for o in parity.in_order)
    if worst == 0:
        return text + f". With CALL_ONCE put back first, TFLite Micro agrees with LiteRT exactly ({again})"
    return (text + f". With CALL_ONCE put back first, TFLite Micro still differs from LiteRT ({again}): that part is "
            "TFLite Micro's kernels")


def early_reads_text(reads: Sequence[EarlyRead]) -> str:
    """Each READ_VARIABLE that Vela's output runs before the CALL_ONCE initialising its variable."""
    return "; ".join(f"{e.read} (operator {e.read_index}) reads the variable '{e.variable}' before the CALL_ONCE "
                     f"that initialises it (operator {e.call_once})" for e in reads)


def _unmatched(parity: CpuParity) -> str:
    """Why the tensors the CPU part reads or writes could not be paired with the model's by name."""
    reasons = []
    if parity.unmatched:
        reasons.append("the tensors the CPU part reads or writes could not be found by name in the model ("
                       + ", ".join(repr(n) for n in parity.unmatched[:_LISTED]) + ")")
    if parity.ambiguous:
        reasons.append("the names of tensors the CPU part reads or writes are ambiguous in the model ("
                       + ", ".join(f"{name!r} appears {n} times" for name, n in parity.ambiguous[:_LISTED])
                       + "): give its tensors unique names")
    return "; ".join(reasons) + "; the CPU part was not compared"


def changed_values(parity: CpuParity) -> tuple[str, ...]:
    """The outputs of the CPU part holding integers without quantization (an index, a count, a
    boolean) that differ at all, each as a failure: 1 apart is another result, not a step of
    rounding that the check's ``max`` allows."""
    return tuple(f"'{o.name}' (integers without quantization: indices, counts or booleans) differs by up to "
                 f"{o.steps:g}, another result" for o in parity.outputs if o.unit == "values" and o.steps > 0)
