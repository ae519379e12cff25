"""The measured inputs of the GPU-hour estimates: a GPU benchmark's results file
(benchmarks/gpu_paper_presets.py), checked key by key, and a built tree's size and token counts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from action100m.errors import Action100MError

MEASURED = "measured"


class EstimateError(Action100MError):
    """A results file or tree that cannot feed an estimate."""


def read_results(path: str | os.PathLike, allow_quick: bool = False) -> dict[str, Any]:
    """A benchmarks/gpu_paper_presets.py results file, checked; one made with --quick (reduced models)
    only with `allow_quick`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EstimateError(f"{path}: cannot read results: {err}") from err
    for key in ("environment", "results"):
        if not isinstance(data, dict) or not isinstance(data.get(key), dict):
            raise EstimateError(f"{path}: '{key}' is missing or not an object")
    environment = data["environment"]
    if environment.get("quick") and not allow_quick:
        raise EstimateError(
            f"{path}: made with --quick (reduced models, not the paper's); "
            "pass --allow-quick to use it anyway"
        )
    if environment.get("quick") and environment.get("gpu") is None:
        environment["gpu"] = "CPU"  # a --quick run on a CPU, as CI makes: flagged as quick wherever shown
    if not isinstance(environment.get("gpu"), str):
        # null where the benchmark ran without a GPU: its figures would not be a GPU's
        raise EstimateError(f"{path}: 'environment.gpu' is missing or not a string (made on a GPU?)")
    data["path"] = str(path)
    return data


def result_number(data: dict[str, Any], key: str, kind: type = float) -> float:
    """results[key], a positive number (an int where `kind` is int); else a one-line error."""
    value = data["results"].get(key)
    ok = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or value <= 0:
        found = "missing" if value is None else f"{value!r}"
        raise EstimateError(
            f"{data['path']}: 'results.{key}' must be a positive {kind.__name__}, got {found}"
        )
    return value


def optional_result_number(data: dict[str, Any], key: str) -> float | None:
    """results[key] where the run measured it (None where it did not: a sweep cut short); a value that
    is there but not a positive number is still a one-line error."""
    return None if data["results"].get(key) is None else result_number(data, key)


def measured_source(data: dict[str, Any]) -> str:
    """How a figure from `data` is marked: measured, the file, and a loud flag for --quick results."""
    quick = " (QUICK: reduced models)" if data["environment"].get("quick") else ""
    return f"{MEASURED}: {Path(data['path']).name}{quick}"


def tree_stats(path: str | os.PathLike, min_refine_duration: float) -> dict[str, float]:
    """Nodes, leaves and refined nodes per hour of video, and mean tokens (estimate-v1) of the captions,
    answers and first refine requests, from release annotations or a shard set."""
    from action100m.dataset.official import Annotations, from_official
    from action100m.dataset.schema import VideoRecord
    from action100m.dataset.shards import read_tar, shard_paths
    from action100m.refine.prompt import PromptBuilder, PromptConfig
    from action100m.refine.tokens import TokenCounter

    path = Path(path)
    try:
        if path.is_dir():
            records = [
                VideoRecord.from_json(files["json"])
                for shard in shard_paths(path)
                for _, files in read_tar(shard)
                if "json" in files
            ]
        else:
            rows = Annotations(path)
            records = [from_official(row) for row in rows.rows(list(range(len(rows.uids))))]
    except (Action100MError, OSError, ValueError) as err:
        raise EstimateError(f"{path}: cannot read the tree: {err}") from err
    if not records:
        raise EstimateError(f"{path}: no video records")
    count = TokenCounter()
    builder = PromptBuilder(PromptConfig(), count)
    hours, nodes, leaves, refined = 0.0, 0, 0, 0
    frame, video, answers, prompts = [], [], [], []
    for record in records:
        children = record.children()
        hours += record.root.duration / 3600
        nodes += len(record.nodes)
        for node in record.nodes:
            video.append(count(node.segment_caption or "") + count(node.action_label or ""))
            if not children.get(node.node_id):
                leaves += 1
                frame.append(count(node.frame_caption or ""))
            elif node.duration >= min_refine_duration:
                refined += 1
                built = (node.provenance or {}).get("prompt_tokens")
                prompts.append(built if built else builder.build(record, node, children).tokens)
                if node.annotation is not None:
                    answers.append(count(json.dumps(node.annotation.to_dict(), ensure_ascii=False)))

    def mean(values: list[int]) -> float:
        return sum(values) / len(values) if values else 0.0

    return {
        "videos": len(records),
        "hours": hours,
        "nodes_per_hour": nodes / hours,
        "leaves_per_hour": leaves / hours,
        "refined_per_hour": refined / hours,
        "frame_output_tokens": mean(frame),
        "segment_output_tokens": mean(video),
        "refine_prompt_tokens": mean(prompts),
        "refine_answer_tokens": mean(answers),
    }
