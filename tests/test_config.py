import pytest

from action100m.config import VideoBackend, load_config
from action100m.errors import ConfigError


def test_defaults_and_overrides():
    cfg = load_config("demo")
    assert cfg.video.backend == VideoBackend.decord and cfg.out == "runs/demo"
    cfg = load_config("demo", ["video=pyav", "video.seek_threshold=10", "out=/tmp/x"])
    assert (cfg.video.backend, cfg.video.seek_threshold, cfg.out) == (VideoBackend.pyav, 10, "/tmp/x")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("video.backnd=pyav", r"config key 'video.backnd': Key 'backnd' not in 'VideoConfig'"),
        ("video.backend=ffmpeg", r"config key 'video.backend': Invalid value 'ffmpeg'"),
        ("video.num_threads=many", r"config key 'video.num_threads': Value 'many'"),
        ("outt=/tmp", r"config key 'outt'"),
        ("video=nope", r"Could not find 'video/nope'"),
    ],
)
def test_bad_overrides_fail_with_the_key_on_one_line(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config("demo", [override])
    assert "\n" not in str(err.value)


def test_unknown_config_name():
    with pytest.raises(ConfigError, match="no config named 'trian'"):
        load_config("trian")
