"""run_training end to end on a small demo shard set: runs, checkpoints, exact resume, the budget, and
the bad inputs that must fail before training starts."""

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from action100m.config import CONFIG_DIR
from action100m.data.module import plan_data
from action100m.errors import ConfigError
from action100m.models import load_checkpoint
from action100m.train_config import register_train_configs
from action100m.training import as_train_config, run_training, wandb_settings
from tests.data.shardset import demo_shards

FAST = ["trainer.progress_bar=false", "trainer.log_every_n_steps=1", "data.batch_size=4", "data.num_workers=0",
        "data.epoch_batches=4", "data.shuffle_buffer=20", "logger=csv", "optim.lr=1e-3"]  # fmt: skip


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return demo_shards(tmp_path_factory)


def config(shards, out, *overrides):
    register_train_configs()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"data.shards={shards}", f"output_dir={out}", *FAST, *overrides])
    return as_train_config(cfg)


def test_a_run_is_named_after_its_data_and_its_checkpoints_load_safely(shards, tmp_path):
    summary = run_training(config(shards, tmp_path, "name=t", "data.scale=0.5", "trainer.max_steps=3",
                                  "checkpoint.every_n_steps=2", f"data.val_shards={shards}", "data.val_batches=2",
                                  "trainer.val_check_interval=2"))  # fmt: skip
    plan = plan_data(config(shards, tmp_path, "data.scale=0.5").data)
    assert summary["run_name"] == f"t-tiny-scale0.5-4shards-{plan.scan.samples}samples"
    run = tmp_path / summary["run_name"]
    assert summary["global_step"] == 3 and summary["samples_seen"] == 12
    assert {"val/loss", "val/video_to_text_top1", "train/loss", "train/skipped_samples"} <= set(
        summary["metrics"]
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "config.yaml",
        "last.ckpt",
        "step-0000002.ckpt",
    ]
    assert json.loads((run / "run.json").read_text())["data"]["shards"] == 4
    assert "scale: 0.5" in (run / "checkpoints" / "config.yaml").read_text()

    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # plain data only
    assert checkpoint["global_step"] == 3 and checkpoint["action100m"]["samples_seen"] == 12
    model = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert not model.training and model.samples_seen == 12
    assert model.embed_video(torch.zeros(1, 8, 3, 32, 32)).shape == (1, 128)


def optimizer_state(path):
    state = torch.load(path, weights_only=True)
    return (
        state["global_step"],
        state["action100m"]["samples_seen"],
        state["optimizer_states"][0],
        state["state_dict"],
    )


def test_resume_continues_at_the_same_step_with_the_same_state(shards, tmp_path):
    """6 steps straight = 3 steps, then a resumed run to 6 (mid-epoch: an epoch is 4 batches here)."""
    common = ["data.scale=0.5", "checkpoint.every_n_steps=3"]
    straight = run_training(config(shards, tmp_path / "straight", *common, "trainer.max_steps=6"))
    first = run_training(config(shards, tmp_path / "split", *common, "trainer.max_steps=3"))
    resumed = run_training(
        config(shards, tmp_path / "split", *common, "trainer.max_steps=6", "ckpt_path=last")
    )
    assert resumed["resumed_from"].endswith("last.ckpt") and resumed["wandb_run_id"] == first["wandb_run_id"]
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


def test_the_samples_seen_budget_sets_the_steps(shards, tmp_path):
    summary = run_training(config(shards, tmp_path, "data.samples_seen=10", "trainer.max_steps=100"))
    assert summary["global_step"] == 3 and summary["run_name"].endswith("-10seen")  # ceil(10 / 4)


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
        run_training(config(shards, tmp_path, "~data.text_fields.action_brief", "+data.text_fields.action_label=1",
                            "+data.text_fields.summary_detailed=1", "data.max_duration=3"))  # fmt: skip
    with pytest.raises(ConfigError, match="2 ranks|readers"):
        run_training(config(shards, tmp_path, "data.scale=0.25", "data.num_workers=4", "trainer.max_steps=1"))

    trained = run_training(config(shards, tmp_path / "tiny", "trainer.max_steps=1", "data.scale=0.25"))
    other = ["data.scale=0.25", f"ckpt_path={trained['last_checkpoint']}", "model.preset=bigger",
             "model.predictor.tiny.hidden_size=96"]  # fmt: skip
    with pytest.raises(
        ConfigError, match="trained with model preset 'tiny', but this model is preset 'bigger'"
    ):
        run_training(config(shards, tmp_path / "bigger", *other))
    with pytest.raises(ConfigError, match="parameters with other shapes in the checkpoint: predictor"):
        run_training(config(shards, tmp_path / "bigger", *other[:2], "model.predictor.tiny.hidden_size=96"))
