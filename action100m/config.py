"""Typed configs: dataclass schemas registered in Hydra's ConfigStore, YAML presets under configs/.

The schemas make every config struct-typed, so an unknown key or a value of the wrong type fails at
composition with the key's name, whether it comes from a YAML file or a `key=value` override.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from action100m import CONFIG_DIR
from action100m.errors import ConfigError

# The package's configs/: a link to the checkout's configs/ in the source tree, the files themselves in a wheel.


class VideoBackend(str, Enum):
    decord = "decord"
    pyav = "pyav"
    torchcodec = "torchcodec"


@dataclass
class VideoConfig:
    # decord stays the default although torchcodec measured faster (benchmarks/video_decode.py, 640x360
    # H.264, 2 shared cores; full run: every 4th frame 240 vs 183 frames/s, 1.31x; 32 x 20 spans 402 vs
    # 210, 1.91x): torchcodec needs the system's FFmpeg libraries, which pip cannot install, it loses
    # the first frame of MPEG-2 transport streams (a fallback to decord), and its 10-bit RGB differs
    # from decord's by up to 23 levels, so data built before would change. Where FFmpeg is installed,
    # `video.backend=torchcodec` is the faster choice.
    backend: VideoBackend = VideoBackend.decord
    num_threads: int = 0  # 0: the backend's choice
    seek_threshold: int = 250  # pyav: seek instead of decoding from the start past this frame
    device: str = "cpu"  # torchcodec: "cuda" decodes on the GPU's NVDEC (frames still return to the CPU)
    fallback: bool = True  # the build: a video the backend cannot read is read by the next that can

    def decoder_options(self) -> dict[str, Any]:
        """The options `backend` takes; a fallback backend gets those its own constructor takes."""
        options: dict[str, Any] = {"num_threads": self.num_threads}
        if self.backend is VideoBackend.pyav:
            options["seek_threshold"] = self.seek_threshold
        if self.backend is VideoBackend.torchcodec:
            options["device"] = self.device
        return options


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    videos: int = 200  # SynthActions videos to build the dataset from
    benchmark_clips: int = 280  # zero-shot test clips (28 held-out classes), scored once per run
    validation_clips: int = 270  # zero-shot validation clips (27 other held-out classes), to choose on
    seed: int = 0  # SynthActions' world: the videos and clips
    scales: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0])  # nested data scales
    train_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # one run per scale and seed
    # training commands at once, one torch thread each: on 2 cores the tiny model's small ops keep one
    # core busier than two (two runs at once take 1.7x less time than one after the other)
    parallel_runs: int = 2
    # every run scores the validation split every N steps while it trains (zero_shot.*) and keeps its
    # best checkpoint by that top-1, which the test split then scores; 0: off (the last checkpoint)
    validate_every: int = 200
    build_overrides: list[str] = field(default_factory=list)  # passed to data_build/build.py
    train_overrides: list[str] = field(default_factory=list)  # passed to train.py
    eval_overrides: list[str] = field(default_factory=list)  # passed to eval.py
    wandb_project: str = "action100m-demo"  # the training, eval and report runs (offline; `wandb sync` later)


def register_configs() -> None:
    """Store the schemas; the YAML files name them in their defaults lists. Safe to call again."""
    store = ConfigStore.instance()
    store.store(name="demo_schema", node=DemoConfig)


def _one_line(err: BaseException) -> str:
    for cause in (err, err.__cause__, err.__context__):
        if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
            message = str(cause.msg if hasattr(cause, "msg") else cause).splitlines()[0]
            return f"config key '{cause.full_key}': {message}"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(lines[:2]) if lines else type(err).__name__


def load_config(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose configs/<config_name>.yaml with `key=value` overrides; errors are one-line `ConfigError`s."""
    register_configs()
    if not (CONFIG_DIR / f"{config_name}.yaml").is_file():
        raise ConfigError(f"no config named '{config_name}' in {CONFIG_DIR}")
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_one_line(err)) from err
