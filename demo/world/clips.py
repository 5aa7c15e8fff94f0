"""The embedded world: procedurally rendered clips of shapes with captions and attributes.

Clips show 1-3 coloured shapes that move, turn, grow, shrink, bounce, appear, disappear
or stay still (or, for two objects, approach, move apart or pass each other) over one of
a few dark backgrounds. Everything derives from ``(WorldConfig.seed, split, index)``:
:func:`clip_specs` returns the same :class:`ClipSpec` list on every call and
:func:`render` the same frames, so the world is shipped as specs, not as video files.

Temporal order matters by construction: about 30% of clips come in time-reversal pairs
(left/right, up/down, growing/shrinking, ...) whose frames are exact reverses of each
other. Trajectories interpolate with ``(a * (n - i) + b * i) / n``, which is bitwise
symmetric under swapping ``a, b`` and ``i, n - i``, so reversing a clip's attributes
reverses its frames exactly. Held-out (colour, shape) combinations never appear in train.

Positions and radii in attributes are pixels of a 128-pixel frame (``REF``); other
frame sizes scale them. The tiny models see 64x64 frames, so the finest details (a small
cross's arms, a small diamond's width) are still ~4 px wide there.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import math
import os
from dataclasses import dataclass, field
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

import numpy as np

from demo.world.text import (
    BACKGROUNDS,
    COLOURS,
    EVENTS,
    RELATIONS,
    SHAPES,
    SIZES,
    canonical_caption,
    describe_frame,
    fits_token_budget,
    make_captions,
    make_still_captions,
    vocabulary_lists,
)

__all__ = [
    "BACKGROUNDS", "COLOURS", "EVENTS", "RELATIONS", "SHAPES", "SIZES",
    "ClipSpec", "WorldConfig", "clip_event", "clip_spec_by_id", "clip_specs", "counterfactual", "event_labels",
    "frame_caption", "frame_caption_pair", "frame_layout", "frame_shapes",
    "render", "render_to", "shape_swapped", "synth", "vocabulary",
]  # fmt: skip

log = logging.getLogger(__name__)

REF = 128.0  # attribute coordinates are pixels of a REF x REF frame
MARGIN = 3.0  # objects keep this far from the frame edge
SIZE_RADIUS = {"small": 11.0, "medium": 16.0, "large": 23.0}
GROW_RADII = (10.0, 25.0)  # growing goes small -> large (x2.5), shrinking the reverse
TURN_DEG_PER_S = 60.0  # 20 degrees between frames sampled at 3 fps: no aliasing, even for a star
FADE = (-0.7, 1.9)  # opacity ramp of "appearing" (clipped to [0, 1]): absent for the first quarter
SPLITS = ("train", "val", "test")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_REVERSE = {
    "moving left": "moving right", "moving right": "moving left",
    "moving up": "moving down", "moving down": "moving up",
    "turning clockwise": "turning anticlockwise", "turning anticlockwise": "turning clockwise",
    "growing": "shrinking", "shrinking": "growing", "appearing": "disappearing",
    "disappearing": "appearing", "bouncing": "bouncing", "staying still": "staying still",
    "approaching": "moving apart", "moving apart": "approaching", "passing": "passing",
}  # fmt: skip


@dataclass(frozen=True)
class WorldConfig:
    """Which world to build: the seed, split sizes, frame format and held-out combinations."""

    seed: int = 0
    n_train: int = 8000
    n_val: int = 500
    n_test: int = 1000
    size: int = 128  # rendered frame side in pixels (models resize to 64)
    fps: int = 12
    # (colour, shape) pairs that never appear in train; val/test show them in ~15% of clips.
    heldout: tuple[tuple[str, str], ...] = (
        ("purple", "star"), ("orange", "heart"), ("green", "triangle"),
        ("pink", "square"), ("white", "hexagon"),
    )  # fmt: skip
    pair_fraction: float = 0.3  # share of clips that belong to a time-reversal pair
    heldout_fraction: float = 0.15  # share of val/test clips with a held-out combination

    def __post_init__(self) -> None:
        bad = [(c, s) for c, s in self.heldout if c not in COLOURS or s not in SHAPES]
        if bad:
            raise ValueError(f"held-out combinations must be (colour, shape) from the vocabulary, got {bad}")
        if self.size < 16 or self.size % 2 or self.fps < 1:
            raise ValueError(f"need an even size >= 16 and fps >= 1, got size={self.size} fps={self.fps}")

    def count(self, split: str) -> int:
        """Number of clips in ``split``."""
        if split not in _SPLIT_CODE:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return int(getattr(self, f"n_{split}"))


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip and describe it. Treat as read-only.

    ``attributes``: ``objects`` (list of dicts: shape, colour, size, event and the
    trajectory x0, y0 -> x1, y1, r0 -> r1, angle0 -> angle1 in degrees clockwise,
    fade0 -> fade1 opacity ramp, bounce height and bounce count), ``background``,
    ``relation`` (or None), ``heldout`` and ``pair`` (shared by a time-reversal pair, or None).
    """

    id: str
    split: str
    seed: int  # background texture and tint
    duration: float  # seconds
    fps: int
    size: int
    attributes: dict[str, Any]
    captions: list[str]  # canonical caption first
    still_captions: list[str] = field(default_factory=list)  # one frame: no motion words

    @property
    def num_frames(self) -> int:
        return int(round(self.duration * self.fps))


def _lerp(a: float, b: float, i: int, n: int) -> float:
    # Bitwise symmetric: _lerp(a, b, i, n) == _lerp(b, a, n - i, n), so reversed
    # attributes give exactly reversed frames.
    return (a * (n - i) + b * i) / n


def object_state(obj: dict[str, Any], i: int, n: int) -> tuple[float, float, float, float, float]:
    """Object ``obj`` at frame ``i`` of ``n + 1``: (x, y, radius, angle degrees, opacity)."""
    y = _lerp(obj["y0"], obj["y1"], i, n)
    if obj["bounces"]:
        m = (obj["bounces"] * i) % n  # parabolic hops; m * (n - m) is symmetric in time
        y -= obj["bounce"] * 4.0 * (m * (n - m)) / (n * n)
    alpha = min(max(_lerp(obj["fade0"], obj["fade1"], i, n), 0.0), 1.0)
    return (_lerp(obj["x0"], obj["x1"], i, n), y, _lerp(obj["r0"], obj["r1"], i, n),
            _lerp(obj["angle0"], obj["angle1"], i, n), alpha)  # fmt: skip


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, max(lo, hi)))  # tolerate hi < lo by rounding error


def _place(rng: np.random.Generator, shape: str, colour: str, event: str, duration: float) -> dict[str, Any]:
    """Sample one object's size and a trajectory for ``event`` that stays inside the frame."""
    size = str(SIZES[int(rng.integers(3))])
    r0 = r1 = SIZE_RADIUS[size] + float(rng.uniform(-0.8, 0.8))
    if event in ("growing", "shrinking"):
        size, (r0, r1) = ("small", GROW_RADII) if event == "growing" else ("large", GROW_RADII[::-1])
    turning = event.startswith("turning")
    # Still shapes stay near upright (a square at 45 degrees would read as a diamond).
    angle0 = 0.0 if shape == "circle" else float(rng.uniform(0.0, 360.0) if turning else rng.uniform(-12, 12))
    hx, hy = shape_extents(shape, None if turning else angle0)
    r = max(r0, r1)
    xlo, xhi, ylo, yhi = hx * r + MARGIN, REF - hx * r - MARGIN, hy * r + MARGIN, REF - hy * r - MARGIN
    x0 = x1 = float(rng.uniform(xlo, xhi))
    y0 = y1 = float(rng.uniform(ylo, yhi))
    angle1, fade0, fade1, bounce, bounces = angle0, 1.0, 1.0, 0.0, 0
    d = float(rng.uniform(50.0, 70.0))
    if event in ("moving left", "moving right"):
        d = min(d, xhi - xlo)
        x0 = _uniform(rng, xlo, xhi - d)
        x0, x1 = (x0, x0 + d) if event == "moving right" else (x0 + d, x0)
    elif event in ("moving up", "moving down"):
        d = min(d, yhi - ylo)
        y0 = _uniform(rng, ylo, yhi - d)
        y0, y1 = (y0, y0 + d) if event == "moving down" else (y0 + d, y0)
    elif turning:  # positive angles turn clockwise on screen (y points down)
        angle1 = angle0 + (1 if event == "turning clockwise" else -1) * TURN_DEG_PER_S * duration
    elif event == "bouncing":
        bounce, bounces = float(rng.uniform(30.0, 42.0)), 2 if duration < 3.5 else 3
        y0 = y1 = _uniform(rng, ylo + bounce, yhi)
    elif event in ("appearing", "disappearing"):
        fade0, fade1 = FADE if event == "appearing" else FADE[::-1]
    values = dict(x0=x0, y0=y0, x1=x1, y1=y1, r0=r0, r1=r1, angle0=angle0, angle1=angle1,
                  fade0=fade0, fade1=fade1, bounce=bounce)  # fmt: skip
    return {"shape": shape, "colour": colour, "size": size, "event": event,
            **{k: round(v, 2) for k, v in values.items()}, "bounces": bounces}  # fmt: skip


def _relation(
    rng: np.random.Generator, nouns: list[tuple[str, str]], relation: str
) -> list[dict[str, Any]] | None:
    """Two objects moving horizontally so that they approach, move apart or pass."""
    objs = [_place(rng, s, c, "staying still", 3.0) for c, s in nouns]
    ext = [shape_extents(o["shape"], o["angle0"]) for o in objs]
    hw = [e[0] * o["r0"] for e, o in zip(ext, objs, strict=True)]
    hh = [e[1] * o["r0"] for e, o in zip(ext, objs, strict=True)]
    if relation == "passing":  # different heights, opposite directions, crossing mid-clip
        if hh[0] + hh[1] + 4.0 > REF - 2 * MARGIN - hh[0] - hh[1]:
            return None
        top = _uniform(rng, MARGIN + hh[0], REF - MARGIN - hh[1] - (hh[0] + hh[1] + 4.0))
        ys = [top, min(top + hh[0] + hh[1] + float(rng.uniform(4.0, 14.0)), REF - MARGIN - hh[1])]
        d = min(float(rng.uniform(55.0, 75.0)), REF - 2 * MARGIN - 2 * max(hw))
        c = _uniform(rng, MARGIN + max(hw) + d / 2, REF - MARGIN - max(hw) - d / 2)
        xs = [(c - d / 2, c + d / 2), (c + d / 2, c - d / 2)][:: 1 if rng.random() < 0.5 else -1]
    else:  # side by side; "moving apart" is the time reversal of "approaching"
        gap = float(rng.uniform(4.0, 10.0))
        room = REF - 2 * MARGIN - 2 * (hw[0] + hw[1]) - gap
        if room < 40.0:
            return None
        d = [min(float(rng.uniform(20.0, 35.0)), room / 2) for _ in range(2)]
        x_left1 = _uniform(rng, MARGIN + hw[0] + d[0], REF - MARGIN - hw[1] - d[1] - gap - hw[0] - hw[1])
        x_right1 = x_left1 + hw[0] + gap + hw[1]
        xs = [(x_left1 - d[0], x_left1), (x_right1 + d[1], x_right1)]
        if relation == "moving apart":
            xs = [(b, a) for a, b in xs]
        yc = _uniform(rng, MARGIN + max(hh) + 4.0, REF - MARGIN - max(hh) - 4.0)
        ys = [yc + float(rng.uniform(-4.0, 4.0)) for _ in range(2)]
    for o, (x0, x1), y in zip(objs, xs, ys, strict=True):
        o.update(x0=round(x0, 2), x1=round(x1, 2), y0=round(y, 2), y1=round(y, 2))
        o["event"] = "moving right" if x1 > x0 else "moving left"
    return objs if rng.random() < 0.5 else objs[::-1]


def _apart(a: dict[str, Any], b: dict[str, Any], n: int) -> bool:
    """True when objects ``a`` and ``b`` never overlap much in any frame."""
    i = np.arange(n + 1)

    def track(o: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = (o["bounces"] * i) % n
        y = (o["y0"] * (n - i) + o["y1"] * i) / n - o["bounce"] * 4.0 * m * (n - m) / (n * n)
        return (o["x0"] * (n - i) + o["x1"] * i) / n, y, (o["r0"] * (n - i) + o["r1"] * i) / n

    (xa, ya, ra), (xb, yb, rb) = track(a), track(b)
    return bool((np.hypot(xa - xb, ya - yb) >= 0.9 * (ra + rb)).all())


# --- geometry and rendering ---------------------------------------------------------

RGB = {
    "red": (235, 45, 45), "orange": (255, 145, 20), "yellow": (250, 230, 40), "green": (50, 205, 70),
    "blue": (45, 115, 255), "purple": (165, 70, 235), "pink": (255, 125, 205), "white": (245, 245, 245),
}  # fmt: skip
_GRID_N, _GRID_L = 161, 1.35  # signed-distance grid: _GRID_N points over [-L, L] radii


def _ring(radii: list[float], start_deg: float) -> np.ndarray:
    t = np.deg2rad(start_deg + 360.0 * np.arange(len(radii)) / len(radii))
    return np.stack([np.cos(t), np.sin(t)], axis=1) * np.asarray(radii)[:, None]


def _centred(pts: np.ndarray) -> np.ndarray:
    """Shift a polygon so its area centroid is the origin (turning then does not wobble)."""
    x, y = pts[:, 0], pts[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2
    cx = ((x + np.roll(x, -1)) * cross).sum() / (6 * area)
    cy = ((y + np.roll(y, -1)) * cross).sum() / (6 * area)
    return pts - np.array([cx, cy])


@functools.cache
def _polygon(shape: str) -> np.ndarray:
    """Outline (V, 2) of ``shape`` in radii, y pointing down, centroid at 0; areas roughly match."""
    if shape == "circle":
        return _ring([1.0] * 64, 0.0)
    if shape == "square":
        return np.array([(-0.86, -0.86), (0.86, -0.86), (0.86, 0.86), (-0.86, 0.86)])
    if shape == "triangle":
        return _ring([1.25] * 3, -90.0)
    if shape == "star":
        return _ring([1.22, 0.52] * 5, -90.0)
    if shape == "hexagon":
        return _ring([1.0] * 6, 0.0)
    if shape == "diamond":
        return np.array([(0.0, -1.2), (0.76, 0.0), (0.0, 1.2), (-0.76, 0.0)])
    if shape == "cross":
        w, h = 0.37, 1.05
        return np.array([(-w, -h), (w, -h), (w, -w), (h, -w), (h, w), (w, w),
                         (w, h), (-w, h), (-w, w), (-h, w), (-h, -w), (-w, -w)])  # fmt: skip
    if shape == "heart":
        t = np.linspace(0.0, 2 * np.pi, 72, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return _centred(np.stack([x, y], axis=1) * (1.12 / 16))
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


@functools.cache
def _sdf_grid(shape: str) -> np.ndarray:
    """Signed distance (in radii, negative inside) to ``shape`` on a (N, N) grid, [y, x]."""
    axis = np.linspace(-_GRID_L, _GRID_L, _GRID_N)
    p = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 1, 2)  # (M, 1, 2) as (x, y)
    if shape == "circle":
        return (np.linalg.norm(p[:, 0], axis=1) - 1.0).reshape(_GRID_N, _GRID_N).astype(np.float32)
    a = _polygon(shape)[None]
    b = np.roll(a, -1, axis=1)
    ab, ap = b - a, p - a
    t = np.clip((ap * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
    dist = np.linalg.norm(ap - t[..., None] * ab, axis=-1).min(axis=1)
    py, ay, by = p[..., 1], a[..., 1], b[..., 1]
    x_cross = a[..., 0] + (py - ay) * ab[..., 0] / np.where(by == ay, 1.0, by - ay)
    crossings = ((ay > py) != (by > py)) & (p[..., 0] < x_cross)
    inside = crossings.sum(axis=1) % 2 == 1  # even-odd rule
    return np.where(inside, -dist, dist).reshape(_GRID_N, _GRID_N).astype(np.float32)


def shape_extents(shape: str, angle: float | None) -> tuple[float, float]:
    """Half width and half height of ``shape`` in radii at ``angle`` degrees (None: any angle)."""
    pts = _polygon(shape)
    if angle is None:
        reach = float(np.linalg.norm(pts, axis=1).max())
        return reach, reach
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    rotated = pts @ np.array([[c, s], [-s, c]])
    return float(np.abs(rotated[:, 0]).max()), float(np.abs(rotated[:, 1]).max())


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


def _draw(frame: np.ndarray, obj: dict[str, Any], state: tuple[float, ...], scale: float) -> None:
    """Composite one object into ``frame`` (H, W, 3) float32 in place, only on its bounding box."""
    x, y, r, angle, opacity = state
    if opacity <= 0.0:
        return
    cx, cy, rad = x * scale, y * scale, r * scale
    reach = shape_extents(obj["shape"], None)[0] * rad + 1.5
    h, w = frame.shape[:2]
    x_lo, x_hi = max(int(cx - reach), 0), min(int(math.ceil(cx + reach)), w)
    y_lo, y_hi = max(int(cy - reach), 0), min(int(math.ceil(cy + reach)), h)
    if x_lo >= x_hi or y_lo >= y_hi:
        return
    dx = (np.arange(x_lo, x_hi, dtype=np.float32) + np.float32(0.5 - cx)) / np.float32(rad)
    dy = (np.arange(y_lo, y_hi, dtype=np.float32) + np.float32(0.5 - cy)) / np.float32(rad)
    c, s = np.float32(math.cos(math.radians(angle))), np.float32(math.sin(math.radians(angle)))
    # Undo the clockwise rotation to look the pixel up in the shape's own frame.
    k, off = np.float32((_GRID_N - 1) / (2 * _GRID_L)), np.float32((_GRID_N - 1) / 2)
    gx = np.clip((c * dx[None, :] + s * dy[:, None]) * k + off, 0, _GRID_N - 1.001)
    gy = np.clip((c * dy[:, None] - s * dx[None, :]) * k + off, 0, _GRID_N - 1.001)
    ix, iy = gx.astype(np.int32), gy.astype(np.int32)
    fx, fy = gx - ix, gy - iy
    grid = _sdf_grid(obj["shape"])
    top = grid[iy, ix] * (1 - fx) + grid[iy, ix + 1] * fx
    bottom = grid[iy + 1, ix] * (1 - fx) + grid[iy + 1, ix + 1] * fx
    sd = (top * (1 - fy) + bottom * fy) * np.float32(rad)  # signed distance in pixels
    alpha = np.clip(np.float32(0.5) - sd, 0, 1) * np.float32(opacity)
    # A darker 1.5 px rim keeps touching objects and pale backgrounds apart.
    shade = np.float32(1) - np.float32(0.45) * np.clip(sd + np.float32(1.8), 0, 1)
    colour = np.asarray(RGB[obj["colour"]], dtype=np.float32) * shade[..., None]
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
    base = _background(spec.attributes["background"], size, spec.seed)
    frames = np.empty((t, size, size, 3), dtype=np.uint8)
    scale = size / REF
    for i in range(t):
        frame = base.copy()
        for obj in spec.attributes["objects"]:
            _draw(frame, obj, object_state(obj, i, t - 1), scale)
        frames[i] = np.clip(frame + np.float32(0.5), 0, 255).astype(np.uint8)
    return frames


def render_to(spec: ClipSpec, path: str | Path, threads: int = 0) -> Path:
    """Render ``spec`` and write it to ``path`` as mp4, atomically (temp file, then rename).
    ``threads``: the encoder's (see :func:`demo.video.mp4.write_mp4`)."""
    from demo.video.mp4 import write_mp4

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    try:
        write_mp4(tmp, render(spec), spec.fps, threads=threads)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --- the splits -----------------------------------------------------------------------


def _sample_attributes(rng: np.random.Generator, config: WorldConfig, heldout: bool, paired: bool,
                       duration: float) -> dict[str, Any] | None:  # fmt: skip
    """One clip's attributes, or None when the draw failed (the caller draws again)."""
    held = set(config.heldout)
    allowed = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in held]
    k = int(rng.choice([1, 2, 3], p=[0.55, 0.30, 0.15]))
    order = rng.permutation(len(allowed))[:k]
    nouns = [allowed[i] for i in order]
    if heldout:
        nouns[int(rng.integers(k))] = config.heldout[int(rng.integers(len(config.heldout)))]
    relation = None
    if k == 2 and rng.random() < 0.5:
        relation = str(rng.choice(RELATIONS[:2] if paired else RELATIONS))
        objects = _relation(rng, nouns, relation)
        if objects is None:
            return None
    else:
        objects = []
        for colour, shape in nouns:
            events = [e for e in EVENTS if not (shape == "circle" and e.startswith("turning"))]
            for _ in range(30):
                obj = _place(rng, shape, colour, str(rng.choice(events)), duration)
                if all(_apart(obj, o, int(round(duration * config.fps)) - 1) for o in objects):
                    objects.append(obj)
                    break
            else:
                return None
        if paired and all(o["event"] in ("bouncing", "staying still") for o in objects):
            return None  # its reversal would look the same
    background = str(BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))])
    return {"objects": objects, "background": background, "relation": relation,
            "heldout": heldout, "pair": None}  # fmt: skip


def time_reversed(attributes: dict[str, Any]) -> dict[str, Any]:
    """Attributes of the same clip played backwards (every start and end swapped)."""
    objects = []
    for o in attributes["objects"]:
        o = dict(o, event=_REVERSE[o["event"]])
        for a, b in (("x0", "x1"), ("y0", "y1"), ("r0", "r1"), ("angle0", "angle1"), ("fade0", "fade1")):
            o[a], o[b] = o[b], o[a]
        if o["event"] in ("growing", "shrinking"):
            o["size"] = "small" if o["event"] == "growing" else "large"
        objects.append(o)
    relation = attributes["relation"]
    return dict(attributes, objects=objects, relation=None if relation is None else _REVERSE[relation])


@functools.lru_cache(maxsize=8)
def _split_specs(config: WorldConfig, split: str) -> tuple[ClipSpec, ...]:
    n, code = config.count(split), _SPLIT_CODE[split]
    unique = split != "train"  # val/test: the canonical caption identifies its clip
    specs: list[ClipSpec] = []
    used: set[str] = set()
    while len(specs) < n:
        start = len(specs)  # a unit (one clip or a pair) derives from (seed, split, its first index)
        rng = np.random.default_rng([config.seed, code, start])
        paired = start + 2 <= n and rng.random() < config.pair_fraction / (2 - config.pair_fraction)
        heldout = split != "train" and rng.random() < config.heldout_fraction
        duration = float(rng.choice([2.0, 2.5, 3.0, 3.5, 4.0]))
        seed = int(rng.integers(2**31 - 1))
        for _ in range(1000):
            attrs = _sample_attributes(rng, config, heldout, paired, duration)
            if attrs is None:
                continue
            group = [attrs, time_reversed(attrs)] if paired else [attrs]
            names = [canonical_caption(a) for a in group]
            if not all(fits_token_budget(t) for t in names):
                continue  # e.g. three objects turning anticlockwise on a checkered background
            if not unique or not used.intersection(names):
                break
        else:
            raise RuntimeError(f"could not draw a unique clip for {split} index {start}")
        used.update(names)
        for j, a in enumerate(group):
            a["pair"] = f"{split}-pair-{start:06d}" if paired else None
            specs.append(ClipSpec(
                id=f"{split}-{start + j:06d}", split=split, seed=seed, duration=duration,
                fps=config.fps, size=config.size, attributes=a,
                captions=make_captions(a, rng), still_captions=make_still_captions(a, rng),
            ))  # fmt: skip
    return tuple(specs)


def clip_specs(config: WorldConfig, split: str) -> list[ClipSpec]:
    """All clips of ``split`` ("train", "val" or "test"); the same list on every call.

    The split is generated once per (config, split) and cached; specs are shared, so
    treat them as read-only.
    """
    return list(_split_specs(config, split))


def clip_spec_by_id(config: WorldConfig, clip_id: str) -> ClipSpec:
    """Regenerate the spec of ``clip_id`` (e.g. "test-000123") to render it on demand."""
    split, _, number = clip_id.rpartition("-")
    if split not in _SPLIT_CODE or not number.isdigit():
        raise ValueError(f"bad clip id {clip_id!r}; expected '<split>-<index>', split in {SPLITS}")
    specs = _split_specs(config, split)
    if int(number) >= len(specs):
        raise ValueError(f"clip id {clip_id!r} out of range: {split} has {len(specs)} clips")
    return specs[int(number)]


def frame_caption(attributes: dict[str, Any], i: int, n: int, rng: np.random.Generator) -> str:
    """A caption of frame ``i`` of ``n + 1`` (as rendered): each object's position, size, visibility."""
    return frame_caption_pair(attributes, i, n, rng)[0]


def frame_caption_pair(attributes: dict[str, Any], i: int, n: int,
                       rng: np.random.Generator) -> tuple[str, str | None]:
    """:func:`frame_caption` and the same sentence with the objects mirrored (left <-> right or
    top <-> bottom): a hard negative that only position tells apart (``None`` when mirroring
    changes no word, e.g. everything is in the middle)."""
    states = [(obj, object_state(obj, i, n)) for obj in attributes["objects"]]
    flip_x = rng.random() < 0.5
    mirrored = [(obj, ((REF - x, y) if flip_x else (x, REF - y)) + tuple(rest)) for obj, (x, y, *rest) in states]
    seed = int(rng.integers(2**31 - 1))  # both sentences draw the same phrasing
    caption = describe_frame(states, attributes["background"], REF, np.random.default_rng(seed))
    negative = describe_frame(mirrored, attributes["background"], REF, np.random.default_rng(seed))
    return caption, (negative if negative != caption else None)


# Rotational symmetry of each shape (None: any angle looks the same), for frame_layout's angle code.
SYMMETRY = {"circle": None, "square": 4, "triangle": 3, "star": 5, "hexagon": 6, "diamond": 2, "cross": 4,
            "heart": 1}
LAYOUT_GRID = 4  # frame_layout's coverage map is LAYOUT_GRID x LAYOUT_GRID cells
LAYOUT_LONE = LAYOUT_GRID * LAYOUT_GRID  # where frame_layout's six lone-object values start
LAYOUT_DIM = LAYOUT_LONE + 6


def frame_layout(attributes: dict[str, Any], i: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """What frame ``i`` of ``n + 1`` shows, as numbers: (LAYOUT_DIM,) float32 values and a bool mask.

    The first LAYOUT_LONE = LAYOUT_GRID**2 values are a soft coverage map (each cell: the most visible
    object's Gaussian weight there, wider for bigger objects), defined for any number of
    objects. The next six describe a lone object: x, y (0-1), radius / 25, opacity and the
    angle as cos, sin of (symmetry order x angle), masked where they are undefined (several
    objects; the angle of a circle). ``TrainConfig.layout_loss`` regresses frame embeddings
    onto these so that they keep where things are, how big and how turned. (Which shapes a
    frame shows, tried as eight more values, stayed unreadable through all three stages:
    validation probe R^2 at most 0.05; BENCHMARKS.md, "What it still gets wrong: shape".)
    """
    states = [(obj, object_state(obj, i, n)) for obj in attributes["objects"]]
    centres = (np.arange(LAYOUT_GRID, dtype=np.float32) + 0.5) * (REF / LAYOUT_GRID)
    cx, cy = np.meshgrid(centres, centres)
    coverage = np.zeros((LAYOUT_GRID, LAYOUT_GRID), dtype=np.float32)
    for _, (x, y, r, _, alpha) in states:
        width = 0.5 * r + 12.0
        coverage = np.maximum(coverage, alpha * np.exp(-((cx - x) ** 2 + (cy - y) ** 2) / (2 * width**2)))
    values = np.zeros(LAYOUT_DIM, dtype=np.float32)
    mask = np.zeros(LAYOUT_DIM, dtype=bool)
    values[:LAYOUT_LONE], mask[:LAYOUT_LONE] = coverage.ravel(), True
    if len(states) == 1:
        obj, (x, y, r, angle, alpha) = states[0]
        order = SYMMETRY[obj["shape"]]
        turn = math.radians(angle) * (order or 0)
        values[LAYOUT_LONE:] = (x / REF, y / REF, r / 25.0, alpha, math.cos(turn), math.sin(turn))
        mask[LAYOUT_LONE:LAYOUT_LONE + 4] = True
        mask[LAYOUT_LONE + 4:] = order is not None and alpha > 0.2
    return values, mask


def frame_shapes(attributes: dict[str, Any], i: int, n: int, visible: float = 0.2) -> np.ndarray:
    """Which shapes frame ``i`` of ``n + 1`` shows: (len(SHAPES),) float32, 1 for each shape with an
    object at least ``visible`` opaque there (``TrainConfig.shape_loss`` classifies frames by it)."""
    out = np.zeros(len(SHAPES), dtype=np.float32)
    for obj in attributes.get("objects", ()):
        if object_state(obj, i, n)[4] >= visible:
            out[SHAPES.index(obj["shape"])] = 1.0
    return out


def counterfactual(attributes: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """The same clip's attributes with one event (or the relation) changed: a caption of the
    result is a hard negative, wrong only about what happens.

    Half the time the change is the time reversal (left -> right, growing -> shrinking),
    which only frame order can tell apart; otherwise another event the object could do.
    """
    relation = attributes.get("relation")
    if relation is not None:
        other = _REVERSE[relation] if relation != "passing" and rng.random() < 0.5 else relation
        while other == relation:
            other = str(RELATIONS[int(rng.integers(len(RELATIONS)))])
        return dict(attributes, relation=other)
    objects = [dict(o) for o in attributes["objects"]]
    o = objects[int(rng.integers(len(objects)))]
    event = o["event"]
    new = _REVERSE[event] if rng.random() < 0.5 else event
    choices = [e for e in EVENTS if e != event and not (o["shape"] == "circle" and e.startswith("turning"))]
    if new == event:
        new = str(choices[int(rng.integers(len(choices)))])
    o["event"] = new
    if new in ("growing", "shrinking"):
        o["size"] = "small" if new == "growing" else "large"
    return dict(attributes, objects=objects)


def shape_swapped(attributes: dict[str, Any], rng: np.random.Generator,
                  heldout: tuple[tuple[str, str], ...] = WorldConfig.heldout) -> dict[str, Any]:
    """The same clip's attributes with one object's shape changed: a caption of the result is a
    hard negative, wrong only about what the object looks like.

    Shapes are the world's hardest attribute: at 64x64 a small star and a small hexagon differ by
    a few pixels, while colour and background tell most clips of a random batch apart. The new
    shape never makes a held-out (colour, shape) combination (those stay unseen in training) and
    never a turning circle (the world has none).
    """
    objects = [dict(o) for o in attributes["objects"]]
    o = objects[int(rng.integers(len(objects)))]
    held = set(heldout)
    choices = [s for s in SHAPES if s != o["shape"] and (o["colour"], s) not in held
               and not (s == "circle" and o["event"].startswith("turning"))]
    o["shape"] = str(choices[int(rng.integers(len(choices)))])
    return dict(attributes, objects=objects)


def event_labels() -> list[str]:
    """Canonical event and relation names: the zero-shot label set of the world."""
    return [*EVENTS, *RELATIONS]


def clip_event(spec: ClipSpec) -> str:
    """The clip's canonical label: its relation if it has one, else its first object's event.

    With several independent objects the first object (the first one the canonical
    caption names) stands for the clip.
    """
    relation = spec.attributes.get("relation")
    return str(relation) if relation else str(spec.attributes["objects"][0]["event"])


def vocabulary() -> dict[str, list[str]]:
    """Every word kind the captions use: shapes, colours, sizes, backgrounds, events
    (canonical names and all their phrasings), relations (likewise) and background phrases."""
    return vocabulary_lists()


# --- writing the corpus -----------------------------------------------------------------


def _render_job(job: tuple[ClipSpec, str]) -> str:
    spec, path = job
    # One single-threaded encoder per worker: on 2 cores, x264's own threads on top of two
    # workers made rendering the world about 20% slower (600 clips: 24 s against 19.6 s).
    render_to(spec, path, threads=1)
    return spec.id


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def synth(
    out_dir: str | Path,
    config: WorldConfig = WorldConfig(),  # noqa: B008 - frozen, so a shared default is safe
    splits: tuple[str, ...] = SPLITS,
    limit: int | None = None,
    workers: int = 2,
    progress: bool = True,
) -> dict[str, Path]:
    """Render the world to ``out_dir``; returns {split: path of its CSV}.

    Writes ``clips/<split>/<id>.mp4`` (existing files are kept, so an interrupted run
    resumes), ``<split>.csv`` (path relative to ``out_dir``, caption, id, split,
    attributes as JSON; one row per caption, canonical first) and ``<split>.jsonl`` (one
    object per clip: id, path, captions, still_captions, frames, fps, attributes). ``limit`` keeps
    the first N clips of each split.
    """
    import contextlib
    import multiprocessing

    out = Path(out_dir)
    written: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        pool = None
        if workers > 1:  # spawn: safe even when the caller runs torch's thread pools
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))
        for split in splits:
            written[split] = _synth_split(out, config, split, limit, pool, progress)
    return written


def _synth_split(
    out: Path, config: WorldConfig, split: str, limit: int | None, pool: Pool | None, progress: bool
) -> Path:
    """Render the missing clips of one split and (re)write its CSV and JSONL."""
    import io

    from tqdm import tqdm

    specs = clip_specs(config, split)[:limit]
    (out / "clips" / split).mkdir(parents=True, exist_ok=True)
    rel = {s.id: f"clips/{split}/{s.id}.mp4" for s in specs}
    jobs = [(s, str(out / rel[s.id])) for s in specs if not (out / rel[s.id]).exists()]
    log.info("%s: %d clips, %d to render", split, len(specs), len(jobs))
    with tqdm(total=len(jobs), desc=f"synth {split}", disable=not progress or not jobs) as bar:
        results = pool.imap_unordered(_render_job, jobs, chunksize=4) if pool else map(_render_job, jobs)
        for _ in results:
            bar.update()
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["path", "caption", "id", "split", "attributes"])
    lines = []
    for s in specs:
        attrs = json.dumps(s.attributes)
        writer.writerows([rel[s.id], c, s.id, split, attrs] for c in s.captions)
        row = {"id": s.id, "path": rel[s.id], "captions": s.captions, "still_captions": s.still_captions,
               "frames": s.num_frames, "fps": s.fps, "attributes": s.attributes}  # fmt: skip
        lines.append(json.dumps(row))
    _write_atomic(out / f"{split}.csv", table.getvalue())
    _write_atomic(out / f"{split}.jsonl", "\n".join(lines) + "\n")
    return out / f"{split}.csv"
