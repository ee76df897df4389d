"""``--qcheck-shard=K/N`` and ``python -m qcheck merge`` (issue 20, item 3).

The split is pure logic (tested with Hypothesis); the runs are real qcheck runs on the fixture
models, sharded and merged as a CI matrix does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import FIXTURES, QcheckRun, run_qcheck
from hypothesis import given, settings
from hypothesis import strategies as st

from qcheck.shards import parse_shard, partition

MODELS = ("digits_cnn.keras", "float_op.keras", "multihead.keras")

# -- the split ---------------------------------------------------------------------------------

groups = st.lists(st.text(min_size=1, max_size=12), min_size=0, max_size=30, unique=True)
counts = st.integers(min_value=1, max_value=6)


@given(groups, counts, st.randoms(use_true_random=False))
def test_each_group_is_in_exactly_one_part_whatever_the_order(names: list[str], count: int, rnd: Any) -> None:
    parts = partition(names, count)
    assert set(parts) == set(names) and all(1 <= part <= count for part in parts.values())
    shuffled = list(names)
    rnd.shuffle(shuffled)
    assert partition(shuffled, count) == parts  # every job and worker computes the same split


@given(groups, counts, st.data())
def test_costs_balance_the_parts(names: list[str], count: int, data: st.DataObject) -> None:
    costs = {name: data.draw(st.floats(min_value=0, max_value=1000)) for name in names}
    parts = partition(names, count, costs)
    assert set(parts) == set(names) and partition(list(reversed(names)), count, costs) == parts
    load = [sum(costs[n] for n in names if parts[n] == i) for i in range(1, count + 1)]
    if names:
        # Largest first, each to the least loaded part: no part ends more than one group above another.
        assert max(load) - min(load) <= max(costs.values()) + 1e-6


@settings(max_examples=50)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=20, unique=True), counts)
def test_without_costs_a_group_keeps_its_part_when_others_come_and_go(names: list[str], count: int) -> None:
    parts = partition(names, count)
    assert partition(names[: len(names) // 2 + 1], count) == {n: parts[n] for n in names[: len(names) // 2 + 1]}


def test_groups_without_a_recorded_cost_count_as_the_median() -> None:
    parts = partition(["a", "b", "c", "d"], 2, {"a": 10.0, "b": 1.0, "c": 1.0})
    assert parts["a"] != parts["b"] and parts["b"] == parts["c"] == parts["d"]  # d counts as 1.0: 10 against 3


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0", "1/2/3", ""])
def test_a_bad_shard_is_a_usage_error(text: str) -> None:
    with pytest.raises(pytest.UsageError, match=r"--qcheck-shard=.*expected K/N"):
        parse_shard(text)


# -- runs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matrix:
    full: QcheckRun
    shards: list[QcheckRun]
    folder: Path


def _run(folder: Path, *args: str, xdist: tuple[str, ...] = ("-p", "no:xdist")) -> QcheckRun:
    models = [f"--qcheck-model={FIXTURES / name}" for name in MODELS]
    # One output folder for every run, so that the artifacts' paths in the reports agree.
    return run_qcheck(folder, *models, f"--qcheck-data={FIXTURES / 'digits.npz'}",
                      f"--qcheck-out={folder.parent / 'out'}", *xdist, *args)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    """One run of three models, and the same run as two shards (multihead.keras has no 'x' in
    digits.npz: its checks error, which a merge must carry too)."""
    root = tmp_path_factory.mktemp("matrix")
    _run(root / "warm-up")  # then every run takes the conversions from the cache, and its report says so
    full = _run(root / "full")
    shards = [_run(root / f"shard{k}", f"--qcheck-shard={k}/2") for k in (1, 2)]
    return Matrix(full, shards, root)


def _merge(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qcheck", "merge", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def _report(run: QcheckRun) -> Path:
    return run.out_dir.parent / "report.json"


@pytest.mark.slow
def test_each_model_runs_in_exactly_one_shard(matrix: Matrix) -> None:
    ran = [{m["model"] for m in shard.report["models"]} for shard in matrix.shards]
    assert ran[0].isdisjoint(ran[1]) and ran[0] | ran[1] == {m["model"] for m in matrix.full.report["models"]}
    for shard in matrix.shards:
        for model in shard.report["models"]:  # all of a model's checks, in its shard
            assert len(model["checks"]) == len(matrix.full.model(Path(model["model"]).name)["checks"])
    splits = [shard.report["shard"] for shard in matrix.shards]
    assert splits[0]["digest"] == splits[1]["digest"] and splits[0]["groups"] == splits[1]["groups"]


@pytest.mark.slow
def test_two_shards_merged_are_the_report_of_one_run(matrix: Matrix) -> None:
    out = matrix.folder / "merged"
    out.mkdir()
    done = _merge("merged.json", *map(_report, matrix.shards), "--junit", "junit.xml", "--html", "r.html",
                  "--costs", "costs.json", cwd=out)
    assert done.returncode == 1, done.stderr  # float_op.keras fails, as in the one run
    merged = json.loads((out / "merged.json").read_text())
    assert merged == matrix.full.report
    cases = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert cases is not None
    checks = [c for m in merged["models"] for c in m["checks"]]
    assert int(cases.get("tests", -1)) == len(checks)
    assert int(cases.get("failures", -1)) == sum(c["status"] == "failed" for c in checks) > 0
    assert int(cases.get("errors", -1)) == sum(c["status"] == "error" for c in checks) > 0
    assert "float_op.keras" in (out / "r.html").read_text()
    costs = json.loads((out / "costs.json").read_text())["costs"]
    # The models are outside the runs' root folders: named by their absolute paths.
    assert set(costs) == {f"model:{(FIXTURES / name).as_posix()}" for name in MODELS}


@pytest.mark.slow
def test_merge_refuses_a_shard_given_twice_or_missing(matrix: Matrix) -> None:
    first = _report(matrix.shards[0])
    twice = _merge(matrix.folder / "twice.json", first, first, cwd=matrix.folder)
    assert twice.returncode == 2 and "is shard 1/2, as" in twice.stderr
    missing = _merge(matrix.folder / "missing.json", first, cwd=matrix.folder)
    assert missing.returncode == 2 and "the report of shard(s) 2/2 is missing" in missing.stderr
    assert not (matrix.folder / "twice.json").exists() and not (matrix.folder / "missing.json").exists()
    over = _merge(first, _report(matrix.shards[1]), first, cwd=matrix.folder)  # never written over an input
    assert over.returncode == 2 and json.loads(first.read_text())["shard"]["index"] == 1


@pytest.mark.slow
def test_merge_refuses_shards_that_were_split_differently(matrix: Matrix, tmp_path: Path) -> None:
    # A shard given other costs (a cache restored from another run) splits otherwise.
    split = matrix.shards[0].report["shard"]["groups"]
    costs = next(c for c in ({g: 1000.0 if g == heavy else 1.0 for g in split} for heavy in sorted(split))
                 if partition(split, 2, c) != split)
    (tmp_path / "other.json").write_text(json.dumps({"format": "qcheck-shard-costs", "costs": costs}))
    other = _run(tmp_path / "other", "--qcheck-shard=2/2", f"--qcheck-shard-costs={tmp_path / 'other.json'}")
    assert other.report["shard"]["balanced_by"] == "file"
    assert other.report["shard"]["groups"] == partition(split, 2, costs)
    done = _merge(tmp_path / "m2.json", _report(matrix.shards[0]), _report(other), cwd=tmp_path)
    assert done.returncode == 2 and "was split differently" in done.stderr, done.stderr


@pytest.mark.slow
def test_a_run_records_costs_in_the_cache_and_the_next_shards_balance_by_them(tmp_path: Path) -> None:
    cache = f"--qcheck-cache-dir={tmp_path / 'cache'}"
    fresh = _run(tmp_path / "a", cache, "--qcheck-shard=1/2")
    assert fresh.report["shard"]["balanced_by"] == "hash"
    _run(tmp_path / "b", cache)  # not sharded: records what each model cost
    shards = [_run(tmp_path / f"c{k}", cache, f"--qcheck-shard={k}/2") for k in (1, 2)]
    assert [s.report["shard"]["balanced_by"] for s in shards] == ["cache", "cache"]
    assert shards[0].report["shard"]["digest"] == shards[1].report["shard"]["digest"]
    assert "balanced by the costs recorded in the cache" in shards[0].stdout


@pytest.mark.slow
def test_a_shard_runs_under_xdist_as_without(matrix: Matrix, tmp_path: Path) -> None:
    parallel = _run(matrix.folder / "n2", "--qcheck-shard=1/2", xdist=("-n", "2"))
    assert parallel.returncode == matrix.shards[0].returncode, parallel.stdout
    serial = matrix.shards[0].report
    assert {k: v for k, v in parallel.report.items() if k != "shard"} == {k: v for k, v in serial.items()
                                                                          if k != "shard"}
    assert parallel.report["shard"]["groups"] == serial["shard"]["groups"]
    # What each model cost is gathered from the workers (their node ids carry xdist's "@model").
    assert set(parallel.report["shard"]["costs"]) == set(serial["shard"]["costs"]) != set()


def test_a_fifo_given_as_the_costs_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    # path.read_text() on a FIFO blocks until something writes into it: the run would hang at start-up.
    from qcheck.shards import read_costs

    fifo = tmp_path / "costs.json"
    os.mkfifo(fifo)
    with pytest.raises(pytest.UsageError, match="FIFO"):
        read_costs(fifo)
