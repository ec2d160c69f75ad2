"""The `resnet-search` command: train one trial, run a search, list spaces, open the UI.

Every bad input ends the same way: one line on stderr naming the bad value and what is
allowed, exit status 2, and nothing written. A search that stops before it is finished (Ctrl-C,
trials that ended in error) exits with status 3, so a script does not go on as if it had.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from spaces import SCALES, SearchSpace, SpaceError, list_spaces, load_space

from .config import SAMPLERS, SCHEDULERS, SearchConfigError
from .layout import PathError, SearchPaths, check_writable

EXIT_USAGE = 2
EXIT_UNFINISHED = 3


class UsageError(ValueError):
    """Bad input from the command line or a config file."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's two-line usage dump -> one line
        raise UsageError(message)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"--params is not valid JSON ({error.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--params must be a JSON object, got {text!r}")
    return value


def _bounded(kind: type, low: float, strict: bool = False, below: float = math.inf):
    """An argparse type: an int or finite float >= low (> low when strict), < below."""
    noun = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not math.isfinite(value) or value < low or (strict and value == low) \
                or value >= below:
            allowed = f"{noun} {'>' if strict else '>='} {low:g}" if below == math.inf else \
                f"{noun} in [{low:g}, {'2**63' if below == 2**63 else f'{below:g}'})"
            raise argparse.ArgumentTypeError(f"{text} is invalid; allowed: {allowed}")
        return value

    return parse


_positive = _bounded(int, 1)
_non_negative = _bounded(int, 0)
_seed = _bounded(int, 0, below=2**63)  # Optuna's and numpy's seeds are 64-bit
_port = _bounded(int, 1, below=65536)
_positive_float = _bounded(float, 0, strict=True)
_non_negative_float = _bounded(float, 0)

# Store defaults a machine can set once (a cluster's nodes do, deploy/cluster/node-env.sh), so
# that a search run or submitted there finds the cluster's stores without the flags.
ENVIRONMENT = {"tracking_uri": "RESNET_SEARCH_TRACKING_URI", "storage": "RESNET_SEARCH_STORAGE",
               "optuna_storage": "RESNET_SEARCH_OPTUNA_STORAGE"}


def _environment(key: str) -> str | None:
    return os.environ.get(ENVIRONMENT[key]) or None


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=list(SCALES), help="network and recipe size "
                        "(default: small)")
    parser.add_argument("--dataset", help="cifar10 | cifar100 | digits | imagefolder:PATH "
                        "(a tree with train/ and test/, or a .tar.gz of one); default: digits")
    parser.add_argument("--data-dir", help="where torchvision datasets are (or are downloaded)")
    parser.add_argument("--cache-dir", help="decoded-tensor cache (default: "
                        "$RESNET_SEARCH_CACHE or ~/.cache/resnet-search)")


def _add_run_option_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bf16", action="store_true", default=None, help="bf16 autocast on "
                        "CUDA (default fp32: bf16 changes the gates' arithmetic; the shortcut "
                        "stays fp32 under it)")
    parser.add_argument("--stop-at-chance", type=_positive, metavar="EPOCHS", help="stop a "
                        "trial whose training error is still at chance after EPOCHS (saves "
                        "compute; default: train every budget out)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="resnet-search", description="Search residual-unit designs "
                     "(He et al. 2016) with Ray Tune, Optuna and MLflow.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train one trial, resumable",
                                description="Train one configuration of a space; re-running "
                                "with the same --out resumes it.")
    train.add_argument("space", nargs="?", help="built-in space name or path/file.py:name")
    train.add_argument("--config", help="JSON or YAML file with any of: " + ", ".join(
        sorted(TRAIN_CONFIG_KEYS)))
    train.add_argument("--params", type=_json_object, help='JSON object of space parameters, '
                       'e.g. \'{"shortcut": "scaling", "lam": 0.5}\'; missing ones come from '
                       "the first anchor that agrees, then the space's defaults")
    _add_data_flags(train)
    train.add_argument("--epochs", type=_non_negative, help="epoch budget (default: the scale's)")
    train.add_argument("--seed", type=_seed, help="trial seed (default 0)")
    train.add_argument("--out", help="output directory (default: "
                       "results/train/<space>/<network>-seed<N>)")
    train.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    train.add_argument("--threads", type=_positive, help="torch CPU threads")
    train.add_argument("--validate-every", type=_non_negative, metavar="N", help="validate "
                       "every N epochs (default 1; 0: only after the last)")
    train.add_argument("--fresh", action="store_true", help="start over: remove the trial's "
                       "files from --out first (a finished or corrupted trial)")
    _add_run_option_flags(train)

    run = commands.add_parser("run", help="run (or resume) a search",
                              description="Search a space with Ray Tune, Optuna and MLflow; "
                              "re-running the same --name resumes it.")
    run.add_argument("space", help="built-in space name or path/file.py:name")
    run.add_argument("--name", help="search name (default <space>-<scale>); the same name "
                     "resumes")
    _add_data_flags(run)
    run.add_argument("--trials", type=_positive, help="configurations to evaluate (default 12)")
    run.add_argument("--seeds", type=_positive, help="seeds per configuration (default 1)")
    run.add_argument("--sampler", choices=SAMPLERS, help="Optuna sampler (default tpe; grid "
                     "= the space's anchors exactly)")
    run.add_argument("--scheduler", choices=SCHEDULERS, help="early stopping (default asha)")
    run.add_argument("--grace-period", type=_positive, help="ASHA: epochs before a trial can "
                     "be stopped (default: 30%% of the budget, 3 of the small scale's 10)")
    run.add_argument("--reduction-factor", type=_positive, help="ASHA reduction factor "
                     "(default 2)")
    run.add_argument("--epochs", type=_positive, help="epoch budget (default: the scale's)")
    run.add_argument("--validate-every", type=_non_negative, metavar="N", help="also validate "
                     "every N epochs, for learning curves (default 0: only where the objective "
                     "is read, at ASHA's rungs and a trial's last epoch; 1: every epoch, which "
                     "the report's replay over other grace periods needs)")
    run.add_argument("--concurrency", type=_positive, help="trials at once, running or waiting "
                     "for resources (default: a local Ray, as many as this machine's CPUs/GPUs "
                     "hold; a cluster, every trial of the search, so the waiting ones are "
                     "demand Ray's autoscaler scales up for; TPE's constant liar keeps parallel "
                     "suggestions apart)")
    run.add_argument("--cpus-per-trial", type=_positive_float, help="default 1")
    run.add_argument("--gpus-per-trial", type=_non_negative_float, help="fractions share a "
                     "GPU (default 0)")
    run.add_argument("--address", help="join a running Ray cluster from one of its nodes: auto "
                     "| HOST:PORT (its GCS address); ray:// is refused: submit with `ray job "
                     "submit` instead (default: start a local Ray listening on 127.0.0.1, token "
                     "auth on)")
    run.add_argument("--tracking-uri", default=_environment("tracking_uri"), help="MLflow: "
                     "http://HOST:PORT or sqlite:///PATH (default $RESNET_SEARCH_TRACKING_URI, "
                     "else sqlite:///<results-dir>/mlflow.db)")
    run.add_argument("--experiment", help="MLflow experiment name (default resnet-search)")
    run.add_argument("--results-dir", help="MLflow store, Optuna study, Ray results "
                     "(default ./results)")
    run.add_argument("--storage", default=_environment("storage"), help="Ray Tune storage "
                     "(default $RESNET_SEARCH_STORAGE, else <results-dir>/ray); shared (NFS "
                     "path or s3://bucket/prefix) when trials run on several nodes")
    run.add_argument("--optuna-storage", default=_environment("optuna_storage"), help="Optuna "
                     "study storage, any SQLAlchemy URL (default $RESNET_SEARCH_OPTUNA_STORAGE, "
                     "else sqlite:///<results-dir>/optuna.db)")
    run.add_argument("--max-failures", type=_non_negative, help="retries of a trial that "
                     "raised (default 1)")
    run.add_argument("--give-up-errored", action="store_true", default=None, help="make trials "
                     "that end in error (after --max-failures retries) final: Optuna is told "
                     "their configuration from the seeds that finished (FAIL if none did) and "
                     "the search can finish (default: a re-run resumes them)")
    run.add_argument("--seed", type=_seed, help="sampler seed (default 0)")
    run.add_argument("--fresh", action="store_true", default=None, help="start the search "
                     "over: remove its directory, Ray experiment and Optuna study first (its "
                     "MLflow runs stay); without it the same --name resumes, or shows a "
                     "finished search")
    run.add_argument("--screen", action="store_true", default=None, help="skip configurations "
                     "whose direct-path share at initialisation is below half the identity "
                     "shortcut's (predicted to fail; zero cost; default: train every one)")
    run.add_argument("--final-retrain", type=_non_negative, metavar="K", help="after the "
                     "search, retrain the top K configurations on every training image for the "
                     "test error that compares with the paper (default 0)")
    run.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto: cuda in trials "
                     "Ray gives a GPU with --gpus-per-trial, else cpu); cuda without a GPU is "
                     "refused before anything runs")
    _add_run_option_flags(run)
    run.add_argument("-v", "--verbose", action="store_true", default=None, help="Ray's, "
                     "Tune's and MLflow's own output too (default: the search's progress only)")

    ui = commands.add_parser("ui", help="open the MLflow UI of a results directory")
    ui.add_argument("--results-dir", default="results", help="default ./results")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                    "127.0.0.1: this machine only; 0.0.0.0 serves every network, without "
                    "authentication)")
    ui.add_argument("--port", type=_port, default=5000, help="default 5000")

    report = commands.add_parser("report", help="write (again) a search's report: the ranking "
                                 "against the paper, the verdict and why",
                                 description="Read what a search left (no Ray) and write "
                                 "report.md and report.html into its directory.")
    report.add_argument("name", help="the search's name (its --name)")
    report.add_argument("--results-dir", default="results", help="default ./results")
    report.add_argument("--optuna-storage", help="the study's storage (default: the one the "
                        "search used, as its search.json records)")

    sync = commands.add_parser("sync", help="send a search's tracking journal to MLflow",
                               description="Send what a search journaled while its MLflow "
                               "server was unreachable (a running search does this by itself).")
    sync.add_argument("name", help="the search's name (its --name)")
    sync.add_argument("--results-dir", default="results", help="default ./results")

    commands.add_parser("list-spaces", help="the built-in spaces and scales")
    return parser


TRAIN_CONFIG_KEYS = {"space", "params", "scale", "dataset", "data_dir", "cache_dir", "epochs",
                     "seed", "out", "device", "threads", "bf16", "stop_at_chance",
                     "validate_every"}


def _read_config(path: str, allowed: set[str]) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--config {path!r} does not exist")
    text = file.read_text()
    try:
        if file.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as error:
        raise UsageError(f"--config {path!r} cannot be parsed: {error}".splitlines()[0]) \
            from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {path!r} must hold a mapping of keys to values")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UsageError(f"--config key {unknown[0]!r} is unknown; allowed: "
                         f"{', '.join(sorted(allowed))}")
    return {key.replace("-", "_"): value for key, value in data.items()}


def _merge(args: argparse.Namespace, allowed: set[str]) -> dict[str, Any]:
    """Flags over the config file over defaults."""
    values = _read_config(args.config, allowed) if args.config else {}
    for key in allowed:
        flag = getattr(args, key, None)
        if flag is not None:
            values[key] = flag
    if not values.get("space"):
        raise UsageError("a space is required: a built-in name (see `resnet-search "
                         "list-spaces`) or path/file.py:name")
    return values


def complete_params(space: SearchSpace, given: dict[str, Any]) -> dict[str, Any]:
    """The first anchor that agrees with every given value, overridden by the given values."""
    for anchor in space.anchors:
        if all(anchor.get(key, value) == value for key, value in given.items()):
            return {**anchor, **given}
    return dict(given)


def cmd_train(args: argparse.Namespace) -> int:
    from .trial import RunOptions, load_trial_data, run_trial
    from .trial.directory import TrialDir

    values = _merge(args, TRAIN_CONFIG_KEYS)
    scale = values.get("scale", "small")
    space = load_space(values["space"], scale)
    params = complete_params(space, dict(values.get("params") or {}))
    if values.get("epochs") is not None:
        params["epochs"] = values["epochs"]
    plan = space.plan(params, scale, seed=int(values.get("seed", 0)))
    try:  # a config file's values reach here unchecked by the flags' parsers
        options = RunOptions(device=values.get("device", "auto"), threads=values.get("threads"),
                             bf16=bool(values.get("bf16", False)),
                             stop_at_chance=values.get("stop_at_chance"),
                             validate_every=values.get("validate_every", 1))
    except ValueError as error:
        raise UsageError(str(error)) from None
    _check_device(options)
    if values.get("cache_dir"):
        check_writable(values["cache_dir"], "--cache-dir")
    data = load_trial_data(plan.recipe, values.get("dataset", "digits"), values.get("data_dir"),
                           values.get("cache_dir"))
    out = Path(values.get("out") or Path("results", "train", space.name,
                                         f"{plan.net.name}-seed{plan.seed}"))
    check_writable(out, "--out")
    if args.fresh and out.is_dir():
        TrialDir(out).clear()
    resuming = (out / "checkpoint.pt").exists()
    epochs = plan.recipe.budget_epochs(len(data.train_y))
    print(f"{plan.net.name} (seed {plan.seed}, {epochs} epochs, "
          f"{plan.recipe.schedule} lr {plan.recipe.lr:g}) on {data.describe()}")
    print(f"{'resuming' if resuming else 'writing'} {out}", flush=True)

    def progress(m: dict[str, Any]) -> None:
        errors = [f"{split} {100 * m[f'{split}_error']:5.1f}%" for split in ("train", "val", "test")
                  if f"{split}_error" in m]  # val and test where they were measured
        if m["outcome"] == "diverged":
            errors[1:] = ["diverged"]
        print(f"epoch {m['epoch']:3d}/{epochs} loss {m['train_loss']:.4f} "
              f"{' '.join(errors)} lr {m['lr']:.4g} "
              f"{m['epoch_seconds']:.1f}s+{m.get('eval_seconds', 0):.1f}s "
              f"{m['images_per_second']:.0f} img/s", flush=True)

    result = run_trial(plan, data, out, progress, options)
    final = result.metrics
    why = f" ({result.reason})" if result.reason else ""
    test = final.get("test_error", math.nan)
    print(f"outcome {result.outcome}{why}: val error "
          f"{100 * final.get('val_error', math.nan):.2f}%, "
          f"test error {100 * test:.2f}% after {result.epochs} epochs")
    print(f"metrics, checkpoint and plots in {out}")
    return 0


def _check_device(options) -> None:
    from .trial import DeviceError, choose_device

    try:
        choose_device(options.device, flag="--device")
    except DeviceError as error:
        raise UsageError(str(error)) from None


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
    from .config import SearchConfig
    from .ranking import to_text
    from .runner import run

    values = {k: v for k, v in vars(args).items()
              if v is not None and k not in ("command", "space")}
    result = run(args.space, SearchConfig(**values))
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
    from .journal import Journal
    from .sender import Sender, TrackingError

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
    from .report import report

    written = report(args.name, args.results_dir, args.optuna_storage)
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


COMMANDS = {"train": cmd_train, "run": cmd_run, "report": cmd_report, "ui": cmd_ui,
            "sync": cmd_sync, "list-spaces": cmd_list_spaces}


# Errors a user's input causes, by the module that defines them. Heavy modules (torch, Ray,
# MLflow) are imported only by the subcommand that needs them; an error class whose module was
# never imported cannot have been raised.
_LAZY_USER_ERRORS = (("search.trial.data.options", "DataError"),
                     ("search.trial.directory", "TrialDirError"),
                     ("search.sender", "TrackingError"),
                     ("search.report.load", "ReportError"))


def _user_errors() -> tuple[type[Exception], ...]:
    lazy = tuple(getattr(sys.modules[module], name) for module, name in _LAZY_USER_ERRORS
                 if module in sys.modules)
    return (UsageError, SpaceError, SearchConfigError, PathError, *lazy)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except Exception as error:
        if not isinstance(error, _user_errors()):
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"resnet-search: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("resnet-search: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
