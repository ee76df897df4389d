"""An embedding head with verification pairs, judged by the verification metric (issue 21 item 1).

The data file names pairs of its own samples (``pairs``/``pairs_<head>``, indices into ``x``) and
whether each pair is the same identity (``same``/``same_<head>``). The pairs' cosine similarity
must tell same from different identities as well in int8 as in float: the AUC points lost are
judged by ``accuracy_drop``'s ``max``. The metric and the data format are tested directly; the
verdict the way users get it, by running qcheck on the closed-form embedding fixtures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import FIXTURES, QcheckRun, run_qcheck
from qcheck.checks.tasks import TaskError, auc, best_threshold, judge_head, pair_cosines
from qcheck.data import Pairs, load_npz, split
from qcheck.errors import QcheckError

FRAMES = FIXTURES / "frames.npz"
EMBEDDING, EMBEDDING_OUTLIER = FIXTURES / "embedding.keras", FIXTURES / "embedding_outlier.keras"


def identity_pairs(x: np.ndarray, identities: int = 40, per_kind: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(pairs [P, 2], same [P]) from a synthetic identity assignment: each sample's identity is
    its nearest of ``identities`` seeded prototype samples; ``per_kind`` same and different pairs."""
    rng = np.random.default_rng(21)
    prototypes = x[rng.choice(len(x), identities, replace=False)]
    identity = np.argmin(((x[:, None, :] - prototypes[None]) ** 2).sum(axis=-1), axis=1)
    i, j = rng.integers(0, len(x), (2, 20 * per_kind))
    i, j = i[i != j], j[i != j]
    same = identity[i] == identity[j]
    chosen = np.r_[np.flatnonzero(same)[:per_kind], np.flatnonzero(~same)[:per_kind]]
    return np.c_[i, j][chosen], same[chosen].astype(np.int64)


# -- the metric ---------------------------------------------------------------------------------


def test_best_threshold_maximizes_accuracy_on_the_pairs() -> None:
    similarity = np.array([0.1, 0.2, 0.35, 0.4, 0.8, 0.9])
    same = np.array([False, True, False, False, True, True])
    # At or above 0.6 (between 0.4 and 0.8): 5 of 6 right; at 0.15 4, and no threshold gets all 6.
    assert best_threshold(similarity, same) == pytest.approx(0.6)
    assert best_threshold(np.array([0.5, 0.5, 0.9]), np.array([False, False, True])) == pytest.approx(0.7)


def test_pairs_make_an_embedding_head_judged_by_the_verification_auc() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(10, 8))
    identity = np.repeat(np.arange(10), 10)
    f = centers[identity] + rng.normal(0, 0.3, (100, 8))
    q = f + rng.normal(0, 0.6, f.shape)  # noisy int8 embeddings: identities blur
    index = np.array([(a, b) for a in range(0, 100, 3) for b in range(a + 1, 100, 7)])
    same = identity[index[:, 0]] == identity[index[:, 1]]
    pairs = Pairs(index, same, len(index) + 5)
    result = judge_head("e", f, q, None, None, None, pairs=pairs)
    assert result.task == "embedding" and result.why == "inferred: verification pairs"
    assert result.metric == "verification AUC drop" and result.labelled
    auc_f, auc_q = auc(pair_cosines(f, index), same), auc(pair_cosines(q, index), same)
    assert result.numbers["float"] == auc_f and result.numbers["quantized"] == auc_q
    assert result.loss == pytest.approx(auc_f - auc_q) and result.loss > 0.03
    assert result.ci_low < result.loss < result.ci_high
    assert result.numbers["pairs"] == len(index) and result.numbers["pairs_given"] == len(index) + 5
    assert f"on {len(index)} pairs of {len(index) + 5} (5 with a sample used to calibrate)" in result.summary
    # The mean cosine keeps its own bound: the noisy embeddings are far below 0.99.
    assert result.failures and "mean cosine to the float embeddings" in result.failures[0]


def test_pairs_on_a_head_declared_otherwise_or_too_few_are_task_errors() -> None:
    f = np.random.default_rng(1).normal(size=(6, 4))
    pairs = Pairs(np.array([[0, 1], [2, 3], [4, 5], [0, 2]]), np.array([True, True, False, False]), 9)
    with pytest.raises(TaskError, match="has verification pairs for 'e', which is declared regression"):
        judge_head("e", f, f, None, None, "regression", pairs=pairs)
    few = Pairs(pairs.index[1:], pairs.same[1:], 9)
    with pytest.raises(TaskError, match="only 3 of the 9 verification pairs for 'e'.*--qcheck-calibration"):
        judge_head("e", f, f, None, None, None, pairs=few)


# -- the data format ----------------------------------------------------------------------------


def test_pairs_index_the_files_samples_and_keep_only_evaluated_ones(tmp_path: Path) -> None:
    x = np.arange(40, dtype=np.float32).reshape(20, 2)  # sample k holds 2k, 2k + 1
    index = np.array([(a, b) for a in range(20) for b in range(a + 1, 20, 3)])
    same = (index[:, 0] % 2 == index[:, 1] % 2).astype(np.int64)
    np.savez(tmp_path / "d.npz", x=x, pairs_sig=index, same_sig=same)
    data = load_npz(tmp_path / "d.npz")
    assert set(data.pairs) == {"sig"} and data.pairs["sig"].given == len(index)
    evaluation = split(data, 8).evaluation
    kept = evaluation.pairs["sig"]
    # The evaluated samples' original numbers, and the pairs among them, renumbered to the subset.
    original = (np.asarray(evaluation.x)[:, 0] // 2).astype(np.int64)
    expected = [k for k, (a, b) in enumerate(index) if a in set(original) and b in set(original)]
    assert 0 < len(kept.index) == len(expected) < len(index)
    assert np.array_equal(original[kept.index], index[expected])
    assert np.array_equal(kept.same, same[expected].astype(bool)) and kept.given == len(index)
    # What the Python API saves of a subset loads back as the same pairs.
    np.savez(tmp_path / "again.npz", **evaluation.arrays())
    again = load_npz(tmp_path / "again.npz").pairs["sig"]
    assert np.array_equal(again.index, kept.index) and np.array_equal(again.same, kept.same)


@pytest.mark.parametrize(("arrays", "message"), [
    ({"pairs": np.array([[0, 1], [2, 9]]), "same": np.array([1, 0])},
     "'pairs' holds sample index 9, outside 'x' \\(0 to 5\\)"),
    ({"pairs": np.array([[0, -1], [2, 3]]), "same": np.array([1, 0])},
     "'pairs' holds sample index -1, outside 'x'"),
    ({"pairs": np.array([0, 1, 2, 3]), "same": np.array([1, 0])},
     "'pairs' has shape \\(4,\\) and dtype int64; expected integer sample indices into 'x' of shape \\[pairs, 2\\]"),
    ({"pairs": np.array([[0.0, 1.0], [2.0, 3.0]]), "same": np.array([1, 0])}, "'pairs' has shape \\(2, 2\\) and dtype float64"),
    ({"pairs_sig": np.array([[0, 1], [2, 3]]), "same_sig": np.array([1, 2])},
     "'same_sig' must hold 0 \\(different identities\\) or 1 \\(the same identity\\)"),
    ({"pairs": np.array([[0, 1], [2, 3]]), "same": np.array([1, 0, 1])},
     "'same' has shape \\(3,\\); expected one 0/1 label per pair of 'pairs' \\(2,\\)"),
    ({"pairs": np.array([[0, 1], [2, 3]]), "same": np.array([1, 1])}, "'same' holds only 1s"),
    ({"pairs_sig": np.array([[0, 1], [2, 3]])}, "has 'pairs_sig' without 'same_sig'"),
    ({"same": np.array([1, 0])}, "has 'same' without 'pairs'"),
])
def test_bad_pairs_are_named(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = tmp_path / "bad.npz"
    contents: dict[str, Any] = {"x": np.zeros((6, 2), np.float32), **arrays}
    np.savez(path, **contents)
    with pytest.raises(QcheckError, match=message) as info:
        load_npz(path)
    assert str(path) in str(info.value)


def test_pairs_in_shards_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    np.savez(folder / "a.npz", x=np.zeros((4, 2), np.float32))
    np.savez(folder / "b.npz", x=np.zeros((4, 2), np.float32), pairs=np.array([[0, 1], [2, 3]]),
             same=np.array([1, 0]))
    from qcheck.data import load_data

    with pytest.raises(QcheckError, match="b.npz.*holds verification pairs, which qcheck reads only from a single"):
        load_data(folder)


# -- verdicts, as users run qcheck ----------------------------------------------------------------


@pytest.fixture(scope="session")
def pairs_run(tmp_path_factory: pytest.TempPathFactory) -> QcheckRun:
    """Both embeddings on the frames with identity pairs; ``min_cosine`` lowered to 0.9 so that the
    crushed-range model (mean cosine 0.955) can fail only on the verification metric."""
    cwd = tmp_path_factory.mktemp("pairs")
    x = np.load(FRAMES)["x"]
    pairs, same = identity_pairs(x)
    np.savez(cwd / "frames_pairs.npz", x=x, pairs=pairs, same=same)
    return run_qcheck(cwd, f"--qcheck-model={EMBEDDING}", f"--qcheck-model={EMBEDDING_OUTLIER}",
                      "--qcheck-data=frames_pairs.npz", "--qcheck-set=accuracy_drop.min_cosine=0.9",
                      "-k", "accuracy_drop", "--qcheck-html=report.html")


def _head(run: QcheckRun, model: str) -> dict[str, Any]:
    return dict(run.model(model)["accuracy"]["signature"])


def test_good_embedding_passes_and_a_crushed_range_fails_on_verification_auc(pairs_run: QcheckRun) -> None:
    """Before: the pairs were ignored and both were judged by cosine alone, which (at min_cosine
    0.9) passed the crushed model whose int8 signatures tell identities apart 8 points worse."""
    good = pairs_run.check("embedding.keras", "accuracy_drop")
    assert good["passed"] is True, good["message"]
    head = _head(pairs_run, "embedding.keras")
    assert head["task"] == "embedding" and head["metric"] == "verification AUC drop" and head["labelled"] is True
    assert isinstance(head["float"], float) and head["float"] > 0.8  # the float signatures verify identities
    assert good["value"] == pytest.approx(head["float"] - head["quantized"])
    given = len(identity_pairs(np.load(FRAMES)["x"])[0])
    # Only the pairs whose two samples were both kept apart for evaluation are used.
    assert isinstance(head["pairs"], int) and 0 < head["pairs"] < head["pairs_given"] == given

    bad = pairs_run.check("embedding_outlier.keras", "accuracy_drop")
    assert bad["passed"] is False, bad["message"]
    head = _head(pairs_run, "embedding_outlier.keras")
    assert head["float"] == pytest.approx(_head(pairs_run, "embedding.keras")["float"], abs=1e-6)  # same float model
    assert bad["value"] == pytest.approx(head["float"] - head["quantized"]) and bad["value"] > 0.03
    assert isinstance(head["cosine_mean"], float) and head["cosine_mean"] > 0.9  # the cosine bound alone passes it
    assert "min_cosine" not in bad["message"]
    assert "verification AUC of the pairs' cosine similarity float" in bad["message"]
    assert "accuracy at the float model's best threshold" in bad["message"]
    assert head["verification_accuracy_quantized"] < head["verification_accuracy_float"]
    page = (pairs_run.out_dir.parent / "report.html").read_text()
    assert "embedding: verification AUC drop" in page and "with a sample used to calibrate" in page


def test_a_bad_pairs_array_is_an_error_naming_the_file(tmp_path: Path) -> None:
    x = np.load(FRAMES)["x"]
    pairs, same = identity_pairs(x, per_kind=20)
    pairs[3, 1] = len(x)
    np.savez(tmp_path / "bad_pairs.npz", x=x, pairs=pairs, same=same)
    run = run_qcheck(tmp_path, f"--qcheck-model={EMBEDDING}", "--qcheck-data=bad_pairs.npz", "-k", "accuracy_drop")
    assert run.returncode != 0
    assert f"bad_pairs.npz: 'pairs' holds sample index {len(x)}, outside 'x' (0 to {len(x) - 1})" in run.stdout
