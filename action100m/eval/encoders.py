"""Video-text encoders behind one interface: VL-JEPA checkpoints and CLIP-style baselines.

Zero-shot scoring needs only `VideoTextEncoder`; `load_encoder` picks VL-JEPA (a checkpoint through
`VLJEPA.from_checkpoint`, imported on use) or any transformers CLIP/SigLIP model, so one
command gives side-by-side numbers for both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from action100m.errors import ConfigError
from action100m.eval.errors import EvalError
from action100m.video.transforms import normalize, preprocess_clip, to_float_tchw

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@runtime_checkable
class VideoTextEncoder(Protocol):
    """Embeds clips and texts into one space; both outputs are L2-normalised rows."""

    name: str
    num_frames: int
    crop_size: int

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (T, H, W, 3) -> float (T, 3, crop_size, crop_size); runs in DataLoader workers."""
        ...

    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        """float (B, T, 3, H, W) -> (B, D)."""
        ...

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """len(texts) strings -> (len(texts), D)."""
        ...


class FramePreprocessor:
    """Frames as a CLIP image processor prepares images, in torch: resize the short side and centre-crop
    (CLIP), or squash to a square (SigLIP). A plain object, so DataLoader workers receive it cheaply."""

    def __init__(self, crop_size: int, short_side: int | None, mean: Sequence[float], std: Sequence[float]):
        self.crop_size, self.short_side = crop_size, short_side
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if self.short_side is not None:
            return preprocess_clip(frames, self.crop_size, self.short_side, self.mean, self.std)
        size = (self.crop_size, self.crop_size)
        clip = F.interpolate(
            to_float_tchw(frames), size=size, mode="bilinear", align_corners=False, antialias=True
        )
        return normalize(clip, self.mean, self.std)


def _size(size: Any, key: str) -> int | None:
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


class CLIPEncoder:
    """A transformers CLIP-style model (CLIP, SigLIP, SigLIP 2, ...; hub id or local folder). A clip's
    embedding is the normalised mean of its frames' normalised image embeddings."""

    def __init__(self, model: str, num_frames: int = 8, device: str = "cpu", dtype: str = "float32"):
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        try:
            self.model = AutoModel.from_pretrained(model, dtype=DTYPES[dtype]).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            processor = AutoImageProcessor.from_pretrained(model)
        except (OSError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"cannot load CLIP-style model {model!r}: {first}") from err
        if not all(hasattr(self.model, f) for f in ("get_image_features", "get_text_features")):
            raise ConfigError(f"{model!r} ({type(self.model).__name__}) has no image and text towers")
        self.name, self.num_frames, self.device, self.dtype = (
            model,
            num_frames,
            torch.device(device),
            DTYPES[dtype],
        )
        crop = processor.crop_size if getattr(processor, "do_center_crop", False) else processor.size
        self.crop_size = int(_size(crop, "height") or _size(crop, "shortest_edge"))
        short_side = (
            _size(processor.size, "shortest_edge") if getattr(processor, "do_center_crop", False) else None
        )
        self.preprocess = FramePreprocessor(
            self.crop_size, short_side, processor.image_mean, processor.image_std
        )
        # SigLIP was trained on text padded to its full length; CLIP pools at the end-of-text token.
        self.padding = "max_length" if "siglip" in self.model.config.model_type else True
        self.max_length = int(self.model.config.text_config.max_position_embeddings)

    @staticmethod
    def _features(output: Any) -> torch.Tensor:
        # transformers 5 returns the projected embedding as pooler_output; 4.x returned the tensor.
        return output.pooler_output if hasattr(output, "pooler_output") else output

    @torch.no_grad()
    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        batch, frames = clips.shape[:2]
        pixels = clips.flatten(0, 1).to(self.device, self.dtype)
        per_frame = F.normalize(
            self._features(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1
        )
        return F.normalize(per_frame.view(batch, frames, -1).mean(dim=1), dim=-1)

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            texts, padding=self.padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        inputs = {k: v for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        return F.normalize(self._features(self.model.get_text_features(**inputs)).float(), dim=-1)


def load_vljepa(checkpoint: str, device: str = "cpu") -> VideoTextEncoder:
    """A VL-JEPA checkpoint, checked to have the Y-encoder zero-shot needs."""
    from action100m.models.vljepa import VLJEPA  # Lightning loads only when a VL-JEPA is scored

    if not Path(checkpoint).exists():
        raise ConfigError(f"checkpoint {checkpoint} does not exist")
    model = VLJEPA.from_checkpoint(checkpoint, map_location="cpu")
    if getattr(model, "y_encoder", True) is None or not callable(getattr(model, "embed_text", None)):
        raise EvalError(f"checkpoint {checkpoint} has no Y-encoder: zero-shot needs class-text embeddings")
    if isinstance(model, torch.nn.Module):
        model = model.to(device).eval()
    if not isinstance(getattr(model, "name", None), str):
        model.name = f"vljepa:{Path(checkpoint).name}"
    return model


def load_encoder(
    kind: str, checkpoint: str | None, model: str | None, num_frames: int, device: str, dtype: str
) -> VideoTextEncoder:
    """`vljepa`: the model in `checkpoint`; `clip`: the transformers model `model` at `num_frames`."""
    if kind == "vljepa":
        if not checkpoint:
            raise ConfigError("encoder=vljepa needs checkpoint=PATH (or encoder=clip encoder.model=ID)")
        return load_vljepa(checkpoint, device)
    if kind == "clip":
        if not model:
            raise ConfigError("encoder=clip needs encoder.model=ID (a transformers CLIP/SigLIP id or folder)")
        return CLIPEncoder(model, num_frames, device, dtype)
    raise ConfigError(f"unknown encoder kind {kind!r}; choose vljepa or clip")


def encoder_device(encoder: VideoTextEncoder) -> torch.device:
    """Where the encoder's inputs go: its `device`, else that of its first parameter, else the CPU."""
    device = getattr(encoder, "device", None)
    if isinstance(device, torch.device | str):
        return torch.device(device)
    if isinstance(encoder, torch.nn.Module):
        return next(encoder.parameters(), torch.empty(0)).device
    return torch.device("cpu")


def weights_sha256(path: str) -> str | None:
    """sha256 over a checkpoint file, or over a model folder's weight files in name order; None for a
    hub id that is not on disk (the result JSON then records the id alone)."""
    location = Path(path)
    if location.is_file():
        files = [location]
    elif location.is_dir():
        files = sorted(p for p in location.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".ckpt"))
    else:
        return None
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()
