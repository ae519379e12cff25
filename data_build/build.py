"""The dataset build: raw videos → Action100M WebDataset shards (segment → caption → refine).

    python data_build/build.py input=MANIFEST output=OUT [build=demo|tiny|paper] [key=value ...]

Videos are sorted by a hash of their id and cut into shards of `samples_per_shard`; worker
`partition.index` of `partition.count` builds the shards whose index ≡ partition.index. Each stage's
output is cached per video under OUT/work, keyed by the hash of the config it depends on, so a killed
build resumes mid-video and `stages=[refine]` redoes refinement with a new model from cached trees and
captions. A shard is written (temp → rename) and then marked done; a rerun skips done shards.

Cache keys cover what a stage outputs, never where or how fast it is served, so a build whose model
servers moved (slurm/serve_vllm.sh came back on other nodes) continues with every cache. A shard with
retryable backend failures (its server down, overloaded or too slow, after the backends' own retries
and circuit breakers) is not written: the build ends with exit status 3 and one line naming the
servers and counts, and a rerun requests exactly what failed. Content failures (a reply that never
became a valid answer) are recorded in the shard's failures, which is then done.

This file is the command line; the build itself is data_build/config.py (the schema), inputs.py
(the input and its shards), cache.py (what a rerun may skip) and run.py (the run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from action100m.config import CONFIG_DIR  # noqa: E402
from action100m.errors import Action100MError  # noqa: E402

# Through data_build.config, this registers build_schema, the schema configs/build.yaml composes on.
from data_build.run import RETRY_EXIT, PendingFailures, run_build  # noqa: E402


# The package's configs (not a path beside this file): an installed wheel has no checkout around it.
@hydra.main(config_path=str(CONFIG_DIR), config_name="build", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        summary = run_build(OmegaConf.to_object(cfg))
    except PendingFailures as err:
        print(f"build: error: {err}", file=sys.stderr)
        sys.exit(RETRY_EXIT)
    except MissingMandatoryValue as err:
        print(f"build: error: {err.full_key}: no value given (add {err.full_key}=...)", file=sys.stderr)
        sys.exit(2)
    # OSError: what the machine refused (a full disk, an output that is a file); it names the path
    except (Action100MError, OSError) as err:
        print(f"build: error: {err}", file=sys.stderr)
        sys.exit(2)
    if cfg.strict and summary["failures"]:
        sys.exit(1)


def configured_backends(keys: list[str], overrides: list[str]) -> list[str]:
    """The config keys among `keys` that hold a server-backed (kind: openai) backend in the build config
    of `overrides` (build=demo has none: its captions are synthetic and its refinement direct; build=paper
    captions with local models). slurm/build.sh asks, so that it hands a server's address only to
    backends that take one."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("build", overrides=overrides)
    return [key for key in keys if OmegaConf.select(cfg, f"{key}.kind", default=None) == "openai"]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--configured-backends"]:
        # python data_build/build.py --configured-backends KEY,KEY,... [override ...]: one key a line
        if len(sys.argv) < 3:
            sys.exit("build: error: --configured-backends needs a comma-separated list of config keys")
        try:
            for key in configured_backends(sys.argv[2].split(","), sys.argv[3:]):
                print(key)
        except Exception as err:  # a bad override: one line, as the builder's own errors
            sys.exit(f"build: error: {type(err).__name__}: {str(err).splitlines()[0]}")
        sys.exit(0)
    main()
