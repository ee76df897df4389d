"""The HTML report: one self-contained page rendered from the JSON report document.

Pure functions from the document to text (:func:`render`, :func:`render_summary`); writing is
:func:`write_report`'s job alone. jinja2 is imported inside them, so importing this module stays
cheap, and it renders with autoescaping on: model, tensor and layer names are untrusted text.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qcheck.files import InputFiles, atomic_write

if TYPE_CHECKING:
    import jinja2

TEMPLATE = "report.html"


def render(report: Mapping[str, Any], *, links_from: Path | None = None, generated: str | None = None) -> str:
    """The page for ``report`` (see :func:`qcheck.report.json_report.build_report`).

    Artifact links are relative to the folder ``links_from`` (where the page will be written);
    ``generated`` is a timestamp for the footer, left out when None, so that the same report
    renders to the same text.
    """
    from qcheck.remedies import html_view
    from qcheck.report.view import page

    return _template().render(page=page(report, links_from), generated=generated, fragment=None,
                              remedies=html_view(list(report.get("remedies", []))))


def render_summary(model: Mapping[str, Any]) -> str:
    """A short HTML fragment for one model entry: its checks, accuracy and placement
    (what qcheck attaches to its items in pytest-html's report)."""
    from qcheck.report.view import model_view

    return _template().render(fragment=model_view(model), page=None, generated=None)


def write_report(path: Path, report: Mapping[str, Any], *, generated: str | None = None,
                 never: InputFiles | None = None) -> None:
    """Render ``report`` and write it to ``path`` (the user's: see :func:`qcheck.files.atomic_write`),
    links relative to its folder; never over one of the inputs ``never``."""
    text = render(report, links_from=path.resolve().parent, generated=generated)
    atomic_write(path, text.encode("utf-8"), named_by_user=True, never=never)


def _template() -> jinja2.Template:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("qcheck.report", "templates"),
        autoescape=True,  # model, tensor and layer names are untrusted text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return environment.get_template(TEMPLATE)
