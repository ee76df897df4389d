"""Two qcheck source trees side by side on the warm re-check, and pytest collecting nothing.

    python benchmarks/warm_compare.py OLD_TREE NEW_TREE [--rounds N]

OLD_TREE and NEW_TREE are checkouts (``git archive`` of two commits, say); each side runs
``python -m pytest --qcheck-model=fixtures/digits_cnn.keras --qcheck-data=fixtures/digits.npz``
with ``PYTHONPATH`` set to its tree and a cache of its own, filled first; the third side is
``pytest`` in an empty folder (same plugins, collects nothing). Each round runs the three in
turn, in alternating order. Printed: wall and CPU (user + system) seconds, median and lowest, and
the median of each round's difference to the empty run. On a machine shared with other work the
CPU seconds are the steadier figure: waiting for a core is not counted in them.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    with tempfile.TemporaryDirectory(prefix="qcheck-warm-") as tmp:
        work = Path(tmp)
        sides: dict[str, tuple[list[str], Path, str, int]] = {}
        for name, tree in (("old", args.old), ("new", args.new)):
            (work / name).mkdir()
            sides[name] = ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"--qcheck-model={FIXTURES / 'digits_cnn.keras'}",
                            f"--qcheck-data={FIXTURES / 'digits.npz'}",
                            f"--qcheck-cache-dir={work / (name + '-cache')}"], work / name, str(tree.resolve()), 0)
        (work / "empty").mkdir()
        sides["empty"] = ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], work / "empty",
                          str(args.new.resolve()), 5)
        wall: dict[str, list[float]] = {name: [] for name in sides}
        cpu: dict[str, list[float]] = {name: [] for name in sides}

        def run(name: str) -> None:
            cmd, cwd, tree, expected = sides[name]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=cwd, env={**env, "PYTHONPATH": tree}, capture_output=True, text=True)
            wall[name].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if proc.returncode != expected:
                raise SystemExit(f"{name} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")

        for name in sides:  # fills the caches and the bytecode caches; not counted
            run(name)
            run(name)
        for figures in (wall, cpu):
            for times in figures.values():
                times.clear()
        order = list(sides)
        for i in range(args.rounds):
            for name in order if i % 2 == 0 else order[::-1]:
                run(name)
    print(f"{args.rounds} rounds; seconds: median (lowest); difference: median over rounds of side - empty")
    for label, figures in (("wall", wall), ("cpu", cpu)):
        for name, times in figures.items():
            line = f"{label:4} {name:5} {statistics.median(times):6.3f} ({min(times):.3f})"
            if name != "empty":
                diff = statistics.median(a - b for a, b in zip(times, figures["empty"], strict=True))
                line += f"   - empty: {diff:.3f}"
            print(line)


if __name__ == "__main__":
    main()
