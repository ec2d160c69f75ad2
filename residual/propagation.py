"""Eq. 4, 5 and 8 made measurable: how signals travel through a network's units.

For one batch and units 0..L-1 (x_l the input of unit l, x_L the output of the last unit):

- forward: ||x_l|| and the ratio ||h(x_l)|| / ||F(x_l)|| of the two addends of y_l;
- backward: ||dE/dx_l||;
- direct-path share: dE/dx_L back-propagated through the shortcuts and after-addition
  operations only (residual branches detached, forward values unchanged), its norm at x_l over
  ||dE/dx_L||. Identity shortcuts with identity f give exactly 1 inside a stage (Eq. 5's "1");
  constant scaling gives prod(lambda) (Eq. 8);
- for gated shortcuts, the mean of 1 - g(x_l): how much of x_l the gate lets through.

Measurements use the network in training mode (batch statistics, as the optimiser sees it)
without changing it: BN running statistics, the train/eval mode and the global RNG are restored,
and no parameter gradient is written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .network import ResNet
from .units import UnitTerms


@dataclass(frozen=True)
class Trace:
    """Every unit's input and the two addends of its y_l, for one forward pass."""

    inputs: list[Tensor]
    terms: list[UnitTerms]
    output: Tensor
    """x_L: the last unit's output, before any final BN+ReLU."""


def trace_units(net: ResNet, images: Tensor, detach_branches: bool = False) -> Trace:
    """Run the units one by one, keeping x_l and (h(x_l), F(x_l)) for every l.

    With `detach_branches` the residual branches are cut from the graph, so gradients flow
    through shortcuts and after-addition operations only: the direct path of Eq. 5.
    """
    x = net.stem(images)
    inputs, terms = [], []
    for unit in net.units:
        inputs.append(x)
        y = unit.terms(x)
        if detach_branches:
            y = UnitTerms(y.shortcut, y.branch.detach())
        terms.append(y)
        x = unit.after_add(y.shortcut + y.branch)
    return Trace(inputs, terms, x)


@dataclass(frozen=True)
class PropagationProfile:
    """Per-unit propagation measurements of one network on one batch (DESIGN.md)."""

    stage: list[int]
    input_norm: list[float]
    grad_norm: list[float]
    shortcut_branch_ratio: list[float]
    direct_path_share: list[float]
    gate_carry: list[float] | None
    loss: float

    @property
    def num_units(self) -> int:
        return len(self.stage)

    def summary(self) -> dict[str, float]:
        """A few scalars worth logging as metrics beside the per-unit plot."""
        out = {
            "loss": self.loss,
            "direct_path_share_first_unit": self.direct_path_share[0],
            "grad_norm_first_over_last": self.grad_norm[0] / max(self.grad_norm[-1], 1e-30),
            "input_norm_last_over_first": self.input_norm[-1] / max(self.input_norm[0], 1e-30),
            "shortcut_branch_ratio_mean": sum(self.shortcut_branch_ratio) / self.num_units,
        }
        if self.gate_carry is not None:
            out["gate_carry_mean"] = sum(self.gate_carry) / self.num_units
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PropagationProfile:
        return cls(**data)


def measure_propagation(net: ResNet, images: Tensor, labels: Tensor,
                        seed: int = 0) -> PropagationProfile:
    """Measure forward, backward and direct-path propagation on one batch (Eq. 4, 5, 8).

    E is the mean cross-entropy of `labels`. `seed` fixes the dropout-shortcut masks, the same
    for the full and the direct-path pass, so both see identical forward values.
    """
    buffers = {name: b.clone() for name, b in net.named_buffers()}
    was_training = net.training
    devices = [images.device] if images.device.type == "cuda" else []
    net.train()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            full = trace_units(net, images)
            loss = F.cross_entropy(net.head(full.output), labels)
            *grads, grad_last = torch.autograd.grad(loss, [*full.inputs, full.output])
            torch.manual_seed(seed)
            direct = trace_units(net, images, detach_branches=True)
            direct_grads = torch.autograd.grad(direct.output, direct.inputs, grad_last,
                                               allow_unused=True)
            gate_carry = _gate_carry(net, full.inputs)
    finally:
        with torch.no_grad():
            for name, buffer in net.named_buffers():
                buffer.copy_(buffers[name])
        net.train(was_training)

    last = grad_last.norm().item()
    return PropagationProfile(
        stage=list(net.stage_of_unit),
        input_norm=[x.norm().item() for x in full.inputs],
        grad_norm=[g.norm().item() for g in grads],
        shortcut_branch_ratio=[t.shortcut.norm().item() / max(t.branch.norm().item(), 1e-30)
                               for t in full.terms],
        direct_path_share=[0.0 if g is None else g.norm().item() / max(last, 1e-30)
                           for g in direct_grads],
        gate_carry=gate_carry,
        loss=loss.item(),
    )


@torch.no_grad()
def _gate_carry(net: ResNet, inputs: list[Tensor]) -> list[float] | None:
    """mean(1 - g(x_l)) per unit, for kinds declared `gated` (their module has `gate(x)`)."""
    if not net.spec.unit.gated:
        return None
    with torch.autocast(inputs[0].device.type, enabled=False):  # as the unit computes g: fp32
        return [(1 - unit.shortcut.gate(x.float())).mean().item()
                for unit, x in zip(net.units, inputs)]


def plot_propagation(profiles: PropagationProfile | dict[str, PropagationProfile],
                     path: str | Path, title: str | None = None) -> Path:
    """Write a PNG with one panel per measurement, units on the x axis.

    Pass several profiles (e.g. {"init": p0, "end": p1}, or one per variant) to overlay them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if isinstance(profiles, PropagationProfile):
        profiles = {"": profiles}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = [
        ("input_norm", "forward: ||x_l||", "log"),
        ("grad_norm", "backward: ||dE/dx_l||", "log"),
        ("shortcut_branch_ratio", "||h(x_l)|| / ||F(x_l)||", "log"),
        ("direct_path_share", "direct-path share (Eq. 5: 1, Eq. 8: prod lambda)", "log"),
    ]
    for ax, (field, label, scale) in zip(axes.flat, panels):
        for name, profile in profiles.items():
            values = [max(v, 1e-12) for v in getattr(profile, field)]
            line, = ax.plot(range(profile.num_units), values, label=name or None)
            if field == "direct_path_share" and profile.gate_carry is not None:
                ax.plot(range(profile.num_units), profile.gate_carry, linestyle="--",
                        color=line.get_color(), label=f"{name} mean(1-g)".strip())
        ax.set_yscale(scale)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # units are whole
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        first = next(iter(profiles.values()))
        for unit, (a, b) in enumerate(zip(first.stage, first.stage[1:]), start=1):
            if a != b:
                ax.axvline(unit - 0.5, color="grey", linestyle=":", linewidth=1)
    for ax in axes[1]:
        ax.set_xlabel("unit l")
    if any(name for name in profiles) or any(p.gate_carry for p in profiles.values()):
        axes[1][1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    # Fixed margins rather than tight_layout, which draws every tick label to measure it.
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.08, top=0.9 if title else 0.95,
                        hspace=0.2, wspace=0.25)
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
