"""uint8 frames → base64 data URLs for the Chat Completions protocol."""

from __future__ import annotations

import base64
import io

import torch
from PIL import Image


def encode_image(image: torch.Tensor, image_format: str = "jpeg", quality: int = 90) -> bytes:
    """A uint8 HWC RGB tensor as JPEG or PNG bytes."""
    buffer = io.BytesIO()
    pil = Image.fromarray(image.contiguous().numpy())  # HxWx3 uint8 is RGB
    if image_format == "jpeg":
        pil.save(buffer, format="JPEG", quality=quality)
    else:
        pil.save(buffer, format="PNG")
    return buffer.getvalue()


def image_data_url(image: torch.Tensor, image_format: str = "jpeg", quality: int = 90) -> str:
    data = base64.b64encode(encode_image(image, image_format, quality)).decode("ascii")
    return f"data:image/{image_format};base64,{data}"


def video_data_url(clip: torch.Tensor, quality: int = 90) -> str:
    """A THWC clip as vLLM's `video/jpeg` data URL: the frames' base64 JPEGs joined by commas."""
    frames = (base64.b64encode(encode_image(frame, "jpeg", quality)).decode("ascii") for frame in clip)
    return "data:video/jpeg;base64," + ",".join(frames)
