"""Dataset statistics in the form the Action100M paper reports them, and a dataset card.

Read from the finished shards of a shard set: videos, hours, nodes, annotated nodes, node durations
(< 3 s, 3–10 s, 10–60 s, ≥ 60 s), mean words per annotation field, the most frequent brief actions,
and the share of annotations whose action is "N/A". Memory stays bounded by the number of distinct
brief actions: durations go into fixed histogram bins as they are read.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from action100m.dataset.schema import Annotation, VideoRecord
from action100m.dataset.shards import ShardError, read_tar, shard_paths
from action100m.utils.atomic import atomic_path, write_text_atomic

# (label, lower bound, upper bound, the paper's share in %; the paper leaves ≥ 60 s as the remainder)
DURATION_BUCKETS = (
    ("< 3 s", 0.0, 3.0, 64.0),
    ("3–10 s", 3.0, 10.0, 23.8),
    ("10–60 s", 10.0, 60.0, 10.2),
    ("≥ 60 s", 60.0, float("inf"), 2.0),
)
# (label, annotation attribute, the paper's mean words)
WORD_FIELDS = (
    ("brief action", "action_brief", 3.2),
    ("brief caption", "summary_brief", 19.2),
    ("detailed action", "action_detailed", 27.8),
    ("detailed caption", "summary_detailed", 95.3),
)
ACTION_FIELDS = ("action_brief", "action_detailed")
PAPER_NOT_APPLICABLE_PERCENT = 3.2
HISTOGRAM_EDGES = np.logspace(-1, 4, 51)  # 0.1 s to 10^4 s (2.8 h), 10 bins a decade
TOP_ACTIONS = 20
CARD_NAME = "dataset_card.md"
FIGURE_NAME = "node_durations.png"


@dataclass
class DatasetStats:
    shards: int = 0
    videos: int = 0
    seconds: float = 0.0  # summed root-node durations
    nodes: int = 0
    annotated_nodes: int = 0
    not_applicable: int = 0  # annotations whose brief action is "N/A"
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(len(HISTOGRAM_EDGES) - 1, dtype=np.int64))
    words: dict[str, list[int]] = field(default_factory=lambda: {a: [0, 0] for _, a, _ in WORD_FIELDS})
    actions: Counter[str] = field(default_factory=Counter)

    def add(self, record: VideoRecord) -> None:
        self.videos += 1
        self.seconds += record.root.duration
        durations = np.array([node.duration for node in record.nodes], dtype=np.float64)
        self.nodes += len(durations)
        for k, (_, low, high, _) in enumerate(DURATION_BUCKETS):
            self.buckets[k] += int(np.count_nonzero((durations >= low) & (durations < high)))
        clipped = np.clip(durations, HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1])
        self.histogram += np.histogram(clipped, bins=HISTOGRAM_EDGES)[0]
        for node in record.nodes:
            if node.annotation is not None:
                self._add_annotation(node.annotation)

    def _add_annotation(self, annotation: Annotation) -> None:
        self.annotated_nodes += 1
        if not annotation.has_action:
            self.not_applicable += 1
        for _, attribute, _ in WORD_FIELDS:
            # "N/A" is a marker, not a phrase: it would pull the action lengths down
            if attribute in ACTION_FIELDS and not annotation.has_action:
                continue
            self.words[attribute][0] += len(getattr(annotation, attribute).split())
            self.words[attribute][1] += 1
        if annotation.has_action:
            # case and spacing differ between otherwise equal labels ("Stir mixture", "stir  mixture")
            self.actions[" ".join(annotation.action_brief.lower().split())] += 1

    def mean_words(self, attribute: str) -> float:
        total, count = self.words[attribute]
        return total / count if count else 0.0


def collect_stats(shards: str | os.PathLike) -> DatasetStats:
    """Statistics over every record of the finished shards under `shards` (the set's root or shards/)."""
    stats = DatasetStats()
    for path in shard_paths(shards):
        stats.shards += 1
        for key, files in read_tar(path):
            if "json" not in files:
                raise ShardError(f"{path}: sample {key} has no json record")
            stats.add(VideoRecord.from_json(files["json"]))
    return stats


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else "–"


def format_stats(stats: DatasetStats) -> str:
    """The statistics as Markdown tables (printed by `action100m stats` and used in the card)."""
    lines = [
        "## Size",
        "",
        "| | count |",
        "|---|---:|",
        f"| shards | {stats.shards} |",
        f"| videos | {stats.videos} |",
        f"| hours of video | {stats.seconds / 3600:.2f} |",
        f"| nodes | {stats.nodes} |",
        f"| annotated nodes | {stats.annotated_nodes} ({_percent(stats.annotated_nodes, stats.nodes)}% of nodes) |",
        f'| "N/A" actions | {stats.not_applicable} ({_percent(stats.not_applicable, stats.annotated_nodes)}% '
        f"of annotated; paper {PAPER_NOT_APPLICABLE_PERCENT}%) |",
        "",
        "## Node durations (all nodes)",
        "",
        "| duration | nodes | % | paper % |",
        "|---|---:|---:|---:|",
    ]
    for (label, _, _, paper), count in zip(DURATION_BUCKETS, stats.buckets, strict=True):
        lines.append(f"| {label} | {count} | {_percent(count, stats.nodes)} | {paper} |")
    lines += [
        "",
        "## Mean words per field (annotated nodes; action fields: those with an action, not N/A)",
        "",
        "| field | mean words | nodes | paper |",
        "|---|---:|---:|---:|",
    ]
    for label, attribute, paper in WORD_FIELDS:
        lines.append(
            f"| {label} | {stats.mean_words(attribute):.1f} | {stats.words[attribute][1]} | {paper} |"
        )
    lines += [
        "",
        f"## Top {TOP_ACTIONS} brief actions (lower-cased)",
        "",
        "| # | brief action | count |",
        "|---:|---|---:|",
    ]
    # ties are broken by name so that the same shards always give the same card
    ranked = sorted(stats.actions.items(), key=lambda item: (-item[1], item[0]))[:TOP_ACTIONS]
    for rank, (action, count) in enumerate(ranked, start=1):
        cell = action.replace("|", "\\|")  # a pipe would end the table cell
        lines.append(f"| {rank} | {cell} | {count} |")
    return "\n".join(lines) + "\n"


def plot_durations(stats: DatasetStats, path: Path) -> Path:
    """A log-scale histogram of node durations with the paper's bucket edges marked."""
    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.stairs(stats.histogram, HISTOGRAM_EDGES, fill=True, color="#4c72b0")
    axes.set_xscale("log")
    axes.set_xlabel("node duration (s)")
    axes.set_ylabel("nodes")
    videos = f"{stats.videos} video" + ("" if stats.videos == 1 else "s")
    axes.set_title(f"Node durations: {stats.nodes} nodes in {videos}")
    for (label, low, _, _), count in zip(DURATION_BUCKETS, stats.buckets, strict=True):
        if low > 0:
            axes.axvline(low, color="grey", linestyle="--", linewidth=1)
        centre = max(low, HISTOGRAM_EDGES[0]) * 1.15
        axes.text(
            centre,
            0.95,
            f"{label}\n{_percent(count, stats.nodes)}%",
            transform=axes.get_xaxis_transform(),
            va="top",
            fontsize=8,
        )
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def write_card(stats: DatasetStats, out: str | os.PathLike) -> tuple[Path, Path]:
    """`dataset_card.md` and `node_durations.png` in the shard set's root (`out` is the root or its
    shards/ folder); returns their paths."""
    out = Path(out)
    root = out if (out / "shards").is_dir() else out.parent
    figure = plot_durations(stats, root / FIGURE_NAME)
    card = "\n".join(
        [
            f"# Dataset card: {root.resolve().name}",
            "",
            "Action100M-style video action dataset: one WebDataset sample per source video (`json` record with "
            "the segment tree, captions and LLM annotations; optional `mp4`). Made by `action100m stats` from "
            f"the {stats.shards} finished shards under `shards/`; the paper's figures are given for comparison.",
            "",
            format_stats(stats),
            f"![Node durations]({FIGURE_NAME})",
            "",
        ]
    )
    return write_text_atomic(root / CARD_NAME, card), figure
