"""Search spaces over residual networks: the Python API, the paper's spaces, scales.

    from spaces import SearchSpace, load_space
    space = load_space("paper-table1", scale="small")      # or "my_spaces.py:my_space"
    plan = space.plan({"shortcut": "exclusive_gate", "gate_bias": -6.0}, scale="small")

Importing `spaces` registers the built-in spaces and loads neither PyTorch nor Optuna: a space
is described and listed in a fraction of a second; Optuna comes in when one is sampled.
"""

from residual.kinds import ONE_MINUS_LAMBDA

from .builtin import suggest_shortcut  # importing builtin registers the paper's spaces
from .recipe import SCHEDULES, Recipe
from .registry import list_spaces, load_space, register_space
from .scales import SCALES, Scale, get_scale
from .space import PARAM_KEYS, SearchSpace, SpaceError, TrialPlan

__all__ = [
    "ONE_MINUS_LAMBDA",
    "PARAM_KEYS",
    "SCALES",
    "SCHEDULES",
    "Recipe",
    "Scale",
    "SearchSpace",
    "SpaceError",
    "TrialPlan",
    "get_scale",
    "list_spaces",
    "load_space",
    "register_space",
    "suggest_shortcut",
]
