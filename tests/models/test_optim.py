import pytest

from action100m.errors import ConfigError
from action100m.models.optim import OptimConfig, lr_lambda


def test_the_learning_rate_is_constant_by_default_with_optional_warmup_and_cosine():
    constant = lr_lambda(OptimConfig(), max_steps=-1)
    assert [constant(step) for step in (0, 10, 10_000)] == [1.0, 1.0, 1.0]
    warm = lr_lambda(OptimConfig(warmup_steps=4), max_steps=-1)
    assert [warm(step) for step in (0, 3, 4, 100)] == [0.25, 1.0, 1.0, 1.0]
    cosine = lr_lambda(OptimConfig(schedule="cosine", warmup_steps=10, min_lr_ratio=0.1), max_steps=110)
    assert (
        cosine(10) == pytest.approx(1.0)
        and cosine(60) == pytest.approx(0.55)
        and cosine(110) == pytest.approx(0.1)
    )


def test_bad_schedules_are_config_errors():
    with pytest.raises(ConfigError, match="unknown schedule 'linear'"):
        lr_lambda(OptimConfig(schedule="linear"), 10)
    with pytest.raises(ConfigError, match="cosine needs a step budget"):
        lr_lambda(OptimConfig(schedule="cosine"), -1)
