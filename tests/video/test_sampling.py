import pytest

from action100m.video.sampling import (
    every_nth_index,
    mid_frame_index,
    time_to_index,
    times_to_indices,
    uniform_indices,
    uniform_times,
)


def test_time_to_index_uses_the_frame_shown_at_that_time():
    assert [time_to_index(t, 10, 30) for t in (0.0, 0.099, 0.1, 0.3, 2.95)] == [0, 0, 1, 3, 29]


def test_times_computed_as_k_over_fps_land_on_frame_k():
    fps = 29.97
    assert times_to_indices([k / fps for k in range(300)], fps, 300) == list(range(300))


def test_time_to_index_clamps_to_the_video():
    assert time_to_index(-1.0, 10, 30) == 0
    assert time_to_index(3.0, 10, 30) == 29


def test_uniform_times_are_bin_centres():
    assert uniform_times(0.0, 4.0, 4) == [0.5, 1.5, 2.5, 3.5]
    with pytest.raises(ValueError, match="count must be positive"):
        uniform_times(0.0, 1.0, 0)


def test_uniform_indices_spread_and_repeat_on_short_spans():
    assert uniform_indices(0.0, 3.2, 10, 32, 8) == [2, 6, 10, 14, 18, 22, 26, 30]
    short = uniform_indices(1.0, 1.2, 10, 30, 4)
    assert short == [10, 10, 11, 11]


def test_mid_frame_and_every_nth():
    assert mid_frame_index(1.0, 2.0, 10, 30) == 15
    assert every_nth_index(10, 4) == [0, 4, 8]
    with pytest.raises(ValueError):
        every_nth_index(10, 0)
