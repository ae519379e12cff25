"""The build presets are made of the stage presets: `build=paper` refines as configs/refine/paper.yaml."""

from __future__ import annotations

from dataclasses import asdict

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from action100m.config import CONFIG_DIR
from data_build.config import BuildConfig
from data_build.refine import refine_config


def test_build_paper_takes_the_paper_refine_preset():
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        build = compose("build", overrides=["input=m.jsonl", "output=out", "build=paper"])
        preset = compose(config_name=None, overrides=["+refine=paper"]).refine
    built: BuildConfig = OmegaConf.to_object(build)
    assert asdict(built.refine) == asdict(refine_config(preset))
    assert built.refine.keep_round_answers.value == "hash" and built.refine.llm.model == "openai/gpt-oss-120b"
    assert built.refine.llm.http.extra_body == {"reasoning_effort": "low"}
