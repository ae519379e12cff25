"""The training run (run.py, its config in config.py) and the data it reads (data/)."""
