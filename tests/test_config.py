import pytest

from aknet_edge.config import PRESET_NAMES, ClipSpec, ModelConfig, preset
from aknet_edge.errors import AknetError, ConfigError


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_round_trip_json(name):
    cfg = preset(name)
    again = ModelConfig.from_json(cfg.to_json())
    assert again == cfg
    assert isinstance(again.clip, ClipSpec) and isinstance(again.labels, tuple)


def test_preset_shapes_match_design_card():
    paper = preset("r50-paper")
    assert paper.grid == (8, 28, 28) and paper.num_points == 6272 and paper.num_keypoints == 1568
    tiny = preset("demo-tiny")
    assert tiny.grid == (8, 14, 14) and tiny.num_points == 1568 and tiny.num_keypoints == 392
    assert len(tiny.labels) == tiny.num_classes == 11


@pytest.mark.parametrize(
    "field, value",
    [
        ("keep_ratio", 0.0),
        ("keep_ratio", 1.5),
        ("keypoints", 1569),
        ("cut", 4),
        ("cut", 0),
        ("criterion", "zigzag"),
        ("shift", "sideways"),
        ("backbone", "resnet9000"),
        ("scorer", "random"),
        ("compact", "max"),
    ],
)
def test_invalid_configs_name_the_field(field, value):
    with pytest.raises(ConfigError) as info:
        preset("demo-tiny", **{field: value})
    assert field in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, AknetError)


def test_unknown_field_and_bad_json_are_config_errors():
    with pytest.raises(ConfigError, match="unknown config fields"):
        ModelConfig.from_dict({"keep": 0.5})
    with pytest.raises(ConfigError, match="not valid JSON"):
        ModelConfig.from_json("{oops")
    with pytest.raises(ConfigError, match="preset"):
        preset("r101")
    with pytest.raises(ConfigError, match="clip.size"):
        ClipSpec(size=100)
