"""The learning-curve model behind a simulated trial (`simulated.py`, `--simulate`).

Fitted to this project's own measured small-scale results (docs/RESULTS.md: CIFAR-10, 16x16
images, 10k training and 5k validation images, width 8, 10 epochs of the one-cycle schedule,
validation error in %, three seeds per row). Errors are percentages here, fractions outside.

**Final error** of a configuration (the mean over seeds), in points, in two additive parts:

    F = base(unit type, placement, depth) + shortcut(kind, parameters, depth)

    base = A[type, cell] + K[type, group] * r + D[type, placement] * u
        u = units / units_ref, r = sqrt(u) - 1; units_ref = 27 (basic), 18 (bottleneck): the
        small scale's ResNet-56 of that type.
        cell: original, relu_preact or full_preact, each with its own level A; group: "pre" for
        placements whose branch opens with BN/ReLU (relu_preact, full_preact), "post" otherwise,
        each with its own depth slope K (in sqrt(units): the measured rows are linear in it).
        bn_after_add and relu_before_add were measured at one depth only: the original unit's
        level and slope plus a cost D that accumulates over the units (times u).
    shortcut = a_path * lost + a_branch * small + a_conv * [conv1x1]
        lost = min(1, -log10(C) / 2): the orders of magnitude of the direct path lost, full
        at a share of 1% or less, where C = c ** units is Eq. 8's product over the units of the
        shortcut's factor c: 1 identity, lambda scaling, 1 - sigmoid(b_g) gates, 1 - p dropout.
        small = min(1, log10(1 / b) / 3): a branch that starts small, b = s (scaling) or
        sigmoid(b_g) (exclusive gating), where BN ends the branch and so holds its scale there
        (original, relu_before_add, relu_preact); 0 elsewhere.

Fitted by ordinary least squares (`fit`) on the 32 three-seed rows of `MEASURED`: Table 2's ten
rows, the depth search's twelve further rows (basic 20/110, bottleneck 110/164; the original
unit's rows and the gaps), and Table 1's ten shortcut rows (the identity row is Table 2's).
`COEFFICIENTS` holds the result, rounded; a test checks that `fit()` still gives them. The
functional forms were chosen with all of RESULTS.md in view, the joint search's rows included;
the coefficients never saw the held-out rows.

**Seed-to-seed spread.** A seed's final error is F + sd(F) * z, z ~ N(0, 1) drawn from the
configuration and seed: sd is the pooled (root-mean-square) seed standard deviation of the
measured rows (95% half-width / 2.48, three seeds), 1.10 points below 55% error and 2.78 above
65%, linear between (`SPREAD`).

**Curve.** Validation error after epoch e of a budget of E epochs, t = e / E:

    err(t) = F_seed + (chance - F_seed) * (1 - t) ** p,   p = P * exp(S * z_rate)

from chance (90% for 10 classes) to the seed's final error. P = 1.9: 52% of the way is left
after the one-cycle ramp (t = 0.3), 17% at t = 0.6, the midpoints of where the joint search's
eleven full-budget configurations stood at its rungs (68.1-74.0% at epoch 3, 54.0-60.0% at
epoch 6, ending at 49.0-51.9%: P = 1.83 and 1.96 there). S = 0.15: their spread at those rungs
(range / 3.17, the expected range of 11 normal draws, through d err / d p: 0.14 and 0.16), so
that configurations cross on the way as measured ones do. Each measured point gets the
validation split's sampling noise, sqrt(err (1 - err) / val_size); the test error at the end
that of 10k test images; the training error is the noiseless curve, ending 0.82 points lower
(the joint rows' mean gap); the training loss is ln(classes) * train error / chance (a label,
not a fit). Nothing diverges.

**Held-out error** (`tests/search/test_simulate_model.py` computes and prints these):
- the joint TPE search's eleven full-budget rows (`JOINT`: one seed each, shortcut x placement
  x depth 20-56 combinations; two are configurations the fit saw, run again): mean absolute
  error 0.79 points, Spearman rank correlation +0.46. The rows span 3 points and one seed's
  spread is 1.1 points: no better in absolute error than an oracle constant (their own median:
  0.79), the order is what the model adds;
- depth extrapolation, fitting without the six deepest rows (basic 110, bottleneck 164) and
  predicting them: mean absolute error 0.96 points, Spearman +0.94 (largest miss: the basic
  original ResNet-110, 56.8 predicted, 54.35 measured);
- the curves' order: Kendall tau between the order after epoch e and the final order of Table
  1's eleven rows, e = 1..9, is 0.66 0.75 0.77 0.80 0.83 0.85 0.87 0.89 0.90 simulated (mean
  over 100 seeds) against 0.64 0.71 0.77 0.82 0.71 0.82 0.75 0.85 0.93 measured (RESULTS.md,
  one seed; not used by the fit): early orders are as unsettled as measured, later ones more
  settled.

What it knows: the unit (shortcut and its parameters, placement, basic or bottleneck) and the
depth. Width, image size, dataset and the recipe's values (learning rate, ...) change nothing;
every scale gets the small scale's 10-epoch errors spread over its own budget. A shortcut kind
or placement registered by a user is read as the identity (c = 1) or as the original (full
pre-activation when its branch opens with BN/ReLU).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from residual import PLACEMENTS, NetSpec, UnitSpec

LOST_SHARE = 0.01
"""A direct-path share at or below which the path counts as lost entirely (`lost`)."""
SPREAD = ((55.0, 1.10), (65.0, 2.78))
"""(final error %, seed sd in points): pooled over MEASURED below 55% and above 65%."""
RATE, RATE_SPREAD = 1.9, 0.15
"""P and S of the curve's exponent p = P * exp(S * z)."""
TRAIN_GAP = 0.82
"""Points by which the training error ends below the validation error (joint rows' mean)."""
TEST_IMAGES = 10_000

COEFFICIENTS = {
    "A.basic.original": 52.01, "A.basic.relu_preact": 49.96, "A.basic.full_preact": 50.46,
    "A.bottleneck.original": 54.83, "A.bottleneck.relu_preact": 52.06,
    "A.bottleneck.full_preact": 50.35,
    "K.basic.post": 7.14, "K.basic.pre": 1.49, "K.bottleneck.post": 10.25,
    "K.bottleneck.pre": 4.21,
    "D.basic.bn_after_add": 14.51, "D.basic.relu_before_add": 4.49,
    "D.bottleneck.bn_after_add": -1.47, "D.bottleneck.relu_before_add": 0.97,
    "a_path": 20.96, "a_branch": 16.46, "a_conv": 13.47,
}
"""`fit()` on MEASURED, in points of validation error, rounded to 0.01."""

_T1 = {"depth": 56, "activation": "original"}
MEASURED: tuple[tuple[dict[str, Any], float, float | None], ...] = (
    # (configuration, validation error %, 95% half-width over 3 seeds or None where not given)
    # Table 2 (identity shortcuts, depth 56)
    ({"depth": 56, "activation": "original"}, 51.39, 5.32),
    ({"depth": 56, "activation": "bn_after_add"}, 66.52, 4.10),
    ({"depth": 56, "activation": "relu_before_add"}, 56.50, 2.05),
    ({"depth": 56, "activation": "relu_preact"}, 50.22, 1.79),
    ({"depth": 56, "activation": "full_preact"}, 50.75, 1.13),
    ({"depth": 56, "bottleneck": True, "activation": "original"}, 54.77, 1.12),
    ({"depth": 56, "bottleneck": True, "activation": "bn_after_add"}, 53.36, 1.21),
    ({"depth": 56, "bottleneck": True, "activation": "relu_before_add"}, 55.80, 5.32),
    ({"depth": 56, "bottleneck": True, "activation": "relu_preact"}, 51.75, 1.37),
    ({"depth": 56, "bottleneck": True, "activation": "full_preact"}, 50.83, 2.52),
    # paper-depth: the original unit's rows, pre-activation's from the gap table
    ({"depth": 20, "activation": "original"}, 48.39, 1.85),
    ({"depth": 110, "activation": "original"}, 54.35, None),
    ({"depth": 20, "activation": "full_preact"}, 49.72, None),
    ({"depth": 110, "activation": "full_preact"}, 50.91, None),
    ({"depth": 20, "activation": "relu_preact"}, 49.18, None),
    ({"depth": 110, "activation": "relu_preact"}, 50.47, None),
    ({"depth": 110, "bottleneck": True, "activation": "original"}, 59.20, None),
    ({"depth": 164, "bottleneck": True, "activation": "original"}, 62.26, None),
    ({"depth": 110, "bottleneck": True, "activation": "full_preact"}, 51.95, None),
    ({"depth": 164, "bottleneck": True, "activation": "full_preact"}, 53.09, None),
    ({"depth": 110, "bottleneck": True, "activation": "relu_preact"}, 53.54, None),
    ({"depth": 164, "bottleneck": True, "activation": "relu_preact"}, 55.71, None),
    # Table 1 (the original unit, depth 56)
    ({**_T1, "shortcut": "scaling", "lam": 0.0, "branch_scale": 1.0}, 75.34, 8.68),
    ({**_T1, "shortcut": "scaling", "lam": 0.5, "branch_scale": 1.0}, 71.31, 5.35),
    ({**_T1, "shortcut": "scaling", "lam": 0.5, "branch_scale": 0.5}, 69.64, 6.05),
    ({**_T1, "shortcut": "exclusive_gate", "gate_bias": 0.0}, 76.97, 15.72),
    ({**_T1, "shortcut": "exclusive_gate", "gate_bias": -6.0}, 67.28, 2.46),
    ({**_T1, "shortcut": "exclusive_gate", "gate_bias": -7.0}, 68.27, 0.38),
    ({**_T1, "shortcut": "shortcut_gate", "gate_bias": 0.0}, 70.09, 6.90),
    ({**_T1, "shortcut": "shortcut_gate", "gate_bias": -6.0}, 53.85, 1.77),
    ({**_T1, "shortcut": "conv1x1"}, 65.48, 3.82),
    ({**_T1, "shortcut": "dropout", "dropout_p": 0.5}, 77.75, 2.39),
)
"""The three-seed rows `COEFFICIENTS` are fitted on (docs/RESULTS.md)."""

JOINT: tuple[tuple[dict[str, Any], float], ...] = (
    # paper-joint, TPE + ASHA, one seed: its eleven full-budget rows. Held out.
    ({"depth": 20, "shortcut": "shortcut_gate", "gate_bias": -5.80852,
      "activation": "full_preact"}, 48.98),
    ({"depth": 20, "shortcut": "scaling", "lam": 0.981684, "branch_scale": 1.0,
      "activation": "relu_before_add"}, 49.64),
    ({"depth": 20, "shortcut": "scaling", "lam": 0.99284, "branch_scale": 0.00716006,
      "activation": "full_preact"}, 49.68),
    ({"depth": 20, "shortcut": "scaling", "lam": 0.988172, "branch_scale": 0.0118285,
      "activation": "full_preact"}, 49.78),
    ({"depth": 20, "shortcut": "shortcut_gate", "gate_bias": -6.21684,
      "activation": "full_preact"}, 49.90),
    ({"depth": 20, "shortcut": "scaling", "lam": 0.968943, "branch_scale": 0.0310572,
      "activation": "full_preact"}, 49.94),
    ({"depth": 20, "activation": "full_preact"}, 50.36),
    ({"depth": 56, "activation": "full_preact"}, 51.24),
    ({"depth": 56, "activation": "original"}, 51.32),
    ({"depth": 56, "shortcut": "exclusive_gate", "gate_bias": -7.647,
      "activation": "full_preact"}, 51.76),
    ({"depth": 32, "activation": "relu_before_add"}, 51.94),
)
"""Measured rows the fit never sees: its held-out error (module docstring)."""

JOINT_RUNGS = ((3, 68.1, 74.0), (6, 54.0, 60.0))
"""(epoch, lowest, highest validation error %) of JOINT's configurations at the rungs."""


def net_of(row: dict[str, Any]) -> NetSpec:
    """A row of MEASURED or JOINT as the network it names."""
    unit = {k: v for k, v in row.items() if k != "depth"}
    return NetSpec(depth=row["depth"], unit=UnitSpec(**unit), width=8)


def direct_path(unit: UnitSpec, units: int) -> float:
    """Eq. 8's product over the units of the shortcut's factor: C = c ** units."""
    kind = unit.shortcut
    if kind == "scaling":
        factor = unit.lam
    elif kind in ("exclusive_gate", "shortcut_gate"):
        factor = 1.0 - _sigmoid(unit.gate_bias)
    elif kind == "dropout":
        factor = 1.0 - unit.dropout_p
    else:  # identity, conv1x1 (its own term), a kind the model does not know
        factor = 1.0
    return factor ** units


def features(net: NetSpec) -> dict[str, float]:
    """The model's inputs for a network (module docstring), by coefficient name."""
    unit = net.unit
    kind = "bottleneck" if unit.bottleneck else "basic"
    u = net.num_units / (18 if unit.bottleneck else 27)
    placement = PLACEMENTS[unit.activation]
    group = "pre" if placement.preactivation else "post"
    out = {f"K.{kind}.{group}": math.sqrt(u) - 1.0}
    if unit.activation in ("bn_after_add", "relu_before_add"):
        out[f"A.{kind}.original"] = 1.0
        out[f"D.{kind}.{unit.activation}"] = u
    elif unit.activation in ("original", "relu_preact", "full_preact"):
        out[f"A.{kind}.{unit.activation}"] = 1.0
    else:  # a registered placement: the nearest of the measured ones
        out[f"A.{kind}.{'full_preact' if group == 'pre' else 'original'}"] = 1.0
    carry = direct_path(unit, net.num_units)
    out["a_path"] = 1.0 if carry <= LOST_SHARE else -math.log10(carry) / 2.0
    branch = (unit.branch_scale if unit.shortcut == "scaling" else
              _sigmoid(unit.gate_bias) if unit.shortcut == "exclusive_gate" else 1.0)
    if branch < 1 and "bn" in placement.branch_end:
        out["a_branch"] = 1.0 if branch <= 1e-3 else math.log10(1.0 / branch) / 3.0
    out["a_conv"] = 1.0 if unit.shortcut == "conv1x1" else 0.0
    return out


def predict(net: NetSpec, coefficients: dict[str, float] | None = None) -> float:
    """The final validation error in % (mean over seeds) the model gives `net`."""
    coefficients = COEFFICIENTS if coefficients is None else coefficients
    return sum(coefficients.get(name, 0.0) * value for name, value in features(net).items())


def fit(rows=MEASURED) -> dict[str, float]:
    """Least squares of `features` on the rows' errors: COEFFICIENTS, unrounded. A coefficient
    no row informs is 0 (numpy's minimum-norm solution)."""
    import numpy as np

    table = [features(net_of(config)) for config, *_ in rows]
    names = sorted(COEFFICIENTS)
    design = np.array([[f.get(name, 0.0) for name in names] for f in table])
    errors = np.array([row[1] for row in rows])
    solution = np.linalg.lstsq(design, errors, rcond=None)[0]
    return dict(zip(names, (float(x) for x in solution)))


def seed_sd(error: float) -> float:
    """The seed-to-seed standard deviation (points) at a final error (%): SPREAD."""
    (low, sd_low), (high, sd_high) = SPREAD
    share = min(1.0, max(0.0, (error - low) / (high - low)))
    return sd_low + share * (sd_high - sd_low)


@dataclass(frozen=True)
class Curve:
    """One seed run's simulated learning curve (module docstring); errors as fractions."""

    final: float
    """This seed's error at the end of the budget."""
    rate: float
    """The exponent p."""
    chance: float
    epochs: int
    val_size: int
    key: str
    """What the noise is drawn from: the configuration and seed."""

    def expected(self, epoch: int) -> float:
        """The noiseless validation error after `epoch`."""
        left = (1.0 - min(epoch, self.epochs) / self.epochs) ** self.rate
        return self.final + (self.chance - self.final) * left

    def val_error(self, epoch: int) -> float:
        return self._measured(self.expected(epoch), self.val_size, f"val/{epoch}")

    def test_error(self) -> float:
        return self._measured(self.final, TEST_IMAGES, "test")

    def train_error(self, epoch: int) -> float:
        return max(0.0, self.expected(epoch) - TRAIN_GAP / 100 * epoch / self.epochs)

    def _measured(self, error: float, images: int, what: str) -> float:
        noise = random.Random(f"{self.key}/{what}").gauss(0.0, 1.0)
        spread = math.sqrt(error * (1.0 - error) / max(images, 1))
        return min(1.0, max(0.0, error + spread * noise))


def curve(net: NetSpec, epochs: int, val_size: int, key: str, seed: int) -> Curve:
    """The curve of seed `seed` of the configuration `key` (its `configuration_key`)."""
    draws = random.Random(f"{key}/seed{seed}")
    chance = 1.0 - 1.0 / net.num_classes
    mean = predict(net)
    final = mean + seed_sd(mean) * draws.gauss(0.0, 1.0)
    final = min(100 * chance - 1.0, max(1.0, final)) / 100
    rate = RATE * math.exp(RATE_SPREAD * draws.gauss(0.0, 1.0))
    return Curve(final, rate, chance, epochs, val_size, f"{key}/seed{seed}")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))
