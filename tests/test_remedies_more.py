"""Remedies (issue 18), continued: suite-file models, calibration drawn from the evaluation data,
and the accuracy-against-SRAM picture of the HTML report.

The integration tests run qcheck as users do (real conversions, the real LiteRT interpreter, real
Vela) on bundled fixtures: ``digits_cnn`` calibrated on a set scaled by 255 (the evaluation data is
0..1) loses its accuracy; ``flatten_outlier`` loses ~7 points to an outlier channel whatever it is
calibrated on. Runs share the test session's qcheck cache, so a candidate converted once is reused.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import dump_dom
from helpers import FIXTURES, QcheckRun, run_qcheck, write

from qcheck.config import Quantization
from qcheck.errors import QcheckError
from qcheck.remedies import Diagnosis, candidates, pictures, recipe_lines
from qcheck.report.charts import ScatterPoint, scatter
from qcheck.suites import load_suite

CNN = FIXTURES / "digits_cnn.keras"
OUTLIER = FIXTURES / "flatten_outlier.keras"
DIGITS = FIXTURES / "digits.npz"
FROM_DATA = 'calibration_from = "data"'


def _calibration_set(folder: Path, scale: float) -> Path:
    """The first 300 digits as a separate calibration set, its inputs multiplied by ``scale``."""
    folder.mkdir(parents=True, exist_ok=True)
    with np.load(DIGITS) as digits:
        x = digits["x"][:300] * np.float32(scale)
    path = folder / f"calibration_x{scale:g}.npz"
    np.savez(path, x=x)
    return path


# -- pure logic ----------------------------------------------------------------------------------


def test_calibration_from_the_data_is_a_candidate_only_where_the_sets_differ() -> None:
    differs = candidates(Quantization(), Diagnosis(calibration_used=200, calibration_available=300,
                                                   calibration_differs=True))
    (from_data,) = [c for c in differs if c.quantization.calibration_from == "data"]
    assert "split from the evaluation data" in from_data.change and not from_data.keeps_float
    # More samples of a set that looks preprocessed differently would not help.
    assert not any(c.quantization.calibration_samples for c in differs)
    fine = candidates(Quantization(), Diagnosis(calibration_used=200, calibration_available=300))
    assert not any(c.quantization.calibration_from == "data" for c in fine)
    assert any(c.quantization.calibration_samples == 300 for c in fine)
    # Already calibrated on the data: nothing to offer there.
    assert not any("split from the evaluation data" in c.change for c in candidates(
        Quantization(calibration_from="data"), Diagnosis(calibration_differs=True)))


def test_calibration_from_is_a_recipe_key(tmp_path: Path) -> None:
    recipe = Quantization(calibration_from="data")
    assert FROM_DATA in recipe_lines(recipe)
    suite = write(tmp_path / "s.toml", "\n".join(recipe_lines(recipe)) + "\n")
    assert load_suite(str(suite)).quantization_for() == recipe
    bad = write(tmp_path / "bad.toml", '[quantization]\ncalibration_from = "eval"\n')
    with pytest.raises(QcheckError) as caught:
        load_suite(str(bad))
    assert 'quantization.calibration_from must be one of "auto", "data"' in str(caught.value)
    assert "bad.toml" in str(caught.value)


def test_scatter_places_points_in_order_of_their_values() -> None:
    points = [ScatterPoint("2", "two", 3000.0, 0.01, 0.0, 0.02), ScatterPoint("as run", "as run", 1000.0, 0.08),
              ScatterPoint("1", "one", 2000.0, -0.005, -0.01, 0.0)]
    chart = scatter(points, x_fmt=str, y_fmt=str, x_label="", y_label="", threshold=0.03)
    dots = {d.label: d for d in chart.dots}
    by_x = sorted(points, key=lambda p: float(p.x or 0))
    assert [dots[p.label].cx for p in by_x] == sorted(d.cx for d in chart.dots)
    # SVG's y grows downwards: a larger drop sits higher on the page.
    assert dots["as run"].cy < dots["2"].cy < dots["1"].cy
    assert chart.threshold_y is not None and dots["as run"].cy < chart.threshold_y < dots["2"].cy
    top, bottom = dots["2"].whisker or (0.0, 0.0)
    assert top < dots["2"].cy < bottom
    # Two recipes at the same place: both drawn, one label names both.
    same = scatter([ScatterPoint("as run", "as run", 1000.0, 0.08), ScatterPoint("3", "3. x", 1000.0, 0.08,
                                                                             chosen=True)],
                   x_fmt=str, y_fmt=str, x_label="", y_label="")
    assert [(d.label, d.text) for d in same.dots] == [("as run", "as run, 3 (chosen)"), ("3", "")]
    inside = range(chart.plot_left, chart.plot_left + chart.plot_width + 1)
    assert all(int(d.cx) in inside and chart.plot_top <= d.cy <= chart.plot_top + chart.plot_height
               for d in chart.dots)


def test_scatter_leaves_out_a_point_whose_figure_is_missing() -> None:
    points = [ScatterPoint("1", "1. int16", 2048.0, 0.0), ScatterPoint("2", "2. keep 'conv1' float", None, 0.0),
              ScatterPoint("3", "3. failed", 1024.0, float("nan")), ScatterPoint("4", "4. no ci", 1024.0, 0.02,
                                                                                  None, float("inf"))]
    chart = scatter(points, x_fmt=str, y_fmt=str, x_label="", y_label="", threshold=None)
    assert [d.label for d in chart.dots] == ["4", "1"]
    assert chart.missing == ("2. keep 'conv1' float", "3. failed")
    assert chart.dots[0].whisker is None and chart.threshold_y is None
    numbers = [v for d in chart.dots for v in (d.cx, d.cy, d.label_x, d.label_y)]
    numbers += [t.x for t in chart.x_ticks] + [t.y for t in chart.y_ticks]
    assert numbers and all(math.isfinite(v) for v in numbers)
    empty = scatter([ScatterPoint("1", "1", None, None)], x_fmt=str, y_fmt=str, x_label="", y_label="")
    assert empty.dots == () and all(math.isfinite(t.x) for t in empty.x_ticks)


def test_the_picture_of_a_table_uses_sram_or_else_the_size() -> None:
    def row(drop: float | None, sram: int | None, size: int, **extra: Any) -> dict[str, Any]:
        heads = {} if drop is None else {"a": {"drop": drop / 2}, "b": {"drop": drop, "ci_low": drop - 0.01,
                                                                        "ci_high": drop + 0.01}}
        targets = {} if sram is None else {"ethos-u55-128": {"sram_bytes": sram}}
        return {"change": "x", "heads": heads, "targets": targets, "size_bytes": size, **extra}

    table = {"accuracy_threshold": 0.03, "candidates": [
        row(0.08, 4096, 9000, baseline=True), row(0.0, 8192, 9500, passed=True, chosen=True),
        {**row(0.0, None, 20000, passed=True, keeps_float=True), "change": "keep 'conv1' float"}]}
    (picture,) = pictures(table)
    chart = picture["chart"]
    assert picture["title"] == "on ethos-u55-128" and chart.x_label.startswith("SRAM on ethos-u55-128")
    as_run, chosen = chart.dots
    assert as_run.label == "as run" and chosen.chosen and as_run.cx < chosen.cx and as_run.cy < chosen.cy
    assert as_run.whisker is not None  # the worst head's interval (b), not the first head's
    assert chart.missing == ("2. keep 'conv1' float",)
    no_vela = {"accuracy_threshold": 0.03, "candidates": [row(0.08, None, 9000, baseline=True),
                                                          row(0.0, None, 4000, keeps_float=True)]}
    (picture,) = pictures(no_vela)
    assert picture["chart"].x_label.startswith(".tflite size") and len(picture["chart"].dots) == 2
    assert [d.keeps_float for d in picture["chart"].dots] == [True, False]  # ordered by size


# -- a calibration set preprocessed differently --------------------------------------------------


@pytest.fixture(scope="module")
def wrong_calibration(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    cwd = tmp_path_factory.mktemp("wrong_calibration")
    scaled = _calibration_set(cwd / "data", 255)
    return run_qcheck(cwd, f"--qcheck-model={CNN}", f"--qcheck-data={DIGITS}", f"--qcheck-calibration={scaled}",
                      "--qcheck-remedies", "--qcheck-html=report.html", timeout=900)


def _from_data(run: QcheckRun) -> dict[str, Any]:
    (table,) = run.report["remedies"]
    row: dict[str, Any]
    (row,) = [r for r in table["candidates"] if r["recipe"]["calibration_from"] == "data"]
    return row


def test_a_calibration_set_scaled_differently_gets_calibration_from_the_data(wrong_calibration: QcheckRun) -> None:
    run = wrong_calibration
    assert run.check("digits_cnn.keras", "accuracy_drop")["passed"] is False, run.stdout
    row = _from_data(run)
    assert row["passed"] and row["fully_integer"] is True and FROM_DATA in row["recipe_lines"]
    assert row["heads"] and all(h["drop"] < 0.03 for h in row["heads"].values())
    # Evaluated on the samples the split kept apart, and it says so; the recipe as run used all 540.
    assert row["evaluated_on"].startswith("evaluated on 340 of the 540 samples of ")
    assert "the other 200 calibrated it (the recipe as run was evaluated on all 540)" in row["evaluated_on"]
    assert row["evaluated_on"] in run.stdout
    (table,) = run.report["remedies"]
    assert not any(r["recipe"]["calibration_samples"] for r in table["candidates"])  # not "more of the same"
    # Every channel is crushed alike by the range calibrated on x*255: no outlier channel to fold.
    assert not any("folding that channel" in note for note in table["notes"])
    # Nor does the failed check blame one: its message named "the outlier channel" of conv1, 1x the median.
    failed = run.check("digits_cnn.keras", "accuracy_drop")
    assert "outlier" not in failed["message"] and "outlier" not in (failed.get("hint") or "")


def test_adopting_calibration_from_the_data_makes_the_suite_pass(wrong_calibration: QcheckRun,
                                                                 tmp_path: Path) -> None:
    scaled = _calibration_set(tmp_path / "data", 255)
    suite = write(tmp_path / "adopted.toml", 'extends = "default"\n' + "\n".join(
        _from_data(wrong_calibration)["recipe_lines"]) + "\n")
    run = run_qcheck(tmp_path, f"--qcheck-model={CNN}", f"--qcheck-data={DIGITS}", f"--qcheck-calibration={scaled}",
                     f"--qcheck-suite={suite}")
    assert run.returncode == 0, run.stdout
    assert all(c["passed"] is not False for c in run.model("digits_cnn.keras")["checks"])
    notes = " ".join(run.model("digits_cnn.keras")["notes"])
    assert "split from" in notes and 'calibration_from = "data" asks' in notes


def test_the_report_draws_accuracy_against_sram(wrong_calibration: QcheckRun, tmp_path: Path) -> None:
    page = wrong_calibration.out_dir.parent / "report.html"
    (table,) = wrong_calibration.report["remedies"]
    rows = table["candidates"]
    dom = dump_dom(page, tmp_path / "profile-dom")
    section = dom.split('data-section="remedies"')[1]
    assert section.count('<svg class="chart scatter"') == 1  # one accelerator: one picture
    svg = section.split('<svg class="chart scatter"')[1].split("</svg>")[0]
    placed = [r for r in rows if any(h.get("drop") is not None for h in r["heads"].values())
              and r["targets"].get("ethos-u55-128", {}).get("sram_bytes") is not None]
    assert svg.count('<g class="point') == len(placed) >= 2
    assert svg.count("data-threshold") == 1 and "max 3%" in svg
    assert svg.count('class="ring"') == sum(1 for r in placed if r["chosen"]) == 1
    assert svg.count('class="whisker"') == len(placed)
    assert "nan" not in svg.lower()
    for r in rows:
        if r not in placed:
            assert "Not placed" in section and r["change"] in section.split("Not placed")[1]


# -- suite-file models --------------------------------------------------------------------------


def _suite_file(folder: Path, remedies: bool) -> Path:
    """A qcheck_*.toml naming the outlier model, calibrated on a set like its data (no mismatch)."""
    fine = _calibration_set(folder / "data", 1)
    table = "[remedies]\nenabled = true\n" if remedies else ""
    return write(folder / "qcheck_outlier.toml", f'model = "{OUTLIER}"\ndata = "{DIGITS}"\n'
                                                 f'calibration = "data/{fine.name}"\n{table}')


@pytest.fixture(scope="module")
def suite_file_remedies(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    cwd = tmp_path_factory.mktemp("suite_file_remedies")
    _suite_file(cwd, remedies=True)
    return run_qcheck(cwd, "qcheck_outlier.toml", "--qcheck-html=report.html", timeout=900)


def test_a_suite_file_model_gets_remedies_from_its_remedies_table(suite_file_remedies: QcheckRun) -> None:
    run = suite_file_remedies
    message = run.check("flatten_outlier.keras", "accuracy_drop")["message"]
    assert run.check("flatten_outlier.keras", "accuracy_drop")["passed"] is False
    assert "--qcheck-remedies" not in message  # being tried: the failure does not also ask for them
    (table,) = run.report["remedies"]
    assert table["suite_file"] == "qcheck_outlier.toml" and Path(table["model"]).name == "flatten_outlier.keras"
    rows = table["candidates"]
    (chosen,) = [r for r in rows if r["chosen"]]
    assert chosen["passed"] and not chosen["keeps_float"] and chosen["fully_integer"] is True
    # Its calibration set looks like its data: no candidate calibrates on the data instead.
    assert not any(r["recipe"]["calibration_from"] == "data" for r in rows)
    assert any(r["recipe"]["calibration_samples"] == 300 for r in rows)  # all of its separate set
    assert f"remedies for {table['model']} (qcheck_outlier.toml):" in run.stdout
    assert "<- cheapest that passes" in run.stdout
    html = (run.out_dir.parent / "report.html").read_text()
    assert "(qcheck_outlier.toml)</h3>" in html.split('data-section="remedies"')[1]


def test_a_suite_file_model_hints_and_takes_the_command_line_flag(suite_file_remedies: QcheckRun,
                                                                  tmp_path: Path) -> None:
    # After the fixture's run, so that the candidates' conversions come from the shared cache.
    _suite_file(tmp_path, remedies=False)
    hinted = run_qcheck(tmp_path, "qcheck_outlier.toml", "-k", "accuracy_drop")
    message = hinted.check("flatten_outlier.keras", "accuracy_drop")["message"]
    count = len(suite_file_remedies.report["remedies"][0]["candidates"]) - 1
    assert f"run with --qcheck-remedies to try {count} fixes" in message
    assert "remedies" not in hinted.report
    asked = run_qcheck(tmp_path, "qcheck_outlier.toml", "--qcheck-remedies")
    (table,) = asked.report["remedies"]
    assert [r["change"] for r in table["candidates"]] == [
        r["change"] for r in suite_file_remedies.report["remedies"][0]["candidates"]]
