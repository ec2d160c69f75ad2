"""The stores a search writes, and its record: checked before anything is written, removed
when it starts over.

    Ray Tune's storage    a directory or a URI pyarrow can write (s3://, gs://)
    the Optuna study      any SQLAlchemy database (SQLite next to MLflow's by default)
    MLflow                a SQLite store or a server (`tracking/`)
    search.json           the search's identity, generation and scheduler (`SearchPaths.state`),
                          written with its parent MLflow run (`record_search`)
"""

from __future__ import annotations

import json
from pathlib import Path

from spaces import SearchSpace

from .config import SearchConfig, SearchConfigError, Settings, grace_period
from .layout import SearchPaths, check_writable
from .tracking.journal import PARENT, Journal
from .tracking.records import start_search_run

FINAL = "-final"
"""The suffix of the final retraining's Ray experiment."""
RACE = "-race"
"""The suffix of the race's Ray experiments, one per round: `-race-s2` runs seed 2."""
AGAIN = "-again"
"""The suffix of the Ray experiment that runs again the trials Tune cut short (of the search's,
the race's or the final retraining's: `-race-again`, `-final-again`)."""
STAGE_SUFFIX = {"search": "", "race": RACE, "final": FINAL}
"""A stage's Ray experiments are the search's name plus this."""


def check_stores(config: SearchConfig) -> None:
    """Every store a search writes is usable, or the search stops here, in seconds, before
    anything is written: Ray's storage, the Optuna study's database and a SQLite MLflow
    store. (An MLflow server that is down is not refused: the search journals its tracking.)"""
    if config.storage and "://" not in config.storage:
        check_writable(config.storage, "--storage")
    elif config.storage:
        import pyarrow.fs

        try:
            pyarrow.fs.FileSystem.from_uri(config.storage)
        except Exception as error:
            raise SearchConfigError(f"storage={config.storage!r} cannot be used "
                                    f"({first_line(error)}); allowed: a directory, or a URI "
                                    "pyarrow can write (s3://, gs://) with its credentials "
                                    "set") from None
    for flag, uri in (("--tracking-uri", config.tracking_uri),
                      ("--optuna-storage", config.optuna_storage)):
        if uri and uri.startswith("sqlite:///"):
            check_writable(Path(uri[len("sqlite:///"):]).parent, flag)
    if config.optuna_storage and not config.optuna_storage.startswith("sqlite:///"):
        import sqlalchemy

        try:
            engine = sqlalchemy.create_engine(config.optuna_storage)
            with engine.connect():
                pass
            engine.dispose()
        except Exception as error:
            raise SearchConfigError(f"optuna_storage={config.optuna_storage!r} cannot be used "
                                    f"({first_line(error)}); allowed: a database URL that "
                                    "SQLAlchemy can connect to now") from None


def first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:150]}"


def check_same_search(paths: SearchPaths, identity: dict) -> None:
    """Resuming continues the search a name holds; it cannot turn it into another one."""
    if not paths.state.exists():
        return
    # A search recorded before `simulate` was part of the identity was a measured one.
    saved = {"simulate": False, **json.loads(paths.state.read_text()).get("identity", {})}
    for key, value in identity.items():
        if key in saved and saved[key] != value:
            raise SearchConfigError(
                f"search {paths.name!r} in {paths.root} was started with {key}="
                f"{saved[key]!r}, not {value!r}; re-run it as it was to resume, or pass "
                "another --name")


def saved_state(paths: SearchPaths) -> dict:
    return json.loads(paths.state.read_text()) if paths.state.exists() else {}


def save_state(paths: SearchPaths, state: dict) -> None:
    temporary = paths.state.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=1))
    temporary.replace(paths.state)


def start_over(settings: Settings) -> int:
    """`fresh`: remove what the search left (its directory, Ray experiments, Optuna study);
    returns its next generation. MLflow keeps the old runs: the new ones are told apart by
    their `generation` tag, so neither is mistaken for the other's."""
    import shutil

    import optuna

    paths = settings.paths
    state = saved_state(paths)
    generation = state.get("generation", 0) + 1 if paths.state.exists() else 0
    shutil.rmtree(paths.search, ignore_errors=True)
    rounds = [race_round(seed) for seed in state.get("race", {}).get("seeds", [])]
    for suffix in ("", FINAL, AGAIN, FINAL + AGAIN, RACE + AGAIN, *rounds):
        remove_experiment(settings.storage, settings.name + suffix)
    try:
        optuna.delete_study(study_name=settings.name, storage=settings.optuna_storage)
    except KeyError:  # no such study yet
        pass
    return generation


def race_round(seed: int) -> str:
    """The suffix of the race round that runs `seed`."""
    return f"{RACE}-s{seed}"


def remove_experiment(storage: str, name: str) -> None:
    """Ray Tune's experiment `name` under `storage`, a local path or a URI (s3://, gs://,
    file://), removed: left there, `Tuner.can_restore` would find it and a fresh search would
    resume the old one."""
    import shutil

    if "://" not in storage:
        shutil.rmtree(Path(storage) / name, ignore_errors=True)
        return
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(f"{storage.rstrip('/')}/{name}")
    if filesystem.get_file_info(path).type != fs.FileType.NotFound:
        filesystem.delete_dir(path)


def storage_uri(storage: str) -> str:
    """A URI (s3://, gs://) as given; a path made absolute (trials run elsewhere)."""
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def absolute_dataset(dataset: str) -> str:
    """Trials run with another working directory: make an imagefolder path absolute."""
    prefix = "imagefolder:"
    if dataset.startswith(prefix):
        return prefix + str(Path(dataset[len(prefix):]).expanduser().resolve())
    return dataset


def record_search(space: SearchSpace, config: SearchConfig, settings: Settings,
                  journal: Journal) -> None:
    """The search's record (search.json) and its parent MLflow run, journaled once, running
    again on resume."""
    paths = settings.paths
    if paths.state.exists():  # same identity: `prepare` checked
        journal.status(PARENT, "RUNNING")
        return
    artifacts = (paths.mlflow_artifacts.as_uri()
                 if settings.tracking_uri.startswith("sqlite:///") else None)
    start_search_run(journal, config, space, settings.name, settings.dataset, artifacts,
                     settings.generation)
    save_state(paths, {"name": settings.name, "tracking_uri": settings.tracking_uri,
                        "optuna_storage": settings.optuna_storage, "space": space.name,
                        "generation": settings.generation, "identity": settings.identity,
                        # What the report's ASHA replay repeats (not part of the identity:
                        # resuming with another scheduler is allowed).
                        "scheduler": {"name": config.scheduler,
                                      "grace_period": grace_period(config.grace_period,
                                                                   settings.epochs),
                                      "reduction_factor": config.reduction_factor}})
