"""Copy a search's records, what `resnet-search report` reads, into a results directory of their
own for docs/results/: no checkpoints, no MLflow store, no journal, no plots.

    .venv/bin/python docs/export_results.py RESULTS_DIR NAME DEST

DEST becomes a results directory (`DEST/searches/NAME/...` and `DEST/optuna.db` holding only
that search's study), so that

    resnet-search report NAME --results-dir DEST --out SOMEWHERE

renders the search's report again, and `docs/check_results.py docs/results` checks RESULTS.md's
figures against it. Prints the size of what it wrote.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

KEPT = ("search.json", "ranking.csv", "ranking.md", "trials.csv", "race.csv",
        "race_trials.csv", "screened.csv")
"""The search directory's own files that a report reads (or a reader wants beside them)."""
TRIAL_KEPT = ("plan.json", "metrics.jsonl", "propagation.json", "result.json")
"""Each trial directory's records; its checkpoint and plots stay behind."""


def export(results: Path, name: str, dest: Path) -> int:
    """Copy the records; returns the bytes written."""
    import optuna

    source = results / "searches" / name
    if not (source / "ranking.csv").exists():
        raise SystemExit(f"export_results: {source} holds no finished search (no ranking.csv)")
    target = dest / "searches" / name
    if dest.exists():
        shutil.rmtree(dest)
    target.mkdir(parents=True)
    for file in KEPT:
        if (source / file).exists():
            shutil.copy2(source / file, target / file)
    for trial in sorted((source / "trials").iterdir()):
        for file in TRIAL_KEPT:
            if (trial / file).exists():
                (target / "trials" / trial.name).mkdir(parents=True, exist_ok=True)
                shutil.copy2(trial / file, target / "trials" / trial.name / file)
    # The study now lives in DEST's optuna.db: the path the search kept is this machine's.
    state = json.loads((target / "search.json").read_text())
    state.pop("optuna_storage", None)
    (target / "search.json").write_text(json.dumps(state, indent=1))
    optuna.copy_study(from_study_name=name, from_storage=f"sqlite:///{results / 'optuna.db'}",
                      to_storage=f"sqlite:///{dest / 'optuna.db'}")
    return sum(path.stat().st_size for path in dest.rglob("*") if path.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the search's --results-dir")
    parser.add_argument("name", help="the search's name")
    parser.add_argument("dest", type=Path, help="the results directory to create")
    args = parser.parse_args(argv)
    size = export(args.results.resolve(), args.name, args.dest.resolve())
    print(f"{args.dest}: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
