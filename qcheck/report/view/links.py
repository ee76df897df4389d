"""Links from the report to the artifacts in qcheck-out."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class Link:
    """A link to an artifact: its label, its href and its path for the tooltip."""

    label: str
    href: str
    path: str


_ARTIFACTS = (("quantized_model", "quantized model"), ("quantization_info", "quantization info"),
              ("vela", "Vela output"))


def artifacts(section: Mapping[str, Any], links_from: Path | None) -> tuple[Link, ...]:
    """Links to the files of the ``artifacts`` section that exist."""
    links = []
    for key, label in _ARTIFACTS:
        path = section.get(key)
        if isinstance(path, str) and path:
            links.append(Link(label, href(path, links_from), path))
    return tuple(links)


def href(path: str, links_from: Path | None) -> str:
    """A link to ``path``: relative to the folder ``links_from`` (the report's), so the report
    and qcheck-out can move together; percent-encoded, so no name can become a scheme or markup."""
    target = Path(path)
    if links_from is None:
        return target.as_uri() if target.is_absolute() else quote(target.as_posix())
    relative = os.path.relpath(target, links_from)
    return quote(PurePosixPath(Path(relative)).as_posix(), safe="/")
