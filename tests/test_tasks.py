"""Task-aware accuracy: each output head judged by its task (issue 14 item 1, issue 21 item 1).

The metrics are pure numpy functions, tested directly; the verdicts are tested the way users get
them, by running qcheck (a new pytest process: real conversions, the real LiteRT interpreter) on
real models from tests/real and on the small closed-form fixtures of
``fixtures/make_fixtures.py --only tasks``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import FIXTURES, REAL, QcheckRun, run_qcheck, write
from qcheck.checks.tasks import (Limits, TaskError, auc, declared_tasks, infer_task, judge_head, spearman, task_name,
                                 task_table)
from qcheck.errors import QcheckError
from qcheck.stats import bootstrap_interval, paired_auc_drop_interval, ranks
from qcheck.suites import load_suite

HELLO_INT8 = REAL / "tflm" / "hello_world_int8.tflite"
HELLO_FLOAT = REAL / "tflm" / "hello_world_float.tflite"


# -- the metrics, against their definitions ---------------------------------------------------


def test_ranks_average_ties() -> None:
    assert ranks(np.array([10.0, 20.0, 20.0, 5.0])).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_spearman_is_pearson_of_ranks() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=50)
    b = a + rng.normal(0, 0.5, 50)
    b[:5] = b[5]  # ties
    ra, rb = ranks(a), ranks(b)
    assert spearman(a, b) == pytest.approx(float(np.corrcoef(ra, rb)[0, 1]), abs=1e-12)
    assert spearman(a, np.exp(a)) == pytest.approx(1.0)  # any increasing map keeps the ranks
    assert spearman(a, -a) == pytest.approx(-1.0)


def test_auc_is_the_share_of_ordered_pairs() -> None:
    rng = np.random.default_rng(2)
    scores = rng.normal(size=40)
    labels = (rng.random(40) < 0.3).astype(int)
    scores[3] = scores[4]  # a tie counts one half
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p in pos for n in neg]
    assert auc(scores, labels) == pytest.approx(float(np.mean(pairs)))
    assert math.isnan(auc(scores, np.zeros(40)))


def test_bootstrap_is_seeded() -> None:
    values = np.random.default_rng(3).normal(size=100)
    first = bootstrap_interval(lambda i: float(values[i].mean()), 100, np.random.default_rng(0))
    again = bootstrap_interval(lambda i: float(values[i].mean()), 100, np.random.default_rng(0))
    assert first == again
    assert first[0] < values.mean() < first[1]


def test_binary_decides_at_the_sigmoid_or_logit_threshold() -> None:
    f = np.array([[0.1], [0.6], [0.4], [0.9]])
    q = np.array([[0.1], [0.45], [0.4], [0.9]])  # one decision crosses 0.5
    result = judge_head("p", f, q, np.array([0, 1, 0, 1]), None, None)
    assert (result.task, result.metric) == ("binary", "accuracy drop")
    assert result.numbers["threshold"] == 0.5
    assert result.loss == pytest.approx(0.25) and result.ci_low <= 0.25 <= result.ci_high
    logits = judge_head("z", f - 0.5, q - 0.5, None, None, "binary")  # outside [0, 1]: threshold 0
    assert logits.numbers["threshold"] == 0.0 and logits.loss == pytest.approx(0.25)


def test_regression_is_the_added_error_as_a_share_of_the_range() -> None:
    x = np.linspace(0, 2 * np.pi, 200)
    y = np.sin(x)
    f = (y + 0.01 * np.cos(7 * x)).reshape(-1, 1)
    q = f + 0.02
    result = judge_head("sine", f, q, y.astype(np.float32), None, None)
    assert result.task == "regression" and result.why == "inferred: float labels"
    added = np.mean(np.abs(q[:, 0] - y)) - np.mean(np.abs(f[:, 0] - y))
    assert result.loss == pytest.approx(added / (f.max() - f.min()))
    assert result.numbers["sqnr_db"] == pytest.approx(10 * np.log10(np.sum(f**2) / np.sum((q - f) ** 2)))
    unlabelled = judge_head("sine", f, q, None, x.reshape(-1, 1), "regression")
    assert unlabelled.loss == pytest.approx(0.02 / (f.max() - f.min()))


def test_reconstruction_scores_are_the_error_against_the_input() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(120, 6))
    labels = (np.arange(120) % 4 == 0).astype(np.int64)
    f = x * 0.9 + rng.normal(0, 0.1, x.shape) + labels[:, None] * rng.normal(0, 1.0, x.shape)
    doubled = x + (f - x) * np.sqrt(2.0)  # every reconstruction error doubles, ranks kept
    result = judge_head("r", f, doubled, None, x, None)
    assert result.task == "reconstruction" and result.numbers["spearman"] == pytest.approx(1.0)
    assert result.numbers["mean_score_change"] == pytest.approx(1.0)
    assert result.failures and "max_score_change 25%" in result.failures[0]
    with_labels = judge_head("r", f, doubled, labels, x, None)
    assert with_labels.metric == "AUC drop" and with_labels.loss == pytest.approx(0.0)
    assert with_labels.numbers["float"] == pytest.approx(auc(np.mean((f - x) ** 2, axis=1), labels))


def test_paired_auc_interval_agrees_with_a_bootstrap() -> None:
    rng = np.random.default_rng(8)
    labels = rng.random(400) < 0.3
    a = rng.normal(size=400) + labels
    b = a + rng.normal(0, 0.5, 400)
    drop = auc(a, labels) - auc(b, labels)
    low, high = paired_auc_drop_interval(a, b, labels)
    assert low < drop < high
    boot = bootstrap_interval(lambda i: auc(a[i], labels[i]) - auc(b[i], labels[i]), 400, np.random.default_rng(0))
    assert low == pytest.approx(boot[0], abs=0.01) and high == pytest.approx(boot[1], abs=0.01)
    assert paired_auc_drop_interval(a, a, labels) == (0.0, 0.0)  # the same scores: no doubt


# -- inference and options --------------------------------------------------------------------


def test_tasks_are_inferred_from_outputs_and_labels() -> None:
    rng = np.random.default_rng(4)
    softmax = rng.dirichlet(np.ones(5), 20)
    assert infer_task(softmax, None, (8,))[0] == "classification"
    assert infer_task(softmax, np.arange(20) % 5, (8,))[0] == "classification"
    assert infer_task(rng.normal(size=(20, 5)), None, (8,))[0] == "embedding"
    assert infer_task(rng.normal(size=(20, 8)), None, (8,))[0] == "reconstruction"
    assert infer_task(rng.normal(size=(20, 8)), np.arange(20) % 2, (8,))[0] == "reconstruction"
    assert infer_task(rng.normal(size=(20, 1)), None, (1,))[0] == "regression"
    assert infer_task(rng.random((20, 1)), None, (3,), sigmoid=True)[0] == "binary"
    # Values in [0, 1] alone, with the output scale unknown, are not taken for a sigmoid.
    assert infer_task(rng.random((20, 1)), None, (3,))[0] == "regression"
    # In [0, 1] but without the sigmoid's fixed int8 scale of 1/256: a regression.
    assert infer_task(rng.random((20, 1)), None, (3,), sigmoid=False)[0] == "regression"
    assert judge_head("p", rng.random((20, 1)), rng.random((20, 1)), None, np.zeros((20, 3)), None,
                      output_scale=1 / 256).task == "binary"
    assert infer_task(rng.normal(size=(20, 1)), np.arange(20) % 2, (3,))[0] == "binary"
    assert infer_task(rng.normal(size=(20, 3)), rng.normal(size=(20, 3)), (8,))[0] == "regression"


def test_constant_top1_is_never_judged_by_agreement() -> None:
    """A softmax whose float top-1 is one index on every sample: agreement is 100% whatever the
    int8 values are, so the head is judged by its values (issue 21: 41% off, 'top-1 agrees')."""
    rng = np.random.default_rng(5)
    f = np.full((50, 4), 0.1)
    f[:, 0] = 0.7
    f[:, 1:] += rng.normal(0, 0.02, (50, 3))
    q = f + rng.normal(0, 0.3, f.shape)
    q[:, 0] = 2.0  # still top-1 everywhere
    result = judge_head("sig", f, q, None, None, "classification")
    assert result.task == "embedding"
    assert "top-1 is not informative" in result.why
    assert result.loss > 0.03


def test_embedding_mean_cosine_has_its_own_bound() -> None:
    rng = np.random.default_rng(7)
    f = rng.normal(size=(200, 16))
    q = f + rng.normal(0, 0.15, f.shape)  # ~15% off: cosine ~0.989, distance ~1.1% (under max 3%)
    result = judge_head("e", f, q, None, None, None)
    cosine = np.sum(f * q, axis=1) / np.linalg.norm(f, axis=1) / np.linalg.norm(q, axis=1)
    assert result.numbers["cosine_mean"] == pytest.approx(cosine.mean())
    assert result.loss == pytest.approx(1 - cosine.mean()) and result.loss < 0.03
    assert result.failures == (f"'e' mean cosine to the float embeddings {cosine.mean():.4f} < min_cosine 0.99",)
    assert judge_head("e", f, q, None, None, None, Limits(min_cosine=0.95)).failures == ()


def test_task_options_are_validated() -> None:
    assert task_name("regression") == "regression"
    with pytest.raises(ValueError, match="did you mean 'regression'"):
        task_name("regresion")
    with pytest.raises(ValueError, match="'out': unknown task 'embeding' \\(did you mean 'embedding'\\?\\)"):
        task_table({"out": "embeding"})
    with pytest.raises(TaskError, match="output 'sine' .*did you mean 'sin'"):
        declared_tasks({"tasks": {"sine": "regression"}}, ("sin", "cos"))
    assert declared_tasks({"task": "regression", "tasks": {"cos": "binary"}}, ("sin", "cos")) == {
        "sin": "regression", "cos": "binary"}


def test_a_misspelt_task_fails_when_the_suite_loads(tmp_path: Path) -> None:
    suite = write(tmp_path / "s.toml", """\
        [checks.accuracy_drop]
        tasks = { out = "reconstrution" }
        """)
    with pytest.raises(QcheckError) as error:
        load_suite(str(suite))
    assert str(suite) in str(error.value)
    assert "checks.accuracy_drop.tasks: 'out': unknown task 'reconstrution' (did you mean 'reconstruction'?)" in str(
        error.value)
    typo = write(tmp_path / "t.toml", '[checks.accuracy_drop]\ntask = "binry"\n')
    with pytest.raises(QcheckError, match="did you mean 'binary'"):
        load_suite(str(typo))
    cosine = write(tmp_path / "c.toml", '[checks.accuracy_drop]\nmin_cosine = 2\n')
    with pytest.raises(QcheckError, match="min_cosine: must be a cosine similarity between -1 and 1"):
        load_suite(str(cosine))
    good = write(tmp_path / "g.toml", '[checks.accuracy_drop]\ntask = "regression"\nmax_score_change = "50%"\n'
                 'min_cosine = 0.995\n')
    options = load_suite(str(good)).checks["accuracy_drop"].options
    assert options == {"task": "regression", "max_score_change": 0.5, "min_cosine": 0.995}


# -- verdicts on real and realistic models, as users run qcheck --------------------------------

FRAMES = FIXTURES / "frames.npz"
AUTOENCODER, AUTOENCODER_OUTLIER = FIXTURES / "autoencoder.keras", FIXTURES / "autoencoder_outlier.keras"
EMBEDDING, EMBEDDING_OUTLIER = FIXTURES / "embedding.keras", FIXTURES / "embedding_outlier.keras"


@pytest.fixture(scope="session")
def fixture_run(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    """The autoencoders and embeddings converted by qcheck, on frames without labels."""
    models = [f"--qcheck-model={m}" for m in (AUTOENCODER, AUTOENCODER_OUTLIER, EMBEDDING, EMBEDDING_OUTLIER)]
    cwd = tmp_path_factory.mktemp("tasks")
    return run_qcheck(cwd, *models, f"--qcheck-data={FRAMES}", "-k", "accuracy_drop", "--qcheck-html=report.html")


@pytest.fixture(scope="session")
def labelled_run(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    """The autoencoders on the same frames with normal (0) / anomaly (1) labels."""
    models = [f"--qcheck-model={m}" for m in (AUTOENCODER, AUTOENCODER_OUTLIER)]
    return run_qcheck(tmp_path_factory.mktemp("labelled"), *models,
                      f"--qcheck-data={FIXTURES / 'frames_labelled.npz'}", "-k", "accuracy_drop")


@pytest.fixture(scope="session")
def sine_run(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    """TFLM's hello_world int8 model against its published float model, on x in [0, 2 pi], y = sin(x)."""
    cwd = tmp_path_factory.mktemp("sine")
    x = np.random.default_rng(0).uniform(0, 2 * np.pi, (1000, 1)).astype(np.float32)
    np.savez(cwd / "sine.npz", x=x, y=np.sin(x))
    return run_qcheck(cwd, f"--qcheck-model={HELLO_INT8}", f"--qcheck-reference={HELLO_FLOAT}",
                      "--qcheck-data=sine.npz", "-k", "accuracy_drop")


def _head(run: QcheckRun, model: str, head: str) -> dict[str, Any]:
    section = run.model(model)["accuracy"]
    assert head in section, section
    return dict(section[head])


def test_hello_world_regression_passes_on_its_error_against_sin(sine_run: QcheckRun) -> None:
    """Before: 'not run: no classification head'. The published figures (issue 14): MAE against
    sin(x) over [0, 2 pi] is 0.0125 for the float model and 0.0234 for the int8 one."""
    check = sine_run.check("hello_world_int8.tflite", "accuracy_drop")
    assert check["passed"] is True, check["message"]
    head = next(iter(sine_run.model("hello_world_int8.tflite")["accuracy"].values()))
    assert head["task"] == "regression" and head["labelled"] is True
    assert head["mae_float"] == pytest.approx(0.0125, abs=0.002)
    assert head["mae_quantized"] == pytest.approx(0.0234, abs=0.002)
    added = (head["mae_quantized"] - head["mae_float"]) / head["output_range"]
    assert check["value"] == pytest.approx(added)  # judged: the error added, as a share of the range
    assert 0 < check["value"] < 0.03
    assert head["sqnr_db"] is not None and head["sqnr_db"] > 20
    assert "(regression; inferred: float labels)" in check["message"]
    assert "error added (share of the output range)" in check["message"]


def test_good_autoencoder_passes_and_one_with_a_crushed_range_fails(fixture_run: QcheckRun) -> None:
    """Before: argmax over the reconstruction failed the good model (as ad01's '35% drop')."""
    good = fixture_run.check("autoencoder.keras", "accuracy_drop")
    assert good["passed"] is True, good["message"]
    head = _head(fixture_run, "autoencoder.keras", "reconstruction")
    assert head["task"] == "reconstruction" and head["metric"] == "1 - Spearman of the anomaly scores"
    assert head["spearman"] > 0.97 and abs(head["mean_score_change"]) < 0.25

    bad = fixture_run.check("autoencoder_outlier.keras", "accuracy_drop")
    assert bad["passed"] is False
    head = _head(fixture_run, "autoencoder_outlier.keras", "reconstruction")
    assert head["mean_score_float"] == pytest.approx(_head(fixture_run, "autoencoder.keras", "reconstruction")[
        "mean_score_float"], rel=1e-4)  # the same float model
    assert head["mean_score_change"] > 1.0  # the int8 reconstruction error more than doubles
    assert "'reconstruction' mean anomaly score changed +" in bad["message"]
    assert "> max_score_change 25%" in bad["message"]


def test_autoencoder_with_anomaly_labels_is_judged_by_auc(labelled_run: QcheckRun) -> None:
    good = labelled_run.check("autoencoder.keras", "accuracy_drop")
    assert good["passed"] is True, good["message"]
    head = _head(labelled_run, "autoencoder.keras", "reconstruction")
    assert head["metric"] == "AUC drop" and head["labelled"] is True
    assert head["float"] > 0.9  # the float model separates the anomalies
    assert good["value"] == pytest.approx(head["float"] - head["quantized"])
    bad = labelled_run.check("autoencoder_outlier.keras", "accuracy_drop")
    assert bad["passed"] is False, bad["message"]
    assert "anomaly AUC float" in bad["message"]


def test_embedding_with_constant_top1_is_judged_by_cosine(fixture_run: QcheckRun) -> None:
    """Before: both passed with 'top-1 agrees on 100%' (index 0 is the float top-1 everywhere)."""
    good = fixture_run.check("embedding.keras", "accuracy_drop")
    assert good["passed"] is True, good["message"]
    bad = fixture_run.check("embedding_outlier.keras", "accuracy_drop")
    assert bad["passed"] is False
    head = _head(fixture_run, "embedding_outlier.keras", "signature")
    assert head["task"] == "embedding"
    assert bad["value"] == pytest.approx(1 - head["cosine_mean"])
    assert head["relative_error_mean"] > 0.2
    assert "top-1" not in bad["message"]
    assert "cosine to the float embeddings mean" in bad["message"]
    assert "'signature' mean cosine to the float embeddings" in bad["message"] and "< min_cosine 0.99" in bad["message"]


def test_html_names_task_and_metric_per_head(fixture_run: QcheckRun) -> None:
    page = (fixture_run.out_dir.parent / "report.html").read_text()
    assert "reconstruction: 1 - Spearman of the anomaly scores" in page
    assert "embedding: cosine distance (1 - mean cosine)" in page


# -- the same options through the marker and the Python API ------------------------------------


def test_marker_declares_a_task_and_misspellings_are_named(tmp_path: Path) -> None:
    write(tmp_path / "test_user.py", f"""\
        import pytest
        import qcheck

        @pytest.mark.qcheck(model={str(EMBEDDING_OUTLIER)!r}, data={str(FRAMES)!r},
                            accuracy_drop={{"task": "classification"}})
        def test_declared(qcheck_quantized, qcheck_data):
            qcheck.assert_accuracy_drop(qcheck_quantized, qcheck_data)

        @pytest.mark.qcheck(model={str(EMBEDDING_OUTLIER)!r}, accuracy_drop={{"tasks": {{"signature": "embeding"}}}})
        def test_typo(qcheck_quantized):
            pass
        """)
    run = run_qcheck(tmp_path, "test_user.py", "-p", "no:randomly")
    assert run.returncode == 1
    # Declared a classification, but its float top-1 is one index: judged by its values, and fails.
    assert "top-1 is not informative: the float model's top-1 is index 0" in run.stdout
    assert "so judged as an embedding" in run.stdout
    assert "checks.accuracy_drop.tasks: 'signature': unknown task 'embeding' (did you mean 'embedding'?)" in run.stdout


def test_api_takes_the_task_options(tmp_path: Path) -> None:
    import qcheck

    q = qcheck.quantize(EMBEDDING_OUTLIER, FRAMES, out=tmp_path / "out")
    with pytest.raises(AssertionError, match="top-1 is not informative"):
        qcheck.assert_accuracy_drop(q, task="classification")
    with pytest.raises(AssertionError, match="tasks names output 'signatur' \\(did you mean 'signature'\\?\\)"):
        qcheck.assert_accuracy_drop(q, tasks={"signatur": "embedding"})
    with pytest.raises(QcheckError, match="did you mean 'regression'"):
        qcheck.assert_accuracy_drop(q, task="regresion")
    # Its mean cosine is ~0.95: it passes bounds set that loose, through the same option mapping.
    passed = qcheck.assert_accuracy_drop(q, max="10%", min_cosine=0.9)
    assert "cosine" in passed.message
    with pytest.raises(AssertionError, match="mean cosine to the float embeddings 0.9.* < min_cosine 0.99"):
        qcheck.assert_accuracy_drop(q, max="10%")
