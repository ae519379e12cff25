"""Zero-shot validation during training (action100m/train/zero_shot.py): a tiny run scores a small
SynthActions validation benchmark at its steps into metrics.csv, on clips decoded once, and keeps the best
checkpoint by the score; a wrong benchmark fails before training, naming the key."""

import csv
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.plugins.precision import Precision

from action100m.errors import ConfigError
from action100m.eval.data import ClipDataset
from action100m.eval.prompts import prompt_texts
from action100m.models.config import model_preset
from action100m.models.vljepa import VLJEPA
from action100m.models.y_encoder import YEncoder
from action100m.synth.generate import generate_dataset
from action100m.train.config import ZeroShotValidationConfig
from action100m.train.run import run_training
from action100m.train.zero_shot import RETRIEVAL_METRICS, ZeroShotValidation, load_zero_shot
from tests.train.data.shardset import demo_shards
from tests.train.test_run import config

CLIPS = 8  # zero_shot.max_clips: a subset of the split's 12
MONITOR = "zero_shot/synth_validation/top1"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return demo_shards(tmp_path_factory)


@pytest.fixture(scope="module")
def validation(tmp_path_factory) -> Path:
    """OUT/validation of `action100m synth --videos 1 --validation-clips 12`."""
    out = tmp_path_factory.mktemp("synth-validation")
    generate_dataset(out, videos=1, seed=0, validation_clips=12)
    return out / "validation"


def zero_shot(root, *overrides):
    return [
        "zero_shot.benchmark=synth_validation",
        f"zero_shot.root={root}",
        "zero_shot.every_n_steps=2",
        f"zero_shot.max_clips={CLIPS}",
        "zero_shot.batch_size=4",
        f"checkpoint.monitor={MONITOR}",
        "checkpoint.mode=max",
        "data.scale=0.25",
        *overrides,
    ]


def logged(run: Path, key: str) -> dict[int, float]:
    """{step: value} of the metrics.csv rows that hold `key`."""
    [path] = (run / "csv").glob("version_*/metrics.csv")
    with open(path, newline="") as handle:
        return {int(row["step"]): float(row[key]) for row in csv.DictReader(handle) if row.get(key)}


def best_checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("best-*.ckpt"))


def test_a_run_scores_the_benchmark_at_its_steps_on_clips_decoded_once(
    shards, validation, tmp_path, monkeypatch, capsys
):
    decoded, encoded = [], []  # clips read from their video; texts through the frozen sentence encoder
    frames, encode = ClipDataset.frames, YEncoder._encode
    monkeypatch.setattr(
        ClipDataset, "frames", lambda self, clip: decoded.append(clip.id) or frames(self, clip)
    )
    monkeypatch.setattr(YEncoder, "_encode", lambda self, texts: encoded.extend(texts) or encode(self, texts))
    summary = run_training(config(shards, tmp_path, "trainer.max_steps=5", *zero_shot(validation)))
    run = Path(summary["run_dir"])

    # every 2 steps and at the last (5), each row at the step it scored, never repeated at later steps
    top1 = logged(run, MONITOR)
    assert sorted(top1) == [2, 4, 5] and all(0 <= value <= 1 for value in top1.values())
    assert sorted(logged(run, "zero_shot/synth_validation/top5")) == [2, 4, 5]  # 27 classes
    assert [s["step"] for s in summary["zero_shot"]["scorings"]] == [2, 4, 5]
    assert [s["metrics"][MONITOR] for s in summary["zero_shot"]["scorings"]] == [top1[2], top1[4], top1[5]]
    assert summary["metrics"][MONITOR] == top1[5]

    # the subset's clips decoded once for the three scorings; the class texts went through the frozen
    # sentence encoder once (YEncoder's cache), its trained head at every scoring
    assert len(decoded) == len(set(decoded)) == CLIPS
    benchmark = load_zero_shot(ZeroShotValidationConfig("synth_validation", str(validation), max_clips=CLIPS))
    assert sorted(decoded) == sorted(c.id for c in benchmark.clips)
    prompts = prompt_texts(benchmark.data.class_texts, ["{}"])
    assert all(encoded.count(text) == 1 for text in prompts)

    # the best checkpoint is the first step with the best score (a tie does not replace it)
    best = next(step for step in (2, 4, 5) if top1[step] == max(top1.values()))
    assert best_checkpoints(run) == [f"best-step-{best:07d}.ckpt"]

    # the cost, in run.json and in a line at the end
    cost = json.loads((run / "run.json").read_text())["zero_shot"]
    assert cost["clips"] == CLIPS and cost["clips_read"] == 12 and cost["decode_seconds"] > 0
    scoring = sum(s["seconds"] for s in cost["scorings"])
    assert cost["seconds"] == pytest.approx(cost["decode_seconds"] + scoring, abs=0.01)
    assert cost["train_seconds"] > cost["seconds"]
    err = capsys.readouterr().err
    assert "zero-shot validation on synth_validation" in err and f"{CLIPS} of its 12 clips" in err
    assert re.search(
        r"train: zero-shot validation: [\d.]+ s of [\d.]+ s training \(synth_validation, 8 clips, "
        r"decoded once in [\d.]+ s, then 3 scorings of [\d.]+ s\)",
        err,
    )


def test_validation_changes_neither_the_training_nor_the_run(shards, validation, tmp_path):
    """The model is scored in eval mode without gradients and its modes restored; nothing is drawn from
    the random state training uses: the weights are those of the same run without validation."""
    common = ["trainer.max_steps=3", "data.scale=0.25"]
    plain = run_training(config(shards, tmp_path / "plain", *common))
    scored = run_training(config(shards, tmp_path / "scored", *common, *zero_shot(validation)))
    assert scored["run_name"] == plain["run_name"] and len(scored["zero_shot"]["scorings"]) == 2
    weights = [torch.load(s["last_checkpoint"], weights_only=True)["state_dict"] for s in (plain, scored)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


def test_the_best_checkpoint_is_the_step_with_the_best_score_not_the_last(
    shards, validation, tmp_path, monkeypatch
):
    """A tiny model's score on 8 clips is near chance and often tied, so a real run cannot promise a best
    step before the last: the scores are scripted here (only `score` is replaced; the clips are still
    decoded, the values still logged and weighed by the run's own checkpoint callbacks)."""
    scripted = {2: 0.25, 4: 0.75, 6: 0.5, 7: 0.125}  # 7: the last step, off the period of 2

    def score(self, trainer, model):
        return {"top1": scripted[trainer.global_step], "top5": None, "mean_class": 0.5}

    monkeypatch.setattr(ZeroShotValidation, "score", score)
    summary = run_training(
        config(shards, tmp_path, "trainer.max_steps=7", "checkpoint.every_n_steps=3", *zero_shot(validation))
    )
    run = Path(summary["run_dir"])
    assert logged(run, MONITOR) == scripted
    assert not logged(run, "zero_shot/synth_validation/top5")  # not defined: not logged
    assert best_checkpoints(run) == ["best-step-0000004.ckpt"]
    assert summary["best_checkpoint"] == str(run / "checkpoints" / "best-step-0000004.ckpt")
    state = torch.load(run / "checkpoints" / "best-step-0000004.ckpt", weights_only=True)
    assert state["global_step"] == 4
    [best] = [s for key, s in state["callbacks"].items() if key.startswith("BestCheckpoint")]
    assert best["best_model_score"] == 0.75

    # the last scoring, at a step off the period, is weighed too: there it is the best
    scripted[7] = 0.875
    summary = run_training(
        config(
            shards,
            tmp_path / "last",
            "trainer.max_steps=7",
            "checkpoint.every_n_steps=3",
            *zero_shot(validation),
        )
    )
    assert best_checkpoints(Path(summary["run_dir"])) == ["best-step-0000007.ckpt"]


def test_retrieval_scores_the_captions_of_the_chosen_videos(validation, tmp_path):
    """`captions`: a fixed subset of the videos with their captions; scored as t2v/v2t recall and ranks."""
    entries = json.loads((validation / "something-something-v2-validation.json").read_text())
    captions = [
        {"video": f"{validation}/20bn-something-something-v2/{e['id']}.mp4", "caption": e["label"]}
        for e in entries
    ]
    captions += [{"video": captions[0]["video"], "caption": "a second caption of the first video"}]
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    cfg = ZeroShotValidationConfig("captions", str(tmp_path), max_clips=6, seed=1, batch_size=3)
    retrieval = load_zero_shot(cfg)
    assert len(retrieval.clips) == 6 and retrieval.clips_read == 12
    assert load_zero_shot(cfg).clips == retrieval.clips  # chosen by the seed: the same every time
    assert (
        load_zero_shot(ZeroShotValidationConfig("captions", str(tmp_path), max_clips=6)).clips
        != retrieval.clips
    )
    chosen = {str(c.video) for c in retrieval.clips}
    assert len(retrieval.data.captions) == sum(item["video"] in chosen for item in captions)

    model = VLJEPA(model_preset("tiny"))
    scorer = ZeroShotValidation(cfg, retrieval, "decord", 1)
    metrics = scorer.score(SimpleNamespace(precision_plugin=Precision()), model.train())  # what it uses
    assert sorted(metrics) == sorted(RETRIEVAL_METRICS) and 0 <= metrics["t2v_r1"] <= 1
    assert model.training and not model.x_encoder.encoder.training  # the frozen encoder stays in eval mode
    assert [f"zero_shot/captions/{m}" for m in RETRIEVAL_METRICS] == retrieval.metric_keys


def test_a_wrong_benchmark_fails_before_training_naming_the_key(shards, validation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the benchmark configs' default data/ folder is looked for

    def fails(match, *overrides):
        with pytest.raises(ConfigError, match=match) as raised:
            run_training(config(shards, tmp_path / "runs", *overrides))
        assert "\n" not in str(raised.value)
        assert not (tmp_path / "runs").exists()  # nothing trained, nothing written

    fails(r"^zero_shot.root=/no/such/root: no such folder$", *zero_shot("/no/such/root"))
    fails(
        r"^zero_shot.root \(null: synth_validation's default data/synth/validation\): no such folder",
        *zero_shot(validation, "zero_shot.root=null"),
    )
    fails(
        r"^zero_shot.benchmark='synth_valid': there is no .*synth_valid.yaml \(one of ",
        "zero_shot.benchmark=synth_valid",
    )
    fails(r"^zero_shot.benchmark='all' is a suite of \d+: name one of them", "zero_shot.benchmark=all")
    fails(
        r"^zero_shot.benchmark=synth_validation in zero_shot.root=.*: .*labels",
        *zero_shot(validation.parent / "videos"),  # a folder, but not the benchmark's
    )
    fails(r"^zero_shot.root=/x is set, but zero_shot.benchmark is null", "zero_shot.root=/x")
    fails(
        r"^zero_shot.benchmark does not run with trainer.strategy=fsdp",
        *zero_shot(validation, "trainer.strategy=fsdp"),
    )
    fails(
        r"^checkpoint.monitor='zero_shot/synth_validation/top1' is not one of .*zero_shot/<benchmark>/<metric>",
        f"checkpoint.monitor={MONITOR}",
    )
    fails(
        r"^checkpoint.monitor='zero_shot/synth_validation/t2v_r1' is not one of .*"
        r"zero_shot/synth_validation/top1, zero_shot/synth_validation/top5, zero_shot/synth_validation/mean_class",
        *zero_shot(validation, "checkpoint.monitor=zero_shot/synth_validation/t2v_r1"),
    )
    fails(
        r"^zero_shot.every_n_steps=0 must be at least 1", *zero_shot(validation, "zero_shot.every_n_steps=0")
    )
