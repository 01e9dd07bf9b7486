"""Suite-wide test configuration: how pytest-xdist shares out the tests.

``make test`` runs ``pytest -n 2 --dist loadfile`` (plain ``-n 2`` does the
same here): each module runs whole on one worker (its module fixtures are
built once), and every module that starts testnets (it uses
``tests.localnet``'s ``running_localnet`` or ``LocalNet``) or trains the
testnet's risk models (``test_cli``'s ``testnet init``) counts as one and
the same module.  So one worker runs the testnets one after another, as a
plain ``pytest`` does (never two testnets of four processes on two cores at
once, and the risk models are trained once), starting with them, while the
other worker takes the in-process tests.

(``--dist loadgroup`` with ``xdist_group`` marks would say this, but on
pytest 9.2 xdist's group suffix on the node id no longer takes effect and
the marks are silently ignored: pytest-xdist issue 1386.)
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest

TESTNETS = "testnets"
ROOT = Path(__file__).resolve().parents[1]
TRAINS_TESTNET_MODELS = frozenset({"tests/test_cli.py"})
# the e2e runner's testnets (e2e/runner.py, run as a subprocess)
RUNS_E2E = frozenset({"tests/test_e2e_ci.py", "tests/test_e2e_cleanup.py"})
_MAKES_TESTNETS = re.compile(r"\b(running_localnet|LocalNet)\b")  # tests/localnet.py


@functools.cache
def starts_testnets(module: str) -> bool:
    """Whether the test module at ``module`` (a path relative to the repository) makes testnets."""
    if module in TRAINS_TESTNET_MODELS or module in RUNS_E2E:
        return True
    path = ROOT / module
    return path.suffix == ".py" and path.is_file() and bool(_MAKES_TESTNETS.search(path.read_text()))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    # Plain ``-n 2`` means "load": tests shared out one by one, which splits
    # modules whose tests build on each other (test_risk_testnet's history)
    # across two testnets.  This suite is shared out by module either way.
    if config.getvalue("dist") not in ("load", "loadfile"):
        return None
    from xdist.scheduler import LoadFileScheduling

    class TestnetsTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = super()._split_scope(nodeid)
            return TESTNETS if starts_testnets(module) else module

        def _assign_work_unit(self, node: Any) -> None:
            if TESTNETS in self.workqueue:  # the longest unit by far: start it first
                self.workqueue.move_to_end(TESTNETS, last=False)
            super()._assign_work_unit(node)

    return TestnetsTogether(config, log)
