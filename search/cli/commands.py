"""`resnet-search run`, `report`, `sync`, `ui` and `list-spaces`: thin shells over the
library (`search.run`, `search.report`, the tracking sender), each importing what it needs
only when it runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from spaces import SCALES, list_spaces

from ..layout import SearchPaths, check_writable
from .parser import UsageError

EXIT_UNFINISHED = 3
EXIT_NO_RESOURCES = 4
"""Trials waited --wait-for-resources minutes with none running; the same command resumes."""


def cmd_list_spaces(args: argparse.Namespace) -> int:
    print("spaces:")
    for space in list_spaces():
        print(f"  {space.name:14s} {space.description}")
    print("  path/file.py:name or package.module:name for your own (see README)")
    print("scales:")
    for scale in SCALES.values():
        print(f"  {scale.name:14s} {scale.description}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ..config import SearchConfig
    from ..progress import ResourcesUnavailable
    from ..ranking import to_text
    from ..runner import run

    values = {k: v for k, v in vars(args).items()
              if v is not None and k not in ("command", "space")}
    try:
        result = run(args.space, SearchConfig(**values))
    except ResourcesUnavailable as stopped:
        print(f"resnet-search: stopped: {stopped}; run the same command again to resume the "
              "search", file=sys.stderr, flush=True)
        return EXIT_NO_RESOURCES
    if result.finished_before:
        print(f"search {result.name} has finished before; here is what it found. To run it "
              f"again from scratch, add --fresh; to start another search, pass --name NEW.")
        report = result.directory / "report.html"
        if report.exists():
            print(f"report: {report}")
    print()
    if result.ranking.empty:
        print("no trial finished")
    else:
        print(to_text(result.ranking))
    if result.report is not None:
        print("\n" + result.report.summary)
        print(f"report: {result.report.directory / 'report.html'}")
    print(f"\nranking: {result.directory / 'ranking.md'} (and .csv)")
    results_dir = result.directory.parents[1]
    if result.unsent:
        print(f"MLflow: {result.tracking_uri} is unreachable; its tracking waits in "
              f"{result.directory / 'tracking.jsonl'}: once the server is back, run "
              f"`resnet-search sync {result.name} --results-dir {results_dir}`")
    else:
        print(f"MLflow: {result.tracking_uri} (parent run {result.parent_run_id})")
    if result.tracking_uri.startswith("sqlite:///"):
        print(f"open the UI: resnet-search ui --results-dir {results_dir}")
    print(f"Optuna: optuna-dashboard {_optuna_storage(results_dir, result.name)}")
    if result.unfinished:
        print(f"\nsearch {result.name} is not finished: {' and '.join(result.unfinished)}; run "
              "the same command again to resume it (trials continue from their last checkpoints)")
        return EXIT_UNFINISHED
    return 0


def _optuna_storage(results_dir: Path, name: str) -> str:
    state = SearchPaths(results_dir, name).state
    saved = json.loads(state.read_text()).get("optuna_storage") if state.exists() else None
    return saved or SearchPaths(results_dir, name).optuna_uri


def cmd_sync(args: argparse.Namespace) -> int:
    """Send what a search journaled while its tracking server was unreachable."""
    from ..tracking.journal import Journal
    from ..tracking.sender import Sender, TrackingError

    paths = SearchPaths(Path(args.results_dir).expanduser().resolve(), args.name)
    if not paths.state.exists():
        raise UsageError(f"search {args.name!r} is not in {paths.root} (no "
                         f"{paths.state.relative_to(paths.root)}); allowed: the --name of a "
                         "search run there")
    uri = json.loads(paths.state.read_text())["tracking_uri"]
    sender = Sender(Journal(paths.search), uri, progress=False)
    before = sender.pending
    if not sender.send():
        raise TrackingError(f"MLflow at {uri} is unreachable ({sender.last_error}); "
                            f"{sender.pending} bytes of tracking still wait; run this again "
                            "once it is back")
    print(f"search {args.name}: {before} bytes of tracking sent to {uri}" if before else
          f"search {args.name}: MLflow at {uri} already has everything")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..report import report

    if args.out:
        check_writable(args.out, "--out")
    written = report(args.name, args.results_dir, args.optuna_storage, args.out)
    print(written.summary)
    print(f"report: {written.directory / 'report.html'} (and report.md)")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    import os
    import subprocess

    root = Path(args.results_dir).expanduser().resolve()
    store = root / "mlflow.db"
    if not store.exists():
        raise UsageError(f"--results-dir {args.results_dir!r} holds no MLflow store "
                         "(mlflow.db); run a search first")
    _check_can_listen(args.host, args.port)
    address = f"http://{args.host}:{args.port}"
    print(f"MLflow UI for {store} at {address} (Ctrl-C stops it)", flush=True)
    for name, link in experiment_links(store, address):
        print(f"  experiment {name}: {link}", flush=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
               f"sqlite:///{store}", "--default-artifact-root", (root / "mlartifacts").as_uri(),
               "--host", args.host, "--port", str(args.port), "--workers", "1"]
    return subprocess.call(command, env=env)


def experiment_links(store: Path, address: str) -> list[tuple[str, str]]:
    """Each experiment's runs in the UI's model-training view: MLflow 3.17's UI opens on its
    GenAI overview whatever the experiment's `mlflow.experimentKind` tag says, unless the link
    asks for `workflowType=machine_learning` (checked in a headless Chromium)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            rows = db.execute("select name, experiment_id from experiments where "
                              "lifecycle_stage = 'active' and name != 'Default'").fetchall()
    except sqlite3.Error:
        return []
    return [(name, f"{address}/#/experiments/{id_}/runs?workflowType=machine_learning")
            for name, id_ in rows]


def _check_can_listen(host: str, port: int) -> None:
    """A bad host or a busy port fails here in one line, not in the server's traceback."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UsageError(f"--host {host!r} is invalid; allowed: an address of this machine "
                         "(127.0.0.1, 0.0.0.0, ::1 or a host name)") from None
    family, kind, _, _, address = infos[0]
    with socket.socket(family, kind) as probe:
        try:
            probe.bind(address)
        except OSError as error:
            raise UsageError(f"--port {port} on {host} is unavailable ({error.strerror}); "
                             "allowed: a free port (pass another --port)") from None


