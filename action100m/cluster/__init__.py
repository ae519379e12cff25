"""SLURM: helpers that submit and watch jobs (slurm.py) and `make cluster-smoke` (smoke.py)."""
