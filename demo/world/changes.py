"""Changed clips: a clip played backwards, or with one event, shape, colour or size changed.

:func:`time_reversed` makes the world's time-reversal pairs (and exactly reversed frames:
see :func:`demo.world.attributes.object_state`); :func:`counterfactual`, :func:`shape_swapped`
and :func:`look_changed` describe clips that differ from a real one in a single respect, whose
captions make hard negatives.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from demo.world.attributes import ClipAttributes
from demo.world.specs import WorldConfig
from demo.world.text import COLOURS, EVENTS, RELATIONS, SHAPES, SIZES

# Each event and relation seen backwards.
REVERSE = {
    "moving left": "moving right", "moving right": "moving left",
    "moving up": "moving down", "moving down": "moving up",
    "turning clockwise": "turning anticlockwise", "turning anticlockwise": "turning clockwise",
    "growing": "shrinking", "shrinking": "growing", "appearing": "disappearing",
    "disappearing": "appearing", "bouncing": "bouncing", "staying still": "staying still",
    "approaching": "moving apart", "moving apart": "approaching", "passing": "passing",
}  # fmt: skip


def _sized(event: str, size: str) -> str:
    """The size word an object doing ``event`` has: growing starts small, shrinking starts large."""
    if event in ("growing", "shrinking"):
        return "small" if event == "growing" else "large"
    return size


def time_reversed(attributes: ClipAttributes) -> ClipAttributes:
    """Attributes of the same clip played backwards (every start and end swapped)."""
    objects = tuple(
        replace(o, event=REVERSE[o.event], size=_sized(REVERSE[o.event], o.size), x0=o.x1, x1=o.x0, y0=o.y1,
                y1=o.y0, r0=o.r1, r1=o.r0, angle0=o.angle1, angle1=o.angle0, fade0=o.fade1, fade1=o.fade0)
        for o in attributes.objects
    )  # fmt: skip
    relation = attributes.relation
    return replace(attributes, objects=objects, relation=None if relation is None else REVERSE[relation])


def counterfactual(attributes: ClipAttributes, rng: np.random.Generator) -> ClipAttributes:
    """The same clip's attributes with one event (or the relation) changed: a caption of the
    result is a hard negative, wrong only about what happens.

    Half the time the change is the time reversal (left -> right, growing -> shrinking),
    which only frame order can tell apart; otherwise another event the object could do.
    """
    relation = attributes.relation
    if relation is not None:
        other = REVERSE[relation] if relation != "passing" and rng.random() < 0.5 else relation
        while other == relation:
            other = str(RELATIONS[int(rng.integers(len(RELATIONS)))])
        return replace(attributes, relation=other)
    objects = list(attributes.objects)
    k = int(rng.integers(len(objects)))
    event = objects[k].event
    new = REVERSE[event] if rng.random() < 0.5 else event
    choices = [e for e in EVENTS if e != event and not (objects[k].shape == "circle" and e.startswith("turning"))]
    if new == event:
        new = str(choices[int(rng.integers(len(choices)))])
    objects[k] = replace(objects[k], event=new, size=_sized(new, objects[k].size))
    return replace(attributes, objects=tuple(objects))


def shape_swapped(attributes: ClipAttributes, rng: np.random.Generator,
                  heldout: tuple[tuple[str, str], ...] = WorldConfig.heldout) -> ClipAttributes:
    """The same clip's attributes with one object's shape changed: a caption of the result is a
    hard negative, wrong only about what the object looks like.

    Shapes are the world's hardest attribute: at 64x64 a small star and a small hexagon differ by
    a few pixels, while colour and background tell most clips of a random batch apart. The new
    shape never makes a held-out (colour, shape) combination (those stay unseen in training) and
    never a turning circle (the world has none).
    """
    objects = list(attributes.objects)
    k = int(rng.integers(len(objects)))
    o, held = objects[k], set(heldout)
    choices = [s for s in SHAPES if s != o.shape and (o.colour, s) not in held
               and not (s == "circle" and o.event.startswith("turning"))]
    objects[k] = replace(o, shape=str(choices[int(rng.integers(len(choices)))]))
    return replace(attributes, objects=tuple(objects))


def look_changed(attributes: ClipAttributes, rng: np.random.Generator,
                 heldout: tuple[tuple[str, str], ...] = WorldConfig.heldout) -> ClipAttributes:
    """The same clip's attributes with one object's colour or size changed: a caption of the result is
    a hard negative, right about what happens and to which shape, wrong only about how the object looks.

    Half the changes are to the colour, half to the size; an object that grows or shrinks has the size
    its event gives it, so it changes colour. The new colour never makes a held-out (colour, shape)
    combination (those stay unseen in training).
    """
    objects = list(attributes.objects)
    k = int(rng.integers(len(objects)))
    o, held = objects[k], set(heldout)
    if rng.random() < 0.5 and o.event not in ("growing", "shrinking"):
        sizes = [s for s in SIZES if s != o.size]
        objects[k] = replace(o, size=str(sizes[int(rng.integers(len(sizes)))]))
    else:
        colours = [c for c in COLOURS if c != o.colour and (c, o.shape) not in held]
        objects[k] = replace(o, colour=str(colours[int(rng.integers(len(colours)))]))
    return replace(attributes, objects=tuple(objects))


def says_look_change(original: ClipAttributes, changed: ClipAttributes, caption: str) -> bool:
    """Whether ``caption`` of the ``changed`` clip names what :func:`look_changed` changed: a caption that
    leaves out the changed size ("a red circle moving left") also fits the original clip, and as a
    negative it would punish the model for being right."""
    for x, y in zip(original.objects, changed.objects, strict=True):
        if x != y:
            said = f"{y.size} {y.colour} {y.shape}" if x.size != y.size else f"{y.colour} {y.shape}"
            return said in caption
    return False
