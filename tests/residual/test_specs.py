"""UnitSpec / NetSpec: defaults, dict round trips, and one clear ValueError per bad input."""

import math

import pytest

from residual import ACTIVATIONS, SHORTCUTS, NetSpec, UnitSpec
from residual.variants import list_variants


def test_shortcut_defaults_are_the_papers_readings():
    assert (UnitSpec("scaling").lam, UnitSpec("scaling").branch_scale) == (0.5, 1.0)
    assert UnitSpec("exclusive_gate").gate_bias == 0.0
    assert UnitSpec("shortcut_gate", gate_bias=-6).gate_bias == -6.0
    dropout = UnitSpec("dropout")
    assert (dropout.dropout_p, dropout.dropout_rescale) == (0.5, False)
    assert UnitSpec().lam is None and UnitSpec().gate_bias is None


def test_downsample_default_depends_on_unit_type():
    assert NetSpec(110).downsample == "zero_pad"
    assert NetSpec(164, UnitSpec(bottleneck=True)).downsample == "projection"
    assert NetSpec(20, downsample="projection").downsample == "projection"


@pytest.mark.parametrize("bottleneck", [False, True])
def test_every_variant_round_trips_through_a_plain_dict(bottleneck):
    for name, unit in list_variants(bottleneck).items():
        spec = NetSpec(11 if bottleneck else 8, unit, width=4, num_classes=3, in_channels=1)
        data = spec.to_dict()
        assert all(isinstance(v, (int, float, str, bool, dict)) for v in data.values()), name
        assert NetSpec.from_dict(data) == spec, name


def test_to_dict_holds_only_the_parameters_that_apply():
    assert UnitSpec("identity", "full_preact").to_dict() == {
        "shortcut": "identity", "activation": "full_preact", "bottleneck": False}
    assert set(UnitSpec("exclusive_gate", gate_bias=-6).to_dict()) == {
        "shortcut", "activation", "bottleneck", "gate_bias"}


def test_specs_are_frozen():
    with pytest.raises(AttributeError):
        UnitSpec().shortcut = "scaling"


BAD = [
    (lambda: UnitSpec(shortcut="gate"), "shortcut", "'gate'"),
    (lambda: UnitSpec(activation="preact"), "activation", "'preact'"),
    (lambda: UnitSpec("identity", gate_bias=-6.0), "gate_bias", "-6.0"),
    (lambda: UnitSpec("exclusive_gate", lam=0.5), "lam", "0.5"),
    (lambda: UnitSpec("scaling", dropout_p=0.5), "dropout_p", "0.5"),
    (lambda: UnitSpec("conv1x1", branch_scale=0.5), "branch_scale", "0.5"),
    (lambda: UnitSpec("dropout", dropout_p=1.0), "dropout_p", "1.0"),
    (lambda: UnitSpec("dropout", dropout_p=-0.1), "dropout_p", "-0.1"),
    (lambda: UnitSpec("dropout", dropout_rescale="no"), "dropout_rescale", "'no'"),
    (lambda: UnitSpec("scaling", lam=math.nan), "lam", "nan"),
    (lambda: UnitSpec("scaling", branch_scale=math.inf), "branch_scale", "inf"),
    (lambda: UnitSpec("shortcut_gate", gate_bias="-6"), "gate_bias", "'-6'"),
    (lambda: UnitSpec(bottleneck="yes"), "bottleneck", "'yes'"),
    (lambda: NetSpec(30), "depth", "30"),
    (lambda: NetSpec(2), "depth", "2"),
    (lambda: NetSpec(19, UnitSpec(bottleneck=True)), "depth", "19"),
    (lambda: NetSpec("110"), "depth", "'110'"),
    (lambda: NetSpec(20, width=0), "width", "0"),
    (lambda: NetSpec(20, num_classes=1), "num_classes", "1"),
    (lambda: NetSpec(20, in_channels=0), "in_channels", "0"),
    (lambda: NetSpec(20, downsample="pool"), "downsample", "'pool'"),
    (lambda: NetSpec(20, unit={"shortcut": "identity"}), "unit", "shortcut"),
    (lambda: NetSpec.from_dict({"depth": 20, "widht": 8}), "widht", "8"),
    (lambda: UnitSpec.from_dict({"shortcut": "identity", "bias": 1}), "bias", "1"),
]


@pytest.mark.parametrize("make, field, value", BAD, ids=[f"{f}={v}" for _, f, v in BAD])
def test_invalid_spec_names_field_value_and_what_is_allowed(make, field, value):
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message
    assert f".{field}=" in message and value in message and "allowed" in message


def test_error_lists_the_allowed_values():
    with pytest.raises(ValueError, match="identity .* dropout"):
        UnitSpec(shortcut="highway")
    with pytest.raises(ValueError, match="6n\\+2"):
        NetSpec(21)
    with pytest.raises(ValueError, match="9n\\+2"):
        NetSpec(110 + 1, UnitSpec(bottleneck=True))


def test_registries_cover_the_declared_names():
    from residual.kinds import SHORTCUT_KINDS
    from residual.placements import PLACEMENTS
    from residual.shortcuts import SHORTCUT_REGISTRY

    assert tuple(SHORTCUT_REGISTRY) == tuple(SHORTCUT_KINDS) == SHORTCUTS
    assert tuple(PLACEMENTS) == ACTIVATIONS
    assert len(list_variants()) == 30 and len(list_variants(bottleneck=True)) == 30


def test_name_labels_every_variant():
    names = {NetSpec(8, unit).name for unit in list_variants().values()}
    assert len(names) == 30
    assert NetSpec(110, UnitSpec("exclusive_gate", gate_bias=-6)).name == \
        "resnet110-exclusive_gate-bg-6-original"
    assert NetSpec(110, UnitSpec("identity", "full_preact")).name == \
        "resnet110-identity-full_preact"
    assert NetSpec(56, UnitSpec("scaling")).name == "resnet56-scaling-lam0.5-s1-original"
    assert NetSpec(56, UnitSpec("dropout")).name == "resnet56-dropout-p0.5-original"
    assert NetSpec(56, UnitSpec(bottleneck=True)).name == "resnet56-bottleneck-identity-original"


def test_a_parameter_of_another_shortcut_names_its_users():
    with pytest.raises(ValueError) as info:
        UnitSpec("identity", gate_bias=-6.0)
    assert str(info.value) == ("UnitSpec.gate_bias=-6.0 is invalid; allowed: None with "
                               "shortcut='identity' (only used by exclusive_gate | "
                               "shortcut_gate)")


@pytest.mark.parametrize("field", ["shortcut", "activation"])
def test_an_unhashable_name_is_refused_like_any_other(field):
    with pytest.raises(ValueError, match=f"UnitSpec.{field}=\\['x'\\] is invalid"):
        UnitSpec(**{field: ["x"]})
