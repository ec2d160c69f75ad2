"""What the residual unit saves by not multiplying F(x) by a gain of exactly 1.0.

    .venv/bin/python -m bench.unit_gain            # 8 rounds of 15 steps each way
    .venv/bin/python -m bench.unit_gain --quick    # 3 rounds

`ResidualUnit.terms` returns `gain * F(x)`, and F(x) itself when the gain is the Python float
1.0 (every shortcut but constant scaling and exclusive gating): the product would be F(x),
computed and differentiated by one more kernel per unit. The script trains the benchmark's
network (ResNet-56, width 8, 16x16, batch 128, one thread) as the unit is and with the
multiply forced back (the shortcut's 1.0 replaced, in this process only, by a 0-dim tensor of
1.0), alternating rounds, and checks that both give the same losses bit for bit:

    unit_gain.with_ms / without_ms    median milliseconds of the thread's CPU per step, with
                                      the multiply forced / as the unit is
    unit_gain.saving                  1 - without / with
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from residual import NetSpec, build_network

from .common import figure, header, note
from .trial_vs_bare import make_plan


@contextlib.contextmanager
def unit_gain_forced(model: torch.nn.Module) -> Iterator[int]:
    """Every unit's shortcut that returns a gain of 1.0 returns it as a 0-dim tensor instead,
    which the unit multiplies; yields how many shortcuts are patched."""
    patched = []
    for module in model.modules():
        shortcut = getattr(module, "shortcut", None)
        if not isinstance(shortcut, torch.nn.Module) or not hasattr(module, "terms"):
            continue
        original = shortcut.forward

        def forward(*args, _original=original, **kwargs):
            h, gain = _original(*args, **kwargs)
            return h, (torch.ones(()) if isinstance(gain, float) and gain == 1.0 else gain)

        shortcut.forward = forward
        patched.append(shortcut)
    try:
        yield len(patched)
    finally:
        for shortcut in patched:
            del shortcut.forward  # the class's forward again


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.unit_gain", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--rounds", type=int, help="rounds each way (8; quick 3)")
    parser.add_argument("--steps", type=int, default=15, help="steps a round")
    args = parser.parse_args(argv)
    header("bench.unit_gain", args.quick, argv)
    torch.set_num_threads(1)
    plan = make_plan("small")
    net = NetSpec.from_dict({**plan.net.to_dict(), "num_classes": 10, "in_channels": 3})
    g = torch.Generator().manual_seed(0)
    images = torch.randn(128, 3, 16, 16, generator=g)
    labels = torch.randint(0, 10, (128,), generator=g)

    def losses(force: bool, steps: int) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = build_network(net)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        out = []
        with unit_gain_forced(model) if force else contextlib.nullcontext():
            for _ in range(steps):
                loss = F.cross_entropy(model(images), labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                out.append(loss.detach())
        return out

    same = all(torch.equal(a, b) for a, b in zip(losses(False, 3), losses(True, 3)))
    torch.manual_seed(0)
    model = build_network(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    with unit_gain_forced(model) as units:
        pass
    note(f"{net.name}: {units} units, batch 128, one thread")

    def round_ms(force: bool) -> float:
        with unit_gain_forced(model) if force else contextlib.nullcontext():
            started = time.thread_time()
            for _ in range(args.steps):
                loss = F.cross_entropy(model(images), labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return 1000 * (time.thread_time() - started) / args.steps

    round_ms(False)  # warm-up
    rounds = args.rounds or (3 if args.quick else 8)
    with_gain, without = [], []
    for _ in range(rounds):
        with_gain.append(round_ms(True))
        without.append(round_ms(False))
    a, b = statistics.median(with_gain), statistics.median(without)
    figure("unit_gain.with_ms", a, "ms per step (thread CPU)")
    figure("unit_gain.without_ms", b, "ms per step (thread CPU)")
    figure("unit_gain.saving", 100 * (1 - b / a), "% of a training step")
    figure("unit_gain.same_losses", int(same), "(1: the same losses bit for bit)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
