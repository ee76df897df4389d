"""A model's facts are built once, sent once, and every declared section reaches the JSON report
(issue 15 item 3): a check's result carries its verdict and its own figures, never the model's
tables, so a JUnit item stays small; the facts of a model travel once from the process that ran
its checks, with the same report under pytest-xdist as without it."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from helpers import FIXTURES, REAL, QcheckRun, run_qcheck, write

from qcheck.checks import REGISTRY, check, registry
from qcheck.checks.calibration import CalibrationDiagnosis, Spread
from qcheck.checks.evidence import Evidence
from qcheck.facts import ModelFacts, ReportFacts, fact_sections
from qcheck.report.json_report import build_report
from qcheck.results import Measurement
from qcheck.suites import CheckSpec, Suite
from qcheck.tflite.breakdown import LayerBytes
from qcheck.tflite.tensor_stats import TensorReport, WeightsComparison
from qcheck.verdict import judge
from qcheck.vela import VelaConfig, VelaResult

# Bytes of one JUnit test case's <properties>: the verdict, the value, threshold and unit, and the
# check's own figures. Before model facts were sent apart, every item carried its model's notes,
# quantization info and artifacts, and the layer table (2.5 to 15 KB per item on these fixtures).
JUNIT_BYTES_PER_ITEM = 2048
MODELS = ("digits_cnn.keras", "float_op.keras")
VWW = REAL / "mlperf_tiny" / "vww_96_int8.tflite"
FACTS_BUILT = "gathering the facts for the report"  # the progress line ModelRun.facts() writes

# Counts, on the process that writes the reports, the test reports that bring a model's facts.
COUNTING_CONFTEST = """
import json

sent = {}

def pytest_runtest_logreport(report):
    facts = getattr(report, "qcheck_facts", None)
    if facts is not None:
        model = json.loads(facts)["model"]
        sent[model] = sent.get(model, 0) + 1

def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        with open("facts_sent.json", "w") as f:
            json.dump(sent, f)
"""


def _run(cwd: Path, *args: str) -> tuple[QcheckRun, dict[str, int]]:
    write(cwd / "conftest.py", COUNTING_CONFTEST)
    run = run_qcheck(cwd, *(f"--qcheck-model={FIXTURES / m}" for m in MODELS), f"--qcheck-data={FIXTURES / 'digits.npz'}",
                     *args)
    sent = json.loads((cwd / "facts_sent.json").read_text()) if (cwd / "facts_sent.json").exists() else {}
    return run, {Path(model).name: count for model, count in sent.items()}


@pytest.fixture(scope="module")
def serial_and_xdist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, QcheckRun, dict[str, int],
                                                                                  Path, QcheckRun, dict[str, int]]]:
    """The bundled fixtures checked without pytest-xdist (with -v) and with -n 2, on a warm cache
    (a first run fills it, so that both say the same about where their conversions came from)."""
    _run(tmp_path_factory.mktemp("warm"))
    serial_dir, xdist_dir = tmp_path_factory.mktemp("serial"), tmp_path_factory.mktemp("xdist")
    serial, serial_sent = _run(serial_dir, "-vv", "--junitxml=junit.xml")
    xdist, xdist_sent = _run(xdist_dir, "-n", "2", "--junitxml=junit.xml")
    yield serial_dir, serial, serial_sent, xdist_dir, xdist, xdist_sent


def test_facts_are_built_once_per_model_and_sent_once(
        serial_and_xdist: tuple[Path, QcheckRun, dict[str, int], Path, QcheckRun, dict[str, int]]) -> None:
    _, serial, serial_sent, _, xdist, xdist_sent = serial_and_xdist
    assert serial.returncode == 1 and xdist.returncode == 1, serial.stdout[-3000:] + xdist.stdout[-3000:]
    for model in MODELS:
        built = re.findall(rf"qcheck: \S*{re.escape(model)}: {FACTS_BUILT}", serial.stdout)
        assert len(built) == 1, serial.stdout[-5000:]
    assert serial_sent == xdist_sent == dict.fromkeys(MODELS, 1)


def test_xdist_gives_the_same_report_as_a_serial_run(
        serial_and_xdist: tuple[Path, QcheckRun, dict[str, int], Path, QcheckRun, dict[str, int]]) -> None:
    serial_dir, serial, _, xdist_dir, xdist, _ = serial_and_xdist
    # Artifacts are written in each run's own folder; nothing else may differ.
    serial_text = json.dumps(serial.report, sort_keys=True).replace(str(serial_dir), "RUN")
    xdist_text = json.dumps(xdist.report, sort_keys=True).replace(str(xdist_dir), "RUN")
    assert serial_text == xdist_text
    for model in MODELS:
        assert {"layers", "tensors", "calibration", "vela", "quantization_info", "notes"} <= set(serial.model(model))


@pytest.mark.parametrize("which", ["serial", "xdist"])
def test_a_junit_item_carries_its_verdict_not_its_models_tables(
        serial_and_xdist: tuple[Path, QcheckRun, dict[str, int], Path, QcheckRun, dict[str, int]], which: str) -> None:
    folder = serial_and_xdist[0] if which == "serial" else serial_and_xdist[3]
    cases = list(ET.parse(folder / "junit.xml").getroot().iter("testcase"))
    assert len(cases) == 2 * 7
    for case in cases:
        properties = case.find("properties")
        assert properties is not None
        size = len(ET.tostring(properties))
        assert size <= JUNIT_BYTES_PER_ITEM, f"{case.get('name')}: {size} bytes of properties"
        (result,) = [json.loads(p.get("value", "")) for p in properties if p.get("name") == "qcheck_result"]
        assert not set(result["sections"]) & set(fact_sections()), case.get("name")


def test_a_run_stopped_before_a_models_last_check_still_reports_its_facts(tmp_path: Path) -> None:
    # float_op.keras fails its first check (fully_quantized); -x stops the run there.
    run = run_qcheck(tmp_path, f"--qcheck-model={FIXTURES / 'float_op.keras'}", f"--qcheck-data={FIXTURES / 'digits.npz'}",
                     "-x")
    entry = run.model("float_op.keras")
    assert [c["name"] for c in entry["checks"]] == ["fully_quantized"]
    assert entry["quantization_info"]["fully_quantized"] is False
    assert entry["notes"] and entry["artifacts"]["stem"] == "float_op"


# -- sections, without converting anything ----------------------------------------------------


def _every_fact() -> ModelFacts:
    """Facts with every field known (made-up values of the real types)."""
    tensor = TensorReport("conv", "CONV_2D", "int8", 0.05, -128, 0.0, 200, 256, rmse_steps=0.3, sqnr_db=40.0)
    config = VelaConfig("ethos-u55-128", "Ethos_U55_High_End_Embedded", "Shared_Sram")
    return ModelFacts(
        notes=("calibration: 10 samples",),
        quantization_info={"fully_quantized": True},
        calibration=CalibrationDiagnosis(10, Spread(0.0, 1.0, 0.5), Spread(0.0, 1.0, 0.5), ()),
        tensors=(tensor,),
        layers=(tensor,),
        reference_weights=WeightsComparison(3, 0, 0.01),
        vela={config.accelerator: VelaResult(config, "5.2.0", (), 1024, 2048, "off-chip flash", 512, 0.001, None)},
        size_breakdown=(LayerBytes(0, 0, "CONV_2D", "conv", 100, 10, 0),),
        artifacts={"stem": "m"},
    )


def test_every_fact_is_a_section_of_the_json_report() -> None:
    sections = _every_fact().sections()
    assert set(sections) == set(fact_sections())

    result = judge("m.keras", registry()["size"], CheckSpec("size"), Measurement(100.0))
    report = build_report([result], Suite("default", "built-in", "", {}), facts=[ReportFacts("m.keras", "", sections)])

    (entry,) = report["models"]
    assert {key: entry[key] for key in fact_sections()} == json.loads(json.dumps(sections))
    assert entry["vela"]["ethos-u55-128"]["sram_bytes"] == 1024


def test_facts_not_known_are_left_out() -> None:
    assert ModelFacts().sections() == {}
    assert set(ModelFacts(artifacts={"stem": "m"}).sections()) == {"artifacts"}


@pytest.fixture
def new_check() -> Iterator[str]:
    """A check registered as a plugin's would be, with a report section no code knows."""

    @check("zz_probe", unit="count", sections=("zz_probe_table",))
    def probe(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
        """Probe."""
        return Measurement(1.0, sections={"zz_probe_table": {"rows": [1, 2]}})

    yield "zz_probe"
    del REGISTRY["zz_probe"]


def test_a_section_a_new_check_declares_reaches_the_json_report(new_check: str) -> None:
    definition = registry()[new_check]
    measurement = definition.measure(None, {})  # type: ignore[arg-type]  # measures from nothing
    result = judge("m.keras", definition, CheckSpec(new_check, max=2), measurement)

    report = build_report([result], Suite("default", "built-in", "", {}))

    assert report["models"][0]["zz_probe_table"] == {"rows": [1, 2]}


def test_a_section_has_one_maker(new_check: str) -> None:
    with pytest.raises(RuntimeError, match="zz_probe_table.*zz_probe"):
        @check("zz_other", unit="count", sections=("zz_probe_table",))
        def other(evidence: Evidence, options: Mapping[str, Any]) -> Measurement:
            return Measurement(0.0)
    assert "zz_other" not in REGISTRY


def test_no_check_makes_a_models_table() -> None:
    """The layer table, the calibration diagnosis and Vela's compilations are the model's facts,
    made once; a check may add only the placement of a model Vela compiled already."""
    for definition in registry().values():
        assert set(definition.sections) & set(fact_sections()) <= {"vela"}, definition.name


def test_a_failure_gathering_the_facts_is_said_and_ends_nothing(pytester: pytest.Pytester) -> None:
    # A bug in qcheck, made here: gathering the facts runs inside pytest's hooks, where an
    # exception would end the session.
    pytester.makeconftest("""
        import qcheck.pipeline

        def broken(self):
            raise TypeError("a bug")

        qcheck.pipeline.ModelRun.facts = broken
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:xdist", f"--qcheck-model={VWW}", "-k", "size",
                                "--qcheck-json=r.json")

    result.assert_outcomes(passed=1)
    (entry,) = json.loads((pytester.path / "r.json").read_text())["models"]
    assert entry["checks"][0]["status"] == "passed"
    assert "internal error in qcheck gathering the model's facts for the report (TypeError: a bug)" in entry["notes"][0]
