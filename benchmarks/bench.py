"""qcheck against doing the same work by hand: prints each comparison as a ratio.

Run from a checkout with qcheck installed:  python benchmarks/bench.py
Every comparison is measured in rounds that time both sides back to back, and reported as the
median of the rounds' ratios; nothing is asserted here (the tests check behaviour, this script
checks speed). Targets, from the speed issue:

  cold qcheck / hand-written pipeline          <= 1.30
  warm qcheck / hand-written pipeline          <= 0.20
  bare interpreter loop / qcheck evaluation    >= 0.80  (2,000 samples; 8,000 and per sample also shown)
  peak memory, 20,000 / 2,000 samples          <= 1.25
  four models with -n 2 / serially             <= 0.65

and for a model zoo (issue 20):

  eight models serially, cold / one hand-written process converting all eight   <= 1.30
  the same eight with -n 2 / serially                                          <= 0.60
  warm re-check of one model / hand-written pipeline                           <= 0.15
  warm re-check of one model - pytest collecting nothing                       <= 0.3 s
  the kept conversion worker's peak RSS after eight models / after one         <= 1.50
  two shards merged / one run                                                  the same JSON

`--only NAME[,NAME]` runs some comparisons alone (names: see --help).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
REAL = ROOT / "tests" / "real"  # the published models, copied with their licenses

# The work qcheck does on one model, written the way a user would without it: load, convert to
# full int8 with 200 calibration samples, float and int8 evaluation, Vela for ethos-u55-128.
HAND_WRITTEN = r'''
import subprocess, sys, tempfile
import numpy as np
import tensorflow as tf, keras
from ai_edge_litert.interpreter import Interpreter

model_path, data_path = sys.argv[1], sys.argv[2]
data = np.load(data_path)
x, y = data["x"].astype(np.float32), data["y"]
order = np.random.default_rng(0).permutation(len(x))
cal, ev = x[np.sort(order[:200])], np.sort(order[200:])
model = keras.saving.load_model(model_path, compile=False)
inp = keras.Input(batch_shape=(1, *model.input_shape[1:]))
wrapper = keras.Model(inp, model(inp))
def representative():
    for s in cal:
        yield [s[None]]
c = tf.lite.TFLiteConverter.from_keras_model(wrapper)
c.optimizations = [tf.lite.Optimize.DEFAULT]
c.representative_dataset = representative
c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
c.inference_input_type = tf.uint8
c.inference_output_type = tf.uint8
tflite = c.convert()
float_top = model.predict(x[ev], batch_size=256, verbose=0).argmax(axis=1)
it = Interpreter(model_content=tflite)
it.allocate_tensors()
i, o = it.get_input_details()[0], it.get_output_details()[0]
scale, zp = i["quantization"]
q = np.clip(np.round(x[ev] / scale) + zp, 0, 255).astype(np.uint8)
top = []
for s in q:
    it.set_tensor(i["index"], s[None])
    it.invoke()
    top.append(it.get_tensor(o["index"])[0].argmax())
drop = (float_top == y[ev]).mean() - (np.array(top) == y[ev]).mean()
with tempfile.TemporaryDirectory() as d:
    open(f"{d}/m.tflite", "wb").write(tflite)
    subprocess.run([sys.executable, "-m", "ethosu.vela", f"{d}/m.tflite", "--output-dir", d,
                    "--accelerator-config", "ethos-u55-128", "--config", "Arm/vela.ini",
                    "--system-config", "Ethos_U55_High_End_Embedded", "--memory-mode", "Shared_Sram",
                    "--verbose-performance"], check=True, capture_output=True, cwd=d)
print("drop", drop)
'''


# The same work on several models in ONE process, as a team would script a model zoo: TensorFlow
# is imported once. Each model: load, convert to full int8 with 200 calibration samples, float and
# int8 evaluation, Vela for ethos-u55-128.
HAND_WRITTEN_ZOO = r"""
import subprocess, sys, tempfile
import numpy as np
import tensorflow as tf, keras
from ai_edge_litert.interpreter import Interpreter

data = np.load(sys.argv[1])
x, y = data["x"].astype(np.float32), data["y"]
order = np.random.default_rng(0).permutation(len(x))
cal, ev = x[np.sort(order[:200])], np.sort(order[200:])
for model_path in sys.argv[2:]:
    keras.backend.clear_session()
    model = keras.saving.load_model(model_path, compile=False)
    inp = keras.Input(batch_shape=(1, *model.input_shape[1:]))
    wrapper = keras.Model(inp, model(inp))
    def representative():
        for s in cal:
            yield [s[None]]
    c = tf.lite.TFLiteConverter.from_keras_model(wrapper)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = representative
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    c.inference_input_type = tf.uint8
    c.inference_output_type = tf.uint8
    tflite = c.convert()
    float_top = model.predict(x[ev], batch_size=256, verbose=0).argmax(axis=1)
    it = Interpreter(model_content=tflite)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    scale, zp = i["quantization"]
    q = np.clip(np.round(x[ev] / scale) + zp, 0, 255).astype(np.uint8)
    top = []
    for s in q:
        it.set_tensor(i["index"], s[None])
        it.invoke()
        top.append(it.get_tensor(o["index"])[0].argmax())
    drop = (float_top == y[ev]).mean() - (np.array(top) == y[ev]).mean()
    with tempfile.TemporaryDirectory() as d:
        open(f"{d}/m.tflite", "wb").write(tflite)
        subprocess.run([sys.executable, "-m", "ethosu.vela", f"{d}/m.tflite", "--output-dir", d,
                        "--accelerator-config", "ethos-u55-128", "--config", "Arm/vela.ini",
                        "--system-config", "Ethos_U55_High_End_Embedded", "--memory-mode", "Shared_Sram",
                        "--verbose-performance"], check=True, capture_output=True, cwd=d)
    print(model_path, "drop", drop)
"""

# Small models that take the digits data, each twice (copies under other names): eight conversions.
ZOO_MODELS = ("digits_cnn.keras", "float_op.keras", "fragile.keras", "flatten_outlier.keras")

# A probe loaded into a qcheck run (-p): the kept conversion worker's peak RSS, written at the end.
WORKER_PROBE = r"""
import os
from pathlib import Path

def pytest_sessionfinish(session):
    from qcheck.isolation import kept_worker
    worker = kept_worker("tensorflow")
    Path(os.environ["QCHECK_BENCH_RSS"]).write_text(str(worker.peak_rss() if worker else 0))
"""


# Child processes run as on a usual machine, where Python keeps compiled bytecode; see main().
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0, 1)) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**CHILD_ENV, **(env or {})})
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok:  # 1: some check failed, which is a result, not a crash
        raise SystemExit(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def qcheck_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]


@dataclass(frozen=True)
class Pair:
    """One comparison measured in rounds: each round times ``a`` and ``b`` back to back."""

    a: list[float]
    b: list[float]

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.a, self.b, strict=True)]


def paired(rounds: int, a: Callable[[], float], b: Callable[[], float]) -> Pair:
    """Time ``a`` and ``b`` in alternating order, ``rounds`` times each.

    This machine's speed drifts by 20-30% within minutes; a ratio of two timings taken moments
    apart is steady where the ratio of two best-of-N taken minutes apart is not. Alternating
    which side goes first cancels what one run leaves behind for the next (caches, writeback).
    """
    pair = Pair([], [])
    for i in range(rounds):
        if i % 2:
            tb = b()
            ta = a()
        else:
            ta = a()
            tb = b()
        pair.a.append(ta)
        pair.b.append(tb)
    return pair


def pipeline(work: Path, rounds: int) -> dict[str, Pair]:
    model, data = FIXTURES / "digits_cnn.keras", FIXTURES / "digits.npz"
    hand_cmd = [sys.executable, "-c", HAND_WRITTEN, str(model), str(data)]
    qcheck_run = qcheck_cmd(f"--qcheck-model={model}", f"--qcheck-data={data}", f"--qcheck-cache-dir={work / 'cache'}")
    # One unmeasured run of each side first, so that both find Python's bytecode caches written
    # (pytest writes its own for the modules it rewrites: every module of a pytest plugin).
    timed(hand_cmd, work)
    timed(qcheck_cmd(f"--qcheck-model={model}", f"--qcheck-data={data}", "--qcheck-no-cache"), work)

    def hand() -> float:
        return timed(hand_cmd, work)

    def cold() -> float:
        shutil.rmtree(work / "cache", ignore_errors=True)
        return timed(qcheck_run, work)

    cold_pair = paired(rounds, cold, hand)
    timed(qcheck_run, work)  # the cache is filled by the last cold run; this one reads it once
    warm_pair = paired(rounds, lambda: timed(qcheck_run, work), hand)
    return {"cold": cold_pair, "warm": warm_pair}


THROUGHPUT_SAMPLES = (2000, 8000)
THROUGHPUT_ROUNDS = 9  # at least: a round takes about a second, and one round's ratio is noisy


def throughput(rounds: int) -> dict[str, Pair]:
    """qcheck's evaluation (outputs plus the per-tensor analysis) against a bare loop, over 2,000
    and 8,000 samples; and the cost per sample past the first 2,000 (the difference of the two
    timings over 6,000), where fixed costs (reading the model, the analysis of the first 256
    samples) no longer count. At least THROUGHPUT_ROUNDS rounds, whatever ``rounds`` says."""
    from ai_edge_litert.interpreter import Interpreter

    from qcheck.tflite.run import ANALYSIS_SAMPLES, run

    tflite = (REAL / "mlperf_tiny" / "kws_ref_model.tflite").read_bytes()
    it = Interpreter(model_content=tflite, num_threads=1)
    it.allocate_tensors()
    detail = it.get_input_details()[0]
    x = np.random.default_rng(0).normal(0, 20, (max(THROUGHPUT_SAMPLES), *detail["shape"][1:])).astype(np.float32)

    def bare(samples: int) -> float:
        start = time.perf_counter()
        scale, zp = detail["quantization"]
        q = np.clip(np.round(x[:samples] / scale) + zp, -128, 127).astype(np.int8)
        out = it.get_output_details()[0]["index"]
        for s in q:
            it.set_tensor(detail["index"], s[None])
            it.invoke()
            it.get_tensor(out)
        return time.perf_counter() - start

    def ours(samples: int) -> float:
        start = time.perf_counter()
        run(tflite, x[:samples], analysis_samples=ANALYSIS_SAMPLES)
        return time.perf_counter() - start

    few, many = THROUGHPUT_SAMPLES
    bare(few), ours(few)  # unmeasured: qcheck imports the modules run() needs on its first call
    pairs = {few: Pair([], []), many: Pair([], [])}
    for i in range(max(rounds, THROUGHPUT_ROUNDS)):
        # Each round times all four back to back, in alternating order.
        steps = [(pairs[few].a, bare, few), (pairs[few].b, ours, few), (pairs[many].a, bare, many),
                 (pairs[many].b, ours, many)]
        for times, side, samples in steps if i % 2 == 0 else steps[::-1]:
            times.append(side(samples))
    per_sample = Pair([(a - b) / (many - few) for a, b in zip(pairs[many].a, pairs[few].a, strict=True)],
                      [(a - b) / (many - few) for a, b in zip(pairs[many].b, pairs[few].b, strict=True)])
    return {"few": pairs[few], "many": pairs[many], "per-sample": per_sample}


def peak_memory(work: Path, samples: int) -> float:
    """Peak RSS (MiB) of a qcheck run over ``samples`` memory-mapped 96x96x3 inputs."""
    folder = work / f"vww_{samples}"
    if not folder.exists():
        folder.mkdir()
        x = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=np.float32, shape=(samples, 96, 96, 3))
        rng = np.random.default_rng(0)
        for start in range(0, samples, 1000):
            x[start : start + 1000] = rng.random((min(1000, samples - start), 96, 96, 3), dtype=np.float32)
        x.flush()
        del x
        np.save(folder / "y.npy", np.zeros(samples, dtype=np.int64))
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    cmd = [sys.executable, "-c", code, *qcheck_cmd(f"--qcheck-model={REAL / 'mlperf_tiny' / 'vww_96_int8.tflite'}",
                                                   f"--qcheck-data={folder}", "--qcheck-no-cache", "-k", "saturation")]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=True, env=CHILD_ENV)
    return int(proc.stdout.strip().splitlines()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def parallel(work: Path, rounds: int) -> Pair:
    models = []
    for i, name in enumerate(["digits_cnn.keras", "float_op.keras", "digits_cnn.h5", "digits_cnn.keras"]):
        target = work / f"m{i}{Path(name).suffix}"
        shutil.copy(FIXTURES / name, target)
        models.append(f"--qcheck-model={target}")
    args = (*models, f"--qcheck-data={FIXTURES / 'digits.npz'}", "--qcheck-no-cache")
    return paired(rounds, lambda: timed(qcheck_cmd(*args, "-n", "2"), work), lambda: timed(qcheck_cmd(*args), work))


ZOO_SIZE = [8]  # --zoo-size: fewer models for a quick check that the script runs


def zoo_models(work: Path, count: int = 0) -> list[Path]:
    """``count`` small models (copies of ZOO_MODELS under their own names) in ``work/zoo``."""
    folder = work / "zoo"
    folder.mkdir(exist_ok=True)
    models = []
    for i in range(count or ZOO_SIZE[0]):
        target = folder / f"m{i}_{ZOO_MODELS[i % len(ZOO_MODELS)]}"
        if not target.exists():
            shutil.copy(FIXTURES / ZOO_MODELS[i % len(ZOO_MODELS)], target)
        models.append(target)
    return models


def zoo_args(models: list[Path], *extra: str) -> list[str]:
    return qcheck_cmd(*(f"--qcheck-model={m}" for m in models), f"--qcheck-data={FIXTURES / 'digits.npz'}",
                      "--qcheck-no-cache", *extra)


def zoo(work: Path, rounds: int) -> Pair:
    """Eight models, cold (no cache), serially: qcheck against one hand-written process."""
    models = zoo_models(work)
    hand_cmd = [sys.executable, "-c", HAND_WRITTEN_ZOO, str(FIXTURES / "digits.npz"), *map(str, models)]
    serial = zoo_args(models, "-p", "no:xdist")
    timed(hand_cmd, work)  # bytecode caches written, as in pipeline()
    timed(serial, work)
    return paired(rounds, lambda: timed(serial, work), lambda: timed(hand_cmd, work))


def zoo_parallel(work: Path, rounds: int) -> Pair:
    """The same eight models with -n 2 against serially (both qcheck, cold)."""
    models = zoo_models(work)
    return paired(rounds, lambda: timed(zoo_args(models, "-n", "2"), work),
                  lambda: timed(zoo_args(models, "-p", "no:xdist"), work))


def warm_floor(work: Path, rounds: int) -> dict[str, Pair]:
    """A warm re-check of one model against the hand-written pipeline and against a pytest run
    that collects nothing (in an empty folder, same plugins loaded)."""
    model, data = FIXTURES / "digits_cnn.keras", FIXTURES / "digits.npz"
    run = qcheck_cmd(f"--qcheck-model={model}", f"--qcheck-data={data}", f"--qcheck-cache-dir={work / 'warm-cache'}")
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    nothing = qcheck_cmd()
    hand_cmd = [sys.executable, "-c", HAND_WRITTEN, str(model), str(data)]
    timed(run, work)  # fills the cache
    timed(nothing, empty, ok=(5,))  # 5: no tests collected
    timed(hand_cmd, work)
    return {"hand": paired(rounds, lambda: timed(run, work), lambda: timed(hand_cmd, work)),
            "floor": paired(rounds, lambda: timed(run, work), lambda: timed(nothing, empty, ok=(5,)))}


def worker_memory(work: Path) -> Pair:
    """Peak RSS (MiB) of the kept conversion worker after the zoo's models (eight) and after one."""
    probe = work / "probe"
    probe.mkdir(exist_ok=True)
    (probe / "qcheck_bench_probe.py").write_text(WORKER_PROBE)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(probe), CHILD_ENV.get("PYTHONPATH", "")) if p)}
    models = zoo_models(work)
    peaks = []
    for chosen in (models, models[:1]):
        env["QCHECK_BENCH_RSS"] = str(probe / "rss.txt")
        timed(zoo_args(chosen, "-p", "no:xdist", "-p", "qcheck_bench_probe"), work, env=env)
        peaks.append(int((probe / "rss.txt").read_text()) / 2**20)
    return Pair([peaks[0]], [peaks[1]])


def shards_merged(work: Path) -> bool:
    """Whether two shards (--qcheck-shard=1/2 and 2/2) merged give the JSON of one run."""
    import json

    models = zoo_models(work)
    cache, out = f"--qcheck-cache-dir={work / 'shard-cache'}", f"--qcheck-out={work / 'shard-out'}"
    base = [f"--qcheck-model={m}" for m in models] + [f"--qcheck-data={FIXTURES / 'digits.npz'}", cache, out,
                                                      "-p", "no:xdist"]
    timed(qcheck_cmd(*base), work)  # fills the cache: every run below reads it alike
    timed(qcheck_cmd(*base, f"--qcheck-json={work / 'one.json'}"), work)
    for k in (1, 2):
        timed(qcheck_cmd(*base, f"--qcheck-shard={k}/2", f"--qcheck-json={work / f'shard{k}.json'}"), work)
    timed([sys.executable, "-m", "qcheck", "merge", str(work / "merged.json"), str(work / "shard1.json"),
           str(work / "shard2.json")], work)
    one, merged = (json.loads((work / name).read_text()) for name in ("one.json", "merged.json"))
    return bool(one == merged)


COMPARISONS = ("pipeline", "throughput", "parallel", "zoo", "zoo-parallel", "warm-floor", "worker-memory", "shards",
               "memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per comparison, each timing both sides back to back (default 3)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 20,000-sample memory run")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="run everything with PYTHONDONTWRITEBYTECODE=1: every start compiles the modules "
                             "that have no bytecode from installation (pytest's rewritten plugin modules)")
    parser.add_argument("--only", default="", metavar="NAME[,NAME]",
                        help=f"run only these comparisons: {', '.join(COMPARISONS)}")
    parser.add_argument("--zoo-size", type=int, default=8, metavar="N",
                        help="models in the zoo comparisons (default 8; fewer only to check the script runs)")
    args = parser.parse_args()
    ZOO_SIZE[0] = args.zoo_size
    if args.no_bytecode_cache:
        CHILD_ENV["PYTHONDONTWRITEBYTECODE"] = "1"
    chosen = set(args.only.split(",")) if args.only else set(COMPARISONS) - ({"memory"} if args.skip_memory else set())
    unknown = chosen - set(COMPARISONS)
    if unknown:
        parser.error(f"unknown comparison(s) {', '.join(sorted(unknown))}; choose from {', '.join(COMPARISONS)}")
    rows: list[tuple[str, Pair, str]] = []
    with tempfile.TemporaryDirectory(prefix="qcheck-bench-") as tmp:
        work = Path(tmp)
        if "pipeline" in chosen:
            p = pipeline(work, args.rounds)
            rows.append(("cold qcheck / hand-written", p["cold"], "<= 1.30"))
            rows.append(("warm qcheck / hand-written", p["warm"], "<= 0.20"))
        if "throughput" in chosen:
            t = throughput(args.rounds)
            rows.append(("bare loop / qcheck evaluation, 2,000 samples (throughput)", t["few"], ">= 0.80"))
            rows.append(("the same, 8,000 samples", t["many"], ""))
            rows.append(("the same per sample past 2,000 (ms; (t8000 - t2000) / 6000)",
                         Pair([v * 1000 for v in t["per-sample"].a], [v * 1000 for v in t["per-sample"].b]), ""))
        if "parallel" in chosen:
            rows.append(("four models, -n 2 / serial", parallel(work, args.rounds), "<= 0.65"))
        if "zoo" in chosen:
            rows.append((f"{args.zoo_size} models cold, serial / one hand-written process", zoo(work, args.rounds),
                         "<= 1.30"))
        if "zoo-parallel" in chosen:
            rows.append((f"{args.zoo_size} models cold, -n 2 / serial", zoo_parallel(work, args.rounds), "<= 0.60"))
        if "warm-floor" in chosen:
            w = warm_floor(work, args.rounds)
            rows.append(("warm re-check / hand-written", w["hand"], "<= 0.15"))
            rows.append(("warm re-check / pytest collecting nothing", w["floor"], "a - b <= 0.3 s"))
        if "worker-memory" in chosen:
            rows.append((f"kept worker peak RSS MiB, {args.zoo_size} models / one", worker_memory(work), "<= 1.50"))
        if "shards" in chosen:
            same = shards_merged(work)
            rows.append(("two shards merged == one run (1 = same JSON)", Pair([float(same)], [1.0]), "= 1"))
        if "memory" in chosen:
            # Last: writing 2.2 GB of samples leaves the disk busy for whatever runs next.
            small, large = peak_memory(work, 2000), peak_memory(work, 20000)
            rows.append(("peak RSS MiB, 20,000 / 2,000 samples", Pair([large], [small]), "<= 1.25"))
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, "
          f"{resource.getpagesize()} B pages, bytecode cache {'off' if args.no_bytecode_cache else 'on'}, "
          f"{args.rounds} rounds")
    print("a and b: medians of the rounds; a/b: the median of the rounds' ratios (lowest-highest)")
    print(f"{'comparison':62} {'a':>9} {'b':>9} {'a/b':>6} {'rounds':>13}  target")
    for name, pair, target in rows:
        ratios = pair.ratios
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if len(ratios) > 1 else ""
        print(f"{name:62} {statistics.median(pair.a):9.2f} {statistics.median(pair.b):9.2f} "
              f"{statistics.median(ratios):6.2f} {spread:>13}  {target}")


if __name__ == "__main__":
    main()
