"""Training data: shards at a data scale → nodes with a text from the field mix → decoded clips."""

from importlib import import_module
from typing import Any

from action100m.train.data.config import DataConfig, ResampleConfig
from action100m.train.data.plan import DataPlan, plan_data

__all__ = ["ActionDataModule", "DataConfig", "DataPlan", "ResampleConfig", "plan_data"]


def __getattr__(name: str) -> Any:
    # The data module needs Lightning and torch; a process that only plans (or reads configs) does not.
    if name == "ActionDataModule":
        return import_module("action100m.train.data.module").ActionDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
