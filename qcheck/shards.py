"""``--qcheck-shard=K/N``: run one of N parts of the session, for a CI matrix of N jobs.

Items are grouped by model (every check of a model, from the command line, a suite file or a
marked test, is one group, so a model is converted in one job only); any other test is its own
group. The groups are split into N parts by a rule that depends only on the groups and the
costs it is given, so every job, and every pytest-xdist worker inside a job, computes the same
split and keeps its part:

- with costs (seconds per group, from ``--qcheck-shard-costs=FILE``, else from this cache's
  record of earlier sharded runs), the largest groups first, each to the part with the least
  work so far (a group without a recorded cost counts as the median of the recorded ones);
- without, each group to the part its name's sha256 picks, so a model stays in its part as
  models are added and removed (and its job's cache keeps serving it).

Jobs that were given different costs (caches restored from different runs) would split
differently: a model could run twice or not at all. Each job's JSON report therefore carries
the whole split and its digest, and ``python -m qcheck merge`` refuses reports whose splits
differ. What each group cost (the sum of its items' durations) is recorded in the cache by
runs that are not sharded (a shard writing it would change the split of the shards after it),
and put in each shard's JSON report, from which ``merge --costs`` writes a costs file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

COSTS_FORMAT = "qcheck-shard-costs"
SHARD_KEY = pytest.StashKey["ShardPlan"]()
_WORKER_OUTPUT = "qcheck_shard"
_SOURCES = {"file": "the costs file", "cache": "the costs recorded in the cache", "hash": "name (no costs known)"}
_COSTS_CACHE_KEY = hashlib.sha256(b"qcheck shard costs, format 1").hexdigest()


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"K/N"`` with 1 <= K <= N; pytest.UsageError naming the option otherwise."""
    parts = text.strip().split("/")
    try:
        index, count = (int(part) for part in parts)
    except ValueError:
        index = count = 0
    if len(parts) != 2 or not 1 <= index <= count:
        raise pytest.UsageError(f"--qcheck-shard={text}: expected K/N with 1 <= K <= N, e.g. --qcheck-shard=1/4")
    return Shard(index, count)


def partition(groups: Iterable[str], count: int, costs: Mapping[str, float] | None = None) -> dict[str, int]:
    """Each group's part (1..count): balanced by ``costs`` when any are given, else by hash."""
    names = sorted(set(groups))
    known = {name: float(costs[name]) for name in names if costs and name in costs and costs[name] >= 0}
    if not known:
        return {name: int(hashlib.sha256(name.encode()).hexdigest()[:16], 16) % count + 1 for name in names}
    import statistics  # with fractions and decimal: only a sharded run balances

    default = statistics.median(known.values())
    load = [0.0] * count
    parts = {}
    for name in sorted(names, key=lambda n: (-known.get(n, default), n)):
        part = min(range(count), key=lambda i: (load[i], i))
        load[part] += known.get(name, default)
        parts[name] = part + 1
    return parts


def plan_digest(parts: Mapping[str, int], count: int) -> str:
    """What identifies a split: two jobs with the same digest split the same groups the same way."""
    return hashlib.sha256(json.dumps([count, sorted(parts.items())]).encode()).hexdigest()


def group_of(item: pytest.Item, rootpath: Path) -> str:
    """The model an item checks ("model:<path relative to the root>"), or its own node id."""
    from qcheck.config import RunSpec

    planned = getattr(item, "planned", None)
    spec = getattr(planned, "run", None)
    callspec = getattr(item, "callspec", None)
    if spec is None and callspec is not None:
        spec = callspec.params.get("qcheck_run_spec")
    if isinstance(spec, RunSpec):
        return "model:" + _relative(spec.model, rootpath)
    return "test:" + item.nodeid


def _relative(path: str, rootpath: Path) -> str:
    absolute = Path(os.path.abspath(path))
    return (absolute.relative_to(rootpath) if absolute.is_relative_to(rootpath) else absolute).as_posix()


def read_costs(path: Path) -> dict[str, float]:
    """The costs in a file ``merge --costs`` wrote; pytest.UsageError naming the file otherwise."""
    from qcheck.errors import QcheckError
    from qcheck.inputs import read_regular

    try:  # a regular file only: a FIFO given here would hang the run at start-up
        document = json.loads(read_regular(path, "costs file", limit=16 << 20))
    except QcheckError as exc:
        raise pytest.UsageError(f"--qcheck-shard-costs={path}: {exc.problem}") from None
    except (ValueError, RecursionError) as exc:
        raise pytest.UsageError(f"--qcheck-shard-costs={path}: cannot be read ({exc})") from None
    costs = document.get("costs") if isinstance(document, dict) and document.get("format") == COSTS_FORMAT else None
    if not isinstance(costs, dict) or not all(isinstance(v, (int, float)) for v in costs.values()):
        raise pytest.UsageError(f"--qcheck-shard-costs={path}: not a costs file written by "
                                "'python -m qcheck merge --costs'")
    return {str(k): float(v) for k, v in costs.items()}


def costs_document(costs: Mapping[str, float]) -> dict[str, Any]:
    return {"format": COSTS_FORMAT, "costs": {k: round(v, 3) for k, v in sorted(costs.items())}}


@dataclass
class ShardPlan:
    """The split this job uses, what it kept, and what its groups cost (for the report)."""

    shard: Shard
    source: str = ""  # where the costs came from: "file", "cache" or "hash"
    parts: dict[str, int] | None = None
    costs: dict[str, float] | None = None
    # The models of this part with a check that never finished (a cancelled job, -x, a crash):
    # their report entries are partial or absent, so the merge must not take the part as complete.
    unfinished: tuple[str, ...] = ()

    def report_section(self) -> dict[str, Any]:
        parts = self.parts or {}
        return {"index": self.shard.index, "count": self.shard.count, "balanced_by": self.source,
                "digest": plan_digest(parts, self.shard.count), "groups": dict(sorted(parts.items())),
                "costs": {k: round(v, 3) for k, v in sorted((self.costs or {}).items())},
                "unfinished": list(self.unfinished)}


class ShardPlugin:
    """Keeps this job's part of the items (with a shard), and measures what each group cost.

    Only a run that is not sharded records the costs in the cache: the jobs of one sharded
    session must all read the record as it was (a shard that wrote its costs would change the
    split of the shards after it); they put their costs in their reports instead.
    """

    def __init__(self, config: pytest.Config, shard: Shard | None, costs_file: str | None = None,
                 cache: Any = None) -> None:
        self.config = config
        self._cache = cache  # a qcheck.cache.Cache: where the costs are recorded
        self.shard = shard
        self.plan = ShardPlan(shard) if shard is not None else None
        self._costs_file = costs_file
        self._groups: dict[str, str] = {}  # node id -> group, for the items this process runs
        self._spent: dict[str, float] = {}
        self._finished: set[str] = set()  # node ids whose teardown was reported
        if self.plan is not None:
            config.stash[SHARD_KEY] = self.plan

    def _given_costs(self) -> tuple[dict[str, float], str]:
        if self._costs_file:
            return read_costs(Path(self._costs_file)), "file"
        cached = self._cache_record()
        return (cached, "cache") if cached else ({}, "hash")

    def _cache_record(self) -> dict[str, float]:
        cache = self._cache
        if cache is None or cache.root is None:
            return {}
        record = cache.peek(_COSTS_CACHE_KEY)
        if not isinstance(record, dict):
            return {}
        return {str(k): float(v) for k, v in record.items() if isinstance(v, (int, float))}

    @pytest.hookimpl(trylast=True)  # after qcheck's own items are added, and after -k/-m
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        groups = {item.nodeid: group_of(item, config.rootpath) for item in items}
        if self.plan is not None:
            costs, source = self._given_costs()
            parts = partition(groups.values(), self.plan.shard.count, costs)
            self.plan.parts, self.plan.source = parts, source if costs else "hash"
            kept = [item for item in items if parts[groups[item.nodeid]] == self.plan.shard.index]
            if len(kept) < len(items):
                config.hook.pytest_deselected(items=[item for item in items if item not in kept])
                items[:] = kept

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # By node id as reports name them: after every plugin's modifyitems (xdist's groups add "@model").
        self._groups = {item.nodeid: group_of(item, session.config.rootpath) for item in session.items}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown":  # the item ran to its end (under xdist the controller sees every one)
            self._finished.add(report.nodeid)
        group = self._groups.get(report.nodeid)
        if group is not None:
            self._spent[group] = self._spent.get(group, 0.0) + report.duration

    @pytest.hookimpl(tryfirst=True)  # before the session writes the report that carries the costs
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller gathers and records
            plan = self.plan or ShardPlan(Shard(1, 1))
            workeroutput[_WORKER_OUTPUT] = json.dumps({"parts": plan.parts, "source": plan.source,
                                                       "spent": self._spent, "groups": self._groups})
            return
        if self.plan is not None:
            self.plan.costs = dict(self._spent)
            self.plan.unfinished = tuple(sorted({group for node, group in self._groups.items()
                                                 if group.startswith("model:") and node not in self._finished}))
        else:
            self._record_costs()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:  # the xdist controller, per worker
        sent = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT)
        if not sent:
            return
        data = json.loads(sent)
        if self.plan is not None:
            self.plan.parts, self.plan.source = data["parts"], data["source"]
        self._groups.update(data.get("groups", {}))  # every worker keeps the same items: any one's names them
        for group, seconds in data["spent"].items():
            self._spent[group] = self._spent.get(group, 0.0) + float(seconds)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.plan is None or self.plan.parts is None or hasattr(self.config, "workerinput"):
            return
        parts = self.plan.parts
        mine = sum(1 for part in parts.values() if part == self.plan.shard.index)
        models = sum(1 for group, part in parts.items() if part == self.plan.shard.index and group.startswith("model:"))
        terminalreporter.line(f"qcheck: shard {self.plan.shard}: {mine} of {len(parts)} groups ({models} model(s)), "
                              f"balanced by {_SOURCES[self.plan.source]}")

    def _record_costs(self) -> None:
        """This run's costs into the cache's record: per group, the most it has cost (a cold run,
        when its conversion is not cached, is what a job must be balanced for)."""
        cache = self._cache
        if cache is None or cache.root is None or not self._spent:
            return
        recorded = self._cache_record()
        merged = most(recorded, self._spent)
        if merged != recorded:  # a warm run costs less than the cold one recorded: nothing to write
            cache.put(_COSTS_CACHE_KEY, merged)


def most(*records: Mapping[str, float]) -> dict[str, float]:
    """Per group, the largest of its costs in ``records``."""
    merged: dict[str, float] = {}
    for record in records:
        for group, seconds in record.items():
            merged[group] = max(merged.get(group, 0.0), float(seconds))
    return merged
