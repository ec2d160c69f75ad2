"""The one device decision: what a trial asks for, what Ray gave it and what torch sees, turned
into a device or a one-line `DeviceError`.

The command line's checks (`resnet-search train`, `resnet-search run` before Ray starts) and
the trial itself call `choose_device`, so a device is refused for the same reason, in the same
words, wherever it is refused. Torch is imported only when CUDA is in question: naming a device
costs nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
DEVICES = "auto | cpu | cuda | cuda:N"
"""What a device may be called."""


class DeviceError(ValueError):
    """A device that is invalid or unavailable; the message names it and what is allowed."""


def check_device_name(device: object, flag: str = "device",
                      error: type[ValueError] = DeviceError) -> None:
    """A device name is one of `DEVICES`, or `error` saying so."""
    if not isinstance(device, str) or not DEVICE.fullmatch(device):
        raise error(f"{_named(flag, device)} is invalid; allowed: {DEVICES}")


def unavailable(device: str, why: str, allowed: str = "auto | cpu",
                flag: str = "device") -> str:
    """The words for a device that cannot be had: `device='cuda' is unavailable: <why>`."""
    return f"{_named(flag, device)} is unavailable: {why}; allowed: {allowed}"


def choose_device(requested: str, given_gpus: Sequence | None = None,
                  flag: str = "device") -> str:
    """The device a trial trains on: "cpu", "cuda" or "cuda:N".

    `given_gpus`: the GPUs Ray assigned to the trial (`ray.get_gpu_ids()`), or None outside
    Ray. auto is cuda when the trial was given a GPU (outside Ray: when torch sees one), else
    cpu: Ray does not hide GPUs from a trial given none, and such a trial must not take one.
    cuda when torch sees no CUDA device is refused, never quietly trained on the CPU; cpu
    stays cpu, even in a trial given a GPU. `flag` names the setting in the error
    (`--device` on the command line).
    """
    check_device_name(requested, flag)
    if requested == "cpu" or (requested == "auto" and given_gpus is not None
                              and not given_gpus):
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if requested == "auto" and not given_gpus:  # outside Ray: what torch sees decides
        return "cuda" if available else "cpu"
    requested = "cuda" if requested == "auto" else requested
    if available:
        return requested
    if given_gpus:
        raise DeviceError(unavailable(
            requested, f"Ray assigned this trial GPU(s) {list(given_gpus)} but torch sees no "
            f"CUDA device (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}, "
            f"torch {torch.__version__} built for CUDA {torch.version.cuda}); refusing to "
            "train on the CPU instead", flag=flag))
    raise DeviceError(unavailable(requested, "no CUDA GPU here", flag=flag))


def _named(flag: str, device: object) -> str:
    """`device='cuda'` for a setting, `--device 'cuda'` for a command-line flag."""
    return f"{flag} {device!r}" if flag.startswith("--") else f"{flag}={device!r}"
