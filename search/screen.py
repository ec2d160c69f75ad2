"""A zero-cost screen: the propagation at initialisation predicts which configurations fail.

The paper explains its failures by Eq. 5 and 8: a shortcut that scales, gates or drops the
signal multiplies the direct path from one unit to the next, so after a stage of units only a
product of factors below 1 of it is left. That is measurable before any training, in well under
a second on a CPU: the first unit's direct-path share, for the configuration and for the
identity shortcut with the same placement and depth.

`--screen` (SearchConfig.screen) skips a configuration whose share is below `SHARE_RATIO` of the
identity one's: its Optuna trial is PRUNED without intermediate values (the worst a sampler
sees), marked `screened`, and listed in the search's `screened.csv`; nothing trains. It is
opt-in because a prediction is not a measurement; its precision is measured in every report
(the "zero-cost screen" table) and on Table 1 in docs/RESULTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from residual import NetSpec, UnitSpec

SHARE_RATIO = 0.5
"""Predicted to fail: a direct-path share below half of the identity shortcut's (more than
half of Eq. 5's direct path lost in the first unit's stage)."""
PROBE_IMAGES = 16


@dataclass(frozen=True)
class Screening:
    share: float
    """The first unit's direct-path share at initialisation (Eq. 5/8)."""
    identity_share: float
    """The same for the identity shortcut with the same placement, depth and width."""

    @property
    def relative(self) -> float:
        return self.share / self.identity_share if self.identity_share > 0 else float("nan")

    @property
    def predicts_fail(self) -> bool:
        return self.relative < SHARE_RATIO

    def describe(self) -> str:
        return (f"direct-path share {self.share:.3g} at initialisation, {self.relative:.3g} of "
                f"the identity shortcut's {self.identity_share:.3g}")


def screen(net: NetSpec, image_size: int, seed: int = 0) -> Screening:
    """Measure the configuration and its identity-shortcut twin on one random batch."""
    identity = replace(net, unit=UnitSpec("identity", net.unit.activation,
                                          bottleneck=net.unit.bottleneck))
    return Screening(_first_share(net, image_size, seed), _first_share(identity, image_size, seed))


def _first_share(net: NetSpec, image_size: int, seed: int) -> float:
    import torch

    from residual import build_network
    from residual.propagation import measure_propagation

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # the driver's own random state stays as it was
        torch.manual_seed(seed)
        model = build_network(net)
        images = torch.randn(PROBE_IMAGES, net.in_channels, image_size, image_size,
                             generator=generator)
        labels = torch.randint(0, net.num_classes, (PROBE_IMAGES,), generator=generator)
        return float(measure_propagation(model, images, labels).direct_path_share[0])
