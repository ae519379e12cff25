"""VL-JEPA training: python train.py [experiment=demo] data.shards=OUT [data.scale=0.1] [key=value ...]

Data-scale sweeps: python train.py -m data.scale=0.01,0.1,1.0 (on SLURM: add experiment=scaling_slurm).
Resume a run: the same command with ckpt_path=last.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere

from action100m.errors import Action100MError  # noqa: E402
from action100m.train.config import register_train_configs  # noqa: E402
from action100m.train.run import run_training  # noqa: E402

register_train_configs()


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run_training(cfg)
    except MissingMandatoryValue as err:
        print(f"train: error: {err.full_key}: no value given (add {err.full_key}=...)", file=sys.stderr)
        sys.exit(2)
    except Action100MError as err:
        print(f"train: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
