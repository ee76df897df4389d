"""The child side of the TFLM runtime: load a model in TFLite Micro, measure its arena, run it.

Called through :func:`qcheck.isolation.call_isolated` only: TFLM aborts on some models, and its
C++ side reports through ``MicroPrintf`` on the process's stderr, which is captured here at the
file-descriptor level (Python's ``sys.stderr`` never sees it).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from qcheck.tflm import (
    ArenaRecord,
    CpuOperator,
    CpuOutputDifference,
    CpuPartLoad,
    CpuParity,
    Divergence,
    EarlyRead,
    LayerDifference,
    TflmLoad,
    float_output_step,
    tflm_version,
)

if TYPE_CHECKING:
    from qcheck.lazy_arrays import LazyArray
    from qcheck.named_inputs import NamedInputs
    from qcheck.tflite.inspect import ModelInfo
    from qcheck.tflite.run import RunResult

# The arena given to TFLM to measure with. Its pages are never touched beyond what TFLM uses,
# so a large one costs address space only; what the model needs is read from the recording
# allocator, not from this size.
MEASURING_ARENA = 256 * 1024 * 1024
_RECORDED = re.compile(r"\[RecordingMicroAllocator\] Arena allocation (total|head|tail) (\d+) bytes")
_RECORD = re.compile(r"\[RecordingMicroAllocator\] '([^']+)' used (\d+) bytes with alignment overhead "
                     r"\(requested (\d+) bytes for (\d+) ([^)]*)\)")
_NO_OP = (re.compile(r"Didn't find op for builtin opcode '(\w+)'"),
          re.compile(r"Failed to get registration from op code (\w+)"))
_NODE = re.compile(r"Node (\w+) \(number (\d+)\) failed to (?:prepare|invoke)")
_OUT_OF_ARENA = re.compile(r"Failed to allocate|missing: \d+")
# Tensor types that hold a handle, not values: a VAR_HANDLE's output (a resource variable), a list's.
_HANDLES = frozenset({"resource", "variant"})


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """What native code writes to file descriptor 2 while the block runs, as lines (filled on exit)."""
    import sys

    lines: list[str] = []
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            lines.extend(line.rstrip() for line in text.splitlines() if line.strip())
            sys.stderr.write(text)  # still in the child's stderr, for a crash report


def _interpreter(tflite: bytes, arena: int, preserve: bool = False) -> Any:
    from tflite_micro.python.tflite_micro import runtime

    config = runtime.InterpreterConfig.kPreserveAllTensors if preserve else runtime.InterpreterConfig.kAllocationRecording
    return runtime.Interpreter.from_bytes(tflite, arena_size=arena, intrepreter_config=config)


def load(tflite: bytes) -> TflmLoad:
    """Load ``tflite`` in TFLM (every operator resolved, initialised and prepared, every tensor
    planned) and read the arena its recording allocator used; or TFLM's reason for refusing it."""
    version = tflm_version()
    with captured_stderr() as log:
        try:
            interpreter = _interpreter(tflite, MEASURING_ARENA)
        except (RuntimeError, ValueError) as exc:
            interpreter, error = None, f"{exc}"
    if interpreter is None:
        return _refused(version, log, error)
    with captured_stderr() as printed:
        interpreter.print_allocations()
    totals = {m.group(1): int(m.group(2)) for line in printed if (m := _RECORDED.search(line))}
    records = tuple(ArenaRecord(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(5))
                    for line in printed if (m := _RECORD.search(line)))
    if "total" not in totals:
        raise RuntimeError("TFLite Micro loaded the model but printed no arena allocation: "
                           + " | ".join(printed[:6]))
    return TflmLoad(version, True, totals["total"], totals.get("head", 0), totals.get("tail", 0), records,
                    needed=smallest_arena(tflite, totals["total"]))


def _allocates(tflite: bytes, arena: int) -> bool:
    """Whether TFLM allocates ``tflite`` in an arena of ``arena`` bytes, tried in a fork of this
    child: TFLM does not always fail cleanly on an arena too small (the CPU part of a model with
    resource variables crashed with SIGSEGV at its recorded total), and a probe must not take the
    load it measures down with it. A crashed probe counts as "does not allocate"."""
    if not hasattr(os, "fork"):
        with captured_stderr():
            try:
                _interpreter(tflite, arena)
            except (RuntimeError, ValueError):
                return False
        return True
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the probe: nothing it prints is wanted, and it leaves without Python's clean-up
        code = 1
        try:
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            _interpreter(tflite, arena)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def smallest_arena(tflite: bytes, total: int) -> int:
    """The smallest arena size TFLM allocates ``tflite`` in (a model it loads in MEASURING_ARENA).

    The recording allocator's total is what stays allocated; while the kernels prepare, TFLM also
    hands them temporary memory from the arena (a FULLY_CONNECTED's temporary TfLiteTensor
    structs), so an arena of that total can fail ("Failed to allocate temp memory"): measured on
    hello_world_int8, 1,504 B recorded and 1,936 B needed."""
    if _allocates(tflite, total):
        return total
    low, high = total, max(2 * total, total + 4096)
    while not _allocates(tflite, high):
        low, high = high, min(2 * high, MEASURING_ARENA)
        if low == MEASURING_ARENA:
            return MEASURING_ARENA
    while high - low > 1:  # low fails, high allocates
        middle = (low + high) // 2
        low, high = (low, middle) if _allocates(tflite, middle) else (middle, high)
    return high


def load_cpu_part(compiled: bytes) -> CpuPartLoad:
    """Cut the CPU part out of ``compiled`` (a model Vela wrote) and load it in TFLM: the
    operators Vela left on the CPU, as TFLite Micro's kernels would run them beside the NPU."""
    from qcheck.tflite.inspect import inspect_model
    from qcheck.tflm.cpu_part import cut_cpu_part, early_reads

    part = cut_cpu_part(compiled)
    info = inspect_model(compiled)
    main = {op.index: op for op in info.operators if op.subgraph == 0}
    operators = tuple(CpuOperator(i, main[i].op, main[i].custom, info.operator_label(main[i]))
                      for i in part.operators)

    def named(indices: tuple[int, ...]) -> tuple[str, ...]:
        return tuple(info.tensor(0, i).name for i in indices)

    early = tuple(EarlyRead(info.operator_label(read), read.index, call.index, variable)
                  for read, call, variable in early_reads(info))
    return CpuPartLoad(part.npu_ops, operators, named(part.inputs), named(part.outputs),
                       None if part.empty else load(part.tflite), early_reads=early)


def _refused(version: str, log: list[str], error: str) -> TflmLoad:
    lines = [line for line in log if line.strip()]
    failed_op, node = "", -1
    for line in lines:
        for pattern in _NO_OP:
            if (m := pattern.search(line)) and not failed_op:
                failed_op = m.group(1)
        if (m := _NODE.search(line)) and node < 0:
            failed_op, node = failed_op or m.group(1), int(m.group(2))
    reason = "; ".join(dict.fromkeys(line.strip().rstrip(".") for line in lines)) or error
    if any(_OUT_OF_ARENA.search(line) for line in lines) and not failed_op:
        reason = (f"{reason} (with an arena of {MEASURING_ARENA // (1024 * 1024)} MiB: the model needs more than "
                  "that)")
    return TflmLoad(version, False, reason=reason, failed_op=failed_op, failed_node=node)


def _tflm(tflite: bytes, preserve: bool = False) -> Any:
    """TFLM's interpreter for ``tflite``; RuntimeError with TFLM's own words when it refuses it."""
    failure: Exception | None = None
    with captured_stderr() as log:  # its lines are there once the block has ended
        try:
            return _interpreter(tflite, MEASURING_ARENA, preserve)
        except (RuntimeError, ValueError) as exc:
            failure = exc
    assert failure is not None
    raise RuntimeError(f"TFLite Micro refused the model: {_describe_failure(log, failure)}")


def _describe_failure(log: list[str], exc: Exception) -> str:
    lines = (line.strip().rstrip(".") for line in log if line.strip())
    return "; ".join(dict.fromkeys(lines)) or f"{type(exc).__name__}: {exc}"


def run(tflite: bytes, x: np.ndarray | LazyArray | NamedInputs, *, stateful: str = "reset",
        runtime: str = "tflm") -> RunResult:
    """Run every sample of ``x`` (float inputs, as the float model takes them) on TFLM's kernels.

    Inputs are quantized with the model's own parameters as LiteRT's run does; outputs are
    keyed as :mod:`qcheck.tflite.run` keys them (the signature's names). Variable tensors (an
    LSTM's state) and resource variables are reset before each sample with ``stateful="reset"``
    (resource variables by a new interpreter: :mod:`qcheck.tflite.restarting`). ``runtime="litert"``
    runs the same loop in LiteRT on its reference kernels (see :func:`_litert`).
    """
    from qcheck.named_inputs import by_input, chunked
    from qcheck.tflite.inspect import inspect_model
    from qcheck.tflite.quant import dequantize, quantize
    from qcheck.tflite.run import HeadOutput, InputClipping, RunResult

    info = inspect_model(tflite)
    interpreter = _Runtime(tflite, info, runtime)
    inputs = {io.name: i for i, io in enumerate(info.inputs)}
    params = {io.name: _params(io.tensor) for io in info.inputs}
    dtypes = {io.name: np.dtype(io.tensor.dtype) for io in info.inputs}
    n = len(x)
    raw = {io.name: np.empty((n, *io.tensor.shape[1:]), dtype=np.dtype(io.tensor.dtype)) for io in info.outputs}
    clipped = dict.fromkeys(inputs, 0)
    counted = dict.fromkeys(inputs, 0)
    done = 0
    for chunk in chunked(x):
        feed = {}
        for name, values in by_input(chunk, inputs).items():
            values = np.asarray(values, np.float32)
            p = params[name]
            if p is not None:
                feed[name], k = quantize(values, p)
                clipped[name] += k
            else:
                feed[name] = values.astype(dtypes[name])
            counted[name] += feed[name].size
        for i in range(len(chunk)):
            if stateful == "reset" and info.stateful:
                interpreter.reset()  # each sample starts from the initial state, as alone
            for name, index in inputs.items():
                interpreter.set_input(feed[name][i : i + 1], index)
            interpreter.invoke(done)
            for k, io in enumerate(info.outputs):
                raw[io.name][done] = interpreter.get_output(k).reshape(raw[io.name].shape[1:])
            done += 1
    heads = {}
    for io in info.outputs:
        p = _params(io.tensor)
        heads[io.name] = HeadOutput(raw[io.name], dequantize(raw[io.name], p) if p else raw[io.name].astype(np.float32), p)
    per_input = {name: InputClipping(clipped[name], counted[name], params[name]) for name in inputs}
    if len(per_input) == 1:
        (only,) = per_input.values()
        return RunResult(heads, only.clipped, only.values, only.params, note=interpreter.note)
    return RunResult(heads, sum(c.clipped for c in per_input.values()), sum(c.values for c in per_input.values()),
                     None, inputs=per_input, note=interpreter.note)


class _Runtime:
    """TFLM's interpreter, or LiteRT's on its reference kernels, behind TFLM's calls; ``note``
    says when LiteRT's built-in kernels stand in for reference kernels it lacks."""

    def __init__(self, tflite: bytes, info: ModelInfo, runtime: str) -> None:
        self._info = info
        self._litert = runtime == "litert"
        self.note = ""
        if self._litert:
            self._it, self.note = _litert_reference_or_builtin(tflite, info, keep_tensors=False)
            return
        self._it = _with_state(info, lambda: _tflm(tflite))

    def reset(self) -> None:
        if self._litert:
            self._it.reset_all_variables()
        else:
            self._it.reset()

    def set_input(self, values: np.ndarray, position: int) -> None:
        if self._litert:
            self._it.set_tensor(self._info.inputs[position].tensor.index, values)
        else:
            self._it.set_input(values, position)

    def invoke(self, sample: int) -> None:
        if self._litert:
            self._it.invoke()
            return
        failure: Exception | None = None
        with captured_stderr() as log:  # its lines are there once the block has ended
            try:
                self._it.invoke()
            except RuntimeError as exc:
                failure = exc
        if failure is not None:
            raise RuntimeError(f"TFLite Micro failed on sample {sample}: {_describe_failure(log, failure)}")

    def get_output(self, position: int) -> np.ndarray:
        if self._litert:
            return np.asarray(self._it.get_tensor(self._info.outputs[position].tensor.index))
        return np.asarray(self._it.get_output(position))


def _with_state(info: ModelInfo, make: Callable[[], Any]) -> Any:
    """The interpreter ``make`` makes; for a model with resource variables, one that a reset
    restarts (neither runtime's reset gives their initial state back: :mod:`qcheck.tflite.restarting`)."""
    if not info.resource_state:
        return make()
    from qcheck.tflite.restarting import Restarting

    return Restarting(make)


def _fed(info: ModelInfo, x: np.ndarray | NamedInputs) -> dict[str, np.ndarray]:
    """Each input's samples as the model takes them (quantized with its parameters, else cast)."""
    from qcheck.named_inputs import by_input
    from qcheck.tflite.quant import quantize

    positions = {io.name: i for i, io in enumerate(info.inputs)}
    feed = {}
    for name, values in by_input(x, positions).items():
        tensor = info.inputs[positions[name]].tensor
        p = _params(tensor)
        values = np.asarray(values, np.float32)
        feed[name] = quantize(values, p)[0] if p is not None else values.astype(np.dtype(tensor.dtype))
    return feed


def _params(tensor: Any) -> Any:
    from qcheck.tflite.quant import QuantParams

    if not tensor.scale or tensor.dtype.startswith("float") or tensor.scale[0] == 0.0:
        return None
    return QuantParams(float(tensor.scale[0]), int(tensor.zero_point[0]), tensor.dtype)


def _litert(tflite: bytes, keep_tensors: bool = False, reference: bool = True) -> Any:
    """LiteRT on TFLite's reference kernels, the ones TFLM's kernels are ported from. LiteRT's
    default (XNNPACK) and its optimized built-in kernels round their own way: on MLPerf Tiny's
    ResNet-8 they differ from TFLM by up to 79 output steps, the reference kernels by 11 (a 1-step
    difference in its FULLY_CONNECTED that the SOFTMAX after it widens, on 4% of 200 samples).
    ``reference=False``: its built-in kernels without the XNNPACK delegate."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_content=tflite, num_threads=1, experimental_preserve_all_tensors=keep_tensors,
                                  experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


def _litert_reference_or_builtin(tflite: bytes, info: ModelInfo, keep_tensors: bool = True) -> tuple[Any, str]:
    """LiteRT on its reference kernels (every tensor kept unless ``keep_tensors=False``); for a
    model with an operator they lack (they have no ELU, which TFLM and LiteRT's built-in kernels
    have), on its built-in kernels, with the sentence that says so ("" on the reference kernels).
    ``info`` is ``tflite``'s."""
    try:
        return _with_state(info, lambda: _litert(tflite, keep_tensors=keep_tensors)), ""
    except ValueError as exc:
        missing = _NO_OP[0].search(str(exc))
        if missing is None:
            raise
    return _with_state(info, lambda: _litert(tflite, keep_tensors=keep_tensors, reference=False)), (
        f"LiteRT's reference kernels have no {missing.group(1)}: its built-in kernels (without XNNPACK) computed "
        "the model's values instead, which may round otherwise")


def run_litert(tflite: bytes, x: np.ndarray | LazyArray | NamedInputs, *, stateful: str = "reset") -> RunResult:
    """As :func:`run`, on LiteRT's reference kernels (its built-in ones, said in the result's
    ``note``, for a model with an operator the reference kernels lack): the TFLite side of the parity."""
    return run(tflite, x, stateful=stateful, runtime="litert")


def divergence(tflite: bytes, x: np.ndarray | NamedInputs, *, steps: float, stateful: str = "reset") -> Divergence:
    """Run the samples of ``x`` in LiteRT (reference kernels) and in TFLM with every tensor kept, and compare the
    output of each operator of the main graph in order: the first that differs at all, and the
    first that differs by more than ``steps`` quantization steps."""
    from qcheck.tflite.inspect import inspect_model

    info = inspect_model(tflite)
    litert, _ = _litert_reference_or_builtin(tflite, info)  # the kernels run() compared with, said in its note
    micro = _with_state(info, lambda: _tflm(tflite, preserve=True))
    operators = [op for op in info.operators if op.subgraph == 0]
    worst = np.zeros(len(operators))
    compared: set[int] = set()
    positions = {io.name: i for i, io in enumerate(info.inputs)}
    feed = _fed(info, x)
    for k in range(len(x)):
        if stateful == "reset" and info.stateful:
            litert.reset_all_variables()
            micro.reset()
        for name, i in positions.items():
            litert.set_tensor(info.inputs[i].tensor.index, feed[name][k : k + 1])
            micro.set_input(feed[name][k : k + 1], i)
        litert.invoke()
        with captured_stderr():
            micro.invoke()
        for j, op in enumerate(operators):
            index = next((o for o in op.outputs if o >= 0), None)
            if index is None:
                continue
            difference = _difference(info, index, litert, micro)
            if difference is not None:
                compared.add(j)
                worst[j] = max(worst[j], difference)
    first_any = first_over = None
    for j in sorted(compared):
        op = operators[j]
        tensor = info.tensor(0, next(o for o in op.outputs if o >= 0))
        unit = "float" if tensor.dtype.startswith("float") else "steps"
        found = LayerDifference(op.index, info.operator_label(op), float(worst[j]), unit)
        if first_any is None and worst[j] > 0:
            first_any = found
        if first_over is None and worst[j] > (steps if unit == "steps" else 0):
            first_over = found
    note = "" if compared else "no operator output could be read in both runtimes"
    return Divergence(len(x), len(compared), first_any, first_over, note)


def _difference(info: ModelInfo, index: int, litert: Any, micro: Any) -> float | None:
    """Largest difference of tensor ``index`` between the runtimes: integer steps for an integer
    tensor, the plain difference for a float one; None when either cannot give it."""
    if info.tensor(0, index).dtype in _HANDLES:  # no values; TFLM's GetTensor crashes on one (SIGSEGV)
        return None
    try:
        ours = np.asarray(litert.get_tensor(index))
        theirs = np.asarray(micro.GetTensor(index, 0)["tensor_data"])
    except (ValueError, RuntimeError, KeyError, TypeError):
        return None
    if ours.size != theirs.size or ours.size == 0:
        return None
    a, b = ours.reshape(-1), theirs.reshape(-1)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    return float(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64))))


def cpu_part_parity(compiled: bytes, original: bytes, x: np.ndarray | NamedInputs, *,
                    stateful: str = "reset") -> CpuParity:
    """Run the CPU part of ``compiled`` (Vela's output for ``original``) in TFLM on the samples of
    ``x``, fed the values LiteRT (reference kernels) computes in ``original`` for the tensors it
    reads, and compare what it writes with LiteRT's values of the same tensors, found by name.

    When Vela's output reads a resource variable before the CALL_ONCE that initialises it (and
    the original does not), the comparison runs a second time with CALL_ONCE put back first: what
    differs then is TFLM's kernels, what differed only before is the order."""
    from qcheck.tflite.inspect import inspect_model
    from qcheck.tflm.cpu_part import call_once_first, cut_cpu_part, early_reads

    part = cut_cpu_part(compiled)
    if part.empty:
        return CpuParity(0, ())
    whole, info = inspect_model(compiled), inspect_model(original)
    by_name: dict[str, list[Any]] = {}
    for tensor in info.tensors:
        if tensor.subgraph == 0:
            by_name.setdefault(tensor.name, []).append(tensor)
    found: dict[int, int] = {}  # compiled model's tensor -> original model's
    ambiguous: dict[str, int] = {}  # names several tensors of the original model bear, and how many
    for index in (*part.inputs, *part.outputs):
        ours = whole.tensor(0, index)
        same = [t for t in by_name.get(ours.name, []) if t.dtype == ours.dtype and t.elements == ours.elements]
        if ours.name and len(same) == 1:
            found[index] = same[0].index
        elif ours.name and len(same) > 1:
            ambiguous[ours.name] = len(same)
    unmatched = tuple(whole.tensor(0, i).name or f"tensor #{i}" for i in (*part.inputs, *part.outputs)
                      if i not in found and whole.tensor(0, i).name not in ambiguous)
    if unmatched or ambiguous:
        return CpuParity(0, (), unmatched, ambiguous=tuple(ambiguous.items()))
    outputs, note = _compare_cpu_part(part.tflite, part.inputs, part.outputs, whole, original, info, found, x,
                                      stateful)
    already = {variable for _, _, variable in early_reads(info)}  # the model's own order: not Vela's doing
    early = tuple(EarlyRead(whole.operator_label(read), read.index, call.index, variable)
                  for read, call, variable in early_reads(whole) if variable not in already)
    in_order: tuple[CpuOutputDifference, ...] = ()
    if early:
        reordered = cut_cpu_part(call_once_first(compiled))  # the same tensors: only operators move
        in_order, _ = _compare_cpu_part(reordered.tflite, reordered.inputs, reordered.outputs, whole, original,
                                        info, found, x, stateful)
    return CpuParity(len(x), outputs, note=note, early_reads=early, in_order=in_order)


def _compare_cpu_part(tflite: bytes, inputs: tuple[int, ...], outputs: tuple[int, ...], whole: ModelInfo,
                      original: bytes, info: ModelInfo, found: dict[int, int], x: np.ndarray | NamedInputs,
                      stateful: str) -> tuple[tuple[CpuOutputDifference, ...], str]:
    """The CPU part ``tflite`` (reading the compiled model's tensors ``inputs``, writing
    ``outputs``; ``whole`` is the compiled model's info) run in TFLM against LiteRT running
    ``original``, whose tensors ``found`` pairs with the compiled model's; with the note that says
    which LiteRT kernels ran."""
    from qcheck.tflite.inspect import inspect_model

    sub = inspect_model(tflite)
    (litert, note), micro = _litert_reference_or_builtin(original, info), _with_state(sub, lambda: _tflm(tflite))
    positions = {io.name: i for i, io in enumerate(info.inputs)}
    feed = _fed(info, x)
    worst = np.zeros(len(outputs))
    steps = [_output_step(sub, k) for k in range(len(outputs))]
    low, high = np.full(len(outputs), np.inf), np.full(len(outputs), -np.inf)  # LiteRT's values
    for k in range(len(x)):
        if stateful == "reset" and (info.stateful or sub.stateful):
            litert.reset_all_variables()
            micro.reset()
        for name, i in positions.items():
            litert.set_tensor(info.inputs[i].tensor.index, feed[name][k : k + 1])
        litert.invoke()
        for position, index in enumerate(inputs):
            shape = sub.inputs[position].tensor.shape
            micro.set_input(np.asarray(litert.get_tensor(found[index])).reshape(shape), position)
        failure: Exception | None = None
        with captured_stderr() as log:
            try:
                micro.invoke()
            except RuntimeError as exc:
                failure = exc
        if failure is not None:
            raise RuntimeError(f"TFLite Micro failed on sample {k}: {_describe_failure(log, failure)}")
        for position, index in enumerate(outputs):
            a = np.asarray(litert.get_tensor(found[index])).reshape(-1).astype(np.float64)
            b = np.asarray(micro.get_output(position)).reshape(-1).astype(np.float64)
            worst[position] = max(worst[position], float(np.max(np.abs(a - b), initial=0.0)) / steps[position][0])
            low[position], high[position] = min(low[position], a.min(initial=np.inf)), max(high[position],
                                                                                            a.max(initial=-np.inf))
    for k, (step, unit) in enumerate(steps):
        if unit == "float":  # no quantized source
            grid, name = float_output_step(float(low[k]), float(high[k]))
            worst[k], steps[k] = worst[k] / grid, (step, name)
    return tuple(CpuOutputDifference(whole.tensor(0, index).name, float(worst[k]), steps[k][1])
                 for k, index in enumerate(outputs)), note


def _output_step(info: ModelInfo, position: int) -> tuple[float, str]:
    """One step of the CPU part's output at ``position``: 1 for an integer tensor ("values" when
    it has no quantization: an index, a count, a boolean, where 1 apart is another result); for a
    float one, the scale of the quantized tensor its operator reads (a DEQUANTIZE's input), if any."""
    tensor = info.outputs[position].tensor
    if not tensor.dtype.startswith("float"):
        return 1.0, "steps" if tensor.scale and tensor.scale[0] > 0 else "values"
    for op in info.operators:
        if op.subgraph == 0 and tensor.index in op.outputs:
            for i in op.inputs:
                source = info.tensor(0, i) if i >= 0 else None
                if source is not None and source.scale and source.scale[0] > 0 and not source.constant:
                    return float(source.scale[0]), "steps"
    return 1.0, "float"
