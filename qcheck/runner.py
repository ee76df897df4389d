"""The one way a check runs: plan it, then measure and judge it on its model's pipeline.

The session (command-line models and suite files), markers with the fixtures, and the Python API
all run checks through here, so the same model, data and thresholds give the same verdict and
message whichever way they came in. A :class:`Runner` owns the per-model pipelines
(:class:`~qcheck.pipeline.ModelRun`, which names its own artifacts), the artifact stems that keep
two models' files apart, and the background threads that start slow work (Vela) ahead.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qcheck.checks import registry
from qcheck.config import RunSpec
from qcheck.errors import QcheckError, StepFailed
from qcheck.files import InputFiles, safe_stem
from qcheck.pipeline import DataSource, ModelRun
from qcheck.progress import Progress
from qcheck.verdict import error_result, judge

if TYPE_CHECKING:
    from qcheck.cache import Cache
    from qcheck.checks.evidence import Evidence
    from qcheck.results import CheckResult
    from qcheck.suites import CheckSpec, Suite

_SLOW_STEP = 1.0  # seconds: a check that took longer says so in the progress lines


@dataclass(frozen=True)
class PlannedCheck:
    """One test item to be: a check on a model, for one accelerator where that matters."""

    run: RunSpec
    spec: CheckSpec
    variant: str = ""
    # What the check is measured with (:func:`check_options`): resolved when planned, against
    # the suite the check came from.
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)
    # Whether that suite tries other recipes when the check fails ([remedies] enabled, qcheck.remedies).
    remedies: bool = field(default=False, compare=False)

    @property
    def model(self) -> str:
        return self.run.model

    @property
    def label(self) -> str:
        return f"{self.spec.name}[{self.variant}]" if self.variant else self.spec.name

    @property
    def item_name(self) -> str:
        params = "-".join(p for p in (self.model, self.variant) if p)
        return f"{self.spec.name}[{params}]"


def plan(run: RunSpec, suite: Suite, accelerators: Callable[[CheckSpec], tuple[str, ...]]) -> Iterator[PlannedCheck]:
    """The suite's enabled checks on one model; a per-accelerator check once per accelerator
    (``accelerators``: :func:`qcheck.resolver.accelerators` with the entry point's settings)."""
    checks = registry()
    for spec in suite.enabled():
        if checks[spec.name].per_accelerator:
            for accelerator in accelerators(spec):
                yield planned_check(run, spec, suite, accelerator)
        else:
            yield planned_check(run, spec, suite)


def planned_check(run: RunSpec, spec: CheckSpec, suite: Suite, variant: str = "") -> PlannedCheck:
    """``spec`` of ``suite`` on ``run`` (for accelerator ``variant``), its options resolved."""
    return PlannedCheck(run, spec, variant, check_options(spec, suite, variant), suite.remedies)


def check_options(spec: CheckSpec, suite: Suite, variant: str = "") -> dict[str, Any]:
    """The options ``spec`` is measured with: its table's, over those it inherits."""
    check = registry()[spec.name]
    options = dict(spec.options)
    if check.per_accelerator and spec.name != "vela" and "vela" in suite.checks:
        # The memory checks describe the same compilation as vela: its target options
        # (system_config, memory_mode, config_file) apply unless the check sets its own.
        inherited = {k: v for k, v in suite.checks["vela"].options.items() if k in check.options}
        options = {**inherited, **options}
    if variant:
        options["accelerator"] = variant
    return options


def measure_and_judge(evidence: Evidence, planned: PlannedCheck, *, model: str | None = None,
                      progress: Progress | None = None,
                      first_to_report: Callable[[BaseException], str] = lambda cause: "") -> CheckResult:
    """Measure ``planned`` on ``evidence`` and judge it; every failure becomes an error result.

    ``first_to_report`` names the check that already reported the same cause in full ("" when
    this one is first). ``model`` names the model in the result (default: the planned one's).
    """
    check = registry()[planned.spec.name]
    model = model or planned.model
    progress = progress or Progress()
    progress.step(model, f"check {planned.label} ...")
    started = time.monotonic()
    try:
        measurement = check.measure(evidence, planned.options)
    except (QcheckError, StepFailed) as exc:
        return error_result(model, check, planned.spec, exc, planned.variant, see=first_to_report(exc))
    except OSError as exc:  # the file system said no (a file where a folder goes, a full disk): not a bug
        return error_result(model, check, planned.spec, _os_failure(exc), planned.variant)
    except Exception as exc:  # a bug in qcheck: this check errors with its text, the session goes on
        return error_result(model, check, planned.spec, _internal(exc), planned.variant)
    finally:
        elapsed = time.monotonic() - started
        if elapsed >= _SLOW_STEP:
            progress.step(model, f"check {planned.label} measured in {elapsed:.1f} s")
    return judge(model, check, planned.spec, measurement, planned.variant)


class Runner:
    """Runs planned checks on shared per-model pipelines, one :class:`ModelRun` per RunSpec."""

    def __init__(self, out_dir: Path, cache: Cache, timeout: float, progress: Progress | None = None, *,
                 inputs: InputFiles | None = None, first: Iterable[RunSpec] = (), folder: str = "") -> None:
        self.out_dir = out_dir
        self.folder = folder  # below out_dir, where the runs write their artifacts ("": out_dir itself)
        self.cache = cache
        self.timeout = timeout
        self.progress = progress or Progress()
        self.inputs = inputs or InputFiles()  # what no artifact or report may be written over
        self._first = tuple(first)  # named first, in this order (see _stem)
        self._sources: dict[tuple[Any, ...], DataSource] = {}
        self._runs: dict[RunSpec, ModelRun] = {}
        self._stems: dict[RunSpec, str] = {}
        self._ahead: dict[RunSpec, list[PlannedCheck]] = {}  # checks with slow work to start early
        self._threads: list[threading.Thread] = []
        self._causes: dict[str, list[tuple[BaseException, str]]] = {}  # per model: (cause, check that said it)
        for spec in self._first:
            self.protect(spec)

    def model_run(self, spec: RunSpec) -> ModelRun:
        """The pipeline for ``spec``, created on first use and shared by every item using it."""
        if spec not in self._runs:
            key = (spec.data, spec.calibration, spec.calibration_samples, spec.images)
            if key not in self._sources:
                self._sources[key] = DataSource(*key)
            self.protect(spec)
            self._runs[spec] = ModelRun(spec, self.stem(spec), self.out_dir, self._sources[key], self.timeout,
                                        self.cache, self.progress, inputs=self.inputs, folder=self.folder)
        return self._runs[spec]

    def below(self, folder: str) -> Runner:
        """A runner of its own for runs that are not the session's models (the remedies'): it writes
        into ``folder`` below this one's output root, each run named with :meth:`name`, and shares
        the cache, timeout, progress and the inputs no artifact may be written over."""
        return Runner(self.out_dir, self.cache, self.timeout, self.progress, inputs=self.inputs, folder=folder)

    def name(self, spec: RunSpec, stem: str) -> None:
        """Name ``spec``'s artifacts ``stem`` (a safe file-name stem, unique in this runner) instead
        of by its model's file name; before its first use."""
        if self._stems.get(spec, stem) != stem or stem in {s for k, s in self._stems.items() if k != spec}:
            raise ValueError(f"artifact name {stem!r} is taken, or {spec.model} is named already")
        self._stems[spec] = stem

    def protect(self, spec: RunSpec) -> None:
        """Add ``spec``'s files to what no artifact or report may be written over."""
        for path, what in ((spec.model, "model"), (spec.reference, "reference model"), (spec.data, "data"),
                           (spec.calibration, "calibration data")):
            self.inputs.add(path, what)

    def clashes(self) -> list[str]:
        """Artifacts of the first models that would be written over one of the inputs
        (``--qcheck-out=.`` beside a model named ``m_quant.tflite``): found before anything runs."""
        found = []
        for spec in self._first:
            for path in self.model_run(spec).first_artifacts():
                owner = self.inputs.owner(path)
                if owner is not None:
                    shown = self.out_dir / path.name
                    found.append(f"{shown}: {spec.model}'s artifact would be written over the {owner}; "
                                 "qcheck never writes over its inputs: choose another --qcheck-out")
        return found

    def stem(self, spec: RunSpec) -> str:
        """Artifact names from the model's file name, made unique within the session.

        The command line's models are named first, in their order, whichever is used first:
        every xdist worker must give a model the same name, or two models that share a file
        name would write over each other's artifacts.
        """
        if spec not in self._stems:
            for first in self._first:
                self._assign_stem(first)
            self._assign_stem(spec)
        return self._stems[spec]

    def _assign_stem(self, spec: RunSpec) -> None:
        if spec not in self._stems:
            path = Path(spec.model)
            stem = safe_stem(path.stem if path.suffix else path.name)
            taken = set(self._stems.values())
            candidate, n = stem, 2
            while candidate in taken:
                candidate, n = f"{stem}-{n}", n + 1
            self._stems[spec] = candidate

    def expect(self, planned: Iterable[PlannedCheck]) -> None:
        """The checks this process is to run (after -k/-m), so that slow work they will need
        starts ahead: Vela compiles on a background thread while the model's evaluation runs.

        Under pytest-xdist every worker collects every item; with qcheck's per-model groups a
        model's checks all run on the worker that starts its first one.
        """
        checks = registry()
        for item in planned:
            if checks[item.spec.name].prepare is not None:
                self._ahead.setdefault(item.run, []).append(item)

    def _start_ahead(self, run: RunSpec) -> None:
        planned = self._ahead.pop(run, [])
        if not planned:
            return
        evidence, checks = self.model_run(run), registry()

        def prepare() -> None:
            for item in planned:
                start = checks[item.spec.name].prepare
                assert start is not None
                try:
                    start(evidence, item.options)
                except Exception:
                    pass  # the check asks for the same work, and reports what went wrong

        thread = threading.Thread(target=prepare, name=f"qcheck-ahead-{self.stem(run)}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def execute(self, planned: PlannedCheck) -> CheckResult:
        """Measure and judge one planned check on its model's shared pipeline."""
        self._start_ahead(planned.run)
        evidence = self.model_run(planned.run)
        # The model's own facts (tensors, calibration, Vela, files) travel once per model, not
        # with each result (qcheck.facts).
        return measure_and_judge(evidence, planned, progress=self.progress,
                                 first_to_report=lambda cause: self._first_to_report(planned, cause))

    def _first_to_report(self, planned: PlannedCheck, cause: BaseException) -> str:
        """The check that already reported ``cause`` for the model in full, or "" if this one is first.

        A failed step is remembered and raised again, the same exception, to every check that
        needs it (:class:`qcheck.pipeline.Memo`): a model that cannot be loaded is one error, said
        once, and its other checks point to it.
        """
        seen = self._causes.setdefault(planned.model, [])
        for known, first in seen:
            if known is cause:
                return first
        seen.append((cause, planned.label))
        return ""

    def join(self) -> None:
        """Wait for the background work: no Vela process outlives the session."""
        for thread in self._threads:
            thread.join()


def _os_failure(exc: OSError) -> StepFailed:
    """A file-system error as the path and what the system said about it."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    return StepFailed(f"{paths or 'a file'}: {exc.strerror or exc} (check the folders qcheck writes into: "
                      "a file where a folder goes, a full disk, permissions)")


def _internal(exc: Exception) -> StepFailed:
    """An unexpected exception as one line that says where it happened, for a bug report."""
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return StepFailed(f"internal error in qcheck ({type(exc).__name__}: {exc}, at {Path(frame.filename).name}:"
                      f"{frame.lineno}); please report it with the model")
