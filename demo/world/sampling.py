"""Drawing the world: each clip's attributes, and the train / val / test splits.

Everything derives from ``(WorldConfig.seed, split, index)``: :func:`clip_specs` returns the
same :class:`~demo.world.specs.ClipSpec` list on every call. About ``pair_fraction`` of the
clips come in time-reversal pairs whose attributes are each other's :func:`time_reversed`, and
held-out (colour, shape) combinations never appear in train.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np

from demo.world.attributes import REF, ClipAttributes, WorldObject
from demo.world.changes import time_reversed
from demo.world.shapes import shape_extents
from demo.world.specs import SPLIT_CODE, SPLITS, ClipSpec, WorldConfig
from demo.world.text import (
    BACKGROUNDS,
    COLOURS,
    EVENTS,
    RELATIONS,
    SHAPES,
    SIZES,
    canonical_caption,
    fits_token_budget,
    make_captions,
    make_still_captions,
)

MARGIN = 3.0  # objects keep this far from the frame edge
SIZE_RADIUS = {"small": 11.0, "medium": 16.0, "large": 23.0}
GROW_RADII = (10.0, 25.0)  # growing goes small -> large (x2.5), shrinking the reverse
TURN_DEG_PER_S = 60.0  # 20 degrees between frames sampled at 3 fps: no aliasing, even for a star
FADE = (-0.7, 1.9)  # opacity ramp of "appearing" (clipped to [0, 1]): absent for the first quarter


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, max(lo, hi)))  # tolerate hi < lo by rounding error


def _place(rng: np.random.Generator, shape: str, colour: str, event: str, duration: float) -> WorldObject:
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
    return WorldObject(shape, colour, size, event, **{k: round(v, 2) for k, v in values.items()}, bounces=bounces)


def _relation(rng: np.random.Generator, nouns: list[tuple[str, str]], relation: str) -> list[WorldObject] | None:
    """Two objects moving horizontally so that they approach, move apart or pass."""
    objs = [_place(rng, s, c, "staying still", 3.0) for c, s in nouns]
    ext = [shape_extents(o.shape, o.angle0) for o in objs]
    hw = [e[0] * o.r0 for e, o in zip(ext, objs, strict=True)]
    hh = [e[1] * o.r0 for e, o in zip(ext, objs, strict=True)]
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
        runs = [min(float(rng.uniform(20.0, 35.0)), room / 2) for _ in range(2)]  # each object's travel
        x_left1 = _uniform(rng, MARGIN + hw[0] + runs[0], REF - MARGIN - hw[1] - runs[1] - gap - hw[0] - hw[1])
        x_right1 = x_left1 + hw[0] + gap + hw[1]
        xs = [(x_left1 - runs[0], x_left1), (x_right1 + runs[1], x_right1)]
        if relation == "moving apart":
            xs = [(b, a) for a, b in xs]
        yc = _uniform(rng, MARGIN + max(hh) + 4.0, REF - MARGIN - max(hh) - 4.0)
        ys = [yc + float(rng.uniform(-4.0, 4.0)) for _ in range(2)]
    objs = [replace(o, x0=round(x0, 2), x1=round(x1, 2), y0=round(y, 2), y1=round(y, 2),
                    event="moving right" if x1 > x0 else "moving left")
            for o, (x0, x1), y in zip(objs, xs, ys, strict=True)]  # fmt: skip
    return objs if rng.random() < 0.5 else objs[::-1]


def _apart(a: WorldObject, b: WorldObject, n: int) -> bool:
    """True when objects ``a`` and ``b`` never overlap much in any frame."""
    i = np.arange(n + 1)

    def track(o: WorldObject) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = (o.bounces * i) % n
        y = (o.y0 * (n - i) + o.y1 * i) / n - o.bounce * 4.0 * m * (n - m) / (n * n)
        return (o.x0 * (n - i) + o.x1 * i) / n, y, (o.r0 * (n - i) + o.r1 * i) / n

    (xa, ya, ra), (xb, yb, rb) = track(a), track(b)
    return bool((np.hypot(xa - xb, ya - yb) >= 0.9 * (ra + rb)).all())


def _sample_attributes(rng: np.random.Generator, config: WorldConfig, heldout: bool, paired: bool,
                       duration: float) -> ClipAttributes | None:  # fmt: skip
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
        if paired and all(o.event in ("bouncing", "staying still") for o in objects):
            return None  # its reversal would look the same
    background = str(BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))])
    return ClipAttributes(tuple(objects), background, relation, heldout)


def draw_split(config: WorldConfig, split: str) -> tuple[ClipSpec, ...]:
    """Generate every clip of ``split`` from scratch (:func:`clip_specs` caches this)."""
    n, code = config.count(split), SPLIT_CODE[split]
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
            a = replace(a, pair=f"{split}-pair-{start:06d}" if paired else None)
            specs.append(ClipSpec(
                id=f"{split}-{start + j:06d}", split=split, seed=seed, duration=duration,
                fps=config.fps, size=config.size, attributes=a,
                captions=make_captions(a, rng), still_captions=make_still_captions(a, rng),
            ))  # fmt: skip
    return tuple(specs)


_split_specs = functools.lru_cache(maxsize=8)(draw_split)  # the last few splits asked for


def clip_specs(config: WorldConfig, split: str) -> list[ClipSpec]:
    """All clips of ``split`` ("train", "val" or "test"); the same list on every call.

    The split is generated once per (config, split) and cached; specs are shared, so
    treat them as read-only.
    """
    return list(_split_specs(config, split))


def clip_spec_by_id(config: WorldConfig, clip_id: str) -> ClipSpec:
    """Regenerate the spec of ``clip_id`` (e.g. "test-000123") to render it on demand."""
    split, _, number = clip_id.rpartition("-")
    if split not in SPLIT_CODE or not number.isdigit():
        raise ValueError(f"bad clip id {clip_id!r}; expected '<split>-<index>', split in {SPLITS}")
    specs = _split_specs(config, split)
    if int(number) >= len(specs):
        raise ValueError(f"clip id {clip_id!r} out of range: {split} has {len(specs)} clips")
    return specs[int(number)]
