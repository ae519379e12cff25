"""Drawing a spec into RGB frames with numpy, and encoding it to H.264.

Each object is drawn inside its own bounding box from a signed distance in object coordinates, which
gives anti-aliased edges: sub-pixel motion still changes pixels, so slow steps stay visible. Every
object carries a dark marker off its axes so that rotating a circle or flipping a square shows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from action100m.synth.world import (
    BACKGROUNDS,
    EXTENT,
    SIZES,
    SKINS,
    TABLES,
    ObjectState,
    Scene,
    VideoSpec,
    frame_state,
)
from action100m.video.writer import write_video

MARKER = (0.42, 0.08, 0.28)  # centre x, y and radius of the marker, in radii
MARKER_SHADE = 0.4
PALM, ARM = 0.07, 0.045  # palm radius and arm half-width, as fractions of the short side
TEXTURE_AMPLITUDE = 9.0  # grey levels: visible, but far below the contrast of any object

_TRIANGLE_NORMALS = ((0.0, 1.0), (-math.sqrt(3) / 2, -0.5), (math.sqrt(3) / 2, -0.5))  # of its sides
_TRIANGLE_INRADIUS = 0.65  # circumradius 1.3: looks about as big as the circle and the square


def _signed_distance(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Positive inside, in object radii; shapes point up (y grows downwards, as in the image)."""
    if shape == "circle":
        return 1.0 - np.hypot(x, y)
    if shape == "square":
        return 0.85 - np.maximum(np.abs(x), np.abs(y))
    if shape == "triangle":
        return _TRIANGLE_INRADIUS - np.maximum.reduce([nx * x + ny * y for nx, ny in _TRIANGLE_NORMALS])
    if shape == "cross":
        ax, ay = np.abs(x), np.abs(y)
        return np.maximum(np.minimum(1.0 - ax, 0.34 - ay), np.minimum(0.34 - ax, 1.0 - ay))
    raise ValueError(f"unknown shape {shape!r}")


def _coverage(distance_px: np.ndarray) -> np.ndarray:
    return np.clip(distance_px + 0.5, 0.0, 1.0)


Region = tuple[tuple[slice, slice], np.ndarray, np.ndarray]


def _region(
    frame: np.ndarray, cx: float, cy: float, left: float, up: float, right: float, down: float
) -> Region | None:
    """The frame's slices spanning `left`..`right`, `up`..`down` pixels around (cx, cy), and the offsets
    of their pixel centres from (cx, cy); None when that lies outside the frame."""
    height, width = frame.shape[:2]
    x0, x1 = max(0, math.floor(cx - left)), min(width, math.ceil(cx + right))
    y0, y1 = max(0, math.floor(cy - up)), min(height, math.ceil(cy + down))
    if x0 >= x1 or y0 >= y1:
        return None
    u = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
    v = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
    return (slice(y0, y1), slice(x0, x1)), u, v


def _blend(
    frame: np.ndarray, where: tuple[slice, slice], layers: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    """Paint (alpha map, rgb) layers in order over one region of a uint8 frame."""
    region = frame[where].astype(np.float32)
    for alpha, rgb in layers:
        region += (rgb - region) * alpha[..., None]
    frame[where] = (region + 0.5).astype(np.uint8)


def draw_object(frame: np.ndarray, state: ObjectState) -> None:
    if state.alpha <= 0.0:
        return
    height, width = frame.shape[:2]
    radius = SIZES[state.size] * state.scale * min(width, height)
    cx, cy = state.x * width, state.y * height
    half = radius * EXTENT + 2
    region = _region(frame, cx, cy, half, half, half, half)
    if region is None:
        return
    where, u, v = region
    # Screen offset = rotate(angle) . flip(x) . shape; undo it to get object coordinates.
    cos, sin = math.cos(math.radians(state.angle)), math.sin(math.radians(state.angle))
    flip = math.copysign(max(abs(state.flip), 1e-3), state.flip)
    x = (cos * u + sin * v) / (radius * flip)
    y = (-sin * u + cos * v) / radius
    px_per_unit = radius * min(1.0, abs(flip))
    body = _coverage(_signed_distance(state.shape, x, y) * px_per_unit)
    mx, my, mr = MARKER
    marker = _coverage((mr - np.hypot(x - mx, y - my)) * px_per_unit) * body
    rgb = np.asarray(state.rgb, np.float32)
    _blend(frame, where, [(body * state.alpha, rgb), (marker * state.alpha, rgb * MARKER_SHADE)])


def draw_hand(frame: np.ndarray, state: ObjectState, skin: str) -> None:
    """A palm touching the object from below and an arm reaching down out of the frame."""
    height, width = frame.shape[:2]
    short = min(width, height)
    palm, arm = PALM * short, ARM * short
    cx = state.x * width
    cy = state.y * height + SIZES[state.size] * state.scale * short + 0.6 * palm
    region = _region(frame, cx, cy, 1.2 * palm + 2, palm + 2, 1.2 * palm + 2, height - cy)
    if region is None:
        return
    where, u, v = region
    palm_distance = palm - np.hypot(u / 1.2, v)
    arm_distance = np.minimum(arm - np.abs(u), v)
    alpha = _coverage(np.maximum(palm_distance, arm_distance))
    _blend(frame, where, [(alpha, np.asarray(SKINS[skin], np.float32))])


def background(scene: Scene, width: int, height: int) -> np.ndarray:
    """The still part of a scene: a textured backdrop and, optionally, a table with wood grain."""
    short = min(width, height)
    y = (np.arange(height, dtype=np.float32) + 0.5)[:, None]
    x = (np.arange(width, dtype=np.float32) + 0.5)[None, :]
    if scene.texture == "gradient":
        texture = (y / height - 0.5) * 2 * TEXTURE_AMPLITUDE
    elif scene.texture == "stripes":
        texture = TEXTURE_AMPLITUDE * np.sin(2 * np.pi * (x + y) / (short / 6))
    elif scene.texture == "checker":
        cells = (np.floor(x / (short / 8)) + np.floor(y / (short / 8))) % 2
        texture = (2 * cells - 1) * TEXTURE_AMPLITUDE
    else:
        texture = np.zeros((1, 1), np.float32)
    texture = np.broadcast_to(texture, (height, width))
    image = np.asarray(BACKGROUNDS[scene.background], np.float32) + texture[..., None]
    if scene.table is not None:
        top = round(scene.table_top * height)
        grain = 6.0 * np.sin(2 * np.pi * y[top:] / (short / 12))  # horizontal, so one column broadcasts
        image[top:] = np.asarray(TABLES[scene.table], np.float32) + grain[..., None]
        image[top : top + max(1, short // 64)] *= 0.7  # the table's front edge
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def render_frames(spec: VideoSpec) -> Iterator[np.ndarray]:
    """The frames of `spec`, (H, W, 3) uint8 RGB. A still frame is yielded again as the same array
    instead of being redrawn, so pauses cost nothing; do not modify yielded frames."""
    backgrounds = [background(scene, spec.width, spec.height) for scene in spec.scenes]
    previous_key, frame = None, None
    for index in range(spec.num_frames):
        state = frame_state(spec, index)
        key = (state.scene, state.objects, state.step)
        if key != previous_key:
            frame = backgrounds[state.scene].copy()
            for obj in state.objects:
                draw_object(frame, obj)
            skin = spec.scenes[state.scene].hand
            if state.step is not None and skin is not None:
                draw_hand(frame, state.objects[spec.steps[state.step].obj], skin)
            previous_key = key
        yield frame


def render_video(spec: VideoSpec, path: str | os.PathLike, crf: int = 16, preset: str = "veryfast") -> Path:
    """Encode `spec` to an H.264 mp4. One encoder thread: x264's output depends on its thread count,
    and the same seed must give the same bytes on every machine. At crf 16 a keyframe in a still
    stretch barely changes a pixel, so stills stay still after decoding."""
    return write_video(path, render_frames(spec), fps=spec.fps, crf=crf, preset=preset, threads=1)
