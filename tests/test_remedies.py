"""Remedies (issue 18): recipes tried on the same data, measured and priced, and the recipe as data.

The integration tests run qcheck as users do (real conversions, the real LiteRT interpreter,
real Vela) on the bundled outlier-channel fixture: int8 loses ~7 points there, int16x8 keeps it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FIXTURES, QcheckRun, run_qcheck, write

from qcheck.config import Quantization
from qcheck.errors import QcheckError
from qcheck.remedies import Diagnosis, Remedies, Row, candidates, cheapest, recipe_lines, render
from qcheck.suites import load_suite

OUTLIER = FIXTURES / "flatten_outlier.keras"
DIGITS = FIXTURES / "digits.npz"


# -- pure logic ----------------------------------------------------------------------------------


def test_candidates_apply_only_where_they_can() -> None:
    int8 = Quantization()
    found = {c.change: c for c in candidates(int8, Diagnosis(guilty=("conv1",), fully_connected=True))}
    assert set(found) == {"int16 activations, whole model (int16x8)", "per-tensor weights for fully-connected layers",
                          "int16 activations for 'conv1' only (ai-edge-quantizer)", "keep 'conv1' float"}
    assert found["int16 activations for 'conv1' only (ai-edge-quantizer)"].quantization.int16_layers == ("conv1",)
    assert found["keep 'conv1' float"].keeps_float and found["keep 'conv1' float"].quantization.keep_float == ("conv1",)
    # No dense layer, no guilty layer, no separate calibration set: only int16 is left.
    assert [c.change for c in candidates(int8, Diagnosis())] == ["int16 activations, whole model (int16x8)"]
    # Already int16: neither int16 again nor keep_float (the int16x8 quantizer keeps nothing float).
    assert candidates(Quantization(activations="int16"), Diagnosis(guilty=("conv1",))) == []
    # More calibration only from a separate set, capped.
    (more,) = candidates(Quantization(activations="int16"),
                         Diagnosis(calibration_used=200, calibration_available=5000))
    assert more.quantization.calibration_samples == 1000


def test_layers_are_read_from_tensor_names() -> None:
    from qcheck.remedies import keras_layer, layer_of_label

    assert keras_layer("functional_1/flatten_outlier_1/conv1_1/Relu;functional_1/x/conv1_1/BiasAdd") == "conv1"
    assert keras_layer("StatefulPartitionedCall_1:0") == ""  # no layer: never a recipe's name
    assert layer_of_label("CONV_2D 'functional_1/flatten_outlier_1/conv1_1/Relu'") == "conv1"


def _row(change: str, passed: bool, *, keeps_float: bool = False, time: float = 1.0) -> Row:
    return Row(change, Quantization(keep_float=("a",) if keeps_float else ()), passed, keeps_float,
               targets={"ethos-u55-128": {"cpu_ops": 0, "inference_time_s": time, "sram_bytes": 10}})


def test_the_cheapest_passing_recipe_is_marked_and_a_float_one_never_is() -> None:
    rows = (_row("slow", True, time=2.0), _row("fast", True, time=1.0), _row("failing", False, time=0.1),
            _row("float", True, keeps_float=True, time=0.01))
    assert cheapest(rows) is rows[1]
    assert cheapest((rows[2], rows[3])) is None
    lines = render(Remedies("m.keras", (rows[2], rows[3])))
    assert "only a recipe that keeps layers float passes" in lines[-1]
    assert "(keeps float: never chosen for you)" in lines[2]


def test_recipe_lines_give_back_the_recipe(tmp_path: Path) -> None:
    recipe = Quantization(calibration_samples=300, per_channel_dense=False, int16_layers=("conv1",))
    lines = recipe_lines(recipe)
    suite = write(tmp_path / "s.toml", "\n".join(lines) + "\n")
    assert load_suite(str(suite)).quantization_for() == recipe
    float_recipe = Quantization(keep_float=("conv1", "flatten"))
    suite = write(tmp_path / "f.toml", "\n".join(recipe_lines(float_recipe)) + "\n")
    assert load_suite(str(suite)).quantization_for() == float_recipe


@pytest.mark.parametrize(("table", "words"), [
    ("keep_float = \"conv1\"", "quantization.keep_float must be a list of Keras layer names"),
    ("calibration_samples = 0", "quantization.calibration_samples must be a whole number"),
    ("per_channel_dense = \"no\"", "quantization.per_channel_dense must be true or false"),
    ("int16_layers = \"conv1\"", "quantization.int16_layers must be a list of Keras layer names"),
])
def test_a_bad_recipe_names_the_file_and_the_key(tmp_path: Path, table: str, words: str) -> None:
    suite = write(tmp_path / "bad.toml", f"[quantization]\n{table}\n")
    with pytest.raises(QcheckError) as caught:
        load_suite(str(suite))
    assert words in str(caught.value) and "bad.toml" in str(caught.value)


def test_the_remedies_table_of_a_suite(tmp_path: Path) -> None:
    on = write(tmp_path / "on.toml", "[remedies]\nenabled = true\n")
    child = write(tmp_path / "child.toml", 'extends = "on.toml"\n')
    assert load_suite(str(on)).remedies and load_suite(str(child)).remedies
    assert not load_suite("default").remedies
    bad = write(tmp_path / "bad.toml", "[remedies]\nenable = true\n")
    with pytest.raises(QcheckError, match="unknown key 'enable'"):
        load_suite(str(bad))


# -- as users run it -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outlier_remedies(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    return run_qcheck(tmp_path_factory.mktemp("outlier_remedies"), f"--qcheck-model={OUTLIER}",
                      f"--qcheck-data={DIGITS}", "--qcheck-remedies", "--qcheck-html=report.html", timeout=900)


def test_a_failing_model_gets_a_remedy_table_with_a_passing_recipe(outlier_remedies: QcheckRun) -> None:
    run = outlier_remedies
    assert run.check("flatten_outlier.keras", "accuracy_drop")["passed"] is False  # as run: int8 loses it
    (table,) = run.report["remedies"]
    rows = table["candidates"]
    assert rows[0]["baseline"] and not rows[0]["passed"] and "accuracy_drop" in rows[0]["failed_checks"]
    (chosen,) = [r for r in rows if r["chosen"]]
    assert chosen["passed"] and not chosen["keeps_float"] and chosen["fully_integer"] is True
    # int16 for the whole model and int16 for the guilty layers only (the conv that chose the range,
    # the Flatten that shares it, the Dense that reads it) both keep the accuracy.
    (whole,) = [r for r in rows if r["recipe"]["activations"] == "int16"]
    (mixed,) = [r for r in rows if r["recipe"]["int16_layers"]]
    assert mixed["recipe"]["int16_layers"] == ["conv1", "flatten", "digit"]
    assert whole["passed"] and mixed["passed"] and chosen in (whole, mixed)
    assert min((whole, mixed), key=lambda r: cost(r)) is chosen
    head = chosen["heads"]["digit"]
    assert head["drop"] < 0.03 and head["ci_low"] <= head["drop"] <= head["ci_high"]
    assert rows[0]["heads"]["digit"]["drop"] > 0.03
    target = chosen["targets"]["ethos-u55-128"]
    assert target["cpu_ops"] == 0 and target["sram_bytes"] > 0 and target["inference_time_s"] > 0
    assert chosen["size_bytes"] > 0 and Path(chosen["quantized_model"]).stat().st_size == chosen["size_bytes"]
    # Keeping the guilty layers float is tried, priced (float operators on the CPU) and not chosen.
    (kept,) = [r for r in rows if r["keeps_float"]]
    assert kept["recipe"]["keep_float"] == ["conv1", "flatten", "digit"]
    assert kept["fully_integer"] is False and kept["targets"]["ethos-u55-128"]["cpu_ops"] > 0
    assert not kept["chosen"]
    assert "folding that channel's range into the next layer" in " ".join(table["notes"])
    assert "<- cheapest that passes" in run.stdout
    assert "\n".join(f"qcheck:     {line}" for line in chosen["recipe_lines"]) in run.stdout
    html = (run.out_dir.parent / "report.html").read_text()
    section = html.split('data-section="remedies"')[1]
    assert section.count("<tr class=") == len(rows) and section.count("cheapest that passes") == 1
    assert "keeps float" in section


def cost(row: dict[str, object]) -> tuple[float, ...]:
    """The order remedies rank passing recipes in: CPU operators, inference time, SRAM, size."""
    target: dict[str, float] = row["targets"]["ethos-u55-128"]  # type: ignore[index]
    size: float = row["size_bytes"]  # type: ignore[assignment]
    return (target["cpu_ops"], target["inference_time_s"], target["sram_bytes"], size)


def test_adopting_the_printed_recipe_makes_the_suite_pass(outlier_remedies: QcheckRun, tmp_path: Path) -> None:
    (chosen,) = [r for r in outlier_remedies.report["remedies"][0]["candidates"] if r["chosen"]]
    suite = write(tmp_path / "adopted.toml", 'extends = "default"\n' + "\n".join(chosen["recipe_lines"]) + "\n")
    run = run_qcheck(tmp_path, f"--qcheck-model={OUTLIER}", f"--qcheck-data={DIGITS}", f"--qcheck-suite={suite}")
    assert run.returncode == 0, run.stdout
    assert all(c["passed"] is not False for c in run.model("flatten_outlier.keras")["checks"])
    assert "remedies" not in run.report


def test_a_failed_accuracy_says_how_many_fixes_to_try(tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={OUTLIER}", f"--qcheck-data={DIGITS}", "-k", "accuracy_drop")
    message = run.check("flatten_outlier.keras", "accuracy_drop")["message"]
    # int16 whole model, per-tensor dense weights, int16 for the guilty layers only, keeping them float.
    assert "run with --qcheck-remedies to try 4 fixes" in message
    assert "remedies" not in run.report


def test_a_model_with_nothing_to_fix_runs_no_remedies(tmp_path: Path) -> None:
    run = run_qcheck(tmp_path, f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}", f"--qcheck-data={DIGITS}",
                     "--qcheck-remedies", "-v")
    assert run.check("digits_cnn.keras", "accuracy_drop")["passed"] is True
    assert "remedies" not in run.report
    assert "remedies for" not in run.stdout and ": remedy 1/" not in run.stdout  # no table, no -v progress


def test_remedies_asked_for_a_model_no_recipe_addresses_say_why(tmp_path: Path) -> None:
    """float_op fails fully_quantized (its ELU has no integer kernel: int16 for the whole model or
    for that layer leaves it float too) while its accuracy passes. With --qcheck-remedies asked,
    the run said nothing at all about remedies; it now says why none was tried, in every report."""
    model = FIXTURES / "float_op.keras"
    run = run_qcheck(tmp_path, f"--qcheck-model={model}", f"--qcheck-data={DIGITS}", "--qcheck-remedies",
                     "-k", "fully_quantized or accuracy_drop")
    assert run.check(model.name, "fully_quantized")["passed"] is False
    assert run.check(model.name, "accuracy_drop")["passed"] is True
    (table,) = run.report["remedies"]
    assert table["model"] == str(model) and table["candidates"] == []
    (note,) = table["notes"]
    assert note.startswith("no recipe tried: remedies try other quantization recipes for a failed accuracy_drop or "
                           "saturation, which passed here; fully_quantized failed")
    assert f"remedies for {model}:" in run.stdout and "no recipe tried passes" not in run.stdout
    # Not asked for: nothing said.
    quiet = run_qcheck(tmp_path / "quiet", f"--qcheck-model={model}", f"--qcheck-data={DIGITS}",
                       "-k", "fully_quantized or accuracy_drop")
    assert "remedies" not in quiet.report and "remedies for" not in quiet.stdout


def test_keep_float_follows_keras_layer_names(tmp_path: Path) -> None:
    suite = write(tmp_path / "float.toml", 'extends = "default"\n[quantization]\nkeep_float = ["conv1"]\n')
    run = run_qcheck(tmp_path, f"--qcheck-model={OUTLIER}", f"--qcheck-data={DIGITS}", f"--qcheck-suite={suite}",
                     "-k", "fully_quantized")
    check = run.check("flatten_outlier.keras", "fully_quantized")
    assert check["passed"] is False and "CONV_2D" in check["message"]
    notes = run.model("flatten_outlier.keras")["notes"]
    assert "kept float as keep_float asks: 'conv1' (CONV_2D)" in notes
    wrong = write(tmp_path / "wrong.toml", 'extends = "default"\n[quantization]\nkeep_float = ["conv9"]\n')
    run = run_qcheck(tmp_path / "wrong", f"--qcheck-model={OUTLIER}", f"--qcheck-data={DIGITS}",
                     f"--qcheck-suite={wrong}", "-k", "fully_quantized")
    message = run.check("flatten_outlier.keras", "fully_quantized")["message"]
    assert "keep_float names the layer 'conv9'" in message and "conv1, digit, flatten" in message


def test_the_python_api_takes_the_same_recipe(tmp_path: Path) -> None:
    import qcheck

    q = qcheck.quantize(OUTLIER, DIGITS, quantization={"int16_layers": ["conv1", "flatten", "digit"]},
                        out=tmp_path / "api")
    info = q.quantization_info
    assert info["int16_tensors"] > 0 and info["int8_tensors"] > 0 and info["fully_quantized"] is True  # mixed
    # Said to be mixed, naming the int16 layers (not "int16x8", which is the whole model).
    assert info["quantization"] == "mixed-int16x8"
    assert "int16 activations in the layers 'conv1', 'flatten', 'digit', int8 in the others" in (
        info["quantization_description"])
    assert [op.split(" ")[0] for op in info["int16_operators"]] == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    assert info["operators"]["QUANTIZE"] == 2  # int8 -> int16 before conv1, int16 -> int8 after digit
    assert qcheck.assert_accuracy_drop(q).passed is True  # int8 alone loses ~7 points here
    with pytest.raises(QcheckError, match="quantization.keep_float must be a list of Keras layer names"):
        qcheck.quantize(OUTLIER, DIGITS, quantization={"keep_float": "conv1"}, out=tmp_path / "bad")


def test_a_suite_asks_for_remedies_with_its_remedies_table(outlier_remedies: QcheckRun, tmp_path: Path) -> None:
    # After the fixture's run, so that the candidates' conversions come from the shared cache.
    suite = write(tmp_path / "remedies.toml", 'extends = "default"\n[remedies]\nenabled = true\n')
    run = run_qcheck(tmp_path, f"--qcheck-model={OUTLIER}", f"--qcheck-data={DIGITS}", f"--qcheck-suite={suite}")
    (table,) = run.report["remedies"]
    assert [r["change"] for r in table["candidates"]] == [
        r["change"] for r in outlier_remedies.report["remedies"][0]["candidates"]]
    # Remedies are being tried: the failure does not also ask for them.
    assert "--qcheck-remedies" not in run.check("flatten_outlier.keras", "accuracy_drop")["message"]
