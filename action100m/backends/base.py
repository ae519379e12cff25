"""The three model interfaces shared by captioning and refinement, and their per-item error.

Every batch call returns one entry per input, in input order: the generated text, or a `BackendError`
for that item. One failed request or one bad input never loses the rest of the batch; the caller
records the error (stage, item, reason) and carries on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import torch

from action100m.errors import Action100MError

Message = dict[str, Any]  # OpenAI-style chat message: {"role": ..., "content": str | [parts]}


class BackendError(Action100MError):
    """A model backend failed, for one item or at start-up; one line naming backend, model and reason.

    `retryable`: the request may well succeed later (its server was down, overloaded or slow), so a
    rerun must send it again; otherwise the failure is the reply's own (a request the server refuses,
    an empty reply), the same request would fail the same way, and it is recorded as final.
    `server`: the address the request went to (without credentials), when it went to one."""

    def __init__(
        self, backend: str, model_id: str, reason: str, retryable: bool = False, server: str | None = None
    ):
        self.backend = backend
        self.model_id = model_id
        self.reason = " ".join(reason.split())
        self.retryable = retryable
        self.server = server
        super().__init__(f"{backend} backend, model '{model_id}': {self.reason}")


@dataclass
class GenerationConfig:
    """Decoding settings. Greedy unless `do_sample`; `seed` makes sampling repeatable where supported."""

    max_new_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    do_sample: bool = False
    seed: int | None = None


class Backend(ABC):
    """What every backend exposes for provenance and clean-up."""

    kind: str  # "transformers" or "openai"
    model_id: str
    generation: GenerationConfig

    #: Set once the backend gave up waiting for its server: every later request fails at once.
    outage: str | None = None

    def error(self, reason: str, retryable: bool = False, server: str | None = None) -> BackendError:
        return BackendError(self.kind, self.model_id, reason, retryable, server)

    def describe(self) -> dict[str, Any]:
        """What produced the text: backend, model id and settings; never credentials."""
        return {"backend": self.kind, "model": self.model_id, "generation": asdict(self.generation)}

    def close(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Release sockets, threads or memory; the default holds none."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model_id!r})"


class ImageCaptioner(Backend):
    @abstractmethod
    def caption_images(self, images: list[torch.Tensor], prompt: str) -> list[str | BackendError]:
        """One caption per uint8 HWC (RGB) image."""


class VideoCaptioner(Backend):
    @abstractmethod
    def caption_videos(self, clips: list[torch.Tensor], prompt: str) -> list[str | BackendError]:
        """One caption per uint8 THWC (RGB) clip."""


class LLM(Backend):
    #: Whether `json_schema` constrains decoding; when False the caller must validate the output.
    enforces_json_schema: bool = False

    @abstractmethod
    def complete(
        self, conversations: list[list[Message]], json_schema: dict[str, Any] | None = None
    ) -> list[str | BackendError]:
        """The assistant's reply to each conversation (OpenAI-style messages, text content)."""


def check_image(image: Any) -> str | None:
    """Why `image` is not a uint8 HWC RGB tensor, or None when it is."""
    if not isinstance(image, torch.Tensor):
        return f"image must be a torch.Tensor, got {type(image).__name__}"
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[-1] != 3 or 0 in image.shape:
        return f"image must be a non-empty uint8 HxWx3 tensor, got {image.dtype} {tuple(image.shape)}"
    return None


def check_clip(clip: Any) -> str | None:
    """Why `clip` is not a uint8 THWC RGB tensor, or None when it is."""
    if not isinstance(clip, torch.Tensor):
        return f"clip must be a torch.Tensor, got {type(clip).__name__}"
    if clip.dtype != torch.uint8 or clip.ndim != 4 or clip.shape[-1] != 3 or 0 in clip.shape:
        return f"clip must be a non-empty uint8 TxHxWx3 tensor, got {clip.dtype} {tuple(clip.shape)}"
    return None
