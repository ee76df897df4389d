"""Data too large for memory: memory-mapped .npy, .npz shards and image folders, read in chunks."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, QcheckRun, run_qcheck

from qcheck.config import ImageOptions
from qcheck.data import load_data, split
from qcheck.lazy_arrays import LazyArray
from qcheck.named_inputs import NamedInputs

DIGITS = np.load(FIXTURES / "digits.npz")


def _npy_folder(root: Path) -> Path:
    root.mkdir()
    np.save(root / "x.npy", DIGITS["x"])
    np.save(root / "y.npy", DIGITS["y"])
    return root


def test_npy_folder_is_memory_mapped_and_pickles_as_a_recipe(tmp_path: Path) -> None:
    data = load_data(_npy_folder(tmp_path / "npy"))
    assert isinstance(data.x, LazyArray) and len(data) == len(DIGITS["x"])
    np.testing.assert_array_equal(data.labels[""], DIGITS["y"])
    # What crosses to a child process is the file name and the indices, not the samples.
    assert len(pickle.dumps(data.x)) < 10_000 < DIGITS["x"].nbytes
    parts = split(data, 200)
    assert isinstance(parts.evaluation.x, LazyArray)
    np.testing.assert_array_equal(np.asarray(parts.evaluation.x), DIGITS["x"][np.asarray(parts.evaluation.x.indices)])
    same = split(load_data(FIXTURES / "digits.npz"), 200)
    np.testing.assert_array_equal(parts.calibration, same.calibration)
    np.testing.assert_array_equal(np.asarray(parts.evaluation.x), same.evaluation.x)


def test_shards_read_across_boundaries(tmp_path: Path) -> None:
    root = tmp_path / "shards"
    root.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(DIGITS["x"])), 3)):
        np.savez(root / f"part{i}.npz", x=DIGITS["x"][part], y_digit=DIGITS["y"][part])
    data = load_data(root)
    rows = np.array([0, 179, 180, 181, 359, 360, 539])
    np.testing.assert_array_equal(data.x[rows], DIGITS["x"][rows])
    np.testing.assert_array_equal(data.labels["digit"], DIGITS["y"])
    assert isinstance(data.x, LazyArray)
    chunks = list(data.x.chunks(100))
    assert [len(c) for c in chunks] == [100] * 5 + [40]


def test_image_folders_give_labels_from_sorted_folder_names(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "images"
    for n in range(30):
        label = int(DIGITS["y"][n])
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(DIGITS["x"][n, :, :, 0] * 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{n:03d}.png")
    data = load_data(root, ImageOptions(mode="L"))
    present = sorted({int(y) for y in DIGITS["y"][:30]})
    assert data.x.shape == (30, 8, 8, 1)
    assert isinstance(data.x, LazyArray)
    files = [Path(f) for f in data.x.files]
    assert [present[y] for y in data.labels[""]] == [int(f.parent.name.split("_")[1]) for f in files]
    first = int(files[0].stem)
    np.testing.assert_allclose(data.x[0], DIGITS["x"][first], atol=0.5 / 255)
    resized = load_data(root, ImageOptions(size=(16, 16), mode="L", scale=1.0))
    assert not isinstance(resized.x, NamedInputs)
    assert resized.x[0].shape == (16, 16, 1) and resized.x[0].max() > 1


@pytest.mark.parametrize("problem", ["mixed_sizes", "no_images", "damaged"])
def test_bad_image_folders_are_named(tmp_path: Path, problem: str) -> None:
    from PIL import Image

    folder = tmp_path / "images" / "cat"
    folder.mkdir(parents=True)
    if problem == "mixed_sizes":
        Image.new("RGB", (8, 8)).save(folder / "a.png")
        Image.new("RGB", (9, 9)).save(folder / "b.png")
        message = "images have different sizes"
    elif problem == "no_images":
        (folder / "notes.txt").write_text("hello")
        message = "no images"
    else:
        (folder / "a.png").write_bytes(b"not a png")
        message = "cannot be read as an image"
    with pytest.raises(Exception, match=message):
        load_data(tmp_path / "images")


def test_main_path_on_a_memory_mapped_folder_gives_the_npz_numbers(digits_run: QcheckRun, tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}",
                     f"--qcheck-data={_npy_folder(tmp_path / 'npy')}", "-k", "accuracy_drop or saturation")
    assert run.returncode == 0, run.stdout
    assert run.model("digits_cnn.keras")["accuracy"] == digits_run.model("digits_cnn.keras")["accuracy"]
