"""Load float models and quantize them: the only module of qcheck that imports TensorFlow.

Everything here takes and returns plain data (paths, arrays, bytes), so that the work can be
cached by content and run in a separate process.
"""

from __future__ import annotations

import json
import os
import re
import stat
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qcheck.config import ACTIVATIONS
from qcheck.errors import QcheckError
from qcheck.inputs import check_folder_entries, check_regular, not_regular, read_regular
from qcheck.lazy_arrays import LazyArray
from qcheck.named_inputs import NamedInputs, by_input, chunked

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
IO_DTYPES = ("uint8", "int8")


@dataclass(frozen=True, eq=False)
class FloatReference:
    """The float model's outputs on the evaluation inputs, keyed by output name."""

    outputs: dict[str, np.ndarray]
    output_names: tuple[str, ...]  # in the Keras model's declared order


@dataclass(frozen=True, eq=False)
class Quantized:
    """A full-integer conversion and the float pass made from the same loaded model."""

    tflite: bytes
    reference: FloatReference | None
    synthetic_calibration: bool
    # The same wrapper converted without quantization: its tensors carry the same names as the
    # quantized model's, which is how per-layer error is measured.
    float_tflite: bytes | None = None


def model_kind(path: Path) -> str:
    """'keras', 'savedmodel' or 'tflite'; raises QcheckError for anything else.

    Only looks (``os.stat``), never opens: a FIFO or a device named as a model is refused
    here, before anything could block reading it.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise QcheckError(path, "model file does not exist") from None
    except OSError as exc:
        raise QcheckError(path, f"cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        if not any(os.path.lexists(path / name) for name in ("saved_model.pb", "saved_model.pbtxt")):
            raise QcheckError(path, "is a directory but not a SavedModel (no saved_model.pb)")
        check_folder_entries(path)
        return "savedmodel"
    if not stat.S_ISREG(mode):
        raise not_regular(path, mode, "model file")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return "tflite"
    if suffix in KERAS_SUFFIXES:
        return "keras"
    raise QcheckError(path, f"unsupported model type '{suffix or path.name}'",
                      "give a .keras, .h5, .tflite file or a SavedModel directory")


def _quiet_tensorflow() -> Any:
    # TensorFlow logs oneDNN and CUDA probing at import; they say nothing about the user's model.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def load_keras(path: Path, *, unsafe: bool = False) -> Any:
    """Load a Keras 3 (.keras) or legacy HDF5 model in safe mode.

    Lambda layers carry Python bytecode; they are refused unless ``unsafe`` is set.
    """
    if check_regular(path, "model file").st_size == 0:
        raise QcheckError(path, "model file is empty")
    config = _keras_config(path)
    if not unsafe and _has_lambda(config):
        raise QcheckError(
            path,
            "contains a Lambda layer, whose Python code would run on load",
            "rewrite it as a built-in or registered layer, or pass --qcheck-unsafe-deserialization "
            "if you trust the file",
        )
    _quiet_tensorflow()
    import keras

    try:
        if path.suffix.lower() == ".keras":
            return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types; the user needs the text, named by file
        raise _keras_load_error(path, exc, keras.__version__) from None


# Keras's words for a class its registry does not know (Keras 3 files, then legacy .h5 files).
_UNKNOWN_CLASS = re.compile(r"Could not locate (?:class|function) '([^']+)'|Unknown (?:layer|object|class): '([^']+)'")


def _keras_load_error(path: Path, exc: BaseException, version: str) -> QcheckError:
    """What Keras says is wrong, without the configuration dumps that come before and after it."""
    text = str(exc)
    unknown = _UNKNOWN_CLASS.search(text)
    if unknown:
        name = unknown.group(1) or unknown.group(2)
        return QcheckError(
            path,
            f"needs the Python class of its custom layer or object '{name}', which Keras {version} does not "
            "know: the file holds only its configuration and weights",
            "qcheck does not import your code: rebuild the layer from built-in Keras layers, or, where the "
            "class is defined, export the model as a SavedModel (model.export(path)) and give qcheck that "
            "with --qcheck-unsafe-deserialization",
        )
    hint = "check it loads with keras.saving.load_model in this Keras version"
    if "Unrecognized keyword arguments" in text:
        hint = ("the file was probably written by Keras 2 (tf.keras), whose layers take arguments Keras 3 "
                "does not: load it there and export a SavedModel (model.export(path)) to give qcheck with "
                "--qcheck-unsafe-deserialization, or rebuild the model in Keras 3")
    return QcheckError(path, f"Keras {version} could not load the model: {_cause(exc)}", hint)


def _cause(exc: BaseException) -> str:
    """The sentence of an exception's text that says what is wrong.

    Keras wraps the real error: "Error when deserializing class 'X' using config={...}.",
    a blank line, "Exception encountered: <the cause>", sometimes twice, and may end with
    "Full object config: {...}". The innermost cause is kept, dumps cut, whitespace folded.
    """
    text = str(exc).strip()
    if "Exception encountered:" in text:
        text = text.rsplit("Exception encountered:", 1)[1]
    for dump in (" Full object config:", "config={", "\n\n"):
        head = text.split(dump, 1)[0].strip()
        text = head or text
    text = " ".join(text.split()) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def _keras_config(path: Path) -> Any:
    """The model's architecture JSON, read without deserializing anything."""
    try:
        if path.suffix.lower() == ".keras":
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        import h5py

        with h5py.File(path, "r") as h5:
            raw = h5.attrs.get("model_config")
            if raw is None:
                raise QcheckError(path, "is an HDF5 file without a model (weights only?)",
                                  "save the whole model with model.save(...)")
            return json.loads(raw)
    except QcheckError:
        raise
    except (zipfile.BadZipFile, KeyError):
        raise QcheckError(path, "is not a Keras 3 model archive (not a zip with config.json)") from None
    except (OSError, ValueError) as exc:
        raise QcheckError(path, f"is not a readable Keras model ({_first_line(exc)})") from None


def _has_lambda(node: Any) -> bool:
    if isinstance(node, dict):
        if node.get("class_name") == "Lambda":
            return True
        return any(_has_lambda(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_lambda(v) for v in node)
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def load_float_model(path: Path, *, unsafe: bool = False) -> Any:
    """A Keras model for a .keras/.h5 file or a SavedModel directory."""
    if model_kind(path) == "savedmodel":
        _check_savedmodel(path, unsafe=unsafe)
        import keras

        try:
            layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
        except Exception as exc:
            if "Error parsing message" in str(exc):  # protobuf's words for a damaged file
                raise QcheckError(path, "saved_model.pb is damaged or truncated: TensorFlow cannot parse it",
                                  "export the model again, e.g. with model.export(path)") from None
            raise QcheckError(path, f"SavedModel could not be loaded: {_first_line(exc)}",
                              "SavedModels from TF 1.x/2.3 need the TF1 converter; export it again with a recent TF") from None
        spec = _savedmodel_input_spec(layer, path)
        inp = keras.Input(shape=spec[1:], name="input")
        out = layer(inp)
        return keras.Model(inp, out)
    return load_keras(path, unsafe=unsafe)


def _check_savedmodel(path: Path, *, unsafe: bool) -> None:
    """Refuse a damaged SavedModel, and any SavedModel unless ``unsafe`` is set.

    Every TensorFlow route into a SavedModel (``tf.saved_model.load``, Keras's ``TFSMLayer``,
    even ``TFLiteConverter.from_saved_model`` before it converts) runs the model's own
    functions: its resources' initializers and restore functions, which may hold any
    TensorFlow operation, ``WriteFile`` included. So loading one is an opt-in, as for a
    ``Lambda`` layer. Parsing saved_model.pb to find damage runs nothing of the model.
    """
    graph = path / "saved_model.pb"
    if graph.exists():
        raw = read_regular(graph, "saved_model.pb")
        if not raw:
            raise QcheckError(path, "saved_model.pb is empty")
        _quiet_tensorflow()
        from google.protobuf.message import DecodeError
        from tensorflow.core.protobuf import saved_model_pb2

        try:
            saved_model_pb2.SavedModel.FromString(raw)
        except DecodeError:
            raise QcheckError(path, "saved_model.pb is damaged or truncated: TensorFlow cannot parse it",
                              "export the model again, e.g. with model.export(path)") from None
    if not unsafe:
        raise QcheckError(
            path,
            "is a SavedModel: loading it runs TensorFlow functions stored in it (its initializers and "
            "restore functions, before any conversion), which can read and write files",
            "pass --qcheck-unsafe-deserialization if you trust the file (as for a Lambda layer), or give "
            "qcheck the Keras model as a .keras file (as a reference, a float .tflite also does)",
        )
    _quiet_tensorflow()


def _savedmodel_input_spec(layer: Any, path: Path) -> tuple[int | None, ...]:
    fn = layer.call_endpoint_fn if hasattr(layer, "call_endpoint_fn") else None
    specs = list(fn.structured_input_signature[1].values()) if fn is not None else []
    if len(specs) != 1:
        raise QcheckError(path, f"SavedModel signature has {len(specs)} inputs; qcheck handles one")
    return tuple(specs[0].shape)


def output_names(model: Any) -> tuple[str, ...]:
    names = getattr(model, "output_names", None)
    if names:
        return tuple(names)
    outputs = model.outputs
    return tuple(f"output_{i}" for i in range(len(outputs)))


def input_names(model: Any) -> tuple[str, ...]:
    """The Keras model's input names, in its declared order ("input" for an unnamed single input)."""
    names = tuple(str(t.name).split(":")[0] for t in model.inputs)
    return ("input",) if names == ("",) else names


def _static_batch_wrapper(model: Any, path: Path) -> Any:
    """The same model behind Inputs with batch size 1 (named as the model's), outputs keyed by name.

    Converting the wrapper gives static shapes, which Vela and TFLite Micro need, and dict
    outputs make the converted model's signature name each output as Keras does.
    """
    import keras

    inputs = []
    for name, tensor in zip(input_names(model), model.inputs, strict=True):
        shape = tuple(tensor.shape)[1:]
        if any(d is None for d in shape):
            what = "the input" if len(model.inputs) == 1 else f"the input '{name}'"
            raise QcheckError(path, f"{what} has unknown dimensions {('batch',) + shape}",
                              "give the Input a fixed shape, e.g. keras.Input((96, 96, 3))")
        # Named as in Keras: the converted model's signature names its inputs so.
        inputs.append(keras.Input(batch_shape=(1, *shape), name=name))
    inp = inputs[0] if len(inputs) == 1 else inputs
    outs = model(inp)
    if isinstance(outs, dict):
        named = outs
    else:
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        named = dict(zip(output_names(model), outs, strict=True))
    return keras.Model(inp, named)


def _calibration_inputs(calibration: np.ndarray | NamedInputs | None, wrapper: Any, path: Path,
                        file: str) -> dict[str, np.ndarray]:
    """The calibration samples of each of the wrapper's inputs, by name, checked against its shapes
    (synthetic ones when none are given)."""
    shapes = {str(t.name): tuple(t.shape)[1:] for t in wrapper.inputs}
    if calibration is None:
        from qcheck.data import synthetic_calibration

        return {name: synthetic_calibration(shape) for name, shape in shapes.items()}
    try:
        arrays = by_input(calibration, shapes)
    except ValueError as exc:
        raise QcheckError(file or path, f"the calibration data does not fit {path.name}: {exc}") from None
    for name, x in arrays.items():
        if tuple(x.shape[1:]) != shapes[name]:
            array = None if len(shapes) == 1 else f"array 'x_{name}'"
            raise calibration_mismatch(file, tuple(x.shape[1:]), path, name, shapes[name], array)
    return {name: np.asarray(x, dtype=np.float32) for name, x in arrays.items()}


def calibration_mismatch(file: str, shape: tuple[int, ...], model: Path, input_name: str,
                         expected: tuple[Any, ...], array: str | None = None) -> QcheckError:
    """The error for calibration samples that do not fit the model: it names the data file, the
    array and the input the samples were meant for (not only the model)."""
    array = array or ("images" if file and not file.endswith(".npz") else "array 'x'")
    return QcheckError(file or model, f"the calibration samples ({array}) have shape {tuple(shape)}, but the input "
                       f"'{input_name}' of {model.name} takes {tuple(expected)}",
                       "give calibration data (--qcheck-data or --qcheck-calibration) whose samples have the shape "
                       "of the model's input")


def quantize(
    path: Path,
    calibration: np.ndarray | NamedInputs | None,
    evaluation: np.ndarray | LazyArray | NamedInputs | None,
    *,
    io_dtype: str = "uint8",
    unsafe: bool = False,
    calibration_file: str = "",
    activations: str = "int8",
) -> Quantized:
    """Load the float model once, quantize it to full integer and run the float pass.

    Ops with no int8 kernel do not abort the conversion: they stay float and the checks
    report them. Without ``calibration`` samples, synthetic ones are used so that the model
    still converts (and the result says so). ``activations="int16"`` converts to int16x8
    (int16 activations, int8 weights) with int16 I/O, whatever ``io_dtype`` says.
    """
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"io dtype must be one of {IO_DTYPES}, not {io_dtype!r}")
    if activations not in ACTIVATIONS:
        raise ValueError(f"activations must be one of {ACTIVATIONS}, not {activations!r}")
    # Loading first: a damaged or unsafe file is refused before TensorFlow's seconds-long import.
    model = load_float_model(path, unsafe=unsafe)
    tf = _quiet_tensorflow()
    wrapper = _static_batch_wrapper(model, path)
    synthetic = calibration is None
    samples = _calibration_inputs(calibration, wrapper, path, calibration_file)

    def representative() -> Iterator[dict[str, np.ndarray] | list[np.ndarray]]:
        for i in range(len(next(iter(samples.values())))):
            batch = {name: x[i][None].astype(np.float32) for name, x in samples.items()}
            # Several inputs by signature name, never by position: the converter orders them its own way.
            yield batch if len(batch) > 1 else list(batch.values())

    converter = tf.lite.TFLiteConverter.from_keras_model(wrapper)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    _set_integer_target(tf, converter, activations, io_dtype)
    caught = catch_float_model(converter)
    try:
        with warnings.catch_warnings():
            # "Statistics for quantized inputs were expected": the converter's own inputs, not the user's.
            warnings.simplefilter("ignore", UserWarning)
            tflite = converter.convert()
    except Exception as exc:
        raise QcheckError(path, f"the TFLite converter failed: {_first_line(exc)}") from None
    float_tflite = caught[0] if caught else _convert_float(tf, wrapper, path)
    reference = None
    if evaluation is not None:
        reference = predict(model, evaluation)
    return Quantized(tflite, reference, synthetic, float_tflite)


def _set_integer_target(tf: Any, converter: Any, activations: str, io_dtype: str) -> None:
    """The op set and I/O types of a full-integer (int8) or int16x8 conversion.

    Ops without an integer kernel stay float (TFLITE_BUILTINS) so that the checks name them.
    An int16x8 conversion takes only float32 or int16 I/O (TensorFlow 2.21 refuses int8 and
    uint8 there); int16 keeps the model integer end to end, where float32 would add a float
    QUANTIZE and DEQUANTIZE that Ethos-U and an integer-only build run on the CPU.
    """
    if activations == "int16":
        integer_ops, io_type = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, tf.int16
    else:
        integer_ops, io_type = tf.lite.OpsSet.TFLITE_BUILTINS_INT8, getattr(tf, io_dtype)
    converter.target_spec.supported_ops = [integer_ops, tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type


def catch_float_model(converter: Any) -> list[bytes]:
    """Have a quantizing ``converter`` hand over the float model it quantizes; returns the
    list that will hold it once ``converter.convert()`` has run.

    The TFLite converter first converts to a float flatbuffer, then calibrates and quantizes
    that (its private ``_quantize``, as of TensorFlow 2.21). The model caught there is the
    unquantized twin, with the quantized model's tensor names, for none of the cost of the
    second trace and conversion that converting without optimizations takes (as long as the
    first). A TensorFlow that does not take that step leaves the list empty.
    """
    caught: list[bytes] = []
    quantize = getattr(converter, "_quantize", None)
    if not callable(quantize):
        return caught

    def catching(model: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(model, bytes) and not caught:
            caught.append(model)
        return quantize(model, *args, **kwargs)

    converter._quantize = catching
    return caught


def _convert_float(tf: Any, wrapper: Any, path: Path) -> bytes:
    try:
        return bytes(tf.lite.TFLiteConverter.from_keras_model(wrapper).convert())
    except Exception as exc:
        raise QcheckError(path, f"the TFLite converter failed on the float model: {_first_line(exc)}") from None


def predict(model: Any, x: np.ndarray | LazyArray | NamedInputs) -> FloatReference:
    """The float model's outputs on ``x``, keyed by output name, computed chunk by chunk
    (a multi-input model's inputs given by name, passed in its declared order)."""
    names = output_names(model)
    inputs = input_names(model)
    parts: dict[str, list[np.ndarray]] = {}
    for chunk in chunked(x):
        if isinstance(chunk, NamedInputs):
            try:
                arrays = by_input(chunk, inputs)
            except ValueError as exc:
                raise QcheckError(None, f"the data does not fit the float model: {exc}") from None
            raw = model([arrays[name] for name in inputs] if len(inputs) > 1 else arrays[inputs[0]], training=False)
        else:
            raw = model(chunk, training=False)
        if isinstance(raw, dict):
            named = {k: np.asarray(v) for k, v in raw.items()}
        else:
            raw = raw if isinstance(raw, (list, tuple)) else [raw]
            named = {n: np.asarray(v) for n, v in zip(names, raw, strict=True)}
        for key, value in named.items():
            parts.setdefault(key, []).append(value)
    outputs = {k: np.concatenate(v) for k, v in parts.items()}
    if set(outputs) != set(names):
        names = tuple(outputs)
    return FloatReference(outputs, names)


def reference_outputs(path: Path, x: np.ndarray | LazyArray | NamedInputs, *, unsafe: bool = False,
                      stateful: str = "reset") -> FloatReference:
    """Float outputs of a reference model: a float .tflite runs in LiteRT (its state reset or
    kept between samples as ``stateful`` says), anything else in Keras."""
    if model_kind(path) == "tflite":
        from qcheck.tflite.run import run

        result = run(read_regular(path, "reference model"), x, stateful=stateful)
        return FloatReference({k: v.values for k, v in result.outputs.items()}, tuple(result.outputs))
    return predict(load_float_model(path, unsafe=unsafe), x)
