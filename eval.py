"""Zero-shot evaluation on the action benchmarks; the logic is in action100m/eval/run.py.

python eval.py zero_shot=NAME [checkpoint=PATH | encoder=clip encoder.model=ID] [key=value ...]
python eval.py zero_shot=NAME zero_shot.root=DIR check_only=true
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere

from action100m.errors import Action100MError  # noqa: E402
from action100m.eval.config import register_eval_configs  # noqa: E402
from action100m.eval.run import run_eval  # noqa: E402

register_eval_configs()


@hydra.main(config_path="configs", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run_eval(OmegaConf.to_object(cfg))
    except Action100MError as err:
        print(f"eval: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
