import os

import pytest
import torch

from action100m.errors import ConfigError
from action100m.models.config import model_preset
from action100m.models.vljepa import VLJEPA


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = VLJEPA(model_preset("tiny"))
    model.samples_seen = 96
    model.identity = {"optim.lr": 5e-5, "seed": 0}
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    torch.save(checkpoint, path)
    return model, checkpoint, path


def test_a_checkpoint_rebuilds_its_model_from_plain_data(saved):
    model, checkpoint, path = saved
    assert isinstance(checkpoint["action100m"]["model"], dict)  # plain data, loadable with weights_only
    loaded = VLJEPA.from_checkpoint(path)
    assert not loaded.training and loaded.samples_seen == 96 and loaded.cfg == model.cfg
    assert loaded.identity == {"optim.lr": 5e-5, "seed": 0}  # the run it belongs to, for resumes
    clips = torch.randn(2, 8, 3, 32, 32)
    assert torch.allclose(loaded.embed_video(clips), model.eval().embed_video(clips), atol=1e-6)
    assert torch.allclose(loaded.embed_text(["stir"]), model.embed_text(["stir"]), atol=1e-6)


def test_what_is_not_a_loadable_checkpoint_is_named(saved, tmp_path):
    _, checkpoint, _ = saved
    with pytest.raises(ConfigError, match="no such file"):
        VLJEPA.from_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="unreadable"):
        VLJEPA.from_checkpoint(tmp_path / "text.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(ConfigError, match="not an action100m VL-JEPA checkpoint"):
        VLJEPA.from_checkpoint(tmp_path / "foreign.ckpt")
    partial = {
        **checkpoint,
        "state_dict": {k: v for k, v in checkpoint["state_dict"].items() if "head" not in k},
    }
    torch.save(partial, tmp_path / "partial.ckpt")
    with pytest.raises(
        ConfigError, match=r"model preset 'tiny': parameters missing in the checkpoint: .*head"
    ):
        VLJEPA.from_checkpoint(tmp_path / "partial.ckpt")


class RunsCode:
    """Unpickling this runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    torch.save({"state_dict": RunsCode(tmp_path / "ran")}, tmp_path / "code.ckpt")
    with pytest.raises(ConfigError, match=r"code\.ckpt: unreadable: Weights only load failed") as err:
        VLJEPA.from_checkpoint(tmp_path / "code.ckpt")
    assert "\n" not in str(err.value) and not (tmp_path / "ran").exists()
