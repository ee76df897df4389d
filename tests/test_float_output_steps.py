"""A float output with no quantization of its own is compared between TFLite Micro and LiteRT in
steps of an int8 grid over its values, never in plain output units, by both parity checks.

In plain units "max 1 step" let a sine computed 0.9 off pass: ``tflm_parity`` on a float model
(hello_world_float) always compared so, and ``tflm_cpu_parity`` did where the output took one
value on every sample. TFLite Micro computing it 0.9 off is simulated, as in
``test_review_round4``, by a model whose last bias is 0.9 higher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import REAL
from tflite_edits import edit_model

HELLO_FLOAT = REAL / "tflm" / "hello_world_float.tflite"


def _biased(model: Any, schema: Any) -> None:
    graph = model.subgraphs[0]
    buffer = model.buffers[graph.tensors[int(graph.operators[-1].inputs[2])].buffer]
    bias = np.frombuffer(bytes(buffer.data), np.float32) + np.float32(0.9)
    buffer.data = np.frombuffer(bias.tobytes(), np.uint8)


@pytest.fixture(scope="module")
def off(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return edit_model(HELLO_FLOAT, tmp_path_factory.mktemp("off") / "hello_float_off.tflite", _biased)


def _outputs(model: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    litert = Interpreter(model_path=str(model), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    litert.allocate_tensors()
    (given,), (out,) = litert.get_input_details(), litert.get_output_details()
    values = []
    for sample in x:
        litert.set_tensor(given["index"], sample[None])
        litert.invoke()
        values.append(litert.get_tensor(out["index"]).reshape(1, -1)[0].copy())
    return np.array(values, np.float32)


def test_cpu_parity_of_a_float_output_constant_on_the_samples(tmp_path: Path, off: Path) -> None:
    """Every sample the same: LiteRT's output has no range to grid over, and the difference was
    left in plain units ('up to 0.9 float', a pass under max 1 step)."""
    from test_tflm_cpu_part import _compile

    from qcheck.tflm.runtime import cpu_part_parity

    compiled, _ = _compile(HELLO_FLOAT, tmp_path / "vela")
    x = np.full((20, 1), 1.0, np.float32)
    value = float(_outputs(off, x[:1])[0, 0])  # LiteRT runs the model given, TFLM the compiled one
    difference = float(np.abs(_outputs(HELLO_FLOAT, x) - value).max())
    assert abs(difference - 0.9) < 1e-5  # the premise

    (found,) = cpu_part_parity(compiled, off.read_bytes(), x).outputs
    span = 2 * abs(value)
    assert found.unit == f"steps of {span:g}/255 (constant on the samples)"
    assert found.steps == pytest.approx(difference / (span / 255), rel=1e-4) and found.steps > 50
    (same,) = cpu_part_parity(compiled, HELLO_FLOAT.read_bytes(), x).outputs
    assert same.steps == 0.0


def test_tflm_parity_of_a_float_model_is_in_steps_of_its_range(off: Path) -> None:
    """The whole-model check's comparison of one head: a float model's output (no scale, no int8
    source) was compared in 'output units', so 0.9 off passed the cortex-m suite's max 1 step."""
    from qcheck.checks.tflm import _head_parity
    from qcheck.tflite.inspect import inspect_model
    from qcheck.tflite.run import HeadOutput

    x = np.linspace(0.0, 6.0, 50, dtype=np.float32).reshape(-1, 1)
    litert, micro = _outputs(HELLO_FLOAT, x), _outputs(off, x)
    info = inspect_model(HELLO_FLOAT.read_bytes())
    (head,) = [io.name for io in info.outputs]
    result, per_sample = _head_parity(info, head, HeadOutput(litert, litert, None), HeadOutput(micro, micro, None),
                                      None)
    expected = float(np.abs(micro - litert).max()) / ((float(litert.max()) - float(litert.min())) / 255)
    assert result["unit"] == "steps of its range/255"
    assert result["max_steps"] == pytest.approx(expected, rel=1e-4) and result["max_steps"] > 100
    assert per_sample.max() == result["max_steps"]
    same, _ = _head_parity(info, head, HeadOutput(litert, litert, None), HeadOutput(litert, litert, None), None)
    assert same["max_steps"] == 0.0
