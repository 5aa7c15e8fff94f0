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

Modules: :mod:`~demo.world.attributes` (a clip's attributes as types), :mod:`~demo.world.text`
(vocabulary and captions), :mod:`~demo.world.specs` (the config and a clip's spec),
:mod:`~demo.world.sampling` (drawing attributes and the splits), :mod:`~demo.world.shapes` and
:mod:`~demo.world.render` (drawing frames), :mod:`~demo.world.frame_truths` (what one frame
shows), :mod:`~demo.world.changes` (clips reversed or with one thing changed) and
:mod:`~demo.world.corpus` (writing the world to a folder).
"""

from demo.world.attributes import REF, ClipAttributes, WorldObject, object_state
from demo.world.changes import counterfactual, look_changed, says_look_change, shape_swapped, time_reversed
from demo.world.corpus import synth, synth_turning, turning_specs
from demo.world.frame_truths import (
    LAYOUT_DIM,
    LAYOUT_LONE,
    frame_caption,
    frame_caption_pair,
    frame_layout,
    frame_shapes,
)
from demo.world.render import render, render_to
from demo.world.sampling import clip_spec_by_id, clip_specs, draw_split
from demo.world.specs import SPLITS, ClipSpec, WorldConfig, clip_event
from demo.world.text import (
    BACKGROUNDS,
    COLOURS,
    EVENTS,
    RELATIONS,
    SHAPES,
    SIZES,
    canonical_caption,
    event_labels,
    vocabulary,
)

__all__ = [
    "BACKGROUNDS", "COLOURS", "EVENTS", "LAYOUT_DIM", "LAYOUT_LONE", "REF", "RELATIONS", "SHAPES", "SIZES",
    "SPLITS", "ClipAttributes", "ClipSpec", "WorldConfig", "WorldObject", "canonical_caption", "clip_event",
    "clip_spec_by_id", "clip_specs", "counterfactual", "draw_split", "event_labels", "frame_caption",
    "frame_caption_pair", "frame_layout", "frame_shapes", "object_state", "render", "render_to",
    "look_changed", "says_look_change", "shape_swapped", "synth", "synth_turning", "time_reversed",
    "turning_specs", "vocabulary",
]  # fmt: skip
