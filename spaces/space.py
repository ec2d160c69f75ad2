"""The Python API for search spaces: a name, a define-by-run function, fixed values, anchors.

    from spaces import SearchSpace

    def define(trial):
        shortcut = trial.suggest_categorical("shortcut", ["identity", "shortcut_gate"])
        if shortcut == "shortcut_gate":
            trial.suggest_float("gate_bias", -10.0, 0.0)
        trial.suggest_categorical("activation", ["original", "full_preact"])

    my_space = SearchSpace("my-space", define, fixed={"depth": 56},
                           anchors=[{"shortcut": "identity", "activation": "full_preact"}])

The define function receives an Optuna trial and uses ordinary `if` for conditional axes
(DESIGN.md: Ray's dict spaces cannot say "a gate bias exists only for gated shortcuts"). It may
return a dict of derived values, merged into the sampled parameters. Parameter names are the
fields of `residual.UnitSpec` / `residual.NetSpec` and of `spaces.Recipe`.

Optuna is imported where a study is made (`check`), never at import: describing and listing
spaces stays light (`resnet-search list-spaces` answers without loading Optuna or PyTorch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from residual import SHORTCUT_KINDS, NetSpec, UnitSpec

from .recipe import RECIPE_FIELDS, Recipe
from .scales import Scale, get_scale

if TYPE_CHECKING:  # Optuna loads when a space is sampled, not when one is listed
    import optuna

UNIT_KEYS = tuple(f.name for f in fields(UnitSpec))
NET_KEYS = ("depth", "width", "downsample")
PARAM_KEYS = UNIT_KEYS + NET_KEYS + RECIPE_FIELDS
ANCHOR_ATTR = "anchor"
"""The Optuna user attribute that carries an enqueued anchor's full parameters."""

Define = Callable[["optuna.trial.BaseTrial"], "Mapping[str, Any] | None"]


class SpaceError(ValueError):
    """A search space that cannot produce valid networks; the message names space and value."""


@dataclass(frozen=True)
class TrialPlan:
    """What one trial trains: the network, the recipe, the seed, and the params they came from."""

    net: NetSpec
    recipe: Recipe
    seed: int
    params: dict[str, Any] = field(default_factory=dict)

    def flat(self) -> dict[str, Any]:
        """Spec and recipe as one flat dict for logging; inapplicable unit fields are absent."""
        net = self.net.to_dict()
        unit = net.pop("unit")
        return {**unit, **net, **self.recipe.to_dict(), "seed": self.seed}


class SearchSpace:
    """A named, conditional search space over residual networks and their training recipe."""

    def __init__(self, name: str, define: Define, fixed: Mapping[str, Any] | None = None,
                 anchors: Iterable[Mapping[str, Any]] | None = None, description: str = ""):
        if not isinstance(name, str) or not name.strip():
            raise SpaceError(f"SearchSpace name={name!r} is invalid; allowed: a non-empty string")
        if not callable(define):
            raise SpaceError(f"space {name!r}: define={define!r} is not callable; allowed: a "
                             "function taking an optuna trial")
        self.name = name
        self.define = define
        self.fixed = dict(fixed or {})
        self.anchors = [dict(a) for a in anchors or ()]
        self.description = description or (define.__doc__ or "").strip().split("\n")[0]
        self.source = ""
        """Where the space was loaded from (`file.py:name` or `module:name`), for the record."""
        for key in self.fixed:
            self._check_key(key, "fixed")
        for anchor in self.anchors:
            for key in anchor:
                self._check_key(key, "anchor")

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, fixed={self.fixed}, anchors={len(self.anchors)})"

    def _check_key(self, key: str, where: str) -> None:
        if key not in PARAM_KEYS:
            raise SpaceError(f"space {self.name!r}: {where} parameter {key!r} is unknown; "
                             f"allowed: {', '.join(PARAM_KEYS)}")

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Run the define function on an Optuna trial: the sampled (and derived) params.

        For an anchor (see `enqueue_anchors`) every value of the anchor applies, also those
        the define function never asks for (an anchor's own learning rate, say): Optuna alone
        would drop them silently.
        """
        try:
            derived = self.define(trial)
        except SpaceError:
            raise
        except Exception as error:  # the user's define function failed
            raise SpaceError(f"space {self.name!r}: define raised "
                             f"{type(error).__name__}: {error}") from None
        if derived is not None and not isinstance(derived, Mapping):
            raise SpaceError(f"space {self.name!r}: define returned {derived!r}; allowed: None "
                             "or a dict of derived parameters")
        params = {**trial.params, **(derived or {})}
        params.update({k: v for k, v in trial.user_attrs.get(ANCHOR_ATTR, {}).items()
                       if k not in params})
        for key in params:
            self._check_key(key, "sampled")
        return params

    def enqueue_anchors(self, study: optuna.Study) -> None:
        """Queue the anchors in `study`, in order, so they are the first trials asked."""
        for anchor in self.anchors:
            study.enqueue_trial(anchor, user_attrs={ANCHOR_ATTR: anchor}, skip_if_exists=True)

    def plan(self, params: Mapping[str, Any], scale: str | Scale = "small", seed: int = 0,
             num_classes: int = 10, in_channels: int = 3) -> TrialPlan:
        """Resolve params over the space's fixed values over the scale's defaults: the
        `residual.NetSpec` and training `Recipe` a flat sampled dict means.

        The shortcut's kind reads its own search values back (`"1-lambda"` becomes the number
        s = 1 - lambda, Table 1). Invalid combinations raise the `residual` validation error (a
        ValueError naming the field), prefixed with the space's name.
        """
        scale = get_scale(scale)
        values = {**self.fixed, **params}
        for key in values:
            self._check_key(key, "given")
        try:
            unit_values = {k: values[k] for k in UNIT_KEYS if k in values}
            shortcut = unit_values.get("shortcut", UnitSpec.shortcut)
            kind = SHORTCUT_KINDS.get(shortcut) if isinstance(shortcut, str) else None
            if kind is not None:  # an unknown shortcut is for UnitSpec to name
                unit_values = kind.from_search_params(unit_values)
            unit = UnitSpec(**unit_values)
            net = NetSpec(depth=values.get("depth", scale.depth_for(unit.bottleneck)), unit=unit,
                          width=values.get("width", scale.width),
                          downsample=values.get("downsample"),
                          num_classes=num_classes, in_channels=in_channels)
            given = {k: values[k] for k in RECIPE_FIELDS if k in values}
            # A budget given in one unit replaces the scale's budget in the other.
            for unit, other in (("epochs", "iterations"), ("iterations", "epochs")):
                if unit in given and other not in given:
                    given[other] = None
            recipe_values = {**scale.recipe.to_dict(), **given}
            recipe = Recipe(**recipe_values)
        except (TypeError, ValueError) as error:
            raise SpaceError(f"space {self.name!r}: {error}") from None
        return TrialPlan(net, recipe, seed, dict(params))

    def check(self, scale: str | Scale = "small", samples: int = 16) -> None:
        """Fail early, with the space's name, if an anchor or a sample is not a valid network.

        In a throwaway in-memory Optuna study the anchors go through the define function
        first (an anchor value it cannot take, such as a choice it does not offer, fails
        here), then `samples` random trials, so a wrong choice in a rarely taken branch is
        likely to show before any trial trains.
        """
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        self.enqueue_anchors(study)  # anchors go through the define function too
        for _ in range(len(self.anchors) + samples):
            trial = study.ask()
            self.plan(self.suggest(trial), scale)
            study.tell(trial, 0.0)

    def grid(self, seeds: int = 1) -> list[tuple[dict[str, Any], int]]:
        """Every anchor with every seed, in order: exact table reproduction."""
        if not self.anchors:
            raise SpaceError(f"space {self.name!r} has no anchors; grid mode enumerates anchors")
        return [(dict(anchor), seed) for anchor in self.anchors for seed in range(seeds)]
