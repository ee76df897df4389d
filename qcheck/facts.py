"""Facts about one model for the reports: built once per model from its pipeline, sent once.

A check's result carries its verdict and its own figures (``accuracy``, ``saturation``, ...:
the sections it declares in ``@check(sections=...)``). What the run learned about the model
itself (how it was converted, its tensors and layers, the calibration diagnosis, Vela's
compilations, the files written) is the same whichever check asked for it: :class:`ModelFacts`
holds it, typed, and the process that ran a model's checks sends it once, with the last of them
(:class:`qcheck.items.FactsCourier`); the controller puts it into the model's report entry.

Each field of :class:`ModelFacts` is a section of the JSON report under the field's name, so a
fact added here reaches the report with nothing else to change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qcheck.checks.calibration import CalibrationDiagnosis
    from qcheck.tflite.breakdown import LayerBytes
    from qcheck.tflite.tensor_stats import TensorReport, WeightsComparison
    from qcheck.vela import VelaResult

# The attribute of a test report that carries a model's facts (pytest-xdist sends a report's
# attributes to the controller; --junitxml writes only its user properties, so the facts stay
# out of the JUnit file).
FACTS_ATTRIBUTE = "qcheck_facts"


@dataclass(frozen=True)
class ModelFacts:
    """What the run knows about one model, for the reports; nothing here judges anything.

    Each field is the report section of its name (docs/report-schema.md); a fact the run did not
    come to know (no data: no ``calibration``; no Vela check: no ``vela``) is None or empty and
    left out of the report.
    """

    notes: tuple[str, ...] = ()  # how the model was checked (calibration source, loader, ...)
    quantization_info: Mapping[str, Any] | None = None  # the *_quantization_info.json content
    calibration: CalibrationDiagnosis | None = None  # calibration inputs against evaluation inputs
    tensors: tuple[TensorReport, ...] = ()  # every activation tensor of the evaluation's analysis
    layers: tuple[TensorReport, ...] = ()  # of them, those compared with the float model
    reference_weights: WeightsComparison | None = None  # the quantized weights against the reference's
    vela: Mapping[str, VelaResult] = field(default_factory=dict)  # each compilation, by accelerator
    size_breakdown: tuple[LayerBytes, ...] | None = None  # constant bytes per operator, largest first
    artifacts: Mapping[str, str] = field(default_factory=dict)  # the files written, and their stem

    def sections(self) -> dict[str, Any]:
        """The facts as report sections (JSON values), by field name; unknown ones left out."""
        found = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None and not (isinstance(value, (tuple, Mapping)) and not value):
                found[item.name] = _plain(value)
        return found


def fact_sections() -> tuple[str, ...]:
    """The names of the report sections :class:`ModelFacts` makes."""
    return tuple(item.name for item in fields(ModelFacts))


@dataclass(frozen=True)
class ReportFacts:
    """A model's facts as they travel to the controller: the report entry they belong to (the
    model as given and the ``qcheck_*.toml`` whose checks ran it, "" for the run's own suite)
    and their sections."""

    model: str
    suite_file: str
    sections: dict[str, Any]

    def encode(self) -> str:
        # The sections are JSON values already: not copied field by field (asdict) first, which
        # cost more than the encoding; a dataclass met inside is encoded as asdict would give it.
        data = {"model": self.model, "suite_file": self.suite_file, "sections": self.sections}
        return json.dumps(data, sort_keys=True, default=_json_value)

    @classmethod
    def decode(cls, text: str) -> ReportFacts:
        data = json.loads(text)
        return cls(str(data["model"]), str(data["suite_file"]), dict(data["sections"]))


def by_model(facts: Iterable[ReportFacts]) -> dict[tuple[str, str], dict[str, Any]]:
    """The sections of each model entry's facts, by (model, suite file).

    A model's facts come once from each process that ran its checks (more than once only when
    its checks did not run in a row): they are merged in a fixed order, the fullest last, so that
    the same facts give the same sections whatever order they arrived in.
    """
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for sent in sorted(facts, key=lambda f: (f.model, f.suite_file, len(text := f.encode()), text)):
        merge_sections(merged.setdefault((sent.model, sent.suite_file), {}), sent.sections)
    return merged


def merge_sections(into: dict[str, Any], sections: Mapping[str, Any]) -> None:
    """Add ``sections`` to ``into`` (a report entry): a table keyed by name (``vela`` by
    accelerator) gains the keys, anything else is replaced."""
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key] = {**into[key], **value}
        else:
            into[key] = value


def _plain(value: Any) -> Any:
    """``value`` as JSON values: dataclasses by their ``to_dict``, mappings and tuples within."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


def _json_value(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value.tolist() if hasattr(value, "tolist") else str(value)
