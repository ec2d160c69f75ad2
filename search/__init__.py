"""Running searches, in two layers (DESIGN.md):

    trial/        one training run: the contract a search hands it (`TrialConfig`), the device
                  decision, data, the recipe's loop, the trial directory, its plots. No Ray, no
                  MLflow: it runs the same under Ray, from the CLI, in a notebook.
    (this level)  the orchestration: config.py (SearchConfig), runner.py (`run`), stores.py
                  (Ray's storage, the study's database, search.json), tuner.py (Ray Tune
                  assembly), trainable.py, searcher.py (Optuna as Tune's search algorithm),
                  study.py (samplers, the study), screen.py, progress.py, ranking.py, layout.py
                  (the results directory); tracking/ (MLflow: journal, sender, records, the
                  tracker), report/, cli/.

    from search import SearchConfig, run
    result = run("paper-table1", SearchConfig(scale="small", trials=12))
    print(result.ranking)

Names load lazily so `import search` (as Ray workers do) stays cheap.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "SearchConfig": "search.config",
    "SearchResult": "search.runner",
    "run": "search.runner",
    "DataOptions": "search.trial",
    "load_data": "search.trial",
    "RunOptions": "search.trial",
    "run_trial": "search.trial",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
