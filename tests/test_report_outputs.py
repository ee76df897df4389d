"""The reports around the HTML page: JUnit properties, pytest-html extras, CSV tables, progress
lines, and output that is the same for the same inputs."""

from __future__ import annotations

import json
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pandas as pd
import pytest
from helpers import REAL, QcheckRun
from report_samples import EVIL, GOOD, LOSSY, SUITE, sample_facts, sample_report, sample_results

from qcheck.files import write_json
from qcheck.progress import format_step
from qcheck.report.csv_tables import model_tables, stems, write_tables
from qcheck.report.html import render
from qcheck.report.json_report import build_report

VWW = REAL / "mlperf_tiny" / "vww_96_int8.tflite"


# -- determinism -------------------------------------------------------------------------------


def test_same_results_give_the_same_json_and_html_whatever_their_order(tmp_path: Path) -> None:
    """xdist delivers results in any order; the documents must not depend on it."""
    results, facts = sample_results(tmp_path / "qcheck-out"), sample_facts(tmp_path / "qcheck-out")
    shuffled, shuffled_facts = list(results), list(facts)
    random.Random(3).shuffle(shuffled)
    random.Random(3).shuffle(shuffled_facts)

    texts = []
    for run, (order, facts_order) in enumerate(((results, facts), (shuffled, shuffled_facts), (results, facts))):
        report = build_report(order, SUITE, facts=facts_order)
        write_json(tmp_path / f"{run}.json", report)
        texts.append(((tmp_path / f"{run}.json").read_text(), render(report, generated=f"time {run}")))

    assert texts[0][0] == texts[1][0] == texts[2][0]
    pages = [re.sub(r"generated time \d", "generated TIME", page) for _, page in texts]
    assert pages[0] == pages[1] == pages[2]
    assert texts[0][1] != texts[1][1]  # only the timestamp differs


def test_json_carries_the_new_sections(tmp_path: Path) -> None:
    report = sample_report(tmp_path)
    (lossy,) = [m for m in report["models"] if m["model"] == LOSSY]

    assert report["schema_version"] == 1
    assert {"layers", "tensors", "size_breakdown", "artifacts"} <= set(lossy)
    assert lossy["accuracy"]["digit"]["ci_high"] == 0.102
    assert lossy["artifacts"]["stem"] == "lossy_net"


# -- CSV ---------------------------------------------------------------------------------------


def test_csv_tables_per_model(tmp_path: Path) -> None:
    report = sample_report(tmp_path / "qcheck-out")
    written = write_tables(tmp_path / "tables", report)

    names = {p.name for p in written}
    for stem in ("good_cnn", "lossy_net"):
        assert {f"{stem}_{t}.csv" for t in ("checks", "tensors", "layers", "size_breakdown", "accuracy")} <= names
    assert stems(report)[0] == "script_alert_model"  # the model named like an attack gets a safe file name
    assert "script_alert_model_cpu_operators.csv" in names
    layers = pd.read_csv(tmp_path / "tables" / "lossy_net_layers.csv")
    assert list(layers["rmse_steps"])[:2] == [0.16, 2.7]
    assert "channels.crushed" in layers.columns  # nested fields are flattened
    checks = pd.read_csv(tmp_path / "tables" / "good_cnn_checks.csv")
    assert len(checks) == 14 and {"name", "passed", "value", "threshold", "unit", "message", "variant"} <= set(checks)


def test_csv_tensor_table_is_the_fixtures_table_joined_with_the_statistics(tmp_path: Path) -> None:
    report = sample_report(tmp_path)
    (good,) = [m for m in report["models"] if m["model"] == GOOD]
    fixture_table = pd.DataFrame([{"name": "good/conv0", "dtype": "int8", "scale": 0.05, "producer": "CONV_2D"},
                                  {"name": "weights", "dtype": "int8", "scale": 0.01, "producer": None}])

    tensors = model_tables(good, fixture_table)["tensors"]

    assert list(tensors["name"]) == ["good/conv0", "weights"]
    assert tensors.loc[0, "rmse_steps"] == pytest.approx(0.2) and pd.isna(tensors.loc[1, "rmse_steps"])
    assert list(tensors.columns[:4]) == ["name", "dtype", "scale", "producer"]


# -- the real run: HTML, CSV and JUnit next to the JSON ----------------------------------------


def _run_dir(run: QcheckRun) -> Path:
    return run.out_dir.parent


def test_real_run_writes_the_html_report_with_working_artifact_links(digits_run: QcheckRun) -> None:
    page = _run_dir(digits_run) / "reports" / "report.html"
    html = page.read_text()

    assert "digits_cnn.keras" in html and "float_op.keras" in html
    assert 'data-section="overview"' in html and html.count('data-section="vela"') == 2
    links = re.findall(r'<a href="([^"#]+)"', html)
    assert len(links) == 6  # quantized model, quantization info, Vela output, for each model
    for link in links:
        assert not link.startswith(("/", "file:")), link
        assert (page.parent / unquote(link)).resolve().exists(), link
    assert "HTML report written to reports/report.html" in digits_run.stdout


def test_real_run_writes_csv_tables(digits_run: QcheckRun) -> None:
    tables = _run_dir(digits_run) / "tables"

    checks = pd.read_csv(tables / "float_op_checks.csv")
    assert set(checks["name"]) >= {"fully_quantized", "vela", "accuracy_drop"}
    tensors = pd.read_csv(tables / "digits_cnn_tensors.csv")
    # The same columns as the qcheck_quantized.tensors fixture.
    assert {"name", "dtype", "shape", "scale", "zero_point", "producer"} <= set(tensors.columns)
    assert set(tensors["dtype"]) >= {"int8", "uint8"}
    assert "CSV table(s) written to tables" in digits_run.stdout


def test_junit_xml_carries_value_threshold_and_unit(digits_run: QcheckRun) -> None:
    root = ET.parse(_run_dir(digits_run) / "junit.xml").getroot()
    cases = {case.get("name"): case for case in root.iter("testcase")}

    properties: dict[str, dict[str, str]] = {}
    for name, case in cases.items():
        assert name is not None
        properties[name] = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
    accuracy = properties[next(n for n in cases if n and n.startswith("accuracy_drop") and "digits_cnn" in n)]
    assert float(accuracy["qcheck_value"]) == digits_run.check("digits_cnn.keras", "accuracy_drop")["value"]
    assert (accuracy["qcheck_threshold"], accuracy["qcheck_unit"]) == ("0.03", "fraction")
    vela = properties[next(n for n in cases if n and n.startswith("vela") and "float_op" in n)]
    assert (float(vela["qcheck_value"]), vela["qcheck_unit"]) == (3.0, "count")
    assert all({"qcheck_value", "qcheck_threshold", "qcheck_unit"} <= set(p) for p in properties.values())


# -- pytest runs on a published model (no conversion) ------------------------------------------


def test_progress_lines_with_v_and_none_with_q_or_xdist(pytester: pytest.Pytester) -> None:
    args = ("-p", "no:cacheprovider", f"--qcheck-model={VWW}", "-k", "size or fully_quantized")

    verbose = pytester.runpytest(*args, "-v")
    verbose.assert_outcomes(passed=2)
    verbose.stdout.fnmatch_lines([f"qcheck: {VWW}: check fully_quantized ...", "*fully_quantized*PASSED*",
                                  f"qcheck: {VWW}: check size ...", "*size*PASSED*"])
    for quiet in (pytester.runpytest(*args, "-q"), pytester.runpytest(*args), pytester.runpytest(*args, "-v", "-n", "2")):
        quiet.assert_outcomes(passed=2)
        assert "check size ..." not in quiet.stdout.str()


def test_format_step() -> None:
    assert format_step("m.keras", "evaluating", 500, 1597) == "qcheck: m.keras: evaluating (500/1597)"
    assert format_step("m.keras", "converting") == "qcheck: m.keras: converting"


def test_pytest_html_gets_each_models_summary(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={VWW}", "-k", "size or fully_quantized",
                                "--html=ph.html", "--self-contained-html")
    result.assert_outcomes(passed=2)

    page = (pytester.path / "ph.html").read_text()
    blob = re.search(r'data-jsonblob="([^"]*)"', page)
    assert blob is not None
    import html

    data: dict[str, Any] = json.loads(html.unescape(blob.group(1)))
    extras = [e for test in data["tests"].values() for run in test for e in run.get("extras", [])]
    summaries = [e["content"] for e in extras if e.get("format_type") == "html" and "qcheck-summary" in e["content"]]
    assert len(summaries) == 2  # one per item
    assert "vww_96_int8.tflite" in summaries[-1] and "fully_quantized" in summaries[-1] and "size" in summaries[-1]


def test_reports_under_xdist_are_written_once_by_the_controller(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", "-n", "2", f"--qcheck-model={VWW}",
                                "-k", "size or fully_quantized", "--qcheck-html=r.html", "--qcheck-csv=t")
    result.assert_outcomes(passed=2)

    html = (pytester.path / "r.html").read_text()
    assert html.count('data-section="model"') == 1 and "vww_96_int8.tflite" in html
    assert len(pd.read_csv(pytester.path / "t" / "vww_96_int8_checks.csv")) == 2
    # The model is checked as it is: the link points at the given .tflite.
    assert re.search(r'href="[^"]*vww_96_int8.tflite"', html)
    assert not list(pytester.path.glob(".r.html.*"))  # no temporary file left behind


def test_a_report_that_cannot_be_written_is_said_not_crashed(pytester: pytest.Pytester) -> None:
    # A folder where the report goes is known before anything runs: a usage error (issue 13;
    # reports that fail later fail the run, tests/test_hostile_paths.py).
    (pytester.path / "taken").mkdir()
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={VWW}", "-k", "size",
                                "--qcheck-html=taken", "--qcheck-json=r.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR

    result.stderr.fnmatch_lines(["*qcheck: --qcheck-html=taken: is a folder; *"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_model_named_like_markup_is_escaped_end_to_end(pytester: pytest.Pytester) -> None:
    model = pytester.path / "<script>alert(1)<!--.tflite"
    model.write_bytes(VWW.read_bytes())
    result = pytester.runpytest("-p", "no:cacheprovider", f"--qcheck-model={model.name}", "-k", "size",
                                "--qcheck-html=r.html")
    result.assert_outcomes(passed=1)

    html = (pytester.path / "r.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;!--.tflite" in html
    assert "<script" not in html.lower() and "<!--" not in html
    assert EVIL not in html


def test_steps_in_a_row_each_get_a_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_steps(qcheck_session):
            qcheck_session.progress.step("m.keras", "converting")
            qcheck_session.progress.step("m.keras", "evaluating", 10, 20)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-v", "-k", "test_steps")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*::test_steps ", "qcheck: m.keras: converting",
                                 "qcheck: m.keras: evaluating (10/20)", "*::test_steps PASSED*"])
