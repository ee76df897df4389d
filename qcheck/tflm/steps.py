"""The TFLM steps of one model's pipeline, run in child processes and cached.

:class:`qcheck.pipeline.ModelRun` remembers each (failures included) under its own key; these
functions do the work. Every cache key holds the ``tflite-micro`` version, so a newer TFLM
measures again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qcheck.cache import versions
from qcheck.errors import QcheckError
from qcheck.hashing import digest
from qcheck.isolation import call_isolated
from qcheck.tflm import DISTRIBUTION

if TYPE_CHECKING:
    import numpy as np

    from qcheck.data import Dataset
    from qcheck.pipeline import ModelRun
    from qcheck.tflite.run import RunResult
    from qcheck.named_inputs import NamedInputs
    from qcheck.tflm import CpuParity, CpuPartLoad, Divergence, TflmLoad

# A model Vela compiled: its 'ethos-u' operators need the NPU (TFLM's kernel drives it).
ETHOS_U = "ethos-u"


def compiled_for_npu(run: ModelRun) -> bool:
    return any(op.custom and op.op == ETHOS_U for op in run.info().operators)


def load(run: ModelRun) -> TflmLoad:
    """TFLM's answer to loading the model: its arena, or its reason for refusing it."""
    tflite = run.tflite()
    key = digest("tflm-load", versions(DISTRIBUTION), tflite)

    def measure() -> TflmLoad:
        run._step("loading in TFLite Micro")
        loaded: TflmLoad = call_isolated("qcheck.tflm.runtime:load", tflite,
                                         what=f"loading {run.model} in TFLite Micro", timeout=run.timeout)
        return loaded

    return run._cache.get_or_make(key, measure)[0]


def cpu_part(run: ModelRun, compiled: bytes, where: str) -> CpuPartLoad:
    """TFLM's answer to loading the CPU part of ``compiled`` (Vela's output ``where``: for which
    accelerator), keyed by the compiled bytes, so that a warm run compiles and loads nothing."""
    key = digest("tflm-cpu-part", versions(DISTRIBUTION, "ai-edge-litert"), compiled)

    def measure() -> CpuPartLoad:
        npu_only = _npu_only(compiled)
        if npu_only is not None:  # nothing to cut out or load: no child process (about a second) for it
            return npu_only
        run._step(f"loading the CPU part of {where} in TFLite Micro")
        loaded: CpuPartLoad = call_isolated("qcheck.tflm.runtime:load_cpu_part", compiled,
                                            what=f"loading the CPU part of {run.model} ({where}) in TFLite Micro",
                                            timeout=run.timeout)
        return loaded

    return run._cache.get_or_make(key, measure)[0]


def _npu_only(compiled: bytes) -> CpuPartLoad | None:
    """The answer for a compiled model whose every operator is an 'ethos-u' one of its main
    subgraph (Vela put everything on the NPU), or that has one in another subgraph (not judged),
    read here; None for any other model, which the child process cuts (and refuses with its
    reason when it must)."""
    from qcheck.tflite.inspect import inspect_model
    from qcheck.tflm import CpuPartLoad

    try:
        info = inspect_model(compiled)
    except ValueError:
        return None
    npu = [op for op in info.operators if op.custom and op.op == ETHOS_U]
    if any(op.subgraph != 0 for op in npu):
        # A real case: Vela 5.2 compiles an int8 tf.while_loop's body to the NPU. The model may well
        # run; the cut cannot say, so the checks say they did not judge it rather than fail it.
        return CpuPartLoad(len(npu), (), (), (), None, unjudged=(
            "Vela put NPU code inside a subgraph (the body of a loop or a condition): qcheck cuts the CPU "
            "part out of the main graph only, so it does not judge where this model's operators run in "
            "TensorFlow Lite Micro"))
    if not info.operators or any(op.subgraph != 0 or not (op.custom and op.op == ETHOS_U) for op in info.operators):
        return None
    return CpuPartLoad(len(info.operators), (), (), (), None)


def cpu_parity(run: ModelRun, compiled: bytes, where: str, x: np.ndarray | NamedInputs) -> CpuParity:
    """The CPU part of ``compiled`` (Vela's output for the model, ``where``: for which accelerator)
    run in TFLM on the samples ``x`` against the same operators in LiteRT (reference kernels)."""
    original = run.tflite()
    key = digest("tflm-cpu-parity", versions(DISTRIBUTION, "ai-edge-litert"), compiled, original, x,
                 run.spec.stateful)

    def compare() -> CpuParity:
        run._step(f"running the CPU part of {where} in TFLite Micro and LiteRT on {len(x)} sample(s)")
        found: CpuParity = call_isolated("qcheck.tflm.runtime:cpu_part_parity", compiled, original, x,
                                         stateful=run.spec.stateful,
                                         what=f"running the CPU part of {run.model} ({where}) in TFLite Micro and "
                                              "LiteRT", timeout=run.timeout)
        return found

    return run._cache.get_or_make(key, compare)[0]


def evaluation(run: ModelRun, data: Dataset, runtime: str) -> RunResult:
    """The evaluation samples run on TFLM's kernels (``runtime="tflm"``) or on LiteRT's reference
    kernels (``"litert"``, what TFLM is compared with), keyed by the model's own output names."""
    if runtime == "tflm":
        loaded = run.tflm()
        if not loaded.loaded:
            raise QcheckError(run.model, f"TFLite Micro {loaded.version} cannot load the model: {loaded.reason}",
                              "see the tflm_ops check")
    tflite = run.tflite()
    engine = "TFLite Micro" if runtime == "tflm" else "LiteRT (reference kernels)"
    package = DISTRIBUTION if runtime == "tflm" else "ai-edge-litert"
    key = digest("tflm-evaluate", runtime, versions(package), tflite, data.x, run.spec.stateful)

    def evaluate() -> RunResult:
        run._step(f"evaluating {len(data)} samples in {engine}")
        function = "run" if runtime == "tflm" else "run_litert"
        result: RunResult = call_isolated(f"qcheck.tflm.runtime:{function}", tflite, data.x,
                                          stateful=run.spec.stateful, what=f"running {run.model} in {engine}",
                                          timeout=run.timeout)
        return result

    return run._cache.get_or_make(key, evaluate)[0]


def divergence(run: ModelRun, samples: np.ndarray, steps: float) -> Divergence:
    """Where the two runtimes part, layer by layer, on the evaluation samples at ``samples``."""
    data = run.evaluation_data()
    assert data is not None  # asked for only after both runtimes ran the data
    x = data.x[samples]  # positions: an array, or the NamedInputs of several inputs
    tflite = run.tflite()
    key = digest("tflm-divergence", versions(DISTRIBUTION, "ai-edge-litert"), tflite, x, repr(steps),
                 run.spec.stateful)

    def compare() -> Divergence:
        run._step(f"comparing TFLite Micro with LiteRT layer by layer on {len(samples)} sample(s)")
        found: Divergence = call_isolated("qcheck.tflm.runtime:divergence", tflite, x, steps=steps,
                                          stateful=run.spec.stateful,
                                          what=f"comparing {run.model} layer by layer in TFLite Micro and LiteRT",
                                          timeout=run.timeout)
        return found

    return run._cache.get_or_make(key, compare)[0]
