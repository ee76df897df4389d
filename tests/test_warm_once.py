"""A warm re-check does each thing once, starts no child and loads nothing heavy (issue 20, item 2).

A fully cached run is compared with pytest's own start-up, so what it computes twice, reads
again, writes again or imports for nothing is the cost. These tests count it in a real run (a
probe plugin in the qcheck process counts calls and lists the modules loaded); none times anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import FIXTURES, REAL, QcheckRun, run_qcheck

# Loaded into the qcheck run (-p warm_probe): counts the model's readings (inspect_model, which
# loads LiteRT's flatbuffer binding), its census and every process started, and writes them with
# the modules loaded when the run ends.
PROBE = r'''
import functools, json, os, subprocess, sys

import pytest

COUNTS = {"inspect_model": 0, "take_census": 0, "processes": 0}


def _count(owner, name, key):
    original = getattr(owner, name)

    @functools.wraps(original)
    def counted(*args, **kwargs):
        COUNTS[key] += 1
        return original(*args, **kwargs)

    setattr(owner, name, counted)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    from qcheck.tflite import census, inspect

    _count(inspect, "inspect_model", "inspect_model")
    _count(census, "take_census", "take_census")
    _count(subprocess.Popen, "__init__", "processes")


def pytest_unconfigure(config):
    with open(os.environ["QCHECK_WARM_PROBE"], "w") as out:
        json.dump({**COUNTS, "modules": sorted(sys.modules)}, out)
'''

# What a warm run must not load: a framework, an interpreter, a compiler, or a report library.
HEAVY = ("tensorflow", "keras", "tf_keras", "ai_edge_litert", "flatbuffers", "ethosu", "tflite_micro", "pandas",
         "jinja2")


def _probed(cwd: Path, probe: Path, *args: str) -> tuple[QcheckRun, dict[str, Any]]:
    counts = cwd.parent / f"{cwd.name}-counts.json"
    path = os.pathsep.join(p for p in (str(probe), os.environ.get("PYTHONPATH", "")) if p)
    run = run_qcheck(cwd, *args, "-p", "warm_probe", "-p", "no:xdist", "-p", "no:html",
                     env={"PYTHONPATH": path, "QCHECK_WARM_PROBE": str(counts)})
    return run, json.loads(counts.read_text())


def _verdicts(run: QcheckRun) -> list[tuple[Any, ...]]:
    return sorted((c["name"], c["status"], c["value"]) for c in run.model("digits_cnn.keras")["checks"])


@pytest.mark.slow
def test_a_warm_run_reads_the_model_once_starts_no_child_and_writes_nothing_again(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "warm_probe.py").write_text(PROBE)
    work = tmp_path / "work"  # both runs in one folder: the warm one finds the first one's artifacts
    args = (f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}", f"--qcheck-data={FIXTURES / 'digits.npz'}",
            f"--qcheck-cache-dir={tmp_path / 'cache'}")
    cold, first = _probed(work, probe, *args)
    assert cold.returncode == 0, cold.stdout
    # The probe sees what it counts: the cold run read the model and ran its steps in children.
    assert first["inspect_model"] >= 1 and first["processes"] >= 1, first
    artifacts = sorted(p for p in cold.out_dir.rglob("*") if p.is_file())
    assert any(p.name.endswith("_quant.tflite") for p in artifacts) and any(p.suffix == ".xml" for p in artifacts)
    before = {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in artifacts}

    warm, counts = _probed(work, probe, *args)
    assert warm.returncode == 0, warm.stdout
    assert _verdicts(warm) == _verdicts(cold)
    # The model's reading comes from the cache (it was made from the same bytes), and its census
    # is taken once for the file and the checks; the Vela checks use that reading too.
    assert counts["inspect_model"] == 0 and counts["take_census"] == 1, counts
    assert counts["processes"] == 0, counts  # every step cached: no conversion, evaluation or Vela child
    loaded = {name.split(".")[0] for name in counts["modules"]}
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
    # The artifacts hold the same bytes: left as they are, not written again.
    assert {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in artifacts} == before


def test_a_model_read_from_the_cache_is_the_model_read_from_its_bytes(tmp_path: Path) -> None:
    # The warm run's checks judge the cached reading: it must be the reading, value for value and
    # type for type (a numpy scalar where a float was would print differently in a message).
    from qcheck.cache import Cache
    from qcheck.tflite.inspect import inspect_model

    models = [REAL / "mlperf_tiny" / name for name in ("kws_ref_model.tflite", "vww_96_int8.tflite",
                                                      "model_ToyCar_quant.tflite")]
    models += [REAL / "tflm" / "hello_world_float.tflite", FIXTURES / "model_kinds" / "lstm_int8.tflite"]
    for number, path in enumerate(models):
        info = inspect_model(path.read_bytes())
        key = f"{number:02d}" + "0" * 30
        Cache(tmp_path).get_or_make(key, lambda: info)
        again = Cache(tmp_path).peek(key)
        assert again == info and _leaves(again) == _leaves(info), path


def _leaves(value: Any) -> list[tuple[str, type, Any]]:
    if dataclasses.is_dataclass(value):
        return [leaf for f in dataclasses.fields(value) for leaf in _leaves(getattr(value, f.name))]
    if isinstance(value, (tuple, list)):
        return [("[]", type(value), len(value))] + [leaf for item in value for leaf in _leaves(item)]
    return [("", type(value), value)]


def test_the_values_exchanged_are_named_with_their_modules() -> None:
    # The codec's allow-list imports each class when a value names it: a name must lead to the
    # dataclass of that name, and nothing else is decoded.
    from qcheck import codec
    from qcheck.tflm import exchanged

    allowed = codec.qcheck_values()
    assert all(dataclasses.is_dataclass(allowed[name]) and allowed[name].__name__ == name for name in allowed)
    assert {cls.__name__ for cls in exchanged()} <= set(allowed)
    with pytest.raises(KeyError):
        codec.decode({"$class": "Popen", "fields": {}}, {}, allowed)
