"""run_training end to end on a small demo shard set: runs, checkpoints, exact resume, the budget, and
the bad inputs that must fail before training starts."""

import json
import logging
import os
import re
import shutil

import pytest
import torch
from hydra import compose, initialize_config_dir

from action100m.config import CONFIG_DIR
from action100m.errors import ConfigError
from action100m.models.config import model_preset
from action100m.models.vljepa import VLJEPA
from action100m.train.config import register_train_configs
from action100m.train.data.module import plan_data
from action100m.train.run import (
    as_train_config,
    batch_plan,
    checkpoint_size,
    effective_settings,
    run_name,
    run_training,
    wandb_settings,
)
from tests.train.data.shardset import demo_shards

FAST = [
    "trainer.progress_bar=false",
    "trainer.log_every_n_steps=1",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.epoch_batches=4",
    "data.shuffle_buffer=20",
    "logger=csv",
    "optim.lr=1e-3",
]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return demo_shards(tmp_path_factory)


def compose_train(*overrides):
    register_train_configs()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def config(shards, out, *overrides):
    return as_train_config(compose_train(f"data.shards={shards}", f"output_dir={out}", *FAST, *overrides))


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def lightning_log():
    """What Lightning logs (it does not propagate to the root logger)."""
    handler, logger = Records(), logging.getLogger("lightning.pytorch")
    level, logger.level = logger.level, logging.DEBUG
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_run_is_named_after_its_data_keeps_its_last_and_best_checkpoints_that_load_safely(
    shards, tmp_path, lightning_log
):
    summary = run_training(
        config(
            shards,
            tmp_path,
            "name=t",
            "data.scale=0.5",
            "trainer.max_steps=7",
            "checkpoint.every_n_steps=2",
            f"data.val_shards={shards}",
            "data.val_batches=1",
            "trainer.val_check_interval=2",
        )
    )
    plan = plan_data(config(shards, tmp_path, "data.scale=0.5").data)
    assert re.fullmatch(
        f"t-tiny-scale0.5-4shards-{plan.scan.samples}samples-[0-9a-f]{{10}}", summary["run_name"]
    )
    run = tmp_path / summary["run_name"]
    assert summary["global_step"] == 7 and summary["samples_seen"] == 28
    assert {"val/loss", "val/video_to_text_top1", "train/loss", "train/skipped_samples"} <= set(
        summary["metrics"]
    )
    # the newest 2 periodic checkpoints, the best by val/loss (validated at steps 2, 4, 6), last.ckpt
    files = sorted(p.name for p in (run / "checkpoints").iterdir())
    [best] = [name for name in files if name.startswith("best-")]
    assert files == sorted(["config.yaml", "last.ckpt", "step-0000004.ckpt", "step-0000006.ckpt", best])
    assert best in {"best-step-0000002.ckpt", "best-step-0000004.ckpt", "best-step-0000006.ckpt"}
    best_loss = torch.load(run / "checkpoints" / best, weights_only=True)["callbacks"]
    [monitored] = [state for key, state in best_loss.items() if "val/loss" in key]
    assert monitored["best_model_score"] == min(monitored["best_k_models"].values())
    assert json.loads((run / "run.json").read_text())["data"]["shards"] == 4
    assert "scale: 0.5" in (run / "checkpoints" / "config.yaml").read_text()
    # the final save states what it saves (Lightning logs "`weights_only` was not set" otherwise)
    assert not [message for message in lightning_log if "`weights_only` was not set" in message]

    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # plain data only
    assert checkpoint["global_step"] == 7 and checkpoint["action100m"]["samples_seen"] == 28
    assert checkpoint["optimizer_states"] and checkpoint["action100m"]["identity"] == summary["identity"]
    size = checkpoint_size(VLJEPA(model_preset("tiny")))
    assert abs(size["bytes"] - os.path.getsize(run / "checkpoints" / "last.ckpt")) < 0.02 * size["bytes"]
    model = VLJEPA.from_checkpoint(run / "checkpoints" / "last.ckpt")
    assert not model.training and model.samples_seen == 28
    assert model.embed_video(torch.zeros(1, 8, 3, 32, 32)).shape == (1, 128)


def optimizer_state(path):
    state = torch.load(path, weights_only=True)
    return (
        state["global_step"],
        state["action100m"]["samples_seen"],
        state["optimizer_states"][0],
        state["state_dict"],
    )


def test_a_requeued_run_continues_at_the_same_step_with_the_same_state(shards, tmp_path):
    """6 steps straight = the same run requeued at step 3 (mid-epoch: an epoch is 4 batches here) and
    resumed from its SLURM requeue checkpoint; older requeue checkpoints are removed."""
    common = ["data.scale=0.5", "checkpoint.every_n_steps=3", "trainer.max_steps=6"]
    straight = run_training(config(shards, tmp_path / "straight", *common))
    run = tmp_path / "split" / straight["run_name"]  # the same run, written elsewhere
    run.mkdir(parents=True)
    step3 = tmp_path / "straight" / straight["run_name"] / "checkpoints" / "step-0000003.ckpt"
    for index in (1, 2):  # as Lightning's SLURM handler names them, the newest last
        shutil.copy(step3, run / f"hpc_ckpt_{index}.ckpt")
        os.utime(run / f"hpc_ckpt_{index}.ckpt", ns=(index * 10**9, index * 10**9))
    resumed = run_training(config(shards, tmp_path / "split", *common, "ckpt_path=last"))
    assert (
        resumed["resumed_from"].endswith("hpc_ckpt_2.ckpt")
        and resumed["wandb_run_id"] == straight["wandb_run_id"]
    )
    assert sorted(p.name for p in run.glob("hpc_ckpt_*")) == ["hpc_ckpt_2.ckpt"]
    step_a, seen_a, optim_a, weights_a = optimizer_state(f"{straight['last_checkpoint']}")
    step_b, seen_b, optim_b, weights_b = optimizer_state(f"{resumed['last_checkpoint']}")
    assert (step_a, seen_a) == (step_b, seen_b) == (6, 24)
    for key in optim_a["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.allclose(optim_a["state"][key][name], optim_b["state"][key][name], atol=1e-6), (
                key,
                name,
            )
    for key in weights_a:
        assert torch.allclose(weights_a[key], weights_b[key], atol=1e-6), key


def test_a_run_killed_while_writing_last_ckpt_resumes_from_its_periodic_checkpoint(shards, tmp_path):
    """Lightning saves step-N.ckpt, then last.ckpt: a kill during the second save leaves a whole step-2
    checkpoint, no last.ckpt and the save's temp file. The rerun resumes at step 2 (not from scratch, which
    also wrote a duplicate step-0000002-v1.ckpt) and removes the dead temp file."""
    common = ["data.scale=0.5", "checkpoint.every_n_steps=2", "trainer.max_steps=3"]
    straight = run_training(config(shards, tmp_path / "straight", *common))
    checkpoints = tmp_path / "killed" / straight["run_name"] / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(
        tmp_path / "straight" / straight["run_name"] / "checkpoints" / "step-0000002.ckpt", checkpoints
    )
    (checkpoints / ".last.ckpt.k1ll3d.tmp").write_bytes(b"the first megabytes of a checkpoint")
    resumed = run_training(config(shards, tmp_path / "killed", *common, "ckpt_path=last"))
    assert resumed["resumed_from"] == str(checkpoints / "step-0000002.ckpt")
    assert sorted(p.name for p in checkpoints.iterdir()) == ["config.yaml", "last.ckpt", "step-0000002.ckpt"]
    step_a, seen_a, optim_a, weights_a = optimizer_state(straight["last_checkpoint"])
    step_b, seen_b, optim_b, weights_b = optimizer_state(resumed["last_checkpoint"])
    assert (step_a, seen_a) == (step_b, seen_b) == (3, 12)
    for key in optim_a["state"]:
        assert torch.allclose(optim_a["state"][key]["exp_avg"], optim_b["state"][key]["exp_avg"], atol=1e-6)
    for key in weights_a:
        assert torch.allclose(weights_a[key], weights_b[key], atol=1e-6), key


def test_the_global_batch_sets_the_accumulation_and_the_samples_budget_the_steps(shards, tmp_path, capsys):
    summary = run_training(
        config(
            shards, tmp_path, "data.samples_seen=20", "trainer.max_steps=100", "trainer.global_batch_size=8"
        )
    )
    assert (summary["accumulation"], summary["global_batch"]) == (2, 8)  # 8 / (4 per device x 1 rank)
    assert summary["global_step"] == 3 and summary["samples_seen"] == 24  # ceil(20 / 8) steps of 8
    assert re.search(r"-20seen-[0-9a-f]{10}$", summary["run_name"])
    err = capsys.readouterr().err
    assert (
        "global batch 8 = 4 per device x 1 ranks x 2 accumulated (InfoNCE contrasts 4 per micro-batch); "
        "3 steps for data.samples_seen=20" in err
    )
    assert re.search(
        r"checkpoints of ~0\.\d\d GB \([\d.]+M parameters, [\d.]+M trainable with AdamW state\) "
        r"every 500 steps, keeping the newest 2, no best by val/loss \(no validation",
        err,
    )


def test_the_paper_preset_trains_at_the_papers_global_batch_on_4_nodes_of_8_gpus():
    paper = as_train_config(compose_train("model=vljepa_paper", "trainer=gpu", "data.shards=/data"))
    assert paper.trainer.global_batch_size == 12288 and paper.trainer.accumulate_grad_batches is None
    assert (paper.checkpoint.keep_last, paper.checkpoint.monitor) == (2, "val/loss")
    assert paper.data.num_workers == 10 and paper.data.batch_size == 32
    gpu_data = as_train_config(compose_train("data=gpu", "data.shards=/data")).data
    assert (paper.data.shuffle_buffer, paper.data.open_shards) == (
        gpu_data.shuffle_buffer,
        gpu_data.open_shards,
    )
    batch = batch_plan(paper, world_size=4 * 8)
    assert (batch.accumulation, batch.global_batch, batch.micro_batch) == (12, 12288, 1024)
    assert batch_plan(paper, world_size=24 * 8).accumulation == 2  # the paper's 24 nodes
    paper.data.samples_seen = 3_300_000_000
    size = {"parameters": 1_400_000_000, "trainable": 800_000_000, "bytes": 12_000_000_000}
    assert "268,555 steps for data.samples_seen=3,300,000,000" in effective_settings(
        paper, batch, 268555, size
    )
    with pytest.raises(
        ConfigError,
        match=r"trainer.global_batch_size=12288 is not a multiple of "
        r"data.batch_size=32 x world size 40 .* = 1280: world size 40 does not divide it",
    ):
        batch_plan(paper, world_size=5 * 8)
    cpu = as_train_config(compose_train("model=vljepa_paper", "data.shards=/data"))
    tiny_gpu = as_train_config(compose_train("trainer=gpu", "data.shards=/data"))
    assert cpu.data.num_workers == 2 and cpu.data.epoch_batches == 100 and cpu.trainer.accelerator == "cpu"
    assert cpu.data.shuffle_buffer < gpu_data.shuffle_buffer
    assert tiny_gpu.trainer.global_batch_size is None and batch_plan(tiny_gpu, 8).global_batch == 32 * 8


IDENTICAL = [  # where and how a run runs, not what it trains
    [],
    ["output_dir=/elsewhere"],
    ["ckpt_path=last"],
    ["logger=wandb"],
    ["trainer.progress_bar=true"],
    ["data.num_workers=1"],
    ["checkpoint.every_n_steps=7", "checkpoint.keep_last=5"],
    ["trainer.log_every_n_steps=5"],
    ["data.shuffle_buffer=99"],
    ["data.video_backend=pyav"],
    ["trainer.strategy=ddp"],
]
DIFFERENT = [
    ["seed=1"],
    ["data.seed=1"],
    ["optim.lr=2e-3"],
    ["optim.weight_decay=0"],
    ["optim.schedule=cosine"],
    ["model.num_frames=4"],
    ["model.crop_size=64"],
    ["model.x_encoder.freeze=false"],
    ["model.predictor.freeze_embeddings=false"],
    ["model.y_encoder.freeze=false"],
    ["trainer.precision=bf16-mixed"],
    ["data.max_duration=100"],
    ["data.min_duration=5"],
    ["+data.text_fields.action_label=1"],
    ["data.annotated_only=true"],
    ["data.samples_seen=100"],
    ["trainer.max_steps=7"],
    ["trainer.gradient_clip_val=0.5"],
    ["data.scale=0.5"],
    ["data.batch_size=2"],
    ["trainer.devices=2"],
    ["trainer.global_batch_size=8"],
    ["data.resample.enabled=true"],
]


def test_a_run_is_identified_by_every_setting_that_changes_its_training(shards, tmp_path):
    def name(*overrides):
        cfg = config(shards, tmp_path, *overrides)
        return run_name(cfg, plan_data(cfg.data))

    base = name()
    assert all(name(*overrides) == base for overrides in IDENTICAL)
    names = [name(*overrides) for overrides in DIFFERENT]
    assert base not in names and len(set(names)) == len(names)
    # a fixed global batch is met by any layout: devices, nodes and per-device batch do not make another run
    fixed = name("trainer.global_batch_size=8")
    assert name("trainer.global_batch_size=8", "trainer.devices=2", "data.batch_size=2") == fixed
    assert (
        name("trainer.global_batch_size=8", "trainer.num_nodes=2", "trainer.accumulate_grad_batches=1")
        == fixed
    )
    copied = tmp_path / "copied"  # the same shards elsewhere (node-local scratch) are the same data
    shutil.copytree(shards / "shards", copied / "shards")
    assert name(f"data.shards={copied}") == base


def test_a_seed_or_lr_change_never_resumes_another_runs_checkpoint(shards, tmp_path):
    common = ["data.scale=0.25", "trainer.max_steps=1"]
    base = run_training(config(shards, tmp_path, *common))
    seed = run_training(config(shards, tmp_path, *common, "seed=1", "ckpt_path=last"))
    assert seed["run_name"] != base["run_name"] and seed["resumed_from"] is None  # a new run
    with pytest.raises(
        ConfigError,
        match=r"ckpt_path=.*last.ckpt: saved by another run \(optim.lr: 0.001 there, "
        r"0.002 here\); a checkpoint resumes only the run it was saved by",
    ):
        run_training(
            config(shards, tmp_path, *common, "optim.lr=2e-3", f"ckpt_path={base['last_checkpoint']}")
        )
    # another run's checkpoint copied into this run's folder is refused as well, naming the keys
    shutil.copy(base["last_checkpoint"], seed["last_checkpoint"])
    with pytest.raises(ConfigError, match=r"saved by another run \(seed: 0 there, 1 here\)"):
        run_training(config(shards, tmp_path, *common, "seed=1", "ckpt_path=last"))


def test_wandb_is_offline_without_a_key_and_carries_the_scale(shards, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = config(shards, tmp_path, "data.scale=0.25", "logger=wandb", "logger.tags=[demo]")
    plan = plan_data(cfg.data)
    settings = wandb_settings(cfg, plan, "the-run")
    assert settings["mode"] == "offline" and settings["name"] == "the-run"
    assert settings["tags"][:2] == ["scale:0.25", "shards:2"] and settings["tags"][-1] == "demo"
    assert f"samples:{plan.scan.samples}" in settings["tags"]
    assert settings["config"]["data_plan"]["shards"] == 2 and settings["config"]["data"]["scale"] == 0.25
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_settings(cfg, plan, "the-run")["mode"] == "online"


def test_bad_inputs_fail_before_training_naming_the_cause(shards, tmp_path):
    with pytest.raises(ConfigError, match="no such shard folder"):
        run_training(config(tmp_path / "none", tmp_path))
    with pytest.raises(ConfigError, match="data.scale=0.1 of 8 shards selects no shard"):
        run_training(config(shards, tmp_path, "data.scale=0.1"))
    with pytest.raises(ConfigError, match="field 'summary_detailed' is in none of the .* usable nodes"):
        run_training(
            config(
                shards,
                tmp_path,
                "~data.text_fields.action_brief",
                "+data.text_fields.action_label=1",
                "+data.text_fields.summary_detailed=1",
                "data.max_duration=3",
            )
        )
    with pytest.raises(ConfigError, match="2 ranks|readers"):
        run_training(config(shards, tmp_path, "data.scale=0.25", "data.num_workers=4", "trainer.max_steps=1"))
    with pytest.raises(
        ConfigError,
        match=r"trainer.global_batch_size=10 is not a multiple of data.batch_size=4 "
        r"x world size 1 \(trainer.devices x trainer.num_nodes\) = 4: data.batch_size must divide 10",
    ):
        run_training(config(shards, tmp_path, "data.scale=0.25", "trainer.global_batch_size=10"))
    with pytest.raises(
        ConfigError, match="trainer.accumulate_grad_batches=3 contradicts trainer.global_batch_size=8"
    ):
        run_training(
            config(
                shards,
                tmp_path,
                "data.scale=0.25",
                "trainer.global_batch_size=8",
                "trainer.accumulate_grad_batches=3",
            )
        )
    with pytest.raises(ConfigError, match="data.epoch_batches=4 must be a multiple of the accumulation 3"):
        run_training(config(shards, tmp_path, "data.scale=0.25", "trainer.global_batch_size=12"))
    with pytest.raises(ConfigError, match="checkpoint.monitor='val/los' is not one of val/loss"):
        run_training(config(shards, tmp_path, "data.scale=0.25", "checkpoint.monitor=val/los"))

    trained = run_training(config(shards, tmp_path / "tiny", "trainer.max_steps=1", "data.scale=0.25"))
    other = [
        "data.scale=0.25",
        f"ckpt_path={trained['last_checkpoint']}",
        "model.preset=bigger",
        "model.predictor.tiny.hidden_size=96",
    ]
    with pytest.raises(
        ConfigError, match="trained with model preset 'tiny', but this model is preset 'bigger'"
    ):
        run_training(config(shards, tmp_path / "bigger", *other))
    with pytest.raises(ConfigError, match="parameters with other shapes in the checkpoint: predictor"):
        run_training(config(shards, tmp_path / "bigger", *other[:2], "model.predictor.tiny.hidden_size=96"))
