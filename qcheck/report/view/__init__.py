"""What the HTML report shows, computed from the JSON report document; no markup here.

:func:`page` turns the document of :func:`qcheck.report.json_report.build_report` into frozen
view objects: formatted numbers, verdicts and chart geometry, one module per part of a model's
entry. The template only places them, so every name (model files, tensors, layers, Vela's
reasons) reaches the page through jinja2's autoescaping. Sections a model lacks (no data, no
Vela, an older qcheck) are None or empty and the template leaves them out.
"""

from qcheck.report.view.page import ModelView, Page, model_view, page

__all__ = ["ModelView", "Page", "model_view", "page"]
