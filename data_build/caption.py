"""Stage 2: the Tree-of-Captions.

Every leaf gets a caption of its middle frame; every node gets a caption of `frames_per_segment`
frames sampled uniformly over its span, and a short action label from the same frames. All frames a
video's nodes need are decoded in one pass over the sorted union of their indices; a node's request
goes out as soon as its last frame arrives, so only the frames of unfinished nodes are held. Requests
of many nodes and videos go to the backends in batches, in a worker thread, while decoding goes on.

A failed request becomes a `CaptionFailure` of its node and field, `retryable` when the backend says
so (its server was down or overloaded); `redo` asks for exactly such (node, field) pairs again.

`mode=synthetic` asks SynthActions' ground-truth describer instead of models (the CPU demo).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from action100m.backends import BackendConfig, BackendError, ImageCaptioner, VideoCaptioner
from action100m.backends.config import serving
from action100m.dataset.schema import Node, Provenance, VideoRecord
from action100m.errors import Action100MError, StageError
from action100m.video import VideoError, VideoSource
from action100m.video.sampling import mid_frame_index, uniform_indices
from action100m.video.transforms import center_crop, resize_short_side, to_float_tchw

STAGE = "caption"
FIELDS = {"image": ("frame_caption",), "video": ("segment_caption", "action_label")}
Redo = dict[str, set[tuple[str, str]]]  # video_uid → the (node_id, field) pairs to request


@dataclass
class CaptionConfig:
    mode: str = "models"  # models | synthetic (SynthActions' ground-truth describer, no frames)
    frames_per_segment: int = 32
    segment_frame_size: int = 320  # segment frames: short side resized, then centre-cropped square
    image_short_side: int | None = None  # mid-frames: None keeps the decoded size
    frame_prompt: str = "Describe this image in detail."
    segment_prompt: str = (
        "Describe this video in detail: the scene, the people and objects, and what happens."
    )
    action_prompt: str = "What is the main action in this video? Answer with a short verb phrase only."
    prompt_version: str = "caption-v1"
    decode_chunk: int = serving(64)  # frames per read during the one pass
    batch_nodes: int = serving(64)  # nodes per backend call
    max_pending_batches: int = serving(2)  # batches in flight while decoding goes on (bounds memory)
    frame_captioner: BackendConfig | None = None  # for the builder to build (mode=models)
    segment_captioner: BackendConfig | None = None  # segment captions and action labels


class CaptionFailure(StageError):
    """A failed request for one field of one node; `retryable`: a backend failure a rerun retries,
    `server`: where the request went."""

    def __init__(self, video_uid: str, node_id: str, field_name: str, error: BackendError):
        super().__init__(video_uid, STAGE, f"{field_name}: {error}", node_id)
        self.field_name, self.retryable, self.server = field_name, error.retryable, error.server


@dataclass
class CaptionResult:
    failures: list[StageError] = field(default_factory=list)
    frames_decoded: int = 0
    frames_needed: int = 0  # with repeats across nodes: what per-node decoding would read
    image_requests: int = 0
    video_requests: int = 0


@dataclass
class _Task:
    """One node's request: which frames it needs, and the ones that have arrived."""

    record: VideoRecord
    node: Node
    kind: str  # "image" (leaf mid-frame) or "video" (segment frames)
    fields: tuple[str, ...]  # of FIELDS[kind], the ones to request
    frames: list[torch.Tensor | None]
    missing: int


def segment_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 THWC → uint8 T×size×size×C: short side resized to `size`, centre-cropped square."""
    clip = center_crop(resize_short_side(to_float_tchw(frames), size), size)
    return clip.permute(0, 2, 3, 1).mul(255).round().to(torch.uint8)


def image_frames(frames: torch.Tensor, short_side: int | None) -> torch.Tensor:
    """uint8 THWC, the short side resized to `short_side` (None: as decoded)."""
    if short_side is None:
        return frames
    return (
        resize_short_side(to_float_tchw(frames), short_side)
        .permute(0, 2, 3, 1)
        .mul(255)
        .round()
        .to(torch.uint8)
    )


class _Dispatcher:
    """Collects finished tasks into batches and runs each batch on the backends in a worker thread."""

    def __init__(
        self,
        cfg: CaptionConfig,
        image: ImageCaptioner | None,
        video: VideoCaptioner | None,
        result: CaptionResult,
    ):
        self.cfg, self.image, self.video, self.result = cfg, image, video, result
        self.ready: dict[str, list[_Task]] = {"image": [], "video": []}
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caption")
        self.pending: list[Future] = []

    def add(self, task: _Task) -> None:
        self.ready[task.kind].append(task)
        if len(self.ready[task.kind]) >= self.cfg.batch_nodes:
            self._submit(task.kind)

    def _submit(self, kind: str) -> None:
        batch, self.ready[kind] = self.ready[kind], []
        if not batch:
            return
        while len(self.pending) >= self.cfg.max_pending_batches:
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(self._run, kind, batch))

    def _run(self, kind: str, batch: list[_Task]) -> None:
        if kind == "image":
            images = [task.frames[0] for task in batch]
            self.result.image_requests += len(batch)
            for task, text in zip(
                batch, self.image.caption_images(images, self.cfg.frame_prompt), strict=True
            ):
                self._store(task, "frame_caption", text)
            return
        clips = [torch.stack(task.frames) for task in batch]
        for field_name, prompt in (
            ("segment_caption", self.cfg.segment_prompt),
            ("action_label", self.cfg.action_prompt),
        ):
            chosen = [i for i, task in enumerate(batch) if field_name in task.fields]
            if not chosen:
                continue
            self.result.video_requests += len(chosen)
            texts = self.video.caption_videos([clips[i] for i in chosen], prompt)
            for i, text in zip(chosen, texts, strict=True):
                self._store(batch[i], field_name, text)

    def _store(self, task: _Task, field_name: str, text: str | BackendError) -> None:
        if isinstance(text, BackendError):
            self.result.failures.append(
                CaptionFailure(task.record.video_uid, task.node.node_id, field_name, text)
            )
        else:
            setattr(task.node, field_name, text.strip())

    def finish(self) -> None:
        for kind in self.ready:
            self._submit(kind)
        for future in self.pending:
            future.result()
        self.pool.shutdown()


def _plan(
    record: VideoRecord,
    video: VideoSource,
    cfg: CaptionConfig,
    result: CaptionResult,
    with_images: bool,
    with_videos: bool,
    only: set[tuple[str, str]] | None,
) -> tuple[list[_Task], dict[int, list]]:
    """The tasks of one video (of the (node, field) pairs in `only`, when given), and for each frame
    index the (task, slot) pairs waiting for it."""
    info = video.info
    leaves = {node.node_id for node in record.leaves()}
    tasks: list[_Task] = []
    waiting: dict[int, list[tuple[_Task, int]]] = defaultdict(list)
    for node in record.nodes:
        kinds = ["image"] if with_images and node.node_id in leaves else []
        kinds += ["video"] if with_videos else []
        fields = {
            kind: tuple(f for f in FIELDS[kind] if only is None or (node.node_id, f) in only)
            for kind in kinds
        }
        fields = {kind: names for kind, names in fields.items() if names}
        if not fields:
            continue
        if not node.end > node.start:
            reason = f"zero-length span [{node.start}, {node.end}]"
            result.failures.append(StageError(record.video_uid, STAGE, reason, node.node_id))
            continue
        for kind, names in fields.items():
            if kind == "image":
                indices = [mid_frame_index(node.start, node.end, info.fps, info.num_frames)]
            else:
                count = cfg.frames_per_segment
                indices = uniform_indices(node.start, node.end, info.fps, info.num_frames, count)
            task = _Task(record, node, kind, names, [None] * len(indices), len(indices))
            tasks.append(task)
            result.frames_needed += len(indices)
            for slot, index in enumerate(indices):
                waiting[index].append((task, slot))
    return tasks, waiting


def _caption_video(
    record: VideoRecord,
    video: VideoSource,
    cfg: CaptionConfig,
    dispatcher: _Dispatcher,
    result: CaptionResult,
    only: set[tuple[str, str]] | None,
) -> None:
    tasks, waiting = _plan(
        record, video, cfg, result, dispatcher.image is not None, dispatcher.video is not None, only
    )
    try:
        for index, frame in video.iter_frames(list(waiting), chunk=cfg.decode_chunk):
            result.frames_decoded += 1
            prepared: dict[str, torch.Tensor] = {}
            for task, slot in waiting.pop(index):
                if task.kind not in prepared:
                    prepared[task.kind] = (
                        image_frames(frame[None], cfg.image_short_side)
                        if task.kind == "image"
                        else segment_frames(frame[None], cfg.segment_frame_size)
                    )[0]
                task.frames[slot] = prepared[task.kind]
                task.missing -= 1
                if task.missing == 0:
                    dispatcher.add(task)
    except VideoError as err:
        unfinished = {id(t): t for t in tasks if t.missing > 0}
        for task in unfinished.values():
            result.failures.append(StageError(record.video_uid, STAGE, str(err), task.node.node_id))


def _record_provenance(record: VideoRecord, roles: dict[str, dict[str, Any]], prompt_version: str) -> None:
    record.provenance = record.provenance or Provenance()
    for role, described in roles.items():
        record.provenance.models[role] = described["model"]
    record.provenance.prompt_versions["caption"] = prompt_version
    record.provenance.extra.setdefault("caption", {}).update(roles)


def caption_records(
    videos: Sequence[tuple[VideoRecord, VideoSource]],
    cfg: CaptionConfig,
    frame_captioner: ImageCaptioner | None = None,
    segment_captioner: VideoCaptioner | None = None,
    redo: Redo | None = None,
) -> CaptionResult:
    """Caption the nodes of each (record, source) in place; failures are listed per node, never raised.

    A video named in `redo` gets only the (node_id, field) pairs listed there; the others, all."""
    result = CaptionResult()
    dispatcher = _Dispatcher(cfg, frame_captioner, segment_captioner, result)
    try:
        for record, video in videos:
            try:
                _caption_video(record, video, cfg, dispatcher, result, (redo or {}).get(record.video_uid))
            except VideoError as err:  # unreadable before the first frame: every node fails
                for node in record.nodes:
                    result.failures.append(StageError(record.video_uid, STAGE, str(err), node.node_id))
    finally:
        dispatcher.finish()
    roles = {}
    if frame_captioner is not None:
        roles["frame_caption"] = frame_captioner.describe()
    if segment_captioner is not None:
        roles["segment_caption"] = roles["action_label"] = segment_captioner.describe()
    for record, _ in videos:
        _record_provenance(record, roles, cfg.prompt_version)
    return result


def caption_synthetic(
    records: Sequence[VideoRecord], describe: Callable[[str, float, float], dict[str, str]], describer_id: str
) -> CaptionResult:
    """`mode=synthetic`: SynthActions' ground-truth describer stands in for the captioning models."""
    result = CaptionResult()
    for record in records:
        leaves = {node.node_id for node in record.leaves()}
        for node in record.nodes:
            try:
                described = describe(record.video_uid, node.start, node.end)
            except (Action100MError, ValueError) as err:
                result.failures.append(StageError(record.video_uid, STAGE, str(err), node.node_id))
                continue
            node.segment_caption, node.action_label = described["segment_caption"], described["action_label"]
            if node.node_id in leaves:
                node.frame_caption = described["frame_caption"]
        described_by = {"backend": "synthetic", "model": describer_id}
        _record_provenance(
            record,
            {r: described_by for r in ("frame_caption", "segment_caption", "action_label")},
            "synthetic",
        )
    return result
