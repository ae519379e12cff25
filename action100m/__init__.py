"""Action100M: build, train and evaluate on open-vocabulary video action datasets."""

__version__ = "0.1.0"
