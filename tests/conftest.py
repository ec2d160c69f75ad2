"""A shortcut kind declared outside the project, as a user would in their own file: the tests
take it through every part of the platform without naming it in any project file."""

import pytest
import torch
from torch import nn

from residual import Param, ShortcutKind, register_shortcut_kind
from residual.shortcuts import Shortcut, register_shortcut, unregister_shortcut

# h(x) = alpha * x with alpha learned, starting at lambda: Eq. 8's constant scaling whose
# lambda the optimiser may move (towards the identity, if He et al. are right).
LEARNED_LAMBDA = ShortcutKind(
    "learned_lambda", "y = alpha * x + F(x), alpha learned, initialised at lam",
    "beyond the paper: Eq. 8 with lambda learned",
    params=(Param("lam", 0.5, low=0.0, high=2.0, search=(0.1, 1.0)),), label="-ll{lam:g}")


class LearnedLambdaShortcut(Shortcut):
    def __init__(self, spec, in_channels, out_channels, stride):
        super().__init__(spec, in_channels, out_channels, stride)
        self.alpha = nn.Parameter(torch.tensor(float(spec.lam)))

    def forward(self, base, x):
        return self.alpha * base, 1.0


# The modules that take a minute or more on CI's two cores, longest first: they start first,
# so that `make test`'s two processes (pytest-xdist, a module to a process) do not end with one
# of them running a long module alone.
SLOW_FIRST = (
    "tests/bench/test_scale.py",
    "tests/search/test_tracking_outage.py",
    "tests/search/test_search_resume.py",
    "tests/search/trial/test_cifar_small.py",
    "tests/search/test_search_errored.py",
    "tests/search/test_search_cluster.py",
    "tests/search/test_search_interrupt.py",
    "tests/search/report/test_report_table1.py",
    "tests/search/report/test_report_depth.py",
    "tests/search/test_search_race.py",
    "tests/search/test_search.py",
    "tests/search/report/test_report_table2.py",
    "tests/search/test_simulate_search.py",
    "tests/test_readme.py",
    "tests/search/test_results.py",
    "tests/search/test_search_waits.py",
)


def pytest_collection_modifyitems(items):
    first = {module: rank for rank, module in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: first.get(item.nodeid.split("::")[0], len(first)))


@pytest.fixture
def learned_lambda():
    """The kind registered for one test, and gone after it."""
    register_shortcut_kind(LEARNED_LAMBDA)
    register_shortcut(LEARNED_LAMBDA.name)(LearnedLambdaShortcut)
    yield LEARNED_LAMBDA
    unregister_shortcut(LEARNED_LAMBDA.name)
