"""fixtures/example_repo run as its users run it: plain `pytest` in the folder, green and red as meant."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import FIXTURES, QcheckRun, run_qcheck

EXAMPLE = FIXTURES / "example_repo"
MODEL = "../../digits_cnn.keras"  # as the example's files write it


def copy_example(root: Path) -> Path:
    """The example and the fixtures its paths reach (../digits.npz, ../../digits_cnn.keras), in ``root``."""
    repo = root / "fixtures" / "example_repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("build", "__pycache__", ".pytest_cache"))
    for name in ("digits_cnn.keras", "digits.npz"):
        shutil.copy(FIXTURES / name, root / "fixtures" / name)
    return repo


@pytest.fixture(scope="session")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("example")
    return copy_example(root), root / "cache"


@pytest.fixture(scope="session")
def full_run(example: tuple[Path, Path]) -> QcheckRun:
    repo, cache = example
    return run_qcheck(repo, "-rA", f"--qcheck-cache-dir={cache}")


def outcomes(run: QcheckRun) -> dict[str, str]:
    """Node id -> PASSED/FAILED/SKIPPED/ERROR, from the -rA summary."""
    found = {}
    for line in run.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("PASSED", "FAILED", "SKIPPED", "ERROR"):
            found[rest.split(" - ")[0]] = word
    return found


def test_the_example_is_red_for_exactly_the_budget_it_breaks(full_run: QcheckRun) -> None:
    assert full_run.returncode == 1, full_run.stdout[-3000:]
    results = outcomes(full_run)
    failed = [node for node, word in results.items() if word != "PASSED"]
    assert failed == [f"models/qcheck_digits_tight.toml::size[{MODEL}]"]
    assert f"models/qcheck_digits.toml::size[{MODEL}]" in results
    assert f"models/qcheck_digits.toml::vela[{MODEL}-ethos-u55-64]" in results  # [tool.qcheck] accelerator
    assert {f"tests/test_digits.py::test_quantization_keeps_the_model_accurate[{MODEL}]",
            f"tests/test_digits.py::test_every_valid_input_gives_probabilities[{MODEL}]"} <= set(results)
    assert "size failed: 8.35 KiB > max 3.91 KiB" in full_run.stdout


def test_the_example_uses_its_project_configuration(full_run: QcheckRun, example: tuple[Path, Path]) -> None:
    repo, _ = example
    # One entry per suite file (and one for the marked test); all of them one model, converted once.
    models = full_run.report["models"]
    assert {Path(m["model"]).name for m in models} == {"digits_cnn.keras"}
    assert {Path(m["suite_file"]).name for m in models} >= {"qcheck_digits.toml", "qcheck_digits_tight.toml"}
    assert all(any(note.startswith("calibration: 200 samples split from") and note.endswith(
        "(seed 0); 340 kept apart for evaluation") for note in m["notes"]) for m in models)
    assert (repo / "build" / "qcheck" / "digits_cnn_quant.tflite").is_file()  # [tool.qcheck] out
    drops = [c for m in models if m["suite_file"] for c in m["checks"] if c["name"] == "accuracy_drop"]
    assert [c["threshold"] for c in drops] == [pytest.approx(0.02)] * 2  # the team suite's 2%


def test_the_green_part_passes_on_its_own(full_run: QcheckRun, example: tuple[Path, Path]) -> None:
    repo, cache = example
    green = run_qcheck(repo, "models/qcheck_digits.toml", "tests", f"--qcheck-cache-dir={cache}")
    assert green.returncode == 0, green.stdout[-3000:]
    assert re.search(r"^\d+ passed in", green.stdout, re.MULTILINE), green.stdout[-1000:]
    assert "taken from the cache" in green.stdout  # the first run converted the model once for both
