"""`resnet-search train`: one configuration of a space, trained by hand, resumable.

The values (flags over a config file over defaults) become the trial layer's own contract,
a `TrialContext` (`search/trial/contract.py`), which checks them; the device is decided by the
trials' own `choose_device`.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from spaces import SearchSpace, load_space

from ..layout import check_writable
from .parser import TRAIN_CONFIG_KEYS, UsageError


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
    from ..trial import (
        DeviceError,
        TrialConfigError,
        TrialContext,
        TrialDir,
        choose_device,
        load_trial_data,
        run_trial,
    )
    from ..trial.contract import CHECKPOINT

    values = _merge(args, TRAIN_CONFIG_KEYS)
    scale = values.get("scale", "small")
    space = load_space(values["space"], scale)
    params = complete_params(space, dict(values.get("params") or {}))
    if values.get("epochs") is not None:
        params["epochs"] = values["epochs"]
    plan = space.plan(params, scale, seed=int(values.get("seed", 0)))
    out = Path(values.get("out") or Path("results", "train", space.name,
                                         f"{plan.net.name}-seed{plan.seed}"))
    try:  # a config file's values reach here unchecked by the flags' parsers
        choose_device(values.get("device", "auto"), flag="--device")
        context = TrialContext.from_dict({**values, "work_root": str(out),
                                          "space_source": space.source, "scale": scale})
    except (TrialConfigError, DeviceError) as error:
        raise UsageError(str(error)) from None
    if context.cache_dir:
        check_writable(context.cache_dir, "--cache-dir")
    data = load_trial_data(plan.recipe, context.dataset, context.data_dir, context.cache_dir)
    check_writable(out, "--out")
    if args.fresh and out.is_dir():
        TrialDir(out).clear()
    resuming = (out / CHECKPOINT).exists()
    epochs = plan.recipe.budget_epochs(len(data.train_y))
    print(f"{plan.net.name} (seed {plan.seed}, {epochs} epochs, "
          f"{plan.recipe.schedule} lr {plan.recipe.lr:g}) on {data.describe()}")
    print(f"{'resuming' if resuming else 'writing'} {out}", flush=True)
    result = run_trial(plan, data, out, _progress_line(epochs), context.options)
    final = result.metrics
    why = f" ({result.reason})" if result.reason else ""
    print(f"outcome {result.outcome}{why}: val error "
          f"{100 * final.get('val_error', math.nan):.2f}%, "
          f"test error {100 * final.get('test_error', math.nan):.2f}% after {result.epochs} "
          "epochs")
    print(f"metrics, checkpoint and plots in {out}")
    return 0


def _progress_line(epochs: int):
    """A line per epoch: the errors that were measured, the learning rate, the time."""

    def progress(m: dict[str, Any]) -> None:
        errors = [f"{split} {100 * m[f'{split}_error']:5.1f}%" for split in ("train", "val", "test")
                  if f"{split}_error" in m]  # val and test where they were measured
        if m["outcome"] == "diverged":
            errors[1:] = ["diverged"]
        print(f"epoch {m['epoch']:3d}/{epochs} loss {m['train_loss']:.4f} "
              f"{' '.join(errors)} lr {m['lr']:.4g} "
              f"{m['epoch_seconds']:.1f}s+{m.get('eval_seconds', 0):.1f}s "
              f"{m['images_per_second']:.0f} img/s", flush=True)

    return progress
