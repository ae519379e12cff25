"""Action100M: build, train and evaluate on open-vocabulary video action datasets."""

from pathlib import Path

__version__ = "0.1.0"
# The YAML configs (Hydra's config groups, the model presets). Here rather than in action100m.config,
# so that reading a model preset needs no Hydra.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
