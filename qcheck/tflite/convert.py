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
from qcheck.tflite.recipe import Recipe

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
    notes: tuple[str, ...] = ()  # how the model was loaded, when not the usual way, for the report


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

    Lambda layers carry Python bytecode; they are refused unless ``unsafe`` is set. An .h5
    file that Keras 3 cannot load is loaded with tf_keras (Keras 2), when it is installed.
    """
    return _load_keras_noted(path, unsafe=unsafe)[0]


def _load_keras_noted(path: Path, *, unsafe: bool) -> tuple[Any, tuple[str, ...]]:
    """The model and, when Keras 3 could not load it, a note saying which loader did."""
    if check_regular(path, "model file").st_size == 0:
        raise QcheckError(path, "model file is empty")
    config = _keras_config(path)
    # Before any loader: tf_keras loads an .h5 Lambda (and runs its bytecode) even in safe mode.
    if not unsafe and _has_lambda(config):
        raise QcheckError(
            path,
            "contains a Lambda layer, whose Python code would run on load",
            "rewrite it as a built-in or registered layer, or pass --qcheck-unsafe-deserialization "
            "if you trust the file",
        )
    calls = _tf_calls_beyond_tensor_math(config)
    if not unsafe and calls:
        raise QcheckError(
            path,
            "calls TensorFlow functions by name that are not tensor math, which would run with the model: "
            + ", ".join(f"tf.{name}" for name in calls),
            "pass --qcheck-unsafe-deserialization if you trust the file",
        )
    tf = _quiet_tensorflow()
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe), ()
    except Exception as exc:  # Keras raises many types; the user needs the text, named by file
        if path.suffix.lower() == ".keras":
            raise _keras_load_error(path, exc, keras.__version__) from None
        keras3_error = exc
    model = _load_keras2(path, keras3_error, keras.__version__, tf.__version__, unsafe=unsafe)
    note = (f"loaded with {loader_name(model)}: Keras {keras.__version__} could not load it "
            f"({_cause(keras3_error)})")
    return model, (note,)


def _load_keras2(path: Path, keras3_error: BaseException, keras3_version: str, tf_version: str, *,
                 unsafe: bool) -> Any:
    """An .h5 file Keras 3 refused, loaded with tf_keras, the official Keras 2 (files written by
    tf.keras 2.x carry arguments and layers Keras 3 does not take, e.g. DepthwiseConv2D's groups)."""
    try:
        import tf_keras
    except ImportError:
        raise _keras_load_error(path, keras3_error, keras3_version, tf_keras_missing=tf_version) from None
    try:
        return tf_keras.models.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as exc:
        raise _keras_load_error(path, keras3_error, keras3_version, keras2=(exc, tf_keras.__version__)) from None


def loader_name(model: Any) -> str:
    """Which Keras holds ``model``: 'Keras 3.x' or 'tf_keras 2.x (Keras 2)'."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return f"tf_keras {tf_keras.__version__} (Keras 2)"
    import keras

    return f"Keras {keras.__version__}"


def _keras_module(model: Any) -> Any:
    """The Keras package ``model`` belongs to: wrappers must be built with the same one."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return tf_keras
    import keras

    return keras


# Keras's words for a class its registry does not know (Keras 3 files, then legacy .h5 files).
_UNKNOWN_CLASS = re.compile(r"Could not locate (?:class|function) '([^']+)'|Unknown (?:layer|object|class): '([^']+)'")


def _keras_load_error(path: Path, exc: BaseException, version: str, *,
                      keras2: tuple[BaseException, str] | None = None, tf_keras_missing: str = "") -> QcheckError:
    """What Keras says is wrong, without the configuration dumps that come before and after it.

    ``keras2`` is tf_keras's own failure and version, when it was tried after Keras 3;
    ``tf_keras_missing`` the TensorFlow version, when tf_keras would have been tried but is not
    installed.
    """
    text = str(keras2[0] if keras2 else exc)
    unknown = _UNKNOWN_CLASS.search(text)
    if unknown:
        name = unknown.group(1) or unknown.group(2)
        knowers = f"Keras {version} and tf_keras {keras2[1]} do" if keras2 else f"Keras {version} does"
        return QcheckError(
            path,
            f"needs the Python class of its custom layer or object '{name}', which {knowers} not "
            "know: the file holds only its configuration and weights",
            "qcheck does not import your code: rebuild the layer from built-in Keras layers, or, where the "
            "class is defined, export the model as a SavedModel (model.export(path)) and give qcheck that "
            "with --qcheck-unsafe-deserialization",
        )
    if keras2:
        return QcheckError(
            path,
            f"neither Keras {version} nor tf_keras {keras2[1]} (Keras 2) could load the model: "
            f"tf_keras: {_cause(keras2[0])}; Keras {version}: {_cause(exc)}",
            "check it loads with tf_keras.models.load_model or keras.saving.load_model; if it was written by "
            "another Keras, load it there and export a SavedModel (model.export(path)) to give qcheck with "
            "--qcheck-unsafe-deserialization",
        )
    hint = "check it loads with keras.saving.load_model in this Keras version"
    if tf_keras_missing:
        major_minor = ".".join(tf_keras_missing.split(".")[:2])
        hint = (f"if it was written by Keras 2 (tf.keras), qcheck loads it with tf_keras, which is not installed: "
                f'pip install "tf-keras~={major_minor}.0" (the version of your TensorFlow)')
    elif "Unrecognized keyword arguments" in text:
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
    elif text.startswith("Exception encountered when calling layer"):
        # tf_keras: 'Exception encountered when calling layer "x" (type T).', a blank line, the cause.
        text = " ".join(text.split("\n\n")[:2])
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


# tf.keras 2 files record TensorFlow calls made on Keras tensors (x = tf.nn.relu6(x)) as TFOpLambda
# and SlicingOpLambda layers naming the function (ClassMethod layers: a class and its method),
# which tf_keras looks up among ALL public TensorFlow symbols (tf.io.write_file too) and runs
# with the model: safe mode takes tensor math only.
_TENSOR_MATH_NAMESPACES = frozenset({"__operators__", "math", "nn", "linalg", "bitwise", "signal", "image",
                                     "strings", "random", "sparse", "ragged", "dtypes"})
_TENSOR_MATH_FUNCTIONS = frozenset({
    "abs", "add", "add_n", "argmax", "argmin", "argsort", "boolean_mask", "broadcast_to", "cast", "clip_by_norm",
    "clip_by_value", "concat", "constant", "convert_to_tensor", "cumsum", "divide", "einsum", "ensure_shape",
    "equal", "exp", "expand_dims", "fill", "floor", "floordiv", "gather", "gather_nd", "greater", "greater_equal",
    "identity", "less", "less_equal", "linspace", "logical_and", "logical_not", "logical_or", "matmul", "maximum",
    "meshgrid", "minimum", "multiply", "norm", "not_equal", "one_hot", "ones", "ones_like", "pad", "pow", "range",
    "rank", "realdiv", "reduce_all", "reduce_any", "reduce_max", "reduce_mean", "reduce_min", "reduce_prod",
    "reduce_sum", "repeat", "reshape", "reverse", "roll", "round", "scatter_nd", "searchsorted", "shape", "sigmoid",
    "sign", "size", "slice", "sort", "split", "sqrt", "square", "squeeze", "stack", "stop_gradient",
    "strided_slice", "subtract", "tanh", "tensor_scatter_nd_update", "tensordot", "tile", "transpose", "truediv",
    "unstack", "where", "zeros", "zeros_like",
})
_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")


def _tf_calls_beyond_tensor_math(node: Any) -> list[str]:
    """The TensorFlow functions an (.h5) model config calls by name that are not tensor math."""
    found: list[str] = []
    if isinstance(node, dict):
        config = node.get("config")
        if node.get("class_name") in _OP_LAYERS and isinstance(config, dict):
            name = str(config.get("function", ""))
            short = name.removeprefix("compat.v1.")
            if short.split(".")[0] not in _TENSOR_MATH_NAMESPACES and short not in _TENSOR_MATH_FUNCTIONS:
                found.append(name)
        if node.get("class_name") == "ClassMethod" and isinstance(config, dict):  # e.g. RaggedTensor.from_...
            if config.get("cls_symbol") not in ("RaggedTensor", "SparseTensor"):
                found.append(f"{config.get('cls_symbol')}.{config.get('method_name')}")
        for value in node.values():
            found.extend(_tf_calls_beyond_tensor_math(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_tf_calls_beyond_tensor_math(value))
    return list(dict.fromkeys(found))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def load_float_model(path: Path, *, unsafe: bool = False) -> Any:
    """A Keras model for a .keras/.h5 file or a SavedModel directory."""
    if model_kind(path) == "savedmodel":
        _check_savedmodel(path, unsafe=unsafe)
        try:
            return _savedmodel_as_keras(path)
        except _Tf2LoadFailed as failed:
            raise QcheckError(path, f"SavedModel could not be loaded: {failed.cause}",
                              "qcheck quantizes such SavedModels (from TF 1.x or early TF 2) with the TF1 converter, "
                              "but cannot run them as a Keras model; export it again with a recent TF") from None
    return load_keras(path, unsafe=unsafe)


class _Tf2LoadFailed(Exception):
    """TensorFlow 2's loader refused a SavedModel that parses: a TF1 or early-TF2 export."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def _savedmodel_as_keras(path: Path) -> Any:
    """The SavedModel's serving signature as a Keras 3 model (through ``TFSMLayer``)."""
    import keras

    try:
        layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    except Exception as exc:
        if "Error parsing message" in str(exc):  # protobuf's words for a damaged file
            raise QcheckError(path, "saved_model.pb is damaged or truncated: TensorFlow cannot parse it",
                              "export the model again, e.g. with model.export(path)") from None
        raise _Tf2LoadFailed(_first_line(exc)) from None
    spec = _savedmodel_input_spec(layer, path)
    inp = keras.Input(shape=spec[1:], name="input")
    out = layer(inp)
    return keras.Model(inp, out)


def _check_savedmodel(path: Path, *, unsafe: bool) -> Any:
    """Refuse a damaged SavedModel, and any SavedModel unless ``unsafe`` is set; returns the
    parsed saved_model.pb (None for a saved_model.pbtxt).

    Every TensorFlow route into a SavedModel (``tf.saved_model.load``, Keras's ``TFSMLayer``,
    even ``TFLiteConverter.from_saved_model`` before it converts) runs the model's own
    functions: its resources' initializers and restore functions, which may hold any
    TensorFlow operation, ``WriteFile`` included. So loading one is an opt-in, as for a
    ``Lambda`` layer. Parsing saved_model.pb to find damage runs nothing of the model.
    """
    graph = path / "saved_model.pb"
    proto = None
    if graph.exists():
        raw = read_regular(graph, "saved_model.pb")
        if not raw:
            raise QcheckError(path, "saved_model.pb is empty")
        _quiet_tensorflow()
        from google.protobuf.message import DecodeError
        from tensorflow.core.protobuf import saved_model_pb2

        try:
            proto = saved_model_pb2.SavedModel.FromString(raw)
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
    return proto


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
    outputs make the converted model's signature name each output as Keras does. The wrapper is
    built with the model's own Keras (Keras 3 or tf_keras), which the converter takes alike.
    """
    keras = _keras_module(model)
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
    if keras.__name__ == "tf_keras":  # its signatures name outputs by their layers, not by dict keys
        named = {name: keras.layers.Identity(name=name)(out) for name, out in named.items()}
    return keras.Model(inp, named)


def _calibration_inputs(calibration: np.ndarray | NamedInputs | None, shapes: dict[str, tuple[Any, ...]],
                        path: Path, file: str) -> dict[str, np.ndarray]:
    """The calibration samples of each input, by name, checked against its sample shape in
    ``shapes`` (synthetic ones when none are given)."""
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
    per_channel_dense: bool = True,
    keep_float: tuple[str, ...] = (),
    int16_layers: tuple[str, ...] = (),
    stateful: str = "reset",
) -> Quantized:
    """Load the float model once, quantize it to full integer and run the float pass.

    Ops with no int8 kernel do not abort the conversion: they stay float and the checks
    report them. Without ``calibration`` samples, synthetic ones are used so that the model
    still converts (and the result says so). ``activations="int16"`` converts to int16x8
    (int16 activations, int8 weights) with int16 I/O, whatever ``io_dtype`` says.
    A SavedModel that TensorFlow 2 cannot load (a TF1 or early-TF2 export) is converted by the
    TF1 converter instead, and the notes say so. ``per_channel_dense=False`` gives fully-connected
    weights one scale per tensor; ``keep_float`` names Keras layers whose operators stay float
    (the recipe of :class:`qcheck.config.Quantization`; see :mod:`qcheck.tflite.recipe`);
    ``int16_layers`` names Keras layers given int16 activations, int8 elsewhere (:mod:`qcheck.tflite.mixed`).
    Resource variables (a model's state) are quantized too, where TensorFlow's converter can (see
    :func:`_quantize_variables`); the float outputs of a model with such state come from its float
    twin in LiteRT, its state reset or kept between samples as ``stateful`` says.
    """
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"io dtype must be one of {IO_DTYPES}, not {io_dtype!r}")
    if activations not in ACTIVATIONS:
        raise ValueError(f"activations must be one of {ACTIVATIONS}, not {activations!r}")
    if keep_float and activations != "int8":
        raise QcheckError(path, f"keep_float ({', '.join(keep_float)}) works with activations = \"int8\" only: "
                          "TensorFlow's int16x8 quantizer keeps no chosen operator float",
                          "drop keep_float, or set activations = \"int8\"")
    if int16_layers and (activations != "int8" or keep_float):
        raise QcheckError(path, "int16_layers works from an int8 recipe without keep_float: the other layers stay int8",
                          "drop activations = \"int16\" or keep_float, or int16_layers")
    recipe = Recipe(per_channel_dense, keep_float)
    # Loading first: a damaged or unsafe file is refused before TensorFlow's seconds-long import.
    notes: tuple[str, ...] = ()
    if model_kind(path) == "savedmodel":
        proto = _check_savedmodel(path, unsafe=unsafe)
        try:
            model = _savedmodel_as_keras(path)
        except _Tf2LoadFailed as failed:
            if int16_layers:
                raise QcheckError(path, "int16_layers needs the model's Keras layer names, which a SavedModel that only "
                                  "the TF1 converter takes does not keep", "drop int16_layers") from None
            return _quantize_tf1(path, proto, failed.cause, calibration, evaluation, io_dtype, activations,
                                 calibration_file, recipe, stateful)
    else:
        model, notes = _load_keras_noted(path, unsafe=unsafe)
    tf = _quiet_tensorflow()
    wrapper = _static_batch_wrapper(model, path)
    synthetic = calibration is None
    shapes = {str(tensor.name): tuple(tensor.shape)[1:] for tensor in wrapper.inputs}
    samples = _calibration_inputs(calibration, shapes, path, calibration_file)
    if int16_layers:
        from qcheck.tflite.mixed import quantize_int16_layers

        float_tflite = _convert_float(tf, wrapper, path)
        tflite, note = quantize_int16_layers(float_tflite, samples, int16_layers, path,
                                             per_channel_dense=per_channel_dense)
        reference, said = _float_reference(model, float_tflite, evaluation, stateful)
        return Quantized(tflite, reference, synthetic, float_tflite, (*notes, note, *said))
    converter = tf.lite.TFLiteConverter.from_keras_model(wrapper)
    tflite, caught, converted = _convert_integer(tf, converter, samples, io_dtype, activations, path, recipe)
    float_tflite = caught[0] if caught else _convert_float(tf, wrapper, path)
    reference, said = _float_reference(model, float_tflite, evaluation, stateful)
    return Quantized(tflite, reference, synthetic, float_tflite, notes + recipe.notes + converted + said)


def _float_reference(model: Any, float_tflite: bytes, evaluation: np.ndarray | LazyArray | NamedInputs | None,
                     stateful: str) -> tuple[FloatReference | None, tuple[str, ...]]:
    """The float outputs on ``evaluation`` and a note when they are not Keras's.

    A model with resource variables assigns them in every call: Keras would carry the state from
    sample to sample and across the chunks it predicts in (and cannot assign a batch of states to
    a variable made for one), so its float twin runs in LiteRT, state handled as the quantized
    model's is (``stateful``).
    """
    if evaluation is None:
        return None, ()
    from qcheck.tflite.inspect import inspect_model

    if not inspect_model(float_tflite).resource_state:
        return predict(model, evaluation), ()
    note = ("float outputs: the float model of the same conversion, run in LiteRT, as the quantized one runs "
            "(its resource variables' state reset before each sample, or kept, as stateful says), not Keras's "
            "predict, which carries the state across samples")
    return _run_float(float_tflite, evaluation, stateful), (note,)


def _convert_integer(tf: Any, converter: Any, samples: dict[str, np.ndarray], io_dtype: str, activations: str,
                     path: Path, recipe: Recipe | None = None) -> tuple[bytes, list[bytes], tuple[str, ...]]:
    """Full-integer conversion (int8, or int16x8 as ``activations`` says, inside; ``io_dtype`` at
    the edges; the rest of the ``recipe`` applied), the float twin caught, and a note when the
    converter could not be asked to quantize the model's resource variables."""

    def representative() -> Iterator[dict[str, np.ndarray] | list[np.ndarray]]:
        for i in range(len(next(iter(samples.values())))):
            batch = {name: x[i][None].astype(np.float32) for name, x in samples.items()}
            # Several inputs by signature name, never by position: the converter orders them its own way.
            yield batch if len(batch) > 1 else list(batch.values())

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    _set_integer_target(tf, converter, activations, io_dtype)
    variables_asked = _quantize_variables(converter)
    if recipe is not None:
        recipe.apply(converter, path)
    caught = catch_float_model(converter)
    try:
        with warnings.catch_warnings():
            # "Statistics for quantized inputs were expected": the converter's own inputs, not the user's.
            warnings.simplefilter("ignore", UserWarning)
            tflite = converter.convert()
    except Exception as exc:
        raise QcheckError(path, f"the TFLite converter failed: {_first_line(exc)}") from None
    notes: tuple[str, ...] = ()
    if not variables_asked:
        from qcheck.tflite.inspect import inspect_model

        if inspect_model(bytes(tflite)).resource_state:
            notes = (f"the state of the model's resource variables is not quantized: the converter of TensorFlow "
                     f"{tf.__version__} has no _experimental_variable_quantization, the option qcheck sets to make "
                     "it int8",)
    return bytes(tflite), caught, notes


def _quantize_variables(converter: Any) -> bool:
    """Ask ``converter`` to quantize the model's resource variables too; False where it has no such option.

    TensorFlow's converter (2.21) keeps a resource variable's state float32 unless its private
    ``_experimental_variable_quantization`` is set: each invoke then reads the state in float,
    QUANTIZEs it and DEQUANTIZEs the new state to write it back, float operators on the CPU. Set, the
    state is int8, and a model without resource variables converts to the same bytes as without it.
    """
    if not hasattr(converter, "_experimental_variable_quantization"):
        return False
    converter._experimental_variable_quantization = True
    return True


# -- SavedModels that only the TF1 converter takes -------------------------------------------------


def _quantize_tf1(path: Path, proto: Any, tf2_cause: str, calibration: np.ndarray | NamedInputs | None,
                  evaluation: np.ndarray | LazyArray | NamedInputs | None, io_dtype: str,
                  activations: str = "int8", calibration_file: str = "", recipe: Recipe | None = None,
                  stateful: str = "reset") -> Quantized:
    """Quantize a SavedModel through ``tf.compat.v1.lite.TFLiteConverter.from_saved_model``.

    TF 2's loader revives the model's Python objects (a TF 2.3 Keras optimizer fails there:
    "'_UserObject' object has no attribute 'add_slot'"); the TF1 converter reads only the
    graph of the serving signature, with the input shape given (batch 1). The float outputs
    come from the float model the same converter makes (its twin), run in LiteRT.
    """
    tf = _quiet_tensorflow()
    route = _Tf1Route(path, proto, tf2_cause)
    synthetic = calibration is None
    samples = _calibration_inputs(calibration, {route.input_key: tuple(route.shape[1:])}, path, calibration_file)
    tflite, caught, converted = _convert_integer(tf, route.converter(), samples, io_dtype, activations, path, recipe)
    # The TF1 converter writes no signature: name inputs and outputs by the SavedModel's, as the
    # TF 2 route does, so that labels are y_<output key> and the float and int8 outputs pair by name.
    tflite = route.named(tflite)
    float_tflite = route.named(caught[0]) if caught else route.float_tflite()
    reference = _run_float(float_tflite, evaluation, stateful) if evaluation is not None else None
    notes = (route.note(), "float outputs: the float model of the same TF1 conversion, run in LiteRT",
             *(recipe.notes if recipe else ()), *converted)
    return Quantized(tflite, reference, synthetic, float_tflite, notes)


def _run_float(float_tflite: bytes, x: np.ndarray | LazyArray | NamedInputs,
               stateful: str = "reset") -> FloatReference:
    from qcheck.tflite.run import run

    outputs = run(float_tflite, x, stateful=stateful).outputs
    return FloatReference({k: v.values for k, v in outputs.items()}, tuple(outputs))


class _Tf1Route:
    """A SavedModel's serving signature through the TF1 converter, at batch 1."""

    def __init__(self, path: Path, proto: Any, tf2_cause: str) -> None:
        self.path, self.tf2_cause = path, tf2_cause
        self.key, self.tags, self.tensor, self.shape = _serving_input(path, proto)
        self.input_key, self.output_keys = _signature_keys(proto, self.key, self.tags)

    def converter(self) -> Any:
        tf = _quiet_tensorflow()
        try:
            return tf.compat.v1.lite.TFLiteConverter.from_saved_model(
                str(self.path), input_shapes={self.tensor: list(self.shape)}, signature_key=self.key,
                tag_set=self.tags)
        except Exception as exc:
            raise QcheckError(self.path, f"TensorFlow 2 could not load the SavedModel ({self.tf2_cause}), nor could "
                              f"the TF1 converter: {_first_line(exc)}",
                              "export it again with a recent TensorFlow") from None

    def float_tflite(self) -> bytes:
        try:
            return self.named(bytes(self.converter().convert()))
        except QcheckError:
            raise
        except Exception as exc:
            raise QcheckError(self.path, f"the TF1 converter failed on the float model: {_first_line(exc)}") from None

    def named(self, tflite: bytes) -> bytes:
        return _with_signature(tflite, self.key, self.input_key, self.output_keys)

    def note(self) -> str:
        tf = _quiet_tensorflow()
        return (f"converted with the TF1 converter (tf.compat.v1.lite.TFLiteConverter.from_saved_model, signature "
                f"'{self.key}', input '{self.tensor}' {list(self.shape)}): TensorFlow {tf.__version__} could not "
                f"load the SavedModel ({self.tf2_cause})")


def _signature_keys(proto: Any, key: str, tags: set[str]) -> tuple[str, list[str]]:
    """The serving signature's input key and its output keys in the order the TF1 converter
    gives the outputs: sorted by tensor name (``convert_saved_model._get_tensors``, TF 2.21)."""
    graph = next(g for g in proto.meta_graphs if set(g.meta_info_def.tags) == tags)
    signature = graph.signature_def[key]
    (input_key,) = signature.inputs
    by_tensor = sorted(signature.outputs.items(), key=lambda item: item[1].name)
    return input_key, [output_key for output_key, _ in by_tensor]


def _with_signature(tflite: bytes, key: str, input_key: str, output_keys: list[str]) -> bytes:
    """``tflite`` with a signature ``key`` naming its one input and its outputs, in order; as it
    was when the converter gave other outputs than the signature has."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite, 0))
    graph = model.subgraphs[0]
    if model.signatureDefs or len(graph.inputs) != 1 or len(graph.outputs) != len(output_keys):
        return tflite

    def tensor_map(name: str, index: int) -> Any:
        mapped = schema.TensorMapT()
        mapped.name, mapped.tensorIndex = name, int(index)
        return mapped

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = key, 0
    signature.inputs = [tensor_map(input_key, graph.inputs[0])]
    signature.outputs = [tensor_map(name, index) for name, index in zip(output_keys, graph.outputs, strict=True)]
    model.signatureDefs = [signature]
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _serving_input(path: Path, proto: Any) -> tuple[str, set[str], str, tuple[int, ...]]:
    """Signature key, tags, input tensor name and shape (batch 1) of a SavedModel's serving
    signature, read from saved_model.pb."""
    graphs = list(proto.meta_graphs) if proto is not None else []
    graphs.sort(key=lambda g: "serve" not in g.meta_info_def.tags)
    for graph in graphs:
        signatures = dict(graph.signature_def)
        key = "serving_default" if "serving_default" in signatures else next(iter(sorted(signatures)), None)
        if key is None:
            continue
        inputs = signatures[key].inputs
        if len(inputs) != 1:
            raise QcheckError(path, f"SavedModel signature '{key}' has {len(inputs)} inputs; qcheck handles one")
        (spec,) = inputs.values()
        dims = [d.size for d in spec.tensor_shape.dim]
        if spec.tensor_shape.unknown_rank or not dims:
            raise QcheckError(path, f"the input '{spec.name}' of signature '{key}' has no known shape",
                              "export the model again with a fixed input shape")
        if any(d < 0 for d in dims[1:]):
            raise QcheckError(path, f"the input '{spec.name}' has unknown dimensions {dims}",
                              "export the model again with a fixed input shape")
        return key, set(graph.meta_info_def.tags), spec.name.split(":")[0], (1, *dims[1:])
    raise QcheckError(path, "the SavedModel has no signature to convert",
                      "export it again with a serving signature, e.g. with model.export(path)")


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
    kept between samples as ``stateful`` says), anything else in Keras (a SavedModel TensorFlow 2
    cannot load: its float TF1 conversion, in LiteRT)."""
    kind = model_kind(path)
    if kind == "tflite":
        return _run_float(read_regular(path, "reference model"), x, stateful)
    if kind == "savedmodel":
        proto = _check_savedmodel(path, unsafe=unsafe)
        try:
            return predict(_savedmodel_as_keras(path), x)
        except _Tf2LoadFailed as failed:
            return _run_float(_Tf1Route(path, proto, failed.cause).float_tflite(), x, stateful)
    return predict(load_float_model(path, unsafe=unsafe), x)
