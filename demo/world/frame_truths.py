"""What one frame of a clip shows, from its attributes: a caption, a layout vector, its shapes.

These are the per-frame truths the trainer's frame objectives use (frame captions in the image
stage and the frame-caption loss, the layout and shape probes); a frame is given as ``i`` of
``n + 1``, the clip's rendered frames.
"""

from __future__ import annotations

import math

import numpy as np

from demo.world.attributes import REF, ClipAttributes, object_state
from demo.world.shapes import SYMMETRY
from demo.world.text import SHAPES, describe_frame

LAYOUT_GRID = 4  # frame_layout's coverage map is LAYOUT_GRID x LAYOUT_GRID cells
LAYOUT_LONE = LAYOUT_GRID * LAYOUT_GRID  # where frame_layout's six lone-object values start
LAYOUT_DIM = LAYOUT_LONE + 6


def frame_caption(attributes: ClipAttributes, i: int, n: int, rng: np.random.Generator) -> str:
    """A caption of frame ``i`` of ``n + 1`` (as rendered): each object's position, size, visibility."""
    return frame_caption_pair(attributes, i, n, rng)[0]


def frame_caption_pair(attributes: ClipAttributes, i: int, n: int,
                       rng: np.random.Generator) -> tuple[str, str | None]:
    """:func:`frame_caption` and the same sentence with the objects mirrored (left <-> right or
    top <-> bottom): a hard negative that only position tells apart (``None`` when mirroring
    changes no word, e.g. everything is in the middle)."""
    states = [(obj, object_state(obj, i, n)) for obj in attributes.objects]
    flip_x = rng.random() < 0.5
    mirrored = [(obj, ((REF - x, y) if flip_x else (x, REF - y)) + tuple(rest)) for obj, (x, y, *rest) in states]
    seed = int(rng.integers(2**31 - 1))  # both sentences draw the same phrasing
    caption = describe_frame(states, attributes.background, REF, np.random.default_rng(seed))
    negative = describe_frame(mirrored, attributes.background, REF, np.random.default_rng(seed))
    return caption, (negative if negative != caption else None)


def frame_layout(attributes: ClipAttributes, i: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """What frame ``i`` of ``n + 1`` shows, as numbers: (LAYOUT_DIM,) float32 values and a bool mask.

    The first LAYOUT_LONE = LAYOUT_GRID**2 values are a soft coverage map (each cell: the most visible
    object's Gaussian weight there, wider for bigger objects), defined for any number of
    objects. The next six describe a lone object: x, y (0-1), radius / 25, opacity and the
    angle as cos, sin of (symmetry order x angle), masked where they are undefined (several
    objects; the angle of a circle). ``TrainConfig.layout_loss`` regresses frame embeddings
    onto these so that they keep where things are, how big and how turned. (Which shapes a
    frame shows, tried as eight more values, stayed unreadable through all three stages:
    docs/decisions/left-off-training-options.md.)
    """
    states = [(obj, object_state(obj, i, n)) for obj in attributes.objects]
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
        order = SYMMETRY[obj.shape]
        turn = math.radians(angle) * (order or 0)
        values[LAYOUT_LONE:] = (x / REF, y / REF, r / 25.0, alpha, math.cos(turn), math.sin(turn))
        mask[LAYOUT_LONE:LAYOUT_LONE + 4] = True
        mask[LAYOUT_LONE + 4:] = order is not None and alpha > 0.2
    return values, mask


def frame_shapes(attributes: ClipAttributes, i: int, n: int, visible: float = 0.2) -> np.ndarray:
    """Which shapes frame ``i`` of ``n + 1`` shows: (len(SHAPES),) float32, 1 for each shape with an
    object at least ``visible`` opaque there (``TrainConfig.shape_loss`` classifies frames by it)."""
    out = np.zeros(len(SHAPES), dtype=np.float32)
    for obj in attributes.objects:
        if object_state(obj, i, n)[4] >= visible:
            out[SHAPES.index(obj.shape)] = 1.0
    return out
