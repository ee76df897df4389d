"""Keep each model's checks on one pytest-xdist worker, so that each model is converted once.

Every qcheck item carries ``xdist_group(model)``; under ``--dist loadgroup`` pytest-xdist's
worker appends ``@group`` to the node id and the controller schedules by that suffix. Two things
get in the way, and this plugin mends both:

- when qcheck chose ``loadgroup`` itself (``-n`` without ``--dist``, see ``plugin.py``), the
  workers, which parse the command line again, never hear of it;
- with pytest >= 9.2, xdist 3.8 writes the suffix into ``item._nodeid``, which pytest no longer
  reads (node ids became structured), so nothing is grouped at all
  (https://github.com/pytest-dev/pytest-xdist/issues/1386). The suffix is written here into
  whichever attribute the running pytest reads, and only where it is missing, so a fixed
  xdist makes this a no-op. (pytest 9.2's short summary then prints such ids with one "]" too
  many, as it will for any xdist group.)
"""

from __future__ import annotations

from typing import Any

import pytest

_LOADGROUP = "qcheck_loadgroup"


class ModelGroups:
    def __init__(self, config: pytest.Config) -> None:
        workerinput = getattr(config, "workerinput", None)
        if workerinput is not None and workerinput.get(_LOADGROUP):
            config.option.loadgroup = True

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:  # controller, once per worker
        node.workerinput[_LOADGROUP] = node.config.option.dist == "loadgroup"

    @pytest.hookimpl(trylast=True)  # after xdist's worker has (or has not) added the suffix
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if not getattr(config.option, "loadgroup", False):
            return
        from qcheck.items import QcheckItem

        for item in items:
            # The group is the model, as QcheckItem marks it (xdist_group(name=model)).
            if isinstance(item, QcheckItem) and not item.nodeid.endswith(f"@{item.planned.model}"):
                _set_nodeid(item, f"{item.nodeid}@{item.planned.model}")


def _set_nodeid(item: pytest.Item, nodeid: str) -> None:
    # Private attributes, and pytest's private coerce_node_id: pytest has no public way to rename
    # a collected item, which is what xdist itself does here (see the module's docstring).
    if hasattr(item, "_id"):  # pytest >= 9.2: a structured id, printed back as the same string
        from _pytest.nodeid import coerce_node_id

        item._id = coerce_node_id(nodeid)
    else:
        item._nodeid = nodeid  # type: ignore[attr-defined]  # pytest < 9.2
