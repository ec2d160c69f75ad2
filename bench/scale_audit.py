"""Every trial of a search accounted for, in each of the systems that hold it, after a run at
scale (`bench.scale`): its records, Ray Tune, Optuna and an MLflow server's store.

    audit = Audit.of(results, name, configurations=..., seeds=..., budget=..., ...)
    audit.problems      # [] when the three systems and the records agree on every trial

A trial-seed (`run_key`, e.g. 0042-s1) is accounted for when:
- the search's record of it (its journal, whose runs MLflow gets) says ok or diverged at the full
  budget (its directory has the result), or stopped by ASHA before it, and its directory has
  one metrics line per epoch;
- Ray Tune's last word on it (the search's experiment, then the one that ran cut-short trials
  again) is TERMINATED with that outcome, and no Ray trial is left RUNNING or PENDING;
- Optuna's trial is finished: COMPLETE with a result, PRUNED when every seed was stopped;
- MLflow has exactly one run for it under the search's parent, FINISHED, with that outcome,
  and every metric point the tracking journal holds for it (MLflow keeps one row per point).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from search.stores import AGAIN
from search.study import CONFIGURATION_KEY, SCREENED
from search.tracking.journal import Journal, replay
from search.tracking.sender import SENT
from search.trial import run_key
from search.trial.contract import RESULT

DONE = ("ok", "diverged")


@dataclass
class Audit:
    trial_seeds: int = 0
    at_budget: int = 0
    asha_stopped: int = 0
    epochs: int = 0
    """Epochs the trials ran, each counted once (their records' metrics lines)."""
    mlflow_runs: int = 0
    mlflow_points: int = 0
    journal_points: int = 0
    problems: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, results: Path, name: str, optuna_storage: str, mlflow_db: Path,
           seeds: int, budget: int) -> Audit:
        audit = cls()
        keys = audit._records(results / "searches" / name, optuna_storage, name, seeds, budget)
        audit._ray(results / "ray", name, keys)
        audit._mlflow(results / "searches" / name, mlflow_db, keys)
        return audit

    def _records(self, search: Path, storage: str, name: str, seeds: int,
                 budget: int) -> dict[str, str]:
        """{run key: outcome} from the trials' directories; checks Optuna against them."""
        import optuna
        from optuna.trial import TrialState

        study = optuna.load_study(study_name=name, storage=storage)
        told = {ref: run.tags.get("outcome") for ref, run in replay(Journal(search)).items()}
        outcomes: dict[str, str] = {}
        for trial in study.get_trials(deepcopy=False):
            if CONFIGURATION_KEY not in trial.user_attrs or SCREENED in trial.user_attrs:
                continue  # a duplicate answered from the study, or screened out: no runs
            seen = []
            for seed in range(seeds):
                key = run_key(trial.number, seed)
                metrics = search / "trials" / key / "metrics.jsonl"
                if told.get(key) in (None, "running") or not metrics.exists():
                    self.problems.append(f"{key}: no outcome ({told.get(key)})")
                    continue
                outcome = outcomes[key] = told[key]
                seen.append(outcome)
                epochs = metrics.read_text().count("\n")
                self.epochs += epochs
                result = search / "trials" / key / RESULT
                if outcome in DONE and epochs == budget and result.exists():
                    self.at_budget += 1
                elif outcome == "stopped" and epochs < budget:
                    self.asha_stopped += 1
                else:
                    self.problems.append(f"{key}: {outcome} after {epochs} of {budget} epochs")
            expected = (TrialState.COMPLETE if set(seen) & set(DONE) else TrialState.PRUNED)
            if trial.state != expected:
                self.problems.append(f"Optuna #{trial.number}: {trial.state.name}, "
                                     f"expected {expected.name} ({seen})")
        self.trial_seeds = len(outcomes)
        return outcomes

    def _ray(self, storage: Path, name: str, outcomes: dict[str, str]) -> None:
        """Ray Tune's last word on every trial-seed agrees with its record."""
        from ray.tune import ExperimentAnalysis

        last: dict[str, tuple[str, str | None]] = {}
        terminated = Counter()
        for experiment in (storage / name, storage / f"{name}{AGAIN}"):
            if not experiment.exists():
                continue
            for trial in ExperimentAnalysis(str(experiment)).trials:
                key = trial.config["run_key"]
                last[key] = (trial.status, (trial.last_result or {}).get("outcome"))
                terminated[(experiment.name, key)] += trial.status == "TERMINATED"
        for key, outcome in outcomes.items():
            status, said = last.get(key, ("missing", None))
            if status != "TERMINATED" or said != ("running" if outcome == "stopped" else outcome):
                self.problems.append(f"Ray {key}: {status} {said}, recorded {outcome}")
        for (experiment, key), count in terminated.items():
            if count > 1:
                self.problems.append(f"Ray {experiment}: {key} TERMINATED {count} times")
        for key in set(last) - set(outcomes):
            self.problems.append(f"Ray {key}: {last[key][0]}, not a trial of the study")

    def _mlflow(self, search: Path, db: Path, outcomes: dict[str, str]) -> None:
        """One run per trial-seed in the server's store, finished, with its outcome and every
        metric point of the journal."""
        ids = json.loads((search / SENT).read_text())["ids"]
        journal: dict[str, set] = {}
        for _, entry in Journal(search).entries():
            if entry["op"] == "log" and entry["metrics"]:
                journal.setdefault(entry["ref"], set()).update(map(tuple, entry["metrics"]))
        with sqlite3.connect(db) as store:
            parent = ids["parent"]
            runs = store.execute(
                "SELECT r.run_uuid, r.status, k.value, o.value FROM runs r "
                "JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = 'mlflow.parentRunId' "
                "JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = 'run_key' "
                "LEFT JOIN tags o ON o.run_uuid = r.run_uuid AND o.key = 'outcome' "
                "WHERE p.value = ? AND r.lifecycle_stage = 'active'", (parent,)).fetchall()
            points = dict(store.execute("SELECT run_uuid, COUNT(*) FROM metrics GROUP BY "
                                        "run_uuid").fetchall())
        self.mlflow_runs = len(runs)
        for key, count in Counter(key for _, _, key, _ in runs).items():
            if count > 1:
                self.problems.append(f"MLflow {key}: {count} runs")
        for run_id, status, key, outcome in runs:
            if status != "FINISHED" or outcome != outcomes.get(key):
                self.problems.append(f"MLflow {key}: {status} {outcome}, recorded "
                                     f"{outcomes.get(key)}")
            sent, stored = len(journal.get(key, ())), points.get(run_id, 0)
            self.journal_points += sent
            self.mlflow_points += stored
            if sent != stored:
                self.problems.append(f"MLflow {key}: {stored} metric points, journal {sent}")
        for key in set(outcomes) - {key for _, _, key, _ in runs}:
            self.problems.append(f"MLflow {key}: no run")
