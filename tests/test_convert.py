"""The conversion: one trace and one conversion give the int8 model and its float twin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import FIXTURES

# Runs in a child: TensorFlow is imported once per process, and not into the test session.
COMPARE_TWINS = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    from qcheck.tflite import convert

    path = Path(sys.argv[1])
    x = np.load(sys.argv[2])["x"].astype(np.float32)
    tf = convert._quiet_tensorflow()
    wrapper = convert._static_batch_wrapper(convert.load_float_model(path), path)

    def representative():
        for sample in x[:50]:
            yield [sample[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(wrapper)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.inference_input_type = converter.inference_output_type = tf.uint8
    caught = convert.catch_float_model(converter)
    quantized = converter.convert()
    plain = tf.lite.TFLiteConverter.from_keras_model(wrapper).convert()  # what the twin replaces

    def run(model):
        it = Interpreter(model_content=model, experimental_preserve_all_tensors=True)
        it.allocate_tensors()
        (inp,) = it.get_input_details()
        outputs = []
        for sample in x[50:80]:
            it.set_tensor(inp["index"], sample[None])
            it.invoke()
            outputs.append([it.get_tensor(d["index"]).tolist() for d in it.get_output_details()])
        tensors = {d["name"]: np.dtype(d["dtype"]).name for d in it.get_tensor_details()}
        ops = [op["op_name"] for op in it._get_ops_details()]
        return {"outputs": outputs, "tensors": tensors, "ops": ops}

    quantized_names = [d["name"] for d in Interpreter(model_content=quantized).get_tensor_details()]
    print(json.dumps({"caught": len(caught), "twin": run(caught[0]) if caught else None, "plain": run(plain),
                      "quantized": quantized_names}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["digits_cnn.keras", "multihead.keras"])
def test_the_float_twin_is_caught_from_the_int8_conversion(model: str) -> None:
    """The quantizing conversion hands over the float model it starts from, and that model is
    the one a separate float conversion gives: same operators, tensor names and outputs."""
    data = FIXTURES / ("multihead.npz" if model.startswith("multihead") else "digits.npz")
    done = subprocess.run([sys.executable, "-c", COMPARE_TWINS, str(FIXTURES / model), str(data)],
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["caught"] == 1  # else this TensorFlow no longer takes the step, and qcheck converts twice
    twin, plain = got["twin"], got["plain"]
    assert twin["ops"] == plain["ops"] and twin["tensors"] == plain["tensors"]
    assert twin["outputs"] == plain["outputs"]
    assert not {"int8", "uint8"} & set(twin["tensors"].values())  # unquantized
    # Per-layer error pairs tensors by name: every tensor of the twin is in the int8 model.
    assert set(twin["tensors"]) <= set(got["quantized"]), sorted(set(twin["tensors"]) - set(got["quantized"]))
