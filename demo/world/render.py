"""Drawing the world: backgrounds, anti-aliased shapes, whole clips, and clips as mp4.

Deterministic by construction: float32 maths and only seeded random state, so a
:class:`~demo.world.specs.ClipSpec` gives the same frames on every call and machine, and the
world ships as specs rather than video files.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from demo.video.mp4 import write_mp4
from demo.world.attributes import REF, WorldObject, object_state
from demo.world.shapes import GRID_L, GRID_N, sdf_grid, shape_extents
from demo.world.specs import ClipSpec
from demo.world.text import BACKGROUNDS

RGB = {
    "red": (235, 45, 45), "orange": (255, 145, 20), "yellow": (250, 230, 40), "green": (50, 205, 70),
    "blue": (45, 115, 255), "purple": (165, 70, 235), "pink": (255, 125, 205), "white": (245, 245, 245),
}  # fmt: skip


def _mix(dark: tuple[int, int, int], light: tuple[int, int, int], t: np.ndarray) -> np.ndarray:
    """Blend two colours by ``t`` in [0, 1] (broadcast to (..., 3) float32)."""
    lo, hi = np.asarray(dark, dtype=np.float32), np.asarray(light, dtype=np.float32)
    return lo + (hi - lo) * t.astype(np.float32)


def _background(name: str, size: int, seed: int) -> np.ndarray:
    """Static (size, size, 3) float32 background; dark and desaturated so every colour shows."""
    rng = np.random.default_rng(seed)
    xy = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(REF / size)
    x, y = xy[None, :, None], xy[:, None, None]
    if name == "dark":  # with a faint vignette
        img = _mix((24, 24, 30), (15, 15, 19), ((x - 64) ** 2 + (y - 64) ** 2) / 8192)
    elif name == "dusk":  # indigo sky to a dull red horizon
        img = _mix((30, 24, 66), (100, 52, 60), y / REF)
    elif name == "ocean":  # teal surface to navy depth
        img = _mix((14, 62, 84), (6, 22, 50), y / REF)
    elif name == "checkered":  # 16 px squares
        ox, oy = rng.integers(0, 16, size=2)
        img = _mix((38, 38, 44), (72, 72, 80), ((x + ox) // 16 + (y + oy) // 16) % 2)
    elif name == "striped":  # 16 px period, horizontal, vertical or diagonal
        angle = math.radians(45.0 * int(rng.integers(4)))
        phase = ((x * math.cos(angle) + y * math.sin(angle)) / 16.0 + rng.random()) % 1.0
        img = _mix((32, 32, 42), (66, 62, 82), np.clip(4.0 * np.abs(phase - 0.5) - 0.5, 0.0, 1.0))
    elif name == "dotted":  # 3.5 px dots on a 16 px grid
        ox, oy = rng.uniform(0, 16, size=2)
        dist = np.hypot((x + ox) % 16 - 8, (y + oy) % 16 - 8)
        img = _mix((26, 26, 32), (92, 92, 104), np.clip(3.5 - dist, 0.0, 1.0))
    elif name == "noisy":  # grey 2 px blocks, so still noisy after resizing to 64
        blocks = rng.uniform(-24, 24, size=(64, 64, 1)).astype(np.float32)
        idx = np.minimum((xy / 2).astype(np.int64), 63)
        img = np.float32(46) + blocks[idx[:, None], idx[None, :]] + np.asarray([0, -2, 2], dtype=np.float32)
    else:
        raise ValueError(f"unknown background {name!r}; expected one of {BACKGROUNDS}")
    img = img * np.float32(rng.uniform(0.85, 1.15)) + rng.uniform(-5, 5, size=3).astype(np.float32)
    return np.broadcast_to(np.clip(img, 0, 255), (size, size, 3)).astype(np.float32)


def _draw(frame: np.ndarray, obj: WorldObject, state: tuple[float, ...], scale: float) -> None:
    """Composite one object into ``frame`` (H, W, 3) float32 in place, only on its bounding box."""
    x, y, r, angle, opacity = state
    if opacity <= 0.0:
        return
    cx, cy, rad = x * scale, y * scale, r * scale
    reach = shape_extents(obj.shape, None)[0] * rad + 1.5
    h, w = frame.shape[:2]
    x_lo, x_hi = max(int(cx - reach), 0), min(int(math.ceil(cx + reach)), w)
    y_lo, y_hi = max(int(cy - reach), 0), min(int(math.ceil(cy + reach)), h)
    if x_lo >= x_hi or y_lo >= y_hi:
        return
    dx = (np.arange(x_lo, x_hi, dtype=np.float32) + np.float32(0.5 - cx)) / np.float32(rad)
    dy = (np.arange(y_lo, y_hi, dtype=np.float32) + np.float32(0.5 - cy)) / np.float32(rad)
    c, s = np.float32(math.cos(math.radians(angle))), np.float32(math.sin(math.radians(angle)))
    # Undo the clockwise rotation to look the pixel up in the shape's own frame.
    k, off = np.float32((GRID_N - 1) / (2 * GRID_L)), np.float32((GRID_N - 1) / 2)
    gx = np.clip((c * dx[None, :] + s * dy[:, None]) * k + off, 0, GRID_N - 1.001)
    gy = np.clip((c * dy[:, None] - s * dx[None, :]) * k + off, 0, GRID_N - 1.001)
    ix, iy = gx.astype(np.int32), gy.astype(np.int32)
    fx, fy = gx - ix, gy - iy
    grid = sdf_grid(obj.shape)
    top = grid[iy, ix] * (1 - fx) + grid[iy, ix + 1] * fx
    bottom = grid[iy + 1, ix] * (1 - fx) + grid[iy + 1, ix + 1] * fx
    sd = (top * (1 - fy) + bottom * fy) * np.float32(rad)  # signed distance in pixels
    alpha = np.clip(np.float32(0.5) - sd, 0, 1) * np.float32(opacity)
    # A darker 1.5 px rim keeps touching objects and pale backgrounds apart.
    shade = np.float32(1) - np.float32(0.45) * np.clip(sd + np.float32(1.8), 0, 1)
    colour = np.asarray(RGB[obj.colour], dtype=np.float32) * shade[..., None]
    region = frame[y_lo:y_hi, x_lo:x_hi]
    region += (colour - region) * alpha[..., None]


def render(spec: ClipSpec) -> np.ndarray:
    """Render ``spec`` as (T, size, size, 3) uint8 frames, T = round(duration * fps).

    Deterministic: the same spec gives identical frames on every call and machine
    (float32 maths, no global random state).
    """
    t, size = spec.num_frames, spec.size
    if t < 2:
        raise ValueError(f"clip {spec.id} needs at least 2 frames, got {t}")
    base = _background(spec.attributes.background, size, spec.seed)
    frames = np.empty((t, size, size, 3), dtype=np.uint8)
    scale = size / REF
    for i in range(t):
        frame = base.copy()
        for obj in spec.attributes.objects:
            _draw(frame, obj, object_state(obj, i, t - 1), scale)
        frames[i] = np.clip(frame + np.float32(0.5), 0, 255).astype(np.uint8)
    return frames


def render_to(spec: ClipSpec, path: str | Path) -> Path:
    """Render ``spec`` and write it to ``path`` as mp4, atomically (temp file, then rename).

    Always one x264 thread: the bitstream depends on the encoder's thread count, and a clip's
    bytes must not depend on who renders it (the app on demand, ``synth``, an evaluation), or
    the same clip decodes to other frames and the same model scores differently (an app rerun
    gave R@1 67.30 where the CLI gave 67.40). One thread per clip is also what ``synth``'s
    parallel workers want.

    The encoder writes to a path, not to bytes, so this renames its temporary file itself
    instead of going through :func:`demo.files.atomic_write`.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    try:
        write_mp4(tmp, render(spec), spec.fps, threads=1)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
