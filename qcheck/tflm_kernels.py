"""Which ``MicroMutableOpResolver::AddXxx()`` call registers each operator's TFLite Micro kernel.

Only a hint for the user's op resolver: whether TFLite Micro can load a model is decided by
TFLite Micro itself (:mod:`qcheck.tflm`). An operator missing here is named by TFLM's own rule
(``AddXxx`` from the operator's name in CamelCase, :func:`resolver_call`).

Source: tensorflow/tflite-micro, ``python/tflite_micro/python_ops_resolver.cc`` at commit
85e19ddd45817acff19122c4957b6a27b82c4d78: TFLM's own resolver that registers every kernel the
project ships (the successor of ``AllOpsResolver``). Each of its ``AddXxx()`` calls is mapped
to the operator it registers, as ``tensorflow/lite/micro/micro_mutable_op_resolver.h`` defines
``AddXxx()`` (``AddBuiltin(BuiltinOperator_XXX, ...)`` or ``AddCustom("name", ...)``).

DYNAMIC_UPDATE_SLICE, REDUCE_ALL, REDUCE_MIN and REVERSE_V2 were added later, as tflite-micro
0.dev20261023182759 loads them (``AddReverseV2`` and ``AddReduceMin`` as in a later
``micro_mutable_op_resolver.h``; the other two follow the rule).

The list is not derived from the installed package: its shared library holds each kernel's
``Register_XXX`` function, but the ``AddXxx()`` methods are inline in the C++ header, which the
package does not ship, and only the header says where a method's name departs from the rule.
``tests/test_leftovers.py`` asks the installed TFLM operator by operator which builtins it loads:
it fails when a listed operator has no kernel, and prints the ones a newer nightly loads that
the list lacks (they are named by the rule meanwhile).

To update (only needed where TFLM's name departs from the rule): take the ``AddXxx()`` list of a newer ``python_ops_resolver.cc``, look each new method
up in ``micro_mutable_op_resolver.h`` of the same commit, and record that commit here.
A kernel being listed does not mean every data type is supported (most take int8 and float32).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Protocol


class Operator(Protocol):
    """An operator as the resolver hint needs it (:class:`qcheck.tflite.inspect.OperatorInfo`, or
    :class:`qcheck.tflm.CpuOperator`)."""

    @property
    def op(self) -> str: ...
    @property
    def custom(self) -> bool: ...

SOURCE: Final = (
    "tensorflow/tflite-micro python/tflite_micro/python_ops_resolver.cc "
    "@ 85e19ddd45817acff19122c4957b6a27b82c4d78"
)

# Builtin operator (TFLite schema name) -> the MicroMutableOpResolver method that registers it.
BUILTIN_KERNELS: Final[dict[str, str]] = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast",
    "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "COS": "AddCos",
    "CUMSUM": "AddCumSum",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice",
    "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual",
    "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill",
    "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MAXIMUM": "AddMaximum",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul",
    "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound",
    "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape",
    "SIN": "AddSin",
    "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQRT": "AddSqrt",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "SVDF": "AddSvdf",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile",
    "ZEROS_LIKE": "AddZerosLike",
}

# Custom operator code -> the method that registers TFLM's kernel for it. The model still
# needs a custom operator, which the tflm_ops check reports: "ethos-u" needs an Ethos-U NPU,
# and the others must be registered by hand.
CUSTOM_KERNELS: Final[dict[str, str]] = {
    "CIRCULAR_BUFFER": "AddCircularBuffer",
    "SignalDelay": "AddDelay",
    "SignalEnergy": "AddEnergy",
    "SignalFftAutoScale": "AddFftAutoScale",
    "SignalFilterBank": "AddFilterBank",
    "SignalFilterBankLog": "AddFilterBankLog",
    "SignalFilterBankSpectralSubtraction": "AddFilterBankSpectralSubtraction",
    "SignalFilterBankSquareRoot": "AddFilterBankSquareRoot",
    "SignalFramer": "AddFramer",
    "SignalIrfft": "AddIrfft",
    "SignalOverlapAdd": "AddOverlapAdd",
    "SignalPCAN": "AddPCAN",
    "SignalRfft": "AddRfft",
    "SignalStacker": "AddStacker",
    "SignalWindow": "AddWindow",
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "ethos-u": "AddEthosU",
}


def resolver_call(op: str, custom: bool = False) -> str:
    """The ``AddXxx`` method that registers ``op``: the list's, else TFLM's naming rule
    (``BATCH_MATMUL`` -> ``AddBatchMatmul``; the list holds the exceptions it knows)."""
    known = CUSTOM_KERNELS.get(op) if custom else BUILTIN_KERNELS.get(op)
    if known:
        return known
    return "Add" + "".join(part[:1].upper() + part[1:].lower() for part in op.replace("-", "_").split("_"))


def resolver_calls(operators: Iterable[Operator]) -> tuple[list[str], list[str]]:
    """The sorted ``AddXxx`` methods a model's operators need, and its custom operator codes
    (registered by hand, with TFLM's ``AddXxx`` when TFLM has the kernel)."""
    methods: set[str] = set()
    custom: list[str] = []
    for op in operators:
        if op.custom and op.op not in CUSTOM_KERNELS:
            custom.append(op.op)
            continue
        methods.add(resolver_call(op.op, op.custom))
    return sorted(methods), sorted(set(custom))
