"""The samples of a model with several inputs: one array per input, keyed by the input's name.

Data files hold them as ``x_<input name>`` (the Keras input name), one array per input with the
same number of samples; a single-input model keeps ``x``. The arrays are matched to the model's
inputs by name, never by position: the TFLite converter orders a model's inputs by name in its
signature and by its own rules in the flatbuffer, neither of which is the Keras declaration order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from qcheck.hashing import digest
from qcheck.lazy_arrays import CHUNK, LazyArray

PREFIX = "x_"  # an input's array in a data file: x_<input name>


@dataclass(frozen=True, eq=False)
class NamedInputs:
    """Samples of several inputs, in step: ``arrays[name][i]`` is input ``name`` of sample ``i``.

    Looks enough like an array of samples for qcheck's pipeline (``len``, indexing by positions,
    ``chunks``, ``digest``); indexing returns another NamedInputs of float32 arrays.
    """

    arrays: dict[str, np.ndarray | LazyArray]

    def __post_init__(self) -> None:
        counts = {name: len(a) for name, a in self.arrays.items()}
        if not counts or len(set(counts.values())) != 1:
            raise ValueError(f"the inputs must have as many samples each, not {counts}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.arrays))

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    @property
    def shape(self) -> tuple[int, ...]:
        """Only the number of samples: the inputs have shapes of their own (:attr:`shapes`)."""
        return (len(self),)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each input's sample shape (without the sample dimension)."""
        return {name: tuple(a.shape[1:]) for name, a in self.arrays.items()}

    def __getitem__(self, index: Any) -> NamedInputs:
        return NamedInputs({name: np.asarray(a[index], dtype=np.float32) for name, a in self.arrays.items()})

    def subset(self, positions: np.ndarray) -> NamedInputs:
        """The samples at ``positions``; a lazily read input stays lazy."""
        return NamedInputs({name: a.subset(positions) if isinstance(a, LazyArray) else a[positions]
                            for name, a in self.arrays.items()})

    def chunks(self, size: int = CHUNK) -> Iterator[NamedInputs]:
        for start in range(0, len(self), size):
            yield self[start : start + size]

    def digest(self) -> str:
        """A hash of every input's name and samples (for cache keys)."""
        h = hashlib.sha256(b"named-inputs")
        for name in self.names:
            h.update(name.encode() + b"\0" + digest(self.arrays[name]).encode())
        return h.hexdigest()


Samples = Union[np.ndarray, LazyArray, NamedInputs]


def listed(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in sorted(names))


def name_mismatch(given: Iterable[str], expected: Iterable[str]) -> str | None:
    """What is wrong when data arrays ``given`` (input names) do not match the model's inputs
    ``expected``, listing the model's input names; None when they match."""
    given, expected = set(given), set(expected)
    if given == expected:
        return None
    arrays = ", ".join(f"{PREFIX}{n}" for n in sorted(expected))
    problems = []
    if expected - given:
        problems.append(f"no array for the model's input(s) {listed(expected - given)}")
    if given - expected:
        problems.append(f"array(s) {', '.join(PREFIX + n for n in sorted(given - expected))} name no input "
                        "of the model")
    return (f"{'; '.join(problems)}: the model's inputs are {listed(expected)}, so the data must hold one "
            f"array per input named {arrays}")


def by_input(x: Samples, names: Iterable[str]) -> dict[str, np.ndarray | LazyArray]:
    """``x`` as one array per model input named ``names``; ValueError naming what is missing or extra.

    A plain array is the samples of a single-input model, whatever the input is called.
    """
    names = tuple(names)
    if not isinstance(x, NamedInputs):
        if len(names) != 1:
            raise ValueError(f"the model has {len(names)} inputs ({listed(names)}): give one array per input, "
                             f"named {', '.join(PREFIX + n for n in sorted(names))}, instead of 'x'")
        return {names[0]: x}
    problem = name_mismatch(x.arrays, names)
    if problem:
        raise ValueError(problem)
    return dict(x.arrays)


def chunked(x: Samples, size: int = CHUNK) -> Iterator[Samples]:
    """Chunks of samples as float32: arrays for one input, NamedInputs for several."""
    if isinstance(x, NamedInputs):
        yield from x.chunks(size)
        return
    from qcheck.lazy_arrays import as_chunks

    yield from as_chunks(x, size)
