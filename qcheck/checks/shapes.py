"""Can a microcontroller runtime load it? ``static_shapes``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qcheck.checks import check
from qcheck.checks.evidence import Evidence
from qcheck.results import Measurement

# What a dynamic batch did to older runtimes, for the note that a dynamic batch alone passes with.
OLD_RUNTIMES = "older TFLite Micro builds failed on a Reshape fed by it (tensorflow#54261, tflite-micro#197)"


@check("static_shapes", unit="count", options={"strict": bool})
def static_shapes(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
    """Dynamic dimensions (shape_signature -1) in the model's inputs and outputs that break a runtime.

    A dynamic batch alone passes with a note: the current TFLite Micro runs it and Vela rewrites
    it to 1 (every MLPerf Tiny int8 model and TFLM's hello_world carry one). A dynamic dimension
    past the batch fails. ``strict = true`` fails a dynamic batch too, for teams pinned to an
    older runtime.
    """
    strict = bool(options.get("strict", False))
    info = evidence.info()
    dynamic = [(kind, io) for kind, ios in (("input", info.inputs), ("output", info.outputs))
               for io in ios if io.tensor.dynamic]
    if not dynamic:
        return Measurement(0.0, "every input and output has a static shape")

    def listing(found: list[tuple[str, Any]]) -> str:
        return "; ".join(f"{kind} '{io.name or '#' + str(io.tensor.index)}' {list(io.tensor.shape_signature)}"
                         for kind, io in found)

    beyond_batch = [(kind, io) for kind, io in dynamic if any(d < 0 for d in io.tensor.shape_signature[1:])]
    batch_only = [item for item in dynamic if item not in beyond_batch]
    fixes = []
    if beyond_batch:  # a None in keras.Input(shape=...) itself, or a size the graph computes at run time
        fixes.append("give every dimension after the batch a fixed size: no None in keras.Input(shape=...), "
                     "e.g. keras.Input((49, 40)) rather than keras.Input((None, 40)), and no reshape to a size "
                     "computed at run time")
    if strict and any(io.tensor.shape_signature[:1] and io.tensor.shape_signature[0] < 0 for _, io in dynamic):
        fixes.append("convert from a model whose Input has a fixed batch, e.g. keras.Input(shape, batch_size=1)")
    hint = "; ".join(fixes)
    if evidence.kind == "tflite":
        hint = "this .tflite is reported as it is, not rewritten: " + hint
    if strict:
        return Measurement(float(len(dynamic)), f"strict: dynamic dimensions in {listing(dynamic)}",
                           hint + f"; Vela silently rewrites a dynamic batch to 1, and {OLD_RUNTIMES}")
    parts = []
    if beyond_batch:
        parts.append(f"dynamic dimensions past the batch in {listing(beyond_batch)}: TFLite Micro and Vela "
                     "need them static")
    if batch_only:
        parts.append(f"dynamic batch only in {listing(batch_only)}: runs in the current TFLite Micro and "
                     f"Vela rewrites it to 1; {OLD_RUNTIMES}: set strict = true for a runtime that old")
    return Measurement(float(len(beyond_batch)), "; ".join(parts), hint if beyond_batch else "")
