"""Running searches: data, the trial, Ray Tune + Optuna + MLflow assembly, the command line.

    from search import SearchConfig, run
    result = run("paper-table1", SearchConfig(scale="small", trials=12))
    print(result.ranking)

Names load lazily so `import search` (as Ray workers do) stays cheap.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "SearchConfig": "search.runner",
    "SearchResult": "search.runner",
    "run": "search.runner",
    "DataOptions": "search.data",
    "load_data": "search.data",
    "RunOptions": "search.train",
    "run_trial": "search.train",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
