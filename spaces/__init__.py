"""Search spaces over residual networks: the Python API, the paper's spaces, scales.

    from spaces import SearchSpace, load_space
    space = load_space("paper-table1", scale="small")      # or "my_spaces.py:my_space"
    plan = space.plan({"shortcut": "exclusive_gate", "gate_bias": -6.0}, scale="small")
"""

from .recipe import SCHEDULES, Recipe
from .registry import list_spaces, load_space, register_space
from .scales import SCALES, Scale, get_scale
from .space import ONE_MINUS_LAMBDA, PARAM_KEYS, SearchSpace, SpaceError, TrialPlan

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
]
