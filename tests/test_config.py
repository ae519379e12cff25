import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from action100m.config import VideoBackend, VideoConfig, load_config
from action100m.errors import ConfigError


def test_defaults_and_overrides():
    cfg = load_config("demo")
    assert cfg.out == "runs/demo" and list(cfg.scales) == [0.1, 0.3, 1.0]
    cfg = load_config(
        "demo", ["videos=12", "scales=[0.5,1.0]", "out=/tmp/x", "train_overrides=['trainer.max_steps=3']"]
    )
    assert (cfg.videos, list(cfg.scales), cfg.out) == (12, [0.5, 1.0], "/tmp/x")
    assert list(cfg.train_overrides) == ["trainer.max_steps=3"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("vidoes=3", r"config key 'vidoes'"),
        ("videos=many", r"config key 'videos': Value 'many'"),
        ("scales=[a]", r"config key 'scales\[0\]'"),
    ],
)
def test_bad_overrides_fail_with_the_key_on_one_line(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config("demo", [override])
    assert "\n" not in str(err.value)


def test_enum_values_are_checked():
    with pytest.raises(ValidationError, match="Invalid value 'ffmpeg'"):
        OmegaConf.merge(OmegaConf.structured(VideoConfig), {"backend": "ffmpeg"})
    assert (
        OmegaConf.merge(OmegaConf.structured(VideoConfig), {"backend": "pyav"}).backend == VideoBackend.pyav
    )


def test_unknown_config_name():
    with pytest.raises(ConfigError, match="no config named 'trian'"):
        load_config("trian")
