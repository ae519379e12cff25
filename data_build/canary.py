"""The canary: before the first video is processed, every configured backend answers one real request
of the kind the build will send.

A server that lists the model but refuses the request (an architecture or input kind its engine does
not take, a prompt over its context) would otherwise fail every request of the whole build, one
recorded failure at a time. The canary sends the build's own requests for one readable video of this
worker's first shard: its middle frame to the frame captioner, a clip of `frames_per_segment` frames
to the segment captioner (caption and action label, the build's prompts and frame preprocessing,
through `caption_records`), and the first refine request of a two-level tree of that video, with the
answer's JSON schema, to the LLM (through `refine_records`, one round). A failed request stops the
build in one line naming the role, the server, the status and the reply's error; nothing is cached and
no shard is touched. A reply that is not a valid annotation still counts as an answer: that is the
content's failure, which the build records per node.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from action100m.dataset.schema import Node, VideoRecord
from action100m.errors import Action100MError, StageError
from data_build.caption import CaptionConfig, caption_records
from data_build.refine import RefineConfig, refine_config, refine_records

log = logging.getLogger(__name__)
PLACEHOLDER = "A person picks up an object and puts it down."  # when no captioner ran before the LLM


class CanaryFailed(Action100MError):
    """A backend failed its canary request; `retryable`: its server did not answer (rather than refused)."""

    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


def _tree(video_uid: str, duration: float) -> VideoRecord:
    """A root over the whole video and its two halves: the smallest tree with a node to refine."""
    half = round(duration / 2, 3)
    nodes = [
        Node("canary-root", None, 0, 0.0, duration),
        Node("canary-first", "canary-root", 1, 0.0, half),
        Node("canary-second", "canary-root", 1, half, duration),
    ]
    return VideoRecord(video_uid, {"title": "canary", "duration": duration}, nodes)


def _fail(role: str, backend: Any, failure: StageError) -> CanaryFailed:
    server = getattr(failure, "server", None) or getattr(backend, "server", None) or "a local model"
    model = getattr(backend, "model_id", "?")
    retryable = bool(getattr(failure, "retryable", False))
    advice = (
        "rerun once it answers" if retryable else "fix the server or the preset (canary=false skips this)"
    )
    return CanaryFailed(
        f"canary: {role} ({model}) at {server} failed before the first video: {failure.reason}; {advice}",
        retryable,
    )


def check_captioners(
    video_uid: str, source: Any, cfg: CaptionConfig, frame_captioner: Any, segment_captioner: Any
) -> dict[str, str] | None:
    """One frame caption, segment caption and action label of the whole video: their texts by field;
    None when the video itself could not be read (the next one is tried)."""
    record = VideoRecord(video_uid, {}, [Node("canary-root", None, 0, 0.0, source.info.duration)])
    result = caption_records([(record, source)], cfg, frame_captioner, segment_captioner)
    for failure in result.failures:
        field_name = getattr(failure, "field_name", None)
        if field_name is None:  # the video's own failure (a frame that would not decode), not a request's
            log.warning("canary: %s", failure)
            return None
        backend = frame_captioner if field_name == "frame_caption" else segment_captioner
        role = "caption.frame_captioner" if field_name == "frame_caption" else "caption.segment_captioner"
        raise _fail(role, backend, failure)
    node = record.nodes[0]
    fields = ("frame_caption", "segment_caption", "action_label")
    return {name: getattr(node, name) for name in fields if getattr(node, name)}


def check_llm(video_uid: str, duration: float, cfg: RefineConfig, llm: Any, captions: dict[str, str]) -> None:
    """One first-round refine request (the real prompt and schema) for the root of a two-level tree."""
    record = _tree(video_uid, duration)
    for node in record.nodes:
        node.segment_caption = captions.get("segment_caption", PLACEHOLDER)
        node.action_label = captions.get("action_label", PLACEHOLDER)
        if node.parent_id is not None:
            node.frame_caption = captions.get("frame_caption", PLACEHOLDER)
    one_round = dataclasses.replace(refine_config(cfg), rounds=1, max_repairs=0, min_duration=0.0)
    result = refine_records([record], one_round, llm)
    for failure in result.failures:
        if "backend:" in failure.reason:
            raise _fail("refine.llm", llm, failure)
        log.warning("canary: refine.llm answered, but not validly: %s", failure.reason)
