"""Load and validate the evaluation and calibration data a user gives qcheck.

An ``.npz`` holds ``x`` (as the float model takes it: float32, or uint8 that the float model
casts; ``x_<input name>`` per input of a multi-input model, :mod:`qcheck.named_inputs`) and
optional labels: ``y`` for a single-output model, ``y_<output name>`` per output of a
multi-output model; an embedding head's verification pairs are ``pairs``/``pairs_<output name>``
(sample indices into ``x``) with ``same``/``same_<output name>`` (1: the same identity). Arrays
load with ``allow_pickle=False``: nothing in a data file runs code.

For data sets too large for memory, a folder: ``x.npy`` or ``x_<input name>.npy`` (memory-mapped) with ``y*.npy`` label
files, a set of ``.npz`` shards, or images in one sub-folder per class
(:mod:`qcheck.lazy_arrays`); those are read in chunks, on demand.
"""

from __future__ import annotations

import hashlib
import io
import os
import tokenize
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qcheck.errors import QcheckError
from qcheck.config import DEFAULT_CALIBRATION_SAMPLES, ImageOptions
from qcheck.inputs import check_regular, read_regular
from qcheck.lazy_arrays import CHUNK, LazyArray
from qcheck.named_inputs import PREFIX, NamedInputs, Samples

SPLIT_SEED = 0


@dataclass(frozen=True, eq=False)
class Pairs:
    """Verification pairs of an embedding head: ``index`` [P, 2] positions of samples in the
    dataset, ``same`` [P] whether both are the same identity. ``given``: how many pairs the file
    held (a split keeps only the pairs whose two samples are both evaluated)."""

    index: np.ndarray
    same: np.ndarray
    given: int

    def subset(self, indices: np.ndarray) -> Pairs:
        """The pairs among the samples ``indices`` (sorted positions), renumbered to the subset's."""
        position = np.full(int(max(indices.max(initial=-1), self.index.max(initial=-1))) + 1, -1, np.int64)
        position[indices] = np.arange(len(indices))
        renumbered = position[self.index]
        kept = np.all(renumbered >= 0, axis=1)
        return Pairs(renumbered[kept], self.same[kept], self.given)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs and labels read from one file. ``labels`` and ``pairs`` are keyed by output name
    ('' = ``y``, ``pairs``)."""

    path: str
    x: Samples  # a LazyArray reads from disk on demand; NamedInputs for a multi-input model
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    sha256: str = ""
    pairs: dict[str, Pairs] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, indices: np.ndarray) -> Dataset:
        x = self.x.subset(indices) if isinstance(self.x, LazyArray) else self.x[indices]
        return Dataset(self.path, x, {k: v[indices] for k, v in self.labels.items()}, self.sha256,
                       {k: v.subset(indices) for k, v in self.pairs.items()})

    def arrays(self) -> dict[str, Any]:
        """The arrays of an .npz file that loads back as this dataset."""
        x = ({f"x_{k}": np.asarray(v) for k, v in self.x.arrays.items()} if isinstance(self.x, NamedInputs)
             else {"x": np.asarray(self.x)})
        arrays = {**x, **{f"y_{k}" if k else "y": v for k, v in self.labels.items()}}
        for key, pairs in self.pairs.items():
            suffix = f"_{key}" if key else ""
            arrays.update({f"pairs{suffix}": pairs.index, f"same{suffix}": pairs.same.astype(np.int64)})
        return arrays


@dataclass(frozen=True, eq=False)
class Split:
    """The samples used to calibrate the quantization and, kept apart, those used to evaluate."""

    calibration: np.ndarray | NamedInputs
    evaluation: Dataset
    calibration_source: str  # a sentence for reports: where the calibration samples came from
    calibration_path: str = ""  # the file (or folder) they were read from


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def load_data(path: str | Path, images: ImageOptions | None = None) -> Dataset:
    """An ``.npz`` file, or a folder of ``x.npy``, ``.npz`` shards or class sub-folders of images."""
    p = Path(path)
    if not p.is_dir():
        return load_npz(p)
    if os.path.lexists(p / "x.npy"):
        return _load_npy_folder(p)
    if any(p.glob(f"{PREFIX}*.npy")):
        return _load_npy_folder(p, sorted(p.glob(f"{PREFIX}*.npy")))
    shards = sorted(p.glob("*.npz"))
    if shards:
        return _load_shards(p, shards)
    classes = sorted(d for d in p.iterdir() if d.is_dir())
    if classes:
        return _load_images(p, classes, images or ImageOptions())
    raise QcheckError(p, "is a folder without x.npy, .npz shards or class sub-folders of images",
                      "give an .npz file, or a folder holding one of those")


def load_npz(path: str | Path) -> Dataset:
    """Read and validate a data file. Every problem raises QcheckError naming the file."""
    p = Path(path)
    if p.is_dir():
        raise QcheckError(p, "is a directory; qcheck reads data from one .npz file")
    # Read once: what is validated and hashed is what is loaded, and a FIFO or a device is
    # refused before it is opened (it would block or never end).
    raw = read_regular(p, "data file")
    if not raw:
        raise QcheckError(p, "data file is empty")
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        hint = "save it with numpy.savez(path, x=..., y=...)"
        if raw[:6] == b"\x93NUMPY":
            raise QcheckError(p, "is a single .npy array, not an .npz archive with 'x' and labels", hint)
        raise QcheckError(p, "is not an .npz archive", hint)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise QcheckError(p, "holds pickled (object) arrays, which qcheck refuses to load",
                              "store plain numeric arrays") from None
        raise QcheckError(p, f"cannot be read as .npz: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
        # zipfile raises NotImplementedError for unknown compression, RuntimeError when encrypted.
        raise QcheckError(p, f"cannot be read as .npz: {exc}") from None
    except (SyntaxError, TypeError, MemoryError, tokenize.TokenError) as exc:
        # numpy reads each member's header as a Python literal (never evaluated as code).
        raise QcheckError(p, f"cannot be read as .npz: a damaged .npy header ({type(exc).__name__}: {exc})") from None
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):  # numpy hands back raw bytes for a non-.npy member
            raise QcheckError(p, f"member '{name}' is not a .npy array")
    return _validate(p, arrays, hashlib.sha256(raw).hexdigest())


def _load_npy_folder(p: Path, files: list[Path] | None = None) -> Dataset:
    """``x.npy``, or ``x_<input name>.npy`` per input of a multi-input model, and label files."""
    inputs = {file.stem[len(PREFIX):]: _lazy_npy(file) for file in files or [p / "x.npy"]}
    x: Samples = inputs[""] if files is None else NamedInputs(dict(inputs))
    if files is not None and len({len(a) for a in inputs.values()}) > 1:
        counts = ", ".join(f"{PREFIX}{name}.npy {len(a)}" for name, a in sorted(inputs.items()))
        raise QcheckError(p, f"input files hold different numbers of samples ({counts})",
                          "give every input's file the same samples, in the same order")
    labels: dict[str, np.ndarray] = {}
    for file in sorted(p.glob("y*.npy")):
        name = file.stem
        if name != "y" and not name.startswith("y_"):
            continue
        check_regular(file, "label file")
        try:
            y = np.load(file, allow_pickle=False)
        except ValueError as exc:
            raise QcheckError(file, f"cannot be read as a .npy array: {exc}") from None
        labels["" if name == "y" else name[2:]] = _labels(file, name, y, len(x))
    return Dataset(str(p), x, labels)


def _lazy_npy(file: Path) -> LazyArray:
    """One input's samples in a .npy file, validated and read on demand."""
    check_regular(file, "data file")
    try:
        x = np.load(file, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise QcheckError(file, f"cannot be read as a .npy array: {exc}") from None
    _check_layout(file, x, file.stem)
    lazy = LazyArray("npy", (str(file),), (len(x),), tuple(x.shape[1:]), np.arange(len(x)))
    if x.dtype.kind == "f":
        # Chunk by chunk through the LazyArray, which maps the file only while it reads, so
        # checking a file larger than memory does not keep it all resident.
        bad = sum(int(np.count_nonzero(~np.isfinite(chunk))) for chunk in lazy.chunks())
        if bad:
            raise QcheckError(file, f"'{file.stem}' contains {bad} NaN or Inf values", "clean or drop those samples")
    return lazy


def _load_shards(p: Path, shards: list[Path]) -> Dataset:
    counts, shape = [], None
    parts: dict[str, list[np.ndarray]] = {}
    for shard in shards:
        data = load_npz(shard)  # validates the shard, one at a time
        if isinstance(data.x, NamedInputs):
            raise QcheckError(shard, "holds one array per input (x_<input name>): .npz shards hold 'x' only",
                              "for a multi-input model give one .npz, or a folder of x_<input name>.npy files")
        if shape is not None and data.x.shape[1:] != shape:
            raise QcheckError(shard, f"samples have shape {data.x.shape[1:]}, the first shard's have {shape}")
        shape = data.x.shape[1:]
        if data.pairs:
            raise QcheckError(shard, "holds verification pairs, which qcheck reads only from a single .npz file",
                              "put x, the labels and the pairs in one .npz")
        if parts and set(parts) != set(data.labels):
            raise QcheckError(shard, "has other label arrays than the first shard")
        counts.append(len(data))
        for key, y in data.labels.items():
            parts.setdefault(key, []).append(y)
    assert shape is not None
    labels = {k: np.concatenate(v) for k, v in parts.items()}
    lazy = LazyArray("shards", tuple(str(s) for s in shards), tuple(counts), tuple(shape), np.arange(sum(counts)))
    return Dataset(str(p), lazy, labels)


def _load_images(p: Path, classes: list[Path], options: ImageOptions) -> Dataset:
    """Images labelled by sub-folder in name order (as Keras' image_dataset_from_directory does).

    For anomaly data that order is often the wrong way round (anomaly/ < normal/, defect/ < good/
    make 1 = normal); accuracy_drop fails a reconstruction whose float AUC is below 0.5 and says so.
    """
    from qcheck.lazy_arrays import read_image

    files: list[str] = []
    y: list[int] = []
    for label, folder in enumerate(classes):
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in _IMAGE_SUFFIXES:
                check_regular(file, "image file")
                files.append(str(file))
                y.append(label)
    if not files:
        raise QcheckError(p, "has class sub-folders but no images (.png, .jpg, ...) in them")
    shapes = set()
    for name in files if options.size is None else files[:1]:
        try:
            shapes.add(read_image(Path(name), options).shape)
        except Exception as exc:  # Pillow raises many kinds for a damaged file
            raise QcheckError(name, f"cannot be read as an image: {exc}") from None
    if len(shapes) > 1:
        raise QcheckError(p, f"images have different sizes {sorted(shapes)[:3]}",
                          "resize them with --qcheck-image-size=HxW")
    lazy = LazyArray("images", tuple(files), (), shapes.pop(), np.arange(len(files)), options)
    return Dataset(str(p), lazy, {"": np.array(y, dtype=np.int64)})


def _check_layout(p: Path, x: np.ndarray, name: str = "x") -> None:
    """A numeric dtype and at least one sample."""
    if x.dtype.kind not in "fiu":
        raise QcheckError(p, f"'{name}' has dtype {x.dtype}; expected float32 or uint8")
    if x.ndim < 1 or x.shape[0] == 0:
        raise QcheckError(p, f"'{name}' holds no samples (shape {x.shape})")


def _check_inputs(p: Path, x: np.ndarray, name: str = "x") -> None:
    """Layout and finiteness of an in-memory ``x``, read in chunks."""
    _check_layout(p, x, name)
    if x.dtype.kind == "f":
        bad = sum(int(np.count_nonzero(~np.isfinite(x[i : i + CHUNK]))) for i in range(0, len(x), CHUNK))
        if bad:
            raise QcheckError(p, f"'{name}' contains {bad} NaN or Inf values", "clean or drop those samples")


def _inputs(p: Path, arrays: dict[str, np.ndarray]) -> Samples:
    """``x``, or ``x_<input name>`` per input of a multi-input model, validated, as float32."""
    named = {name[len(PREFIX):]: a for name, a in arrays.items() if name.startswith(PREFIX)}
    if "x" in arrays and named:
        raise QcheckError(p, f"has both 'x' and {', '.join(PREFIX + n for n in sorted(named))}",
                          "use 'x' for a single-input model, x_<input name> per input for a multi-input one")
    if "x" in arrays:
        _check_inputs(p, arrays["x"])
        return arrays["x"].astype(np.float32, copy=False)
    if not named:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise QcheckError(p, f"has no array 'x' (found: {found})",
                          "name the model inputs 'x' (x_<input name> per input of a multi-input model)")
    for name, a in named.items():
        _check_inputs(p, a, PREFIX + name)
    counts = {len(a) for a in named.values()}
    if len(counts) > 1:
        listed = ", ".join(f"{PREFIX}{n} {len(a)}" for n, a in sorted(named.items()))
        raise QcheckError(p, f"input arrays hold different numbers of samples ({listed})",
                          "give every input the same samples, in the same order")
    return NamedInputs({name: a.astype(np.float32, copy=False) for name, a in named.items()})


def _validate(p: Path, arrays: dict[str, np.ndarray], sha256: str) -> Dataset:
    x = _inputs(p, arrays)
    labels: dict[str, np.ndarray] = {}
    for name, arr in arrays.items():
        if name == "y":
            key = ""
        elif name.startswith("y_"):
            key = name[2:]
        else:
            continue
        labels[key] = _labels(p, name, arr, len(x))
    return Dataset(str(p), x, labels, sha256, _all_pairs(p, arrays, len(x)))


def _all_pairs(p: Path, arrays: dict[str, np.ndarray], n: int) -> dict[str, Pairs]:
    """``pairs``/``pairs_<output>`` with their ``same``/``same_<output>``, keyed by output ('' alone)."""
    keys = {name[len(prefix) + 1:] for name in arrays for prefix in ("pairs", "same")
            if name == prefix or name.startswith(prefix + "_")}
    result = {}
    for key in sorted(keys):
        suffix = f"_{key}" if key else ""
        pairs_name, same_name = f"pairs{suffix}", f"same{suffix}"
        missing = [name for name in (pairs_name, same_name) if name not in arrays]
        if missing:
            raise QcheckError(p, f"has '{same_name if missing[0] == pairs_name else pairs_name}' without "
                              f"'{missing[0]}'", f"give both: '{pairs_name}' (sample indices, shape [pairs, 2]) "
                              f"and '{same_name}' (1 = same identity, 0 = different, shape [pairs])")
        result[key] = _pairs(p, pairs_name, arrays[pairs_name], same_name, arrays[same_name], n)
    return result


def _pairs(p: Path, pairs_name: str, index: np.ndarray, same_name: str, same: np.ndarray, n: int) -> Pairs:
    """Validate one head's verification pairs: indices of samples in 'x', and 0/1 same labels."""
    if index.dtype.kind not in "iu" or index.ndim != 2 or index.shape[1] != 2 or len(index) == 0:
        raise QcheckError(p, f"'{pairs_name}' has shape {index.shape} and dtype {index.dtype}; expected integer "
                          "sample indices into 'x' of shape [pairs, 2]")
    if index.min() < 0 or index.max() >= n:
        bad = int(index.min()) if index.min() < 0 else int(index.max())
        raise QcheckError(p, f"'{pairs_name}' holds sample index {bad}, outside 'x' (0 to {n - 1})")
    if same.shape not in ((len(index),), (len(index), 1)):
        raise QcheckError(p, f"'{same_name}' has shape {same.shape}; expected one 0/1 label per pair of "
                          f"'{pairs_name}' ({len(index)},)")
    if same.dtype.kind not in "biuf" or not np.all((same == 0) | (same == 1)):
        raise QcheckError(p, f"'{same_name}' must hold 0 (different identities) or 1 (the same identity)")
    same = same.reshape(len(index)).astype(bool)
    if same.all() or not same.any():
        raise QcheckError(p, f"'{same_name}' holds only {'1' if same.all() else '0'}s; verification needs "
                          "pairs of the same identity and pairs of different ones")
    return Pairs(index.astype(np.int64), same, len(index))


def _labels(p: Path, name: str, y: np.ndarray, n: int) -> np.ndarray:
    """Class indices from integer labels or one-hot rows; targets (regression) as float32.

    Integer-valued labels are class indices only as one index per sample (never negative) or as
    one-hot rows; other whole-number rows (coordinates) and negative values are targets;
    multi-hot rows are refused with a message.
    """
    if y.shape[:1] != (n,):
        raise QcheckError(p, f"'{name}' has {y.shape[0] if y.ndim else 0} labels for {n} samples in 'x'")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise QcheckError(p, f"'{name}' contains NaN or Inf")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        # Fractional values are regression targets; accuracy_drop checks their shape against the head.
        return y.astype(np.float32, copy=False)
    if y.dtype.kind not in "iubf":
        raise QcheckError(p, f"'{name}' has dtype {y.dtype}; expected integer class indices, one-hot rows or "
                          "numeric targets")
    if y.ndim == 2 and y.shape[1] > 1:
        zero_one = bool(np.all((y == 0) | (y == 1)))
        if zero_one and bool(np.all(y.sum(axis=1) == 1)):
            indices: np.ndarray = np.argmax(y, axis=1).astype(np.int64)  # one-hot rows
            return indices
        if zero_one:
            # Several 1s in a row: multi-label tags, not one class; top-1 against them means nothing.
            raise QcheckError(p, f"'{name}' holds multi-hot rows (several 1s per sample): multi-label tags, which "
                              "qcheck does not judge as classification",
                              f"drop '{name}' to compare the quantized outputs with the float model's, or declare "
                              "the head's task (e.g. task = \"regression\") and store the labels as float32")
        # Whole-number values that are not 0/1 rows (pixel coordinates, counts): regression targets.
        return y.astype(np.float32)
    if y.ndim > 2:
        raise QcheckError(p, f"'{name}' has shape {y.shape}; expected class indices (N,), one-hot rows "
                          "(N, classes) or targets")
    y = y.reshape(n)
    if (y < 0).any():
        # Class indices are never negative: whole-number values below zero are regression targets.
        return y.astype(np.float32)
    return y.astype(np.int64)


def split(data: Dataset, samples: int, calibration: Dataset | None = None) -> Split:
    """Pick calibration samples: from ``calibration`` when given, else a seeded split of ``data``.

    With no separate calibration set, at most half of ``data`` is used to calibrate so that
    the evaluation keeps samples the quantizer never saw.
    """
    if calibration is not None:
        n = min(samples, len(calibration))
        return Split(_float32(calibration.x[:n]), data, f"{n} samples from {calibration.path}",
                     calibration.path)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(data))
    n = min(samples, len(data) // 2)
    if n == 0:
        raise QcheckError(data.path, f"has {len(data)} sample(s); at least 2 are needed to calibrate and evaluate")
    cal, rest = np.sort(order[:n]), np.sort(order[n:])
    note = f"{n} samples split from {data.path} (seed {SPLIT_SEED}); {len(rest)} kept apart for evaluation"
    if n < samples:
        note += f" (asked for {samples}: at most half of the data is used to calibrate)"
    return Split(_float32(data.x[cal]), data.subset(rest), note, data.path)


def _float32(x: np.ndarray | NamedInputs) -> np.ndarray | NamedInputs:
    return x if isinstance(x, NamedInputs) else np.asarray(x, dtype=np.float32)


def few_calibration_samples(samples: int) -> str | None:
    """A warning when a model was calibrated on fewer samples than qcheck's default."""
    if samples >= DEFAULT_CALIBRATION_SAMPLES:
        return None
    return (f"calibrated on only {samples} sample(s), fewer than the {DEFAULT_CALIBRATION_SAMPLES} "
            "representative samples the quantization ranges should come from: ranges measured on so few "
            "may not cover the data the model will see")


SYNTHETIC_SAMPLES = 200


def synthetic_calibration(sample_shape: tuple[int, ...], samples: int = SYNTHETIC_SAMPLES) -> np.ndarray:
    """Uniform [0, 1) samples: only so that a model converts when no data is given."""
    shape = tuple(d if d > 0 else 1 for d in sample_shape)
    return np.random.default_rng(SPLIT_SEED).random((samples, *shape), dtype=np.float32)
