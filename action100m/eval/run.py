"""`python eval.py`: read the benchmark(s), check the videos, load the encoder, score, report.

Nothing heavy happens before every benchmark's annotation files have parsed and its videos have been
counted, so a wrong folder fails in a second, not after the model has loaded.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from action100m.config import CONFIG_DIR
from action100m.errors import Action100MError, ConfigError
from action100m.eval.benchmarks import Benchmark, Clip, RetrievalSet, Source, read_benchmark
from action100m.eval.classifier import class_embeddings, clip_embeddings, text_embeddings
from action100m.eval.config import BenchmarkConfig, EvalConfig
from action100m.eval.data import SAMPLING, ClipDataset, Sample
from action100m.eval.encoders import VideoTextEncoder, load_encoder, weights_sha256
from action100m.eval.errors import EvalError
from action100m.eval.metrics import classification_metrics, retrieval_metrics
from action100m.eval.prompts import template_set
from action100m.eval.report import format_check, format_result, format_suite, log_wandb, write_left_out
from action100m.utils.atomic import write_json_atomic


@dataclass
class Loaded:
    """A benchmark config, what its reader returned, and its clips whose video file is absent."""

    cfg: BenchmarkConfig
    data: Benchmark | RetrievalSet
    missing: list[Clip]
    # with several checkpoints: the decoded clips kept for the next (None: not kept), and how they were
    # decoded (frames, views, crops, crop size)
    decoded: list[Sample] | None = None
    decoded_as: tuple | None = None

    @property
    def clips(self) -> list[Clip]:
        return self.data.clips if isinstance(self.data, Benchmark) else self.data.videos


def suite_configs(cfg: EvalConfig) -> list[BenchmarkConfig]:
    """The benchmark configs to run: zero_shot itself, or each of its `suite` (configs/zero_shot/<n>.yaml
    resolved against this run's data_root)."""
    if not cfg.zero_shot.suite:
        return [cfg.zero_shot]
    configs = []
    for name in cfg.zero_shot.suite:
        path = CONFIG_DIR / "zero_shot" / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(f"zero_shot.suite names {name!r}, but there is no {path}")
        node = OmegaConf.create({"data_root": cfg.data_root, "zero_shot": OmegaConf.load(path)})
        resolved = OmegaConf.to_container(node, resolve=True)["zero_shot"]
        configs.append(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(BenchmarkConfig), resolved)))
    return configs


def load_benchmark(bench: BenchmarkConfig) -> Loaded:
    """Parse the annotation files and find the clips whose video is missing (each file checked once)."""
    if not bench.reader or not bench.root:
        raise ConfigError(f"zero_shot={bench.name or '?'}: zero_shot.reader and zero_shot.root must be set")
    root = Path(bench.root).expanduser()
    source = Source(
        root=root,
        videos=Path(bench.videos).expanduser() if bench.videos else root,
        split=bench.split,
        task=bench.task,
        files=dict(bench.files),
        layout=bench.layout,
        video_ext=bench.video_ext,
        class_names=bench.class_names,
    )
    data = read_benchmark(bench.reader, source)
    clips = data.clips if isinstance(data, Benchmark) else data.videos
    exists: dict[Path, bool] = {}
    missing = [c for c in clips if not exists.setdefault(c.video, c.video.is_file())]
    return Loaded(bench, data, missing)


def model_identity(cfg: EvalConfig, encoder: VideoTextEncoder | None = None) -> dict[str, Any]:
    """What the result JSON records of the model; `key` names it in the text-embedding cache."""
    location = cfg.checkpoint if cfg.encoder.kind == "vljepa" else cfg.encoder.model
    sha = weights_sha256(location) if location else None
    name = getattr(encoder, "name", None) or location or cfg.encoder.kind
    return {
        "kind": cfg.encoder.kind,
        "name": name,
        "checkpoint": location,
        "checkpoint_sha256": sha,
        "key": f"{cfg.encoder.kind}:{name}:{sha}",
    }


def _slug(identity: dict[str, Any]) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(identity["name"])).name or "model")
    return f"{name}-{identity['checkpoint_sha256'][:8]}" if identity["checkpoint_sha256"] else name


def _protocol_slug(cfg: EvalConfig, loaded: Loaded, encoder: VideoTextEncoder) -> str:
    """E.g. "validation-8f-1x1-default": runs that differ in split, frames, views or templates keep
    their own result folder."""
    bench = loaded.cfg
    frames = cfg.num_frames or bench.num_frames or encoder.num_frames
    templates = "custom" if bench.template_list else bench.templates
    return f"{loaded.data.split}-{frames}f-{bench.temporal_views}x{bench.spatial_crops}-{templates}"


def _dataset(
    cfg: EvalConfig, bench: BenchmarkConfig, encoder: VideoTextEncoder, clips: list[Clip]
) -> ClipDataset:
    frames = cfg.num_frames or bench.num_frames or encoder.num_frames
    return ClipDataset(
        clips,
        encoder.preprocess,
        frames,
        bench.temporal_views,
        bench.spatial_crops,
        cfg.video.backend.value,
        cfg.video.decoder_options(),
    )


def _decoded(loaded: Loaded, dataset: ClipDataset, encoder: VideoTextEncoder) -> list[Sample] | None:
    """The list that keeps this benchmark's decoded clips for the next checkpoint that reads them alike."""
    key = (dataset.num_frames, dataset.temporal_views, dataset.spatial_crops, encoder.crop_size)
    if loaded.decoded is not None and loaded.decoded_as != key:
        loaded.decoded_as, loaded.decoded = key, []
    return loaded.decoded


def _embed(
    cfg: EvalConfig, loaded: Loaded, encoder: VideoTextEncoder, out: Path
) -> tuple[list[Clip], torch.Tensor, list]:
    """The clips evaluated, their embeddings, and every clip left out with its reason. Clips that cannot
    be decoded fail the run unless allowed, after listing them in out/left_out.jsonl."""
    missing = set(map(id, loaded.missing))
    present = [c for c in loaded.clips if id(c) not in missing]
    dataset = _dataset(cfg, loaded.cfg, encoder, present)
    embedded = clip_embeddings(
        encoder,
        dataset,
        cfg.batch_size,
        cfg.workers,
        cfg.progress,
        loaded.cfg.name,
        cfg.query,
        _decoded(loaded, dataset, encoder),
    )
    failed = [(present[i], reason) for i, reason in embedded.failures]
    left_out = [(c, "missing video file") for c in loaded.missing] + failed
    if failed and not cfg.allow_missing:
        listed = write_left_out(out, failed)
        examples = "; ".join(f"{c.video}: {reason}" for c, reason in failed[:2])
        raise EvalError(
            f"{loaded.cfg.name}: {len(failed)} of {len(present)} clips could not be decoded ({examples}; all "
            f"in {listed}); allow_missing=true evaluates without them"
        )
    return [present[i] for i in embedded.indices], embedded.embeddings, left_out


def protocol(
    cfg: EvalConfig, bench: BenchmarkConfig, encoder: VideoTextEncoder, templates: list[str]
) -> dict:
    return {
        "num_frames": cfg.num_frames or bench.num_frames or encoder.num_frames,
        "sampling": SAMPLING,
        "temporal_views": bench.temporal_views,
        "spatial_crops": bench.spatial_crops,
        "crop_size": encoder.crop_size,
        "template_set": "custom" if bench.template_list else bench.templates,
        "templates": templates,
        "class_names": bench.class_names or "reader default",
        "query": cfg.query or getattr(encoder, "query", None),
        "score": "cosine similarity",
        "video_backend": cfg.video.backend.value,
    }


def evaluate(
    cfg: EvalConfig, loaded: Loaded, encoder: VideoTextEncoder, identity: dict, out: Path
) -> dict[str, Any]:
    """Score one benchmark; the result as written to out/result.json."""
    bench, data, started = loaded.cfg, loaded.data, time.perf_counter()
    if isinstance(data, Benchmark):
        templates = template_set(bench.templates, bench.template_list)
        cache = Path(cfg.cache_dir) if cfg.cache_dir else None
        classes, text_info = class_embeddings(
            encoder, data.class_texts, templates, cfg.text_batch_size, cache, identity["key"]
        )
        clips, videos, left_out = _embed(cfg, loaded, encoder, out)
        targets = torch.tensor([c.label for c in clips], dtype=torch.long)
        scores = videos @ classes.T if clips else torch.empty(0, len(classes))
        metrics = classification_metrics(scores, targets)
        extra = {"num_classes": len(data.class_names), "text_embeddings": text_info}
        scoring = {}
    else:
        templates = ["{}"]  # captions are used as written
        clips, videos, left_out = _embed(cfg, loaded, encoder, out)
        index = {id(c): i for i, c in enumerate(data.videos)}
        texts, rows = data.captions_of([index[id(c)] for c in clips])
        captions = text_embeddings(encoder, texts, cfg.text_batch_size) if texts else None
        metrics = retrieval_metrics(captions @ videos.T, torch.tensor(rows)) if texts else {}
        extra = {"captions": len(data.captions), "captions_evaluated": len(texts)}
        scoring = {
            "retrieval": {
                **data.protocol,
                "ties": "counted against the query (an encoder that scores all alike ranks last)",
            }
        }
    missing = sum(1 for _, reason in left_out if reason == "missing video file")
    return {
        "benchmark": bench.name,
        "reader": bench.reader,
        "task": getattr(data, "task", "retrieval"),
        "split": data.split,
        "root": bench.root,
        "videos": bench.videos or bench.root,
        "annotation_files": [str(p) for p in data.files],
        "notes": data.notes,
        "model": {k: v for k, v in identity.items() if k != "key"},
        "protocol": {**protocol(cfg, bench, encoder, templates), **scoring},
        "counts": {
            "clips_read": len(loaded.clips),
            "clips_missing": missing,
            "clips_failed": len(left_out) - missing,
            "clips_evaluated": len(clips),
        },
        "allow_missing": cfg.allow_missing,
        "metrics": metrics,
        **extra,
        **_training(encoder),
        "seconds": round(time.perf_counter() - started, 2),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "left_out": left_out,
    }


def _training(encoder: VideoTextEncoder) -> dict[str, Any]:
    """`train`: what a VL-JEPA checkpoint was trained on (scale, dataset size, samples seen, seed), so
    that `action100m report scaling` reads the scaling curve from result files alone."""
    trained_on = getattr(encoder, "training_data", None)
    return {"train": {**trained_on, "samples_seen": encoder.samples_seen}} if trained_on else {}


def _refuse_missing(loaded: list[Loaded]) -> None:
    problems = [
        f"{x.cfg.name}: {len(x.missing)} of {len(x.clips)} clips reference missing videos "
        f"(e.g. {x.missing[0].video})"
        for x in loaded
        if x.missing
    ]
    if problems:
        raise EvalError(
            "; ".join(problems)
            + "; fix zero_shot.root/videos, or allow_missing=true to evaluate without them"
        )


def check(benches: list[BenchmarkConfig]) -> dict[str, Any]:
    """check_only: parse every benchmark's files and count its missing videos; print each, load no model.
    Fails (after printing all) when any benchmark's files do not parse."""
    checks, errors = [], []
    for bench in benches:
        try:
            x = load_benchmark(bench)
        except Action100MError as err:
            errors.append(f"{bench.name}: error: {err}")
            print(errors[-1])
            continue
        checks.append(format_check(x.cfg, x.data, x.clips, x.missing))
        print(checks[-1])
    if errors:
        raise EvalError(f"{len(errors)} of {len(benches)} benchmarks did not parse (see above)")
    return {"checks": checks}


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """Check or evaluate the configured benchmark(s); returns {"results": [...]} and, for a suite, the
    per-kind averages ("average_top1", "average_t2v_r1") and its table."""
    if cfg.check_only:
        return check(suite_configs(cfg))
    if cfg.query and cfg.encoder.kind != "vljepa":
        raise ConfigError(
            f"query= is the VL-JEPA predictor's text query; encoder={cfg.encoder.kind} takes none"
        )
    loaded = [load_benchmark(bench) for bench in suite_configs(cfg)]
    for x in loaded:
        if not x.clips:
            raise EvalError(f"{x.cfg.name}: the annotation files list no clips for split {x.data.split!r}")
    if not cfg.allow_missing:
        _refuse_missing(loaded)
    if not cfg.checkpoints:
        return _score(cfg, loaded)
    if cfg.encoder.kind != "vljepa" or cfg.checkpoint:
        raise ConfigError("checkpoints=[...] scores VL-JEPA checkpoints; give it instead of checkpoint=")
    for x in loaded:
        x.decoded = []
    return {
        "checkpoints": [
            _score(replace(cfg, checkpoint=path, checkpoints=[]), loaded) for path in cfg.checkpoints
        ]
    }


def _score(cfg: EvalConfig, loaded: list[Loaded]) -> dict[str, Any]:
    """Load the encoder (`cfg.checkpoint` for VL-JEPA) and score every benchmark with it."""
    encoder = load_encoder(
        cfg.encoder.kind,
        cfg.checkpoint,
        cfg.encoder.model,
        cfg.encoder.num_frames,
        cfg.encoder.device,
        cfg.encoder.dtype,
    )
    identity = model_identity(cfg, encoder)
    config = OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)
    results = []
    for x in loaded:
        out = Path(cfg.output_dir) / x.cfg.name / _slug(identity) / _protocol_slug(cfg, x, encoder)
        result = evaluate(cfg, x, encoder, identity, out)
        result["config"] = config
        write_left_out(out, result.pop("left_out"))
        result["path"] = str(write_json_atomic(out / "result.json", result))
        print(format_result(result))
        results.append(result)
    summary: dict[str, Any] = {"results": results}
    if cfg.zero_shot.suite:
        summary.update(format_suite(results, identity["name"]))
        kept = {
            "suite": cfg.zero_shot.suite,
            "model": results[0]["model"],
            **{key: summary[key] for key in ("average_top1", "top1", "average_t2v_r1", "t2v_r1")},
            "results": [r["path"] for r in results],
        }
        out = Path(cfg.output_dir) / cfg.zero_shot.name / _slug(identity) / "summary.json"
        summary["path"] = str(write_json_atomic(out, kept))
        print(summary["table"])
    if cfg.logger.wandb.enabled:
        averages = {
            k: summary.get(k) for k in ("average_top1", "average_t2v_r1") if summary.get(k) is not None
        }
        log_wandb(cfg.logger.wandb, config, results, averages, Path(cfg.output_dir))
    return summary
