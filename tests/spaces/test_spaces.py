"""spaces: the user API with a real Optuna study, the built-in spaces, anchors = paper rows."""

import textwrap

import optuna
import pytest

from residual import NetSpec, UnitSpec
from residual.paper import TABLE1, TABLE2
from spaces import SCALES, Recipe, SearchSpace, SpaceError, get_scale, list_spaces, load_space

USER_SPACE = '''
from spaces import SearchSpace

def define(trial):
    shortcut = trial.suggest_categorical("shortcut", ["identity", "shortcut_gate"])
    if shortcut == "shortcut_gate":
        trial.suggest_float("gate_bias", -10.0, 0.0)
    trial.suggest_categorical("activation", ["original", "full_preact"])

my_space = SearchSpace("my-space", define, fixed={"depth": 14},
                       anchors=[{"shortcut": "identity", "activation": "full_preact"}])
'''


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_spaces.py"
    path.write_text(USER_SPACE)
    return path


def test_user_space_from_a_file_sampled_by_a_real_study(user_file):
    space = load_space(f"{user_file}:my_space", scale="smoke")
    assert space.name == "my-space" and space.source.endswith("my_spaces.py:my_space")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for anchor in space.anchors:
        study.enqueue_trial(anchor)
    seen_gate = seen_identity = False
    for number in range(24):
        trial = study.ask()
        params = space.suggest(trial)
        plan = space.plan(params, "smoke")
        assert plan.net.depth == 14  # fixed beats the scale's depth
        assert plan.recipe == SCALES["smoke"].recipe
        if params["shortcut"] == "shortcut_gate":
            seen_gate = True
            assert -10.0 <= params["gate_bias"] <= 0.0
            assert plan.net.unit.gate_bias == params["gate_bias"]
        else:
            seen_identity = True
            assert "gate_bias" not in params and "gate_bias" not in plan.flat()
        if number == 0:
            assert params == {"shortcut": "identity", "activation": "full_preact"}
        study.tell(trial, 0.5)
    assert seen_gate and seen_identity
    assert len(study.trials) == 24


def test_plan_gives_the_network_and_the_recipe():
    space = load_space("paper-table1", "small")
    plan = space.plan({"shortcut": "exclusive_gate", "gate_bias": -6.0}, "small",
                      num_classes=100)
    assert plan.net == NetSpec(56, UnitSpec("exclusive_gate", "original", gate_bias=-6.0),
                               width=8, num_classes=100)
    assert plan.recipe == SCALES["small"].recipe and plan.recipe.epochs == 10


def test_a_factory_of_scale_is_a_space_too(tmp_path):
    path = tmp_path / "sized.py"
    path.write_text(textwrap.dedent('''
        from spaces import SearchSpace
        def sized(scale):
            return SearchSpace("sized", lambda t: None, fixed={"depth": scale.basic_depth})
    '''))
    assert load_space(f"{path}:sized", "smoke").plan({}, "smoke").net.depth == 8
    assert load_space(f"{path}:sized", "full").plan({}, "full").net.depth == 110


def test_space_by_module_name(tmp_path, monkeypatch, user_file):
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_space("my_spaces:my_space").name == "my-space"


@pytest.mark.parametrize("body, expected", [
    ('trial.suggest_categorical("shortcut", ["identity", "highway"])', "'highway'"),
    ('trial.suggest_categorical("shortcut", ["identity"]); trial.suggest_float("gate_bias", -1, 0)',
     "gate_bias"),
    ('trial.suggest_float("learning_rate", 0.01, 0.1)', "'learning_rate' is unknown"),
    ('return 3', "define returned 3"),
    ('raise KeyError("oops")', "define raised KeyError"),
])
def test_bad_space_fails_early_naming_space_and_value(tmp_path, body, expected):
    path = tmp_path / "bad.py"
    path.write_text(f"from spaces import SearchSpace\ndef define(trial):\n    {body}\n"
                    "bad = SearchSpace('bad-space', define)\n")
    space = load_space(f"{path}:bad")
    with pytest.raises(SpaceError) as info:
        space.check("smoke")
    assert "'bad-space'" in str(info.value) and expected in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("ref, expected", [
    ("paper-table9", "paper-table1 | paper-table2"),
    ("missing.py:space", "does not exist"),
    ("json:nothing_here", "has no attribute 'nothing_here'"),
    ("no_such_module_xyz:space", "failed to import"),
    ("json:__name__", "is a str; allowed: a SearchSpace"),
    ("json:dumps", "calling it with the scale raised TypeError"),
])
def test_bad_space_reference(ref, expected):
    with pytest.raises(SpaceError, match=expected):
        load_space(ref)


def test_bad_anchor_or_fixed_key_is_refused_at_construction():
    with pytest.raises(SpaceError, match="fixed parameter 'lr_max'"):
        SearchSpace("x", lambda t: None, fixed={"lr_max": 1})
    with pytest.raises(SpaceError, match="anchor parameter 'shortcuts'"):
        SearchSpace("x", lambda t: None, anchors=[{"shortcuts": "identity"}])
    with pytest.raises(SpaceError, match="gate_bias"):
        SearchSpace("x", lambda t: None).plan({"shortcut": "identity", "gate_bias": -6})
    with pytest.raises(SpaceError, match="Recipe.epochs=0"):
        SearchSpace("x", lambda t: None).plan({"epochs": 0})


def test_table1_anchors_are_exactly_the_eleven_rows():
    space = load_space("paper-table1", "full")
    plans = [space.plan(anchor, "full") for anchor in space.anchors]
    assert len(plans) == 11
    assert [p.net.unit for p in plans] == [row.unit for row in TABLE1]
    assert all(p.net.depth == 110 and p.net.downsample == "zero_pad" for p in plans)
    assert plans[3].net.unit.branch_scale == 0.5  # lambda = 0.5, s = 1 - lambda


@pytest.mark.parametrize("scale, depths", [("full", (110, 164)), ("small", (56, 56)),
                                           ("smoke", (8, 11))])
def test_table2_anchors_are_the_five_rows_at_both_depths(scale, depths):
    space = load_space("paper-table2", scale)
    plans = [space.plan(anchor, scale) for anchor in space.anchors]
    assert [p.net.unit for p in plans] == [row.unit for row in TABLE2]
    assert [p.net.depth for p in plans] == [depths[0]] * 5 + [depths[1]] * 5
    if scale == "full":
        assert [p.net.depth for p in plans] == [row.depth for row in TABLE2]


def test_anchors_run_first_and_exactly_through_optuna():
    """Enqueued anchors come back from a define-by-run study with exactly their params."""
    space = load_space("paper-table1", "smoke")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    space.enqueue_anchors(study)
    for anchor in space.anchors:
        trial = study.ask()
        assert space.suggest(trial) == anchor
        study.tell(trial, 0.0)


def test_anchor_values_the_define_function_never_asks_for_still_apply():
    def define(trial):
        trial.suggest_categorical("activation", ["original", "full_preact"])

    space = SearchSpace("lr-anchor", define, anchors=[{"activation": "original", "lr": 0.5}])
    study = optuna.create_study()
    space.enqueue_anchors(study)
    params = space.suggest(study.ask())
    assert params == {"activation": "original", "lr": 0.5}
    assert space.plan(params, "smoke").recipe.lr == 0.5


def test_an_anchor_the_define_function_cannot_take_fails_the_check():
    def define(trial):
        trial.suggest_categorical("activation", ["original", "full_preact"])

    space = SearchSpace("bad-anchor", define, anchors=[{"activation": "relu_preact"}])
    with pytest.raises(SpaceError, match="'bad-anchor'.*relu_preact"):
        space.check("smoke")


@pytest.mark.parametrize("name", ["paper-table1", "paper-table2", "paper-joint", "paper-depth",
                                  "paper-rediscover"])
@pytest.mark.parametrize("scale", list(SCALES))
def test_builtin_spaces_check_at_every_scale(name, scale):
    load_space(name, scale).check(scale, samples=32)


def test_list_spaces_describes_the_builtins():
    described = {s.name: s.description for s in list_spaces()}
    assert set(described) == {"paper-table1", "paper-table2", "paper-joint", "paper-depth",
                              "paper-rediscover"}
    assert all(len(d) > 20 for d in described.values())


def test_grid_enumerates_anchors_times_seeds():
    grid = load_space("paper-table2").grid(seeds=3)
    assert len(grid) == 30
    assert grid[:3] == [({"activation": "original", "bottleneck": False}, s) for s in range(3)]
    with pytest.raises(SpaceError, match="no anchors"):
        SearchSpace("x", lambda t: None).grid()


@pytest.mark.parametrize("train_images, epochs", [(45_000, 182), (50_000, 164)])
def test_the_full_scale_schedule_counts_iterations_like_the_paper(train_images, epochs):
    """0.01 for 400 steps, then 0.1, /10 at 32k and 48k, stop at 64k: whatever the training
    set, the 45k search split or all 50k images."""
    recipe = get_scale("full").recipe
    total = recipe.total_steps(train_images)
    assert total == 64_000 and recipe.budget_epochs(train_images) == epochs
    lr = [recipe.lr_at(step, total) for step in range(total)]
    drops = [step for step in range(1, total) if lr[step] < lr[step - 1]]
    assert drops == [32_000, 48_000]
    assert lr[0] == lr[399] == 0.01 and lr[400] == 0.1
    assert lr[32_000] == pytest.approx(0.01) and lr[48_000] == pytest.approx(0.001)


def test_other_schedules_and_budgets():
    cosine = Recipe(epochs=10, iterations=None, schedule="cosine", warmup_iterations=0)
    total = cosine.total_steps(1280)
    assert total == 100 and cosine.lr_at(0, total) == 0.1
    assert cosine.lr_at(50, total) == pytest.approx(0.05)
    onecycle = Recipe(epochs=10, iterations=None, schedule="onecycle", warmup_iterations=0)
    assert onecycle.lr_at(30, 100) == pytest.approx(0.1) and onecycle.lr_at(1, 100) < 0.01
    with pytest.raises(ValueError, match="Recipe.warmup_iterations=400 is invalid"):
        Recipe(epochs=10, iterations=None, schedule="onecycle")  # it ramps up by itself
    with pytest.raises(ValueError, match="exactly one of the two budgets"):
        Recipe(epochs=10)
    with pytest.raises(ValueError, match="Recipe.schedule='linear'"):
        Recipe(schedule="linear")
    # No validation split: a final retraining on every image (a search refuses it, test_results).
    assert Recipe(val_size=0).val_size == 0


def test_paper_rediscover_is_not_handed_the_answer():
    """Its one anchor is the paper's baseline; the answer (identity with full pre-activation)
    must be found; every shortcut kind and placement can be sampled, at a deep bottleneck
    depth per scale."""
    import optuna

    from residual import ACTIVATIONS, SHORTCUTS

    space = load_space("paper-rediscover", "small")
    assert space.anchors == [{"shortcut": "identity", "activation": "original"}]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sampled = {(p["shortcut"], p["activation"]) for p in
               (space.suggest(study.ask()) for _ in range(200))}
    assert {s for s, _ in sampled} == set(SHORTCUTS)
    assert {a for _, a in sampled} == set(ACTIVATIONS)
    for scale, depth in (("small", 56), ("full", 164)):
        net = load_space("paper-rediscover", scale).plan(space.anchors[0], scale).net
        assert net.depth == depth and net.unit.bottleneck
