"""Remedy candidates never write over, nor are named like, an artifact of a model of the run.

Under pytest-xdist the remedies run on the controller, which collects nothing: it named the
candidates ``m-2``, ``m-3``, ... in its own order, while a worker had named a suite-file model
of the same file name ``m-2``; the int16 candidate was written over that model's
``m-2_quant.tflite`` and the report pointed at it. The remedies now write below
``<out>/remedies/`` as ``<model>[.<suite file>].as-run`` / ``.remedy-<n>``.

The runs are real (conversions, the LiteRT interpreter, Vela) on two bundled fixtures that share
the file name ``m.keras``: ``flatten_outlier`` on the command line (it fails accuracy_drop, so it
gets remedies, one of them int16 for the whole model) and ``digits_cnn`` in ``sub/`` named by a
suite file (it passes). Which model and which recipe a ``.tflite`` holds is read from the file:
its tensors carry the Keras model's name, its activations' types the recipe.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import FIXTURES, QcheckRun, run_qcheck, write

from qcheck.remedies.runner import table_name
from qcheck.tflite.inspect import inspect_model

SUITE_FILE = "sub/qcheck_s.toml"
INT16_WHOLE = "int16 activations, whole model (int16x8)"


def _layout(folder: Path) -> Path:
    """The reviewer's reproduction: ``m.keras`` (outlier) and ``sub/m.keras`` (CNN) with its suite file."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURES / "flatten_outlier.keras", folder / "m.keras")
    shutil.copyfile(FIXTURES / "digits_cnn.keras", folder / "sub" / "m.keras")
    shutil.copyfile(FIXTURES / "digits.npz", folder / "digits.npz")
    write(folder / SUITE_FILE, 'model = "m.keras"\ndata = "../digits.npz"\n')
    return folder


def _run(folder: Path, *extra: str) -> QcheckRun:
    return run_qcheck(folder, *extra, ".", "--qcheck-model=m.keras", "--qcheck-data=digits.npz",
                      "--qcheck-remedies", "-k", "accuracy_drop", timeout=900)


@pytest.fixture(scope="module", params=[["-p", "no:xdist"], ["-n", "2"]], ids=["serial", "xdist"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    return _run(_layout(tmp_path_factory.mktemp("remedy_artifacts")), *request.param)


def _entry(run: QcheckRun, suite_file: str | None) -> dict[str, Any]:
    found: dict[str, Any]
    (found,) = [m for m in run.report["models"] if (m.get("suite_file") or None) == suite_file]
    return found


def _read(path: str) -> tuple[str, set[str], bytes]:
    """The Keras model a .tflite was converted from (its tensors name it), the types of its
    activations (tensors that are not constants), and its bytes."""
    data = Path(path).read_bytes()
    info = inspect_model(data)
    models = {t.name.split("/")[1] for t in info.tensors if t.name.count("/") > 1}
    assert len(models) == 1, models
    return models.pop(), {t.dtype for t in info.tensors if not t.constant}, data


def test_each_model_s_quantized_model_holds_its_own_conversion(run: QcheckRun) -> None:
    assert run.returncode == 1, run.stdout  # the outlier model fails accuracy_drop
    (table,) = run.report["remedies"]
    assert any(r["change"] == INT16_WHOLE for r in table["candidates"]), run.stdout
    for suite_file, keras_name in ((SUITE_FILE, "digits_cnn_1"), (None, "flatten_outlier_1")):
        artifacts = _entry(run, suite_file)["artifacts"]
        model, activations, _ = _read(artifacts["quantized_model"])
        assert model == keras_name, artifacts
        assert "int16" not in activations and "int8" in activations  # as run: int8, not a candidate's int16
        info = json.loads(Path(artifacts["quantization_info"]).read_text())
        assert info["quantization"] == "full-integer" and info["int16_tensors"] == 0


def test_remedy_rows_write_below_the_remedies_folder(run: QcheckRun) -> None:
    (table,) = run.report["remedies"]
    rows = table["candidates"]
    models = {_entry(run, s)["artifacts"]["quantized_model"] for s in (SUITE_FILE, None)}
    written = [r["quantized_model"] for r in rows]
    remedies = run.out_dir.resolve() / "remedies"
    assert [Path(p).name for p in written] == ["m.as-run_quant.tflite"] + [
        f"m.remedy-{n}_quant.tflite" for n in range(1, len(rows))]
    assert all(Path(p).parent == remedies and Path(p).is_file() for p in written)
    assert len(set(written)) == len(written) and not set(written) & models
    as_run = _read(rows[0]["quantized_model"])
    # Measured exactly as the model was: the same recipe gives the same bytes as its own artifact.
    assert as_run == _read(_entry(run, None)["artifacts"]["quantized_model"])
    (int16,) = [r for r in rows if r["change"] == INT16_WHOLE]
    model, activations, _ = _read(int16["quantized_model"])
    assert model == "flatten_outlier_1" and activations == {"int16"}
    # Next to the models' artifacts there is nothing but the remedies' folder.
    stems = {_entry(run, s)["artifacts"]["stem"] for s in (SUITE_FILE, None)}
    assert stems == {"m", "m-2"}
    for entry in run.out_dir.iterdir():
        assert entry.name == "remedies" or entry.name.split("_")[0] in stems, entry


def test_a_link_at_the_remedies_folder_is_refused(tmp_path: Path) -> None:
    folder = _layout(tmp_path / "linked")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "qcheck-out").mkdir()
    (folder / "qcheck-out" / "remedies").symlink_to(elsewhere, target_is_directory=True)
    linked = _run(folder, "-p", "no:xdist")
    assert list(elsewhere.iterdir()) == []
    (table,) = linked.report["remedies"]
    assert table["candidates"] and all("is a symbolic link inside qcheck's output folder" in (r["error"] or "")
                                       for r in table["candidates"]), table
    assert (folder / "qcheck-out" / "remedies").is_symlink()  # left in place: the user's to remove
    model, _, _ = _read(_entry(linked, None)["artifacts"]["quantized_model"])
    assert model == "flatten_outlier_1"


def test_table_names_come_from_the_paths_and_never_repeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    taken: set[str] = set()
    assert table_name("m.keras", "", tmp_path, taken) == "m"
    assert table_name(str(tmp_path / "sub" / "m.keras"), SUITE_FILE, tmp_path, taken) == "sub_m.sub_qcheck_s"
    # The same model under the command line's suite and a suite file: two tables, two names.
    assert table_name(str(tmp_path / "m.keras"), "qcheck_a.toml", tmp_path, taken) == "m.qcheck_a"
    assert table_name("m.keras", "", tmp_path, taken) == "m-2"
    # Dots separate the parts only: a model named like a row cannot take another table's name.
    assert table_name("m.as-run.keras", "", tmp_path, taken) == "m_as-run"
    # Outside the root: from the absolute path, its tail (the file name) kept.
    assert table_name("../up/m.keras", "", tmp_path / "root", taken).endswith("_up_m")
    assert table_name("/abs/a.b/saved_model", "", tmp_path, taken) == "abs_a_b_saved_model"
    long = table_name("/" + "x" * 100 + "/model.keras", "", tmp_path, taken)
    assert long.endswith("_model") and len(long) <= 60
    assert len(taken) == 8 and all("/" not in name and not name.startswith(".") for name in taken)
    assert os.sep not in "".join(taken)
