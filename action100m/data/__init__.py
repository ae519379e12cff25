"""Training data: shards at a data scale → nodes with a text from the field mix → decoded clips."""

from action100m.data.config import DataConfig, ResampleConfig
from action100m.data.module import ActionDataModule, DataPlan, plan_data

__all__ = ["ActionDataModule", "DataConfig", "DataPlan", "ResampleConfig", "plan_data"]
