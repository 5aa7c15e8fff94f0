"""A clip's attributes as types: each object's look and trajectory, and the clip's scene.

They are what the world samples, renders and describes. ``to_dict`` gives the JSON objects
that the world's ``<split>.jsonl`` / ``<split>.csv`` and an index's ``metadata.jsonl`` store
under ``"attributes"`` (keys in field order, values exactly as sampled), and ``from_dict``
reads them back, so those files are the same bytes as when attributes were plain dicts.

Positions and radii are pixels of a ``REF`` x ``REF`` frame; other frame sizes scale them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

REF = 128.0  # attribute coordinates are pixels of a REF x REF frame


@dataclass(frozen=True)
class WorldObject:
    """One shape in a clip: what it looks like, what it does, and its trajectory.

    The trajectory runs from the first frame (``*0``) to the last (``*1``) and is interpolated
    in between (:func:`object_state`).
    """

    shape: str  # one of demo.world.text.SHAPES
    colour: str  # one of COLOURS
    size: str  # small, medium or large (growing objects are small, shrinking ones large)
    event: str  # one of EVENTS; in a relation, the object's own direction ("moving left")
    x0: float  # centre, REF pixels
    y0: float
    x1: float
    y1: float
    r0: float  # radius, REF pixels
    r1: float
    angle0: float  # degrees, clockwise on screen (y points down)
    angle1: float
    fade0: float  # opacity ramp, clipped to [0, 1] when drawn (appearing: absent at first)
    fade1: float
    bounce: float  # height of each hop in REF pixels (0: no hops)
    bounces: int  # hops over the clip

    def to_dict(self) -> dict[str, Any]:
        """The object as its JSON row stores it."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> WorldObject:
        """Read :meth:`to_dict`'s output back; missing or unknown keys are an error."""
        names = [f.name for f in fields(cls)]
        if set(row) != set(names):
            raise ValueError(f"an object needs the keys {names}, got {sorted(row)}")
        return cls(**row)


@dataclass(frozen=True)
class ClipAttributes:
    """Everything a clip shows: its objects, background, and (for two objects) their relation."""

    objects: tuple[WorldObject, ...]  # canonical caption order
    background: str  # one of demo.world.text.BACKGROUNDS
    relation: str | None = None  # two objects: approaching, moving apart or passing
    heldout: bool = False  # shows a (colour, shape) combination that train never does
    pair: str | None = None  # shared by a clip and its exact time reversal

    def to_dict(self) -> dict[str, Any]:
        """The attributes as the world's files store them (objects as a list of dicts)."""
        return {"objects": [o.to_dict() for o in self.objects], "background": self.background,
                "relation": self.relation, "heldout": self.heldout, "pair": self.pair}

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> ClipAttributes:
        """Read :meth:`to_dict`'s output back (e.g. a row's ``"attributes"`` of a world ``.jsonl``)."""
        return cls(tuple(WorldObject.from_dict(o) for o in row["objects"]), str(row["background"]),
                   row.get("relation"), bool(row.get("heldout", False)), row.get("pair"))


def _lerp(a: float, b: float, i: int, n: int) -> float:
    # Bitwise symmetric: _lerp(a, b, i, n) == _lerp(b, a, n - i, n), so reversed
    # attributes give exactly reversed frames.
    return (a * (n - i) + b * i) / n


def object_state(obj: WorldObject, i: int, n: int) -> tuple[float, float, float, float, float]:
    """Object ``obj`` at frame ``i`` of ``n + 1``: (x, y, radius, angle degrees, opacity)."""
    y = _lerp(obj.y0, obj.y1, i, n)
    if obj.bounces:
        m = (obj.bounces * i) % n  # parabolic hops; m * (n - m) is symmetric in time
        y -= obj.bounce * 4.0 * (m * (n - m)) / (n * n)
    alpha = min(max(_lerp(obj.fade0, obj.fade1, i, n), 0.0), 1.0)
    return (_lerp(obj.x0, obj.x1, i, n), y, _lerp(obj.r0, obj.r1, i, n),
            _lerp(obj.angle0, obj.angle1, i, n), alpha)  # fmt: skip
