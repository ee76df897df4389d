"""qcheck.data: loading and validating .npz data files, and the calibration/evaluation split."""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcheck.data import SPLIT_SEED, Dataset, load_npz, split
from qcheck.errors import QcheckError
from qcheck.named_inputs import NamedInputs

N = 12


def images(n: int = N) -> np.ndarray:
    return np.random.default_rng(7).random((n, 8, 8, 1), dtype=np.float32)


def save(path: Path, **arrays: Any) -> Path:  # Any: numpy's stub types savez(**kwds) like allow_pickle
    np.savez(path, **arrays)
    return path


def refused(path: Path, *words: str) -> str:
    """Load ``path``, expect a QcheckError naming it and holding ``words``; return the message."""
    with pytest.raises(QcheckError) as info:
        load_npz(path)
    message = str(info.value)
    assert str(path) in message
    assert info.value.path == str(path)
    for word in words:
        assert word in message
    return message


def npz_bytes(**arrays: Any) -> bytes:  # as save()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


# --- good files -----------------------------------------------------------------------------------

def test_good_file_loads(tmp_path: Path) -> None:
    x, y = images(), np.arange(N) % 10
    path = save(tmp_path / "val.npz", x=x, y=y)
    data = load_npz(path)
    assert isinstance(data, Dataset)
    assert len(data) == N
    assert data.path == str(path)
    assert not isinstance(data.x, NamedInputs)
    assert data.x.dtype == np.float32
    np.testing.assert_array_equal(data.x, x)
    assert set(data.labels) == {""}
    assert data.labels[""].dtype == np.int64
    np.testing.assert_array_equal(data.labels[""], y)
    assert data.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_accepts_a_string_path_and_no_labels(tmp_path: Path) -> None:
    path = save(tmp_path / "val.npz", x=images())
    data = load_npz(str(path))
    assert data.labels == {}
    assert len(data) == N


def test_uint8_inputs_become_float32(tmp_path: Path) -> None:
    x = np.arange(N * 4, dtype=np.uint8).reshape(N, 4)
    data = load_npz(save(tmp_path / "u8.npz", x=x))
    assert not isinstance(data.x, NamedInputs)
    assert data.x.dtype == np.float32
    np.testing.assert_array_equal(data.x, x.astype(np.float32))


def test_label_keys_map_to_output_names(tmp_path: Path) -> None:
    digits, parity = np.arange(N) % 10, np.arange(N) % 2
    path = save(tmp_path / "multi.npz", x=images(), y_digits=digits, y_parity=parity, other=np.zeros(3))
    data = load_npz(path)
    assert set(data.labels) == {"digits", "parity"}
    np.testing.assert_array_equal(data.labels["digits"], digits)
    np.testing.assert_array_equal(data.labels["parity"], parity)
    both = load_npz(save(tmp_path / "both.npz", x=images(), y=digits, y_parity=parity))
    assert set(both.labels) == {"", "parity"}
    np.testing.assert_array_equal(both.labels[""], digits)


def test_one_hot_labels_become_indices(tmp_path: Path) -> None:
    idx = np.arange(N) % 4
    data = load_npz(save(tmp_path / "onehot.npz", x=images(), y=np.eye(4, dtype=np.float32)[idx]))
    assert data.labels[""].dtype == np.int64
    np.testing.assert_array_equal(data.labels[""], idx)


def test_column_of_labels_is_flattened(tmp_path: Path) -> None:
    idx = np.arange(N) % 3
    data = load_npz(save(tmp_path / "col.npz", x=images(), y=idx.reshape(N, 1)))
    assert data.labels[""].shape == (N,)
    np.testing.assert_array_equal(data.labels[""], idx)


def test_float_labels_that_are_integers_are_accepted(tmp_path: Path) -> None:
    y = (np.arange(N) % 5).astype(np.float64)
    data = load_npz(save(tmp_path / "f.npz", x=images(), y=y))
    assert data.labels[""].dtype == np.int64
    np.testing.assert_array_equal(data.labels[""], np.arange(N) % 5)


def test_boolean_labels_are_class_indices(tmp_path: Path) -> None:
    y = np.arange(N) % 2 == 1
    data = load_npz(save(tmp_path / "b.npz", x=images(), y=y))
    np.testing.assert_array_equal(data.labels[""], y.astype(np.int64))


# --- refused files ------------------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    refused(tmp_path / "nope.npz", "does not exist")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.npz").mkdir()
    refused(tmp_path / "dir.npz", "is a directory")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.npz").write_bytes(b"")
    refused(tmp_path / "empty.npz", "empty")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.npz"
    path.write_bytes(b"\x00not a zip" + np.random.default_rng(0).bytes(500))
    message = refused(path, "not an .npz archive")
    assert "numpy.savez" in message  # the hint says how to make one


def test_single_npy_under_an_npz_name(tmp_path: Path) -> None:
    path = tmp_path / "array.npz"
    with path.open("wb") as f:
        np.save(f, images())
    refused(path, "single .npy array")


def test_pickled_object_array_is_refused(tmp_path: Path) -> None:
    path = save(tmp_path / "pickled.npz", x=np.array([{"a": 1}, None], dtype=object))
    refused(path, "pickled")


def test_pickled_labels_are_refused_too(tmp_path: Path) -> None:
    path = save(tmp_path / "pickled_y.npz", x=images(), y=np.array([[1], "a"] * (N // 2), dtype=object))
    refused(path, "pickled")


def test_no_x_lists_what_was_found(tmp_path: Path) -> None:
    path = save(tmp_path / "nox.npz", images=images(), labels=np.arange(N))
    message = refused(path, "no array 'x'")
    assert "found: images, labels" in message


def test_empty_archive_says_nothing_found(tmp_path: Path) -> None:
    path = tmp_path / "hollow.npz"
    with zipfile.ZipFile(path, "w"):
        pass
    refused(path, "no array 'x'", "found: nothing")


def test_x_of_strings(tmp_path: Path) -> None:
    refused(save(tmp_path / "s.npz", x=np.array(["a", "b"])), "'x' has dtype", "<U1")


def test_x_without_samples(tmp_path: Path) -> None:
    refused(save(tmp_path / "e.npz", x=np.zeros((0, 8, 8, 1), np.float32)), "holds no samples")
    refused(save(tmp_path / "s.npz", x=np.float32(3.0)), "holds no samples")


def test_x_with_nan_and_inf_counts_them(tmp_path: Path) -> None:
    x = images()
    x[0, 0, 0, 0] = np.nan
    x[1, 2, 3, 0] = np.nan
    x[5, 1, 1, 0] = np.inf
    x[6, 1, 1, 0] = -np.inf
    refused(save(tmp_path / "nan.npz", x=x), "contains 4 NaN or Inf values")
    only_inf = images()
    only_inf[3, 3, 3, 0] = np.inf
    refused(save(tmp_path / "inf.npz", x=only_inf), "contains 1 NaN or Inf values")


def test_labels_of_the_wrong_length(tmp_path: Path) -> None:
    refused(save(tmp_path / "len.npz", x=images(), y=np.arange(N - 1)), f"'y' has {N - 1} labels for {N} samples")
    refused(save(tmp_path / "scalar.npz", x=images(), y=np.int64(1)), f"'y' has 0 labels for {N} samples")
    refused(save(tmp_path / "named.npz", x=images(), y_head=np.arange(N + 2)), f"'y_head' has {N + 2} labels")


def test_negative_whole_number_labels_are_regression_targets(tmp_path: Path) -> None:
    # Class indices are never negative: whole numbers below zero are regression targets
    # (review item 5: sine targets rounded to integers were refused as "negative class indices").
    y = np.arange(N) % 3
    y[4] = -2
    labels = load_npz(save(tmp_path / "neg.npz", x=images(), y=y)).labels[""]
    assert labels.dtype == np.float32 and labels[4] == -2


def test_fractional_labels_are_regression_targets(tmp_path: Path) -> None:
    # Fractional values are not class indices: they are kept as they are (accuracy_drop then
    # judges the head as a regression and checks their shape against it).
    y = np.zeros(N)
    y[3] = 0.5
    labels = load_npz(save(tmp_path / "half.npz", x=images(), y=y)).labels[""]
    assert labels.dtype == np.float32 and labels[3] == 0.5


def test_nan_labels_are_refused(tmp_path: Path) -> None:
    y = np.zeros(N)
    y[0] = np.nan
    refused(save(tmp_path / "nan_y.npz", x=images(), y=y), "'y' contains NaN or Inf")


def test_string_labels_are_refused(tmp_path: Path) -> None:
    refused(save(tmp_path / "str_y.npz", x=images(), y=np.array(["cat"] * N)), "'y' has dtype")


def test_labels_with_three_dimensions_are_refused(tmp_path: Path) -> None:
    # Neither class indices nor one-hot rows: must be a QcheckError, not a numpy reshape error.
    path = save(tmp_path / "y3d.npz", x=images(), y=np.zeros((N, 2, 3)))
    refused(path, "'y'")


def test_member_that_is_not_an_npy_array(tmp_path: Path) -> None:
    # numpy hands back raw bytes for an archive member without the .npy magic
    path = tmp_path / "zip.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"these are not the arrays you are looking for")
    refused(path)


def _patch_headers(raw: bytes, local_offset: int, central_offset: int, value: int) -> bytes:
    b = bytearray(raw)
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        i = b.find(signature)
        while i >= 0:
            struct.pack_into("<H", b, i + offset, value)
            i = b.find(signature, i + 4)
    return bytes(b)


def test_unsupported_compression_method(tmp_path: Path) -> None:
    # method 9 (Deflate64), as some desktop zip tools write it; Python's zipfile cannot read it
    path = tmp_path / "deflate64.npz"
    path.write_bytes(_patch_headers(npz_bytes(x=images()), 8, 10, 9))
    refused(path)


def test_encrypted_archive(tmp_path: Path) -> None:
    # general-purpose flag bit 0: the members are encrypted
    path = tmp_path / "encrypted.npz"
    path.write_bytes(_patch_headers(npz_bytes(x=images()), 6, 8, 1))
    refused(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=1, max_value=2000))
def test_truncated_archives_are_refused(tmp_path: Path, cut: int) -> None:
    raw = npz_bytes(x=images(), y=np.arange(N))
    cut = min(cut, len(raw) - 1)
    path = tmp_path / "cut.npz"
    path.write_bytes(raw[:cut])
    refused(path)


# --- split ----------------------------------------------------------------------------------------

def numbered(n: int, path: str = "data.npz") -> Dataset:
    """Sample i is the value i, and its label is 1000 + i: rows can be told apart."""
    return Dataset(path, np.arange(n, dtype=np.float32).reshape(n, 1), {"": np.arange(n) + 1000}, "sha")


@given(n=st.integers(2, 400), samples=st.integers(1, 500))
def test_split_is_disjoint_covering_and_at_most_half(n: int, samples: int) -> None:
    data = numbered(n)
    s = split(data, samples)
    assert not isinstance(s.calibration, NamedInputs) and not isinstance(s.evaluation.x, NamedInputs)
    cal = s.calibration[:, 0].astype(int).tolist()
    ev = s.evaluation.x[:, 0].astype(int).tolist()
    assert len(cal) == min(samples, n // 2)
    assert len(cal) <= n // 2
    assert not set(cal) & set(ev)
    assert sorted(cal + ev) == list(range(n))
    assert len(set(cal)) == len(cal)
    # labels follow their samples into the evaluation set
    np.testing.assert_array_equal(s.evaluation.labels[""], np.array(ev) + 1000)
    assert s.evaluation.path == data.path
    assert s.evaluation.sha256 == data.sha256
    assert data.path in s.calibration_source
    assert f"seed {SPLIT_SEED}" in s.calibration_source
    assert ("at most half" in s.calibration_source) == (samples > n // 2)


@given(n=st.integers(2, 200), samples=st.integers(1, 200))
def test_split_is_deterministic(n: int, samples: int) -> None:
    first, second = split(numbered(n), samples), split(numbered(n), samples)
    np.testing.assert_array_equal(first.calibration, second.calibration)
    np.testing.assert_array_equal(first.evaluation.x, second.evaluation.x)
    assert first.calibration_source == second.calibration_source


def test_split_is_not_just_the_first_samples() -> None:
    s = split(numbered(100), 50)
    assert not isinstance(s.calibration, NamedInputs)
    assert s.calibration[:, 0].tolist() != list(range(50))


def test_separate_calibration_set_is_used_when_given() -> None:
    data = numbered(10)
    calibration = Dataset("cal.npz", np.arange(100, 130, dtype=np.float32).reshape(30, 1))
    s = split(data, 20, calibration=calibration)
    np.testing.assert_array_equal(s.calibration, calibration.x[:20])
    assert s.evaluation is data  # all of the data is kept for evaluation
    assert "cal.npz" in s.calibration_source
    few = split(data, 50, calibration=calibration)
    assert len(few.calibration) == 30


def test_separate_calibration_set_allows_a_single_evaluation_sample() -> None:
    calibration = Dataset("cal.npz", np.ones((4, 1), np.float32))
    s = split(numbered(1), 4, calibration=calibration)
    assert len(s.evaluation) == 1


def test_one_sample_cannot_be_split() -> None:
    with pytest.raises(QcheckError) as info:
        split(numbered(1, "tiny.npz"), 10)
    assert "tiny.npz" in str(info.value)
    assert "1 sample" in str(info.value)


def test_subset_keeps_labels_aligned() -> None:
    data = numbered(6)
    sub = data.subset(np.array([4, 1]))
    assert not isinstance(sub.x, NamedInputs)
    assert sub.x[:, 0].tolist() == [4, 1]
    assert sub.labels[""].tolist() == [1004, 1001]
