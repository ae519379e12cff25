"""Stage 1: hierarchical temporal segmentation.

Per-frame features (V-JEPA 2 windows, or cheap pixel statistics) → Ward agglomerative clustering in
which only temporal neighbours may merge → the full binary merge tree → the project's node list.

V-JEPA 2 path, as in the paper: keep 1 of every `frame_step` frames; cut the kept frames into windows
of `window` frames every `window_stride`; encode each window; average its tokens over space; give each
frame the token of its tubelet; average a frame's features over the windows that contain it.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.cluster import ward_tree

from action100m.backends.config import serving
from action100m.dataset.schema import Node
from action100m.errors import StageError
from action100m.video import VideoError, VideoSource
from action100m.video.sampling import every_nth_index, window_starts
from action100m.video.transforms import (
    center_crop,
    normalize,
    resize_short_side,
    short_side_for,
    to_float_tchw,
)

STAGE = "segment"
NODE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/action100m/nodes")


@dataclass
class SegmentConfig:
    features: str = "vjepa2"  # vjepa2 | pixel
    model: str = "tiny"  # an HF id or local path of a V-JEPA 2 checkpoint, or "tiny" (random init)
    frame_step: int = 4
    window: int = 64
    window_stride: int = 8
    batch_windows: int = serving(8)
    decode_chunk: int = serving(256)  # kept frames decoded per read: bounds memory on long videos
    crop_size: int | None = None  # None: the model's own crop size
    device: str = serving("cpu")
    dtype: str = "float32"
    min_duration: float = 0.5  # a node keeps its two children only if both last this long
    # > 0: append the robust temporal change of the V-JEPA 2 features, with this weight (0: the paper)
    motion_weight: float = 0.0
    pixel_size: int = 32  # pixel features: frames are centre-cropped to this many pixels a side
    pixel_grid: int = 4  # ... and described on a grid of this many cells a side


@dataclass
class SegmentTree:
    """The node list of one video, and for each internal node the rank of the merge that formed it
    (higher = merged later = split first), which the flat cuts of the tree follow."""

    video_uid: str
    nodes: list[Node]
    merge_rank: dict[str, int] = field(default_factory=dict)


# -- windows over the kept frames -----------------------------------------------------------------


def robust_motion(features: torch.Tensor, lag: int) -> torch.Tensor:
    """sqrt |change| over `lag` frames, kept only where the change holds on both sides of a frame:
    a one-frame jump (a scene cut) is not motion and would be split off as a sliver; an action is."""
    change = (features[lag:] - features[:-lag]).abs()
    before = torch.cat([change[:1].expand(lag, *change.shape[1:]), change])
    after = torch.cat([change, change[-1:].expand(lag, *change.shape[1:])])
    return torch.minimum(before, after).sqrt()


def tubelet_to_frames(tokens: torch.Tensor, tubelet: int, num_frames: int) -> torch.Tensor:
    """(T / tubelet, D) temporal tokens → (num_frames, D): each token stands for its tubelet's frames."""
    return tokens.repeat_interleave(tubelet, dim=0)[:num_frames]


# -- frame features -------------------------------------------------------------------------------


def _kept_frames(video: VideoSource, cfg: SegmentConfig, size: int) -> Iterator[torch.Tensor]:
    """Kept frames in order, resized (short side) and centre-cropped to `size`, as uint8 CHW; each
    decoded once, in chunks, so memory stays bounded on long videos."""
    kept = every_nth_index(video.info.num_frames, cfg.frame_step)
    for _, frame in video.iter_frames(kept, chunk=cfg.decode_chunk):
        clip = center_crop(resize_short_side(to_float_tchw(frame[None]), short_side_for(size)), size)
        yield clip[0].mul(255).round().to(torch.uint8)


class VJEPA2Features:
    """Per-kept-frame features from a V-JEPA 2 encoder, windows batched within and across videos."""

    def __init__(self, cfg: SegmentConfig, model: torch.nn.Module | None = None):
        from action100m.models.vjepa2 import load_vjepa2

        self.cfg = cfg
        self.model = (
            model if model is not None else load_vjepa2(cfg.model, cfg.device, cfg.dtype, cfg.crop_size)
        )
        config = self.model.config
        self.tubelet = int(config.tubelet_size)
        self.crop = int(cfg.crop_size or config.crop_size)
        self.dtype = next(self.model.parameters()).dtype
        self.windows_encoded = 0

    @property
    def name(self) -> str:
        return f"vjepa2:{self.cfg.model}"

    def _windows(self, video: VideoSource) -> Iterator[tuple[int, torch.Tensor]]:
        """(first kept frame, uint8 clip T×C×H×W) for each window, from one pass over the video."""
        num_kept = len(every_nth_index(video.info.num_frames, self.cfg.frame_step))
        frames = _kept_frames(video, self.cfg, self.crop)
        buffer: deque[torch.Tensor] = deque()
        buffered_from = 0  # kept-frame index of buffer[0]
        for start in window_starts(num_kept, self.cfg.window, self.cfg.window_stride):
            end = min(start + self.cfg.window, num_kept)
            while buffered_from + len(buffer) < end:
                buffer.append(next(frames))
            while buffered_from < start:
                buffer.popleft()
                buffered_from += 1
            yield start, torch.stack(list(buffer)[: end - start])

    def _encode(self, clips: list[torch.Tensor]) -> torch.Tensor:
        """uint8 clips of equal length → (B, T, D) per-frame features."""
        length = clips[0].shape[0]
        padded = math.ceil(length / self.tubelet) * self.tubelet  # the encoder wants whole tubelets
        batch = torch.stack([torch.cat([c, c[-1:].expand(padded - length, -1, -1, -1)]) for c in clips])
        pixels = normalize(
            batch.flatten(0, 1).float().div_(255), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        )
        pixels = pixels.view(*batch.shape).to(self.cfg.device, self.dtype)
        with torch.inference_mode():
            tokens = self.model(pixel_values_videos=pixels, skip_predictor=True).last_hidden_state
        self.windows_encoded += len(clips)
        per_tubelet = tokens.view(len(clips), padded // self.tubelet, -1, tokens.shape[-1]).mean(dim=2)
        return torch.stack([tubelet_to_frames(t, self.tubelet, length) for t in per_tubelet]).float().cpu()

    def __call__(self, videos: Sequence[VideoSource]) -> list[np.ndarray]:
        """Features (kept frames × D) for each video, in order."""
        sums: list[torch.Tensor | None] = [None] * len(videos)
        counts = [torch.zeros(len(every_nth_index(v.info.num_frames, self.cfg.frame_step))) for v in videos]
        pending: dict[int, list[tuple[int, int, torch.Tensor]]] = {}  # clip length → windows waiting

        def flush(length: int) -> None:
            group = pending.pop(length)
            features = self._encode([clip for _, _, clip in group])
            for (video_index, start, _), feats in zip(group, features, strict=True):
                if sums[video_index] is None:
                    sums[video_index] = torch.zeros(
                        len(counts[video_index]), feats.shape[-1], dtype=torch.float64
                    )
                sums[video_index][start : start + length] += feats.double()
                counts[video_index][start : start + length] += 1

        for video_index, video in enumerate(videos):
            for start, clip in self._windows(video):
                pending.setdefault(clip.shape[0], []).append((video_index, start, clip))
                if len(pending[clip.shape[0]]) >= self.cfg.batch_windows:
                    flush(clip.shape[0])
        for length in list(pending):
            flush(length)
        features = [s / c.unsqueeze(1).double() for s, c in zip(sums, counts, strict=True)]
        if self.cfg.motion_weight > 0:
            features = [
                torch.cat(
                    [f, self.cfg.motion_weight * robust_motion(f, min(self.tubelet, len(f) - 1))], dim=1
                )
                for f in features
            ]
        return [f.numpy() for f in features]


class PixelFeatures:
    """Per-kept-frame features without an encoder: the colours on a coarse grid, and where on that
    grid things move (`robust_motion` of the pixels, pooled)."""

    name = "pixel"

    def __init__(self, cfg: SegmentConfig):
        self.cfg = cfg

    def _one(self, video: VideoSource) -> np.ndarray:
        frames = torch.stack(list(_kept_frames(video, self.cfg, self.cfg.pixel_size))).float() / 255
        grid = self.cfg.pixel_grid
        colour = F.adaptive_avg_pool2d(frames, grid).flatten(1)
        motion = F.adaptive_avg_pool2d(robust_motion(frames, 1).square(), grid).sqrt().flatten(1)
        return torch.cat([colour, motion], dim=1).double().numpy()

    def __call__(self, videos: Sequence[VideoSource]) -> list[np.ndarray]:
        return [self._one(video) for video in videos]


def build_extractor(cfg: SegmentConfig) -> VJEPA2Features | PixelFeatures:
    if cfg.features == "vjepa2":
        return VJEPA2Features(cfg)
    if cfg.features == "pixel":
        return PixelFeatures(cfg)
    raise ValueError(f"segment.features: unknown extractor {cfg.features!r} (vjepa2 | pixel)")


# -- clustering and the tree ----------------------------------------------------------------------


def chain_connectivity(n: int) -> sp.csr_matrix:
    """Each frame linked to its temporal neighbours only, so every cluster is a contiguous span."""
    ones = np.ones(max(n - 1, 0))
    return sp.diags([ones, ones], [-1, 1], shape=(n, n), format="csr")


def ward_merges(features: np.ndarray) -> np.ndarray:
    """The (n - 1, 2) merge list of Ward clustering under chain connectivity; merge i forms node n + i."""
    return ward_tree(features, connectivity=chain_connectivity(len(features)))[0]


def kept_frame_boundaries(num_frames: int, fps: float, frame_step: int) -> np.ndarray:
    """Times where kept frame m's span begins: 0, then halfway between kept frames, then the end."""
    num_kept = len(every_nth_index(num_frames, frame_step))
    inner = (frame_step * np.arange(1, num_kept) - frame_step / 2) / fps
    return np.concatenate([[0.0], inner, [num_frames / fps]])


def node_id(video_uid: str, start: float, end: float) -> str:
    """Stable across runs: the same video and span give the same id."""
    return str(uuid.uuid5(NODE_NAMESPACE, f"{video_uid}|{start:.6f}|{end:.6f}"))


def merges_to_tree(
    video_uid: str, merges: np.ndarray, boundaries: np.ndarray, min_duration: float
) -> SegmentTree:
    """Walk the merge tree from the root, breadth first; a node keeps its two children only if both
    last at least `min_duration`, otherwise it becomes a leaf."""
    num_leaves = len(boundaries) - 1
    span = {leaf: (leaf, leaf + 1) for leaf in range(num_leaves)}  # node → [first, last + 1) leaves
    for i, (left, right) in enumerate(merges):
        span[num_leaves + i] = (
            (span[left][0], span[right][1])
            if span[left][0] < span[right][0]
            else (span[right][0], span[left][1])
        )
    root = num_leaves + len(merges) - 1 if len(merges) else 0
    tree = SegmentTree(video_uid, [])
    queue: deque[tuple[int, str | None, int]] = deque([(root, None, 0)])
    while queue:
        cluster, parent, level = queue.popleft()
        first, last = span[cluster]
        start, end = float(boundaries[first]), float(boundaries[last])
        node = Node(node_id(video_uid, start, end), parent, level, start, end)
        tree.nodes.append(node)
        if cluster < num_leaves:
            continue
        children = sorted(merges[cluster - num_leaves], key=lambda c: span[c][0])
        durations = [boundaries[span[c][1]] - boundaries[span[c][0]] for c in children]
        if min(durations) >= min_duration:
            tree.merge_rank[node.node_id] = cluster - num_leaves
            queue.extend((int(c), node.node_id, level + 1) for c in children)
    return tree


def cut(tree: SegmentTree, segments: int) -> list[Node]:
    """The tree's own flat segmentation into (at most) `segments` spans: undo the latest merges first."""
    children: dict[str, list[Node]] = {}
    for node in tree.nodes:
        if node.parent_id is not None:
            children.setdefault(node.parent_id, []).append(node)
    current = [tree.nodes[0]]
    while len(current) < segments:
        splittable = [n for n in current if n.node_id in children]
        if not splittable:
            break
        latest = max(splittable, key=lambda n: tree.merge_rank[n.node_id])
        current.remove(latest)
        current.extend(children[latest.node_id])
    return sorted(current, key=lambda n: n.start)


# -- the stage ------------------------------------------------------------------------------------


def _check_video(video_uid: str, video: VideoSource, cfg: SegmentConfig) -> None:
    info = video.info
    if info.duration <= 0:
        raise StageError(video_uid, STAGE, "zero duration")
    if len(every_nth_index(info.num_frames, cfg.frame_step)) < 2:
        raise StageError(
            video_uid, STAGE, f"{info.num_frames} frames: fewer than two kept frames (1 of {cfg.frame_step})"
        )


def segment_videos(
    videos: Sequence[tuple[str, VideoSource]], cfg: SegmentConfig, extractor=None
) -> list[SegmentTree | StageError]:
    """Segment each (video_uid, source); one result per video, a `StageError` for a video that fails."""
    extractor = extractor or build_extractor(cfg)
    results: list[SegmentTree | StageError | None] = [None] * len(videos)
    usable: list[int] = []
    for i, (uid, video) in enumerate(videos):
        try:
            _check_video(uid, video, cfg)
            usable.append(i)
        except StageError as err:
            results[i] = err
        except VideoError as err:
            results[i] = StageError(uid, STAGE, str(err))
    try:
        features = extractor([videos[i][1] for i in usable])
    except VideoError:  # one bad video in the batch: redo them one by one to find it
        features = []
        for i in usable:
            try:
                features.extend(extractor([videos[i][1]]))
            except VideoError as err:
                results[i] = StageError(videos[i][0], STAGE, str(err))
                features.append(None)
    for i, feats in zip(usable, features, strict=True):
        if feats is None:
            continue
        uid, video = videos[i]
        if not np.isfinite(feats).all():
            results[i] = StageError(uid, STAGE, "features contain NaN or infinity")
            continue
        info = video.info
        boundaries = kept_frame_boundaries(info.num_frames, info.fps, cfg.frame_step)
        results[i] = merges_to_tree(uid, ward_merges(feats), boundaries, cfg.min_duration)
    return results  # type: ignore[return-value]


# -- quality against ground truth (SynthActions) --------------------------------------------------


def score_tree(
    tree: SegmentTree, truth: dict, tolerance: float = 0.5, level: str = "step"
) -> dict[str, float]:
    """Boundary precision/recall/F1 at ±`tolerance` s and mean IoU of the tree's own flat cut with as
    many segments as the ground truth has (its steps or tasks, the pauses and the cuts between them)."""
    from action100m.synth.scoring import boundary_prf, mean_iou, truth_boundaries, truth_segments

    true_boundaries = truth_boundaries(truth, level)
    segments = cut(tree, len(true_boundaries) + 1)
    score = boundary_prf([n.start for n in segments[1:]], true_boundaries, tolerance)
    iou = mean_iou([(n.start, n.end) for n in segments], truth_segments(truth, level))
    return {"precision": score.precision, "recall": score.recall, "f1": score.f1, "miou": iou}
