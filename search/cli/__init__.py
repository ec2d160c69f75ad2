"""The `resnet-search` command: train one trial, run a search, list spaces, open the UI.

    parser.py     the grammar: every flag, its type, its help (from `SearchConfig`'s fields)
    train.py      `train`: one configuration by hand, through the trial layer's contract
    commands.py   `run`, `report`, `sync`, `ui`, `list-spaces`

Every bad input ends the same way: one line on stderr naming the bad value and what is
allowed, exit status 2, and nothing written. A search that stops before it is finished (Ctrl-C,
trials that ended in error) exits with status 3, so a script does not go on as if it had.
"""

from __future__ import annotations

import sys

from spaces import SpaceError

from ..config import SearchConfigError
from ..layout import PathError
from ..trial import DeviceError, TrialConfigError
from .commands import (
    EXIT_UNFINISHED,
    cmd_list_spaces,
    cmd_report,
    cmd_run,
    cmd_sync,
    cmd_ui,
    experiment_links,
)
from .parser import UsageError, build_parser
from .train import cmd_train, complete_params

EXIT_USAGE = 2

__all__ = ["EXIT_UNFINISHED", "EXIT_USAGE", "UsageError", "build_parser", "complete_params",
           "experiment_links", "main"]

COMMANDS = {"train": cmd_train, "run": cmd_run, "report": cmd_report, "ui": cmd_ui,
            "sync": cmd_sync, "list-spaces": cmd_list_spaces}

# Errors a user's input causes, by the module that defines them. Heavy modules (torch, Ray,
# MLflow) are imported only by the subcommand that needs them; an error class whose module was
# never imported cannot have been raised.
LAZY_USER_ERRORS = (("search.trial.data.options", "DataError"),
                    ("search.trial.directory", "TrialDirError"),
                    ("search.tracking.sender", "TrackingError"),
                    ("search.report.load", "ReportError"))


def user_errors() -> tuple[type[Exception], ...]:
    lazy = tuple(getattr(sys.modules[module], name) for module, name in LAZY_USER_ERRORS
                 if module in sys.modules)
    return (UsageError, SpaceError, SearchConfigError, PathError, DeviceError,
            TrialConfigError, *lazy)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except Exception as error:
        if not isinstance(error, user_errors()):
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"resnet-search: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("resnet-search: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
