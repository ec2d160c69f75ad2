"""The command line's grammar: `build_parser`, and the types that check each value as it is
parsed. A flag that sets a `SearchConfig` field takes its help from the field's documentation
(`config.field_docs`), so the two never disagree."""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import MISSING, fields
from typing import Any

from spaces import SCALES

from ..config import SAMPLERS, SCHEDULERS, SearchConfig, field_docs
from ..trial.device import DEVICES


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


positive = _bounded(int, 1)
non_negative = _bounded(int, 0)
seed = _bounded(int, 0, below=2**63)  # Optuna's and numpy's seeds are 64-bit
port = _bounded(int, 1, below=65536)
positive_float = _bounded(float, 0, strict=True)
speedup = _bounded(float, 1)
non_negative_float = _bounded(float, 0)

# Store defaults a machine can set once (a cluster's nodes do, deploy/cluster/node-env.sh), so
# that a search run or submitted there finds the cluster's stores without the flags.
ENVIRONMENT = {"tracking_uri": "RESNET_SEARCH_TRACKING_URI", "storage": "RESNET_SEARCH_STORAGE",
               "optuna_storage": "RESNET_SEARCH_OPTUNA_STORAGE"}

TRAIN_CONFIG_KEYS = {"space", "params", "scale", "dataset", "data_dir", "cache_dir", "epochs",
                     "seed", "out", "device", "threads", "bf16", "stop_at_chance",
                     "validate_every"}
"""What `resnet-search train --config FILE` may set."""


class _Fields:
    """Adds the flag of a `SearchConfig` field, documented by the field itself."""

    def __init__(self) -> None:
        self.docs = field_docs(SearchConfig)
        self.defaults = {f.name: f.default for f in fields(SearchConfig)
                         if f.default is not MISSING}

    def add(self, parser: argparse.ArgumentParser, name: str, *flags: str, note: str = "",
            **kwargs: Any) -> None:
        """`--name-with-dashes`, its help the field's documentation (its default appended
        where the documentation does not give it) and `note`; None by default, so that an
        absent flag leaves the field's default to `SearchConfig`."""
        doc = self.docs.get(name, "")
        default = self.defaults.get(name)
        if default is not None and default is not False and "default" not in doc.lower():
            doc += f" Default: {default}."
        text = f"{doc} {note}".strip().replace("%", "%%")  # argparse %-formats its help
        if name in ENVIRONMENT:
            kwargs["default"] = os.environ.get(ENVIRONMENT[name]) or None
            text += f" ${ENVIRONMENT[name]} sets the default."
        parser.add_argument(*(flags or (f"--{name.replace('_', '-')}",)), help=text, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="resnet-search", description="Search residual-unit designs "
                     "(He et al. 2016) with Ray Tune, Optuna and MLflow.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    config = _Fields()
    _train_parser(commands, config)
    _run_parser(commands, config)
    _other_parsers(commands)
    return parser


def _shared_flags(parser: argparse.ArgumentParser, config: _Fields) -> None:
    """What `train` and `run` both set, with the same meaning."""
    config.add(parser, "scale", choices=list(SCALES))
    config.add(parser, "dataset")
    config.add(parser, "data_dir")
    config.add(parser, "cache_dir")
    config.add(parser, "bf16", action="store_true", default=None)
    config.add(parser, "stop_at_chance", type=positive, metavar="EPOCHS")


def _train_parser(commands, config: _Fields) -> None:
    train = commands.add_parser("train", help="train one trial, resumable",
                                description="Train one configuration of a space; re-running "
                                "with the same --out resumes it.")
    train.add_argument("space", nargs="?", help="built-in space name or path/file.py:name")
    train.add_argument("--config", help="JSON or YAML file with any of: " + ", ".join(
        sorted(TRAIN_CONFIG_KEYS)))
    train.add_argument("--params", type=_json_object, help='JSON object of space parameters, '
                       'e.g. \'{"shortcut": "scaling", "lam": 0.5}\'; missing ones come from '
                       "the first anchor that agrees, then the space's defaults")
    _shared_flags(train, config)
    train.add_argument("--device", metavar=DEVICES.replace(" ", ""), help="default auto: cuda "
                       "when torch sees a GPU, else cpu; cuda without one is refused")
    train.add_argument("--epochs", type=non_negative, help="epoch budget (default: the scale's)")
    train.add_argument("--seed", type=seed, help="trial seed (default 0)")
    train.add_argument("--out", help="output directory (default: "
                       "results/train/<space>/<network>-seed<N>)")
    train.add_argument("--threads", type=positive, help="torch CPU threads")
    train.add_argument("--validate-every", type=non_negative, metavar="N", help="validate "
                       "every N epochs (default 1; 0: only after the last)")
    train.add_argument("--fresh", action="store_true", help="start over: remove the trial's "
                       "files from --out first (a finished or corrupted trial)")


def _run_parser(commands, config: _Fields) -> None:
    run = commands.add_parser("run", help="run (or resume) a search",
                              description="Search a space with Ray Tune, Optuna and MLflow; "
                              "re-running the same --name resumes it.")
    run.add_argument("space", help="built-in space name or path/file.py:name")
    config.add(run, "name")
    _shared_flags(run, config)
    config.add(run, "device", metavar=DEVICES.replace(" ", ""))
    config.add(run, "trials", type=positive)
    config.add(run, "seeds", type=positive)
    config.add(run, "sampler", choices=SAMPLERS)
    config.add(run, "scheduler", choices=SCHEDULERS)
    config.add(run, "grace_period", type=positive)
    config.add(run, "reduction_factor", type=positive)
    config.add(run, "epochs", type=positive)
    config.add(run, "validate_every", type=non_negative, metavar="N")
    config.add(run, "concurrency", type=positive)
    config.add(run, "cpus_per_trial", type=positive_float)
    config.add(run, "gpus_per_trial", type=non_negative_float)
    config.add(run, "address")
    config.add(run, "tracking_uri")
    config.add(run, "experiment")
    config.add(run, "results_dir")
    config.add(run, "storage")
    config.add(run, "optuna_storage")
    config.add(run, "wait_for_resources", type=positive_float, metavar="MINUTES")
    config.add(run, "max_failures", type=non_negative)
    config.add(run, "give_up_errored", action="store_true", default=None)
    config.add(run, "seed", type=seed)
    config.add(run, "fresh", action="store_true", default=None)
    config.add(run, "screen", action="store_true", default=None)
    config.add(run, "final_retrain", type=non_negative, metavar="K")
    config.add(run, "race", type=non_negative, metavar="K")
    config.add(run, "race_seeds", type=positive, metavar="S")
    config.add(run, "simulate", action="store_true", default=None)
    config.add(run, "simulate_epoch_seconds", type=positive_float, metavar="S")
    config.add(run, "simulate_speedup", type=speedup, metavar="X")
    config.add(run, "verbose", "-v", "--verbose", action="store_true", default=None)


def _other_parsers(commands) -> None:
    ui = commands.add_parser("ui", help="open the MLflow UI of a results directory")
    ui.add_argument("--results-dir", default="results", help="default ./results")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                    "127.0.0.1: this machine only; 0.0.0.0 serves every network, without "
                    "authentication)")
    ui.add_argument("--port", type=port, default=5000, help="default 5000")

    report = commands.add_parser("report", help="write (again) a search's report: the ranking "
                                 "against the paper, the verdict and why",
                                 description="Read what a search left (no Ray) and write "
                                 "report.md and report.html into its directory.")
    report.add_argument("name", help="the search's name (its --name)")
    report.add_argument("--results-dir", default="results", help="default ./results")
    report.add_argument("--optuna-storage", help="the study's storage (default: the one the "
                        "search used, as its search.json records)")
    report.add_argument("--out", metavar="DIR", help="write report.md, report.html and the "
                        "plots into DIR instead of the search's directory (its records stay "
                        "as they are: committed ones, say)")

    sync = commands.add_parser("sync", help="send a search's tracking journal to MLflow",
                               description="Send what a search journaled while its MLflow "
                               "server was unreachable (a running search does this by itself).")
    sync.add_argument("name", help="the search's name (its --name)")
    sync.add_argument("--results-dir", default="results", help="default ./results")

    commands.add_parser("list-spaces", help="the built-in spaces and scales")
