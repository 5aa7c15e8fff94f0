"""The world's eight shapes as geometry: outlines, signed-distance grids, extents and symmetry.

Outlines are in radii (y pointing down, area centroid at the origin) and their areas roughly
match, so "small", "medium" and "large" mean the same for every shape. Rendering looks each
pixel up in a shape's precomputed signed-distance grid (:func:`sdf_grid`).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from demo.world.text import SHAPES

GRID_N, GRID_L = 161, 1.35  # signed-distance grid: GRID_N points over [-L, L] radii


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
def polygon(shape: str) -> np.ndarray:
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
def sdf_grid(shape: str) -> np.ndarray:
    """Signed distance (in radii, negative inside) to ``shape`` on a (N, N) grid, [y, x]."""
    axis = np.linspace(-GRID_L, GRID_L, GRID_N)
    p = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 1, 2)  # (M, 1, 2) as (x, y)
    if shape == "circle":
        return (np.linalg.norm(p[:, 0], axis=1) - 1.0).reshape(GRID_N, GRID_N).astype(np.float32)
    a = polygon(shape)[None]
    b = np.roll(a, -1, axis=1)
    ab, ap = b - a, p - a
    t = np.clip((ap * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
    dist = np.linalg.norm(ap - t[..., None] * ab, axis=-1).min(axis=1)
    py, ay, by = p[..., 1], a[..., 1], b[..., 1]
    x_cross = a[..., 0] + (py - ay) * ab[..., 0] / np.where(by == ay, 1.0, by - ay)
    crossings = ((ay > py) != (by > py)) & (p[..., 0] < x_cross)
    inside = crossings.sum(axis=1) % 2 == 1  # even-odd rule
    return np.where(inside, -dist, dist).reshape(GRID_N, GRID_N).astype(np.float32)


def shape_extents(shape: str, angle: float | None) -> tuple[float, float]:
    """Half width and half height of ``shape`` in radii at ``angle`` degrees (None: any angle)."""
    pts = polygon(shape)
    if angle is None:
        reach = float(np.linalg.norm(pts, axis=1).max())
        return reach, reach
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    rotated = pts @ np.array([[c, s], [-s, c]])
    return float(np.abs(rotated[:, 0]).max()), float(np.abs(rotated[:, 1]).max())


# Rotational symmetry of each shape (None: any angle looks the same), for frame_layout's angle code.
SYMMETRY = {"circle": None, "square": 4, "triangle": 3, "star": 5, "hexagon": 6, "diamond": 2, "cross": 4,
            "heart": 1}
