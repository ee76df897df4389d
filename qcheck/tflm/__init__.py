"""TensorFlow Lite Micro as a second runtime: what TFLM itself says about a model.

The ``tflite-micro`` package ships TFLM's own interpreter (its kernels, its memory planner and a
recording allocator). qcheck runs it in a child process (:mod:`qcheck.tflm.runtime`) to learn
whether TFLM loads the model and with which arena, and to run the evaluation samples on TFLM's
kernels. This module holds the values that cross the process boundary; it imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any

DISTRIBUTION = "tflite-micro"


def tflm_version() -> str:
    """The installed ``tflite-micro`` version ("none" when it is not installed); no import."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "none"


def float_output_step(low: float, high: float) -> tuple[float, str]:
    """One step, and its unit's name, for comparing a float output that has no quantization of its
    own: an int8 grid over the values the reference gave it (``low`` to ``high``), so that "max 1
    step" means for it what it means for a quantized output (1 step of a [-1, 1] output is 2/255).
    In plain output units a sine 0.9 off passed under "max 1 step". An output with one value on
    every sample has no range: a grid over [-|v|, |v|] then ([-1, 1] for a constant 0)."""
    if high > low:
        return (high - low) / 255, "steps of its range/255"
    span = 2 * abs(high) or 2.0
    return span / 255, f"steps of {span:g}/255 (constant on the samples)"


@dataclass(frozen=True)
class ArenaRecord:
    """One kind of allocation TFLM's RecordingMicroAllocator counted in the arena's tail."""

    what: str  # TFLM's name, e.g. "Persistent buffer data"
    used: int  # bytes, alignment included
    requested: int
    count: int
    of: str  # what was counted, in TFLM's words ("allocations", "tensors", ...)


@dataclass(frozen=True)
class TflmLoad:
    """TFLM's answer to loading a model: the arena it allocated, or why it refused the model.

    ``head`` is the arena's non-persistent part: the memory planner's layout of the activation
    tensors and the kernels' scratch buffers, reused from operator to operator. ``tail`` is the
    persistent part: the runtime's structures and the kernels' own data, kept for the model's life.
    """

    version: str  # the tflite-micro version that measured it
    loaded: bool
    total: int = 0
    head: int = 0
    tail: int = 0
    records: tuple[ArenaRecord, ...] = ()
    reason: str = ""  # TFLM's own words when it refused the model (its log, without noise)
    failed_op: str = ""  # the operator it named: "STABLEHLO_TANH", "CUSTOM", "FULLY_CONNECTED"
    failed_node: int = -1  # the operator's index when TFLM named it ("Node X (number N)")
    # The smallest arena TFLM allocates the model in: more than ``total`` when its kernels take
    # temporary memory from the arena while they prepare (freed before the model runs, so the
    # recording allocator's total leaves it out). 0 when not measured.
    needed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime": f"tflite-micro {self.version}", "loaded": self.loaded, "total": self.total,
            "needed": self.needed, "head": self.head, "tail": self.tail, "reason": self.reason,
            "tail_records": [{"what": r.what, "bytes": r.used, "requested": r.requested, "count": r.count,
                              "of": r.of} for r in self.records],
        }


@dataclass(frozen=True)
class LayerDifference:
    """How far TFLM's output of one operator is from LiteRT's on the analysed samples."""

    operator: int
    label: str  # the operator as reports name it (its type and its output's name)
    steps: float  # largest difference, in quantization steps of the output (or in its units, if float)
    unit: str  # "steps" or "float"


@dataclass(frozen=True)
class Divergence:
    """Where TFLM and LiteRT part on the analysed samples: the first operator whose output
    differs at all, and the first that differs by more than the allowed steps."""

    samples: int
    compared: int  # operators whose outputs were compared
    first_any: LayerDifference | None
    first_over: LayerDifference | None
    note: str = ""  # why the layers could not be compared, when they could not

    def to_dict(self) -> dict[str, Any]:
        def one(d: LayerDifference | None) -> dict[str, Any] | None:
            return None if d is None else {"operator": d.operator, "label": d.label, "steps": d.steps,
                                           "unit": d.unit}

        return {"samples": self.samples, "compared": self.compared, "first_difference": one(self.first_any),
                "first_over_threshold": one(self.first_over), "note": self.note}


@dataclass(frozen=True)
class CpuOperator:
    """An operator of a Vela-compiled model that runs on the CPU (not an 'ethos-u' one)."""

    index: int  # in the compiled model's main subgraph
    op: str
    custom: bool
    label: str  # as reports name it: its type and its output's name


@dataclass(frozen=True)
class CpuPartLoad:
    """TFLM's answer to loading the CPU part of a Vela-compiled model (:mod:`qcheck.tflm.cpu_part`):
    the operators Vela left on the CPU, the tensors crossing between them and the NPU, and
    TFLM's load of them alone (None when nothing runs on the CPU)."""

    npu_ops: int
    operators: tuple[CpuOperator, ...]
    inputs: tuple[str, ...]  # names of the compiled model's tensors the CPU part reads from the NPU or the input
    outputs: tuple[str, ...]  # names of those it writes for the NPU or as the model's output
    load: TflmLoad | None
    # Why the CPU part was not judged ("" when it was): Vela put NPU code inside a subgraph (a
    # loop's body), and the cut takes the CPU part of the main graph only.
    unjudged: str = ""
    # Resource variables the compiled model reads before the CALL_ONCE that initialises them.
    early_reads: tuple[EarlyRead, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "npu_ops": self.npu_ops, "unjudged": self.unjudged,
            "early_reads": [e.to_dict() for e in self.early_reads],
            "cpu_operators": [{"index": op.index, "op": op.op, "label": op.label} for op in self.operators],
            "inputs": list(self.inputs), "outputs": list(self.outputs),
            "load": None if self.load is None else self.load.to_dict(),
        }


@dataclass(frozen=True)
class CpuOutputDifference:
    """How far TFLM's value of one output of the CPU part is from LiteRT's."""

    name: str  # the tensor's name (the same in the compiled and the original model)
    steps: float  # largest difference, in quantization steps (of the float output's quantized source)
    unit: str  # "steps"; for a float output with no quantized source, float_output_step's (steps of an int8 grid
    # over the values LiteRT gives it on the samples); "values" for an
    # integer without quantization (an index, a count, a boolean: any difference is another result)


@dataclass(frozen=True)
class EarlyRead:
    """A READ_VARIABLE that Vela's output runs before the CALL_ONCE initialising its variable,
    where the model given to Vela runs it after (:func:`qcheck.tflm.cpu_part.early_reads`)."""

    read: str  # the READ_VARIABLE, as reports name it
    read_index: int  # its place in the compiled model's main subgraph
    call_once: int  # the CALL_ONCE's place there
    variable: str  # container/shared name

    def to_dict(self) -> dict[str, Any]:
        return {"read": self.read, "read_operator": self.read_index, "call_once_operator": self.call_once,
                "variable": self.variable}


@dataclass(frozen=True)
class CpuParity:
    """The CPU part run in TFLM against the same operators run in LiteRT (reference kernels) in
    the original model, fed the values LiteRT computes for its inputs; or the boundary tensors
    that could not be found by name in the original model (``unmatched``: no tensor of that name,
    type and size; ``ambiguous``: several, with how many), and then nothing ran."""

    samples: int
    outputs: tuple[CpuOutputDifference, ...]
    unmatched: tuple[str, ...] = ()
    note: str = ""  # when LiteRT's reference kernels lacked an operator: what ran instead
    ambiguous: tuple[tuple[str, int], ...] = ()  # (name, how many tensors of the original model bear it)
    # Variables Vela's output reads before initialising them, and the same comparison with its
    # CALL_ONCE put back first (what TFLM's kernels give in the model's own order).
    early_reads: tuple[EarlyRead, ...] = ()
    in_order: tuple[CpuOutputDifference, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "unmatched": list(self.unmatched), "note": self.note,
                "ambiguous": [{"name": name, "tensors": n} for name, n in self.ambiguous],
                "outputs": [{"name": o.name, "max_steps": o.steps, "unit": o.unit} for o in self.outputs],
                "early_reads": [e.to_dict() for e in self.early_reads],
                "call_once_first": [{"name": o.name, "max_steps": o.steps, "unit": o.unit} for o in self.in_order]}


def exchanged() -> tuple[type, ...]:
    """The classes of this package that the cache stores and child processes exchange."""
    return (ArenaRecord, TflmLoad, LayerDifference, Divergence, CpuOperator, CpuPartLoad, CpuOutputDifference,
            CpuParity, EarlyRead)
