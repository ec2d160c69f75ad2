"""Scales: the same search at the paper's size, on a laptop CPU, or in seconds for tests.

A scale supplies every value a space leaves open: network depth (per unit type) and width,
and the recipe. A space's `fixed` values and the sampled parameters override it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .recipe import Recipe


@dataclass(frozen=True)
class Scale:
    name: str
    description: str
    basic_depth: int
    bottleneck_depth: int
    width: int
    recipe: Recipe
    depth_choices: tuple[int, ...]
    """Basic-unit depths a depth axis samples from (paper-joint)."""
    trend_depths: dict[bool, tuple[int, ...]]
    """paper-depth's depths per unit type (bottleneck or not). Each is valid for both unit
    types (depth - 2 divisible by 18), so one categorical depth axis serves both."""

    def depth_for(self, bottleneck: bool) -> int:
        return self.bottleneck_depth if bottleneck else self.basic_depth


SCALES: dict[str, Scale] = {s.name: s for s in (
    Scale("full", "the paper: ResNet-110 / ResNet-164, width 16, 32x32 images, 45k/5k split, "
          "64k iterations (needs GPUs)",
          basic_depth=110, bottleneck_depth=164, width=16, depth_choices=(20, 56, 110),
          trend_depths={False: (20, 56, 110), True: (56, 110, 164)}, recipe=Recipe()),
    # ResNet-56 at width 8 on 16x16 images keeps the paper's failures visible on real
    # CIFAR-10: identity 51% test error, constant scaling (0.5, 1) 70%, exclusive gating with
    # b_g = 0 76%, three seeds each (docs/RESULTS.md, Table 1).
    Scale("small", "laptop CPU, minutes per trial: ResNet-56 / ResNet-56 bottleneck, width 8, "
          "16x16 images, 10k training images, 5k validation images, 10 epochs",
          basic_depth=56, bottleneck_depth=56, width=8, depth_choices=(20, 32, 56),
          # The paper's depths, ResNet-110 and ResNet-164 the deepest: 3, 9 and 18 units per
          # stage for basic units, 6, 12 and 18 for bottleneck ones.
          trend_depths={False: (20, 56, 110), True: (56, 110, 164)},
          # 5k validation images: at 50% error the objective's standard error is 0.7 points,
          # below the ~1 point between Table 2's rows this scale must resolve (1k gave 1.6).
          recipe=Recipe(epochs=10, iterations=None, image_size=16, train_size=10_000,
                        val_size=5000, warmup_iterations=0, schedule="onecycle")),
    Scale("smoke", "seconds per trial, for tests: ResNet-8 / ResNet-11 bottleneck, width 4, "
          "8x8 images, 1000 training images, 3 epochs",
          basic_depth=8, bottleneck_depth=11, width=4, depth_choices=(8, 14),
          trend_depths={False: (20, 38), True: (20, 38)},
          recipe=Recipe(epochs=3, iterations=None, batch_size=64, image_size=8,
                        train_size=1000, val_size=200, warmup_iterations=0)),
)}


def get_scale(name: str | Scale) -> Scale:
    if isinstance(name, Scale):
        return name
    if name not in SCALES:
        raise ValueError(f"scale={name!r} is invalid; allowed: {' | '.join(SCALES)}")
    return SCALES[name]
