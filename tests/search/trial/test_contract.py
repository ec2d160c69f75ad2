"""The contract between a search and a trial: `TrialConfig` round-trips through the plain dict
Ray carries, reads the dicts of searches begun before it, and turns every bad value into one
line; the device decision refuses what cannot run, in the same words everywhere."""

import pytest

from search.trial import (
    DeviceError,
    RunOptions,
    TrialConfig,
    TrialConfigError,
    TrialContext,
    choose_device,
    configuration_key,
    run_key,
)
from spaces import load_space

SPACE = load_space("paper-table1", "smoke")


def _config(seed: int = 1, stage: str = "search") -> TrialConfig:
    plan = SPACE.plan(SPACE.anchors[1], "smoke", seed=seed)
    options = RunOptions(device="cpu", threads=2, validate_every=0, validate_at=frozenset({2}),
                         channels_last=False)
    context = TrialContext(work_root="/w/trials", space_source="paper-table1", scale="smoke",
                           options=options)
    return TrialConfig(plan, 7, configuration_key(plan), context, params=SPACE.anchors[1],
                       stage=stage)


def test_a_trial_config_round_trips_through_the_dict_ray_carries():
    config = _config()
    data = config.to_dict()
    assert TrialConfig.from_dict(data) == config
    assert data["run_key"] == "0007-s1" and data["validate_at"] == [2]
    assert str(config.directory) == "/w/trials/0007-s1"
    assert _config(stage="final").run_key == "final-0007-s1"


def test_the_dict_of_a_search_begun_before_the_contract_resumes_as_it_ran():
    legacy = _config().to_dict()
    for key in ("stage", "validate_every", "validate_at"):  # what those searches lacked
        del legacy[key]
    config = TrialConfig.from_dict(legacy)
    assert config.stage == "search" and config.run_key == "0007-s1"
    assert config.context.options.validate_every == 1  # they validated every epoch


def test_the_configuration_key_is_the_one_stored_studies_hold():
    # Computed by the searcher before the contract existed: a resumed study finds its own.
    keys = [configuration_key(SPACE.plan(a, "smoke", seed=3)) for a in SPACE.anchors[:3]]
    assert keys == ["ce26c62ceec21e92", "a8b989fa00d61dda", "a0bec5656c306917"]
    assert run_key(12, 0) == "0012-s0" and run_key(12, 0, "final") == "final-0012-s0"


BAD = [
    ({"stage": "later"}, "stage='later' is invalid; allowed: search | race | final"),
    ({"params": None}, "params=None is invalid; allowed: a dict"),
    ({"validate_at": 5}, "validate_at=5 is invalid; allowed: epochs, integers >= 1"),
    ({"optuna_trial": -1}, "optuna_trial=-1 is invalid; allowed: an integer >= 0"),
    ({"device": "tpu"}, "device='tpu' is invalid; allowed: auto | cpu | cuda | cuda:N"),
    ({"validate_every": "2"}, "validate_every='2' is invalid"),
    ({"threads": 0}, "threads=0 is invalid; allowed: an integer >= 1"),
    ({"bf16": "yes"}, "bf16='yes' is invalid; allowed: True | False"),
    ({"seed": 5}, "seed=5 disagrees with its plan's 1"),
    ({"dataset": None}, "dataset=None is invalid; allowed: a string"),
    ({"plan": {"recipe": {}}}, "plan has no 'net'"),
    ({"work_root": None, "drop": "work_root"}, "has no 'work_root'; it was not made by a "
     "resnet-search searcher (start the search over with --fresh)"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[m[:30] for _, m in BAD])
def test_a_bad_value_is_one_line_that_names_it(change, message):
    data = {**_config().to_dict(), **change}
    data.pop(change.get("drop"), None)
    data.pop("drop", None)
    with pytest.raises(TrialConfigError) as error:
        TrialConfig.from_dict(data)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_device_decision():
    assert choose_device("cpu", given_gpus=[0]) == "cpu"  # asked for: never overridden
    assert choose_device("auto", given_gpus=[]) == "cpu"  # Ray gave this trial no GPU
    with pytest.raises(DeviceError, match=r"^--device 'tpu' is invalid; allowed: auto \| cpu"):
        choose_device("tpu", flag="--device")
    import torch

    if torch.cuda.is_available():
        assert choose_device("auto") == "cuda" and choose_device("cuda:0") == "cuda:0"
        return
    assert choose_device("auto") == "cpu"
    with pytest.raises(DeviceError, match=r"^device='cuda' is unavailable: no CUDA GPU here; "
                                          r"allowed: auto \| cpu$"):
        choose_device("cuda")
    with pytest.raises(DeviceError, match="Ray assigned this trial GPU.s. .0. but torch sees no"):
        choose_device("auto", given_gpus=[0])
