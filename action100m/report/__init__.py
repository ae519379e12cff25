"""Reports: dataset statistics and cards (scaling curves and W&B reports to come)."""
