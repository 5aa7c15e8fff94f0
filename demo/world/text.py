"""The language of the procedural world: its vocabulary and the caption grammar.

Everything here works on a clip's :class:`~demo.world.attributes.ClipAttributes`, so the
captions can only say what the attributes say. The first caption of a clip is the
*canonical* one, written in a fixed grammar that names every object's size, colour,
shape and event (or the objects' relation) and the background::

    a small red star moving left and a large blue circle staying still on a dark background
    a small red star and a large blue circle approaching each other on a dusk background

The other captions vary word order, synonyms and detail (size and background may be
dropped). Captions stay within CLIP4Clip's 32-token limit (see ``caption_length``); the
world rejects clips whose canonical caption would not.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from demo.world.attributes import ClipAttributes, WorldObject

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "heart")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "white")
SIZES = ("small", "medium", "large")
# One-word names that are not colour words; all are dark or desaturated (see demo.world.render).
BACKGROUNDS = ("dark", "dusk", "ocean", "checkered", "striped", "dotted", "noisy")
EVENTS = (
    "moving left", "moving right", "moving up", "moving down",
    "turning clockwise", "turning anticlockwise", "growing", "shrinking",
    "bouncing", "appearing", "disappearing", "staying still",
)  # fmt: skip
RELATIONS = ("approaching", "moving apart", "passing")

# Each event as (participle, present tense) phrase pairs; the first pair is canonical.
EVENT_PHRASES: dict[str, tuple[tuple[str, str], ...]] = {
    "moving left": (
        ("moving left", "moves left"), ("sliding to the left", "slides to the left"),
        ("heading left", "heads left"), ("drifting left", "drifts left"),
        ("travelling left", "travels left"), ("going left", "goes left"),
    ),
    "moving right": (
        ("moving right", "moves right"), ("sliding to the right", "slides to the right"),
        ("heading right", "heads right"), ("drifting right", "drifts right"),
        ("travelling right", "travels right"), ("going right", "goes right"),
    ),
    "moving up": (
        ("moving up", "moves up"), ("rising", "rises"), ("heading up", "heads up"),
        ("drifting upward", "drifts upward"), ("floating up", "floats up"),
    ),
    "moving down": (
        ("moving down", "moves down"), ("sinking", "sinks"), ("heading down", "heads down"),
        ("drifting downward", "drifts downward"), ("falling", "falls"),
    ),
    "turning clockwise": (
        ("turning clockwise", "turns clockwise"), ("rotating clockwise", "rotates clockwise"),
        ("spinning clockwise", "spins clockwise"),
    ),
    "turning anticlockwise": (
        ("turning anticlockwise", "turns anticlockwise"),
        ("rotating anticlockwise", "rotates anticlockwise"),
        ("spinning counterclockwise", "spins counterclockwise"),
        ("rotating counterclockwise", "rotates counterclockwise"),
    ),
    "growing": (
        ("growing", "grows"), ("getting bigger", "gets bigger"), ("expanding", "expands"),
        ("growing larger", "grows larger"), ("growing from small to large", "grows from small to large"),
    ),
    "shrinking": (
        ("shrinking", "shrinks"), ("getting smaller", "gets smaller"), ("contracting", "contracts"),
        ("shrinking from large to small", "shrinks from large to small"),
    ),
    "bouncing": (
        ("bouncing", "bounces"), ("hopping", "hops"), ("bouncing up and down", "bounces up and down"),
        ("jumping", "jumps"),
    ),
    "appearing": (
        ("appearing", "appears"), ("fading in", "fades in"), ("coming into view", "comes into view"),
        ("emerging", "emerges"),
    ),
    "disappearing": (
        ("disappearing", "disappears"), ("fading out", "fades out"), ("vanishing", "vanishes"),
        ("fading away", "fades away"),
    ),
    "staying still": (
        ("staying still", "stays still"), ("resting", "rests"), ("not moving", "does not move"),
        ("sitting still", "sits still"), ("standing still", "stands still"),
    ),
}
# Relations of two objects: (participle, plural present) phrase pairs, canonical first.
RELATION_PHRASES: dict[str, tuple[tuple[str, str], ...]] = {
    "approaching": (
        ("approaching each other", "approach each other"),
        ("moving toward each other", "move toward each other"),
        ("coming together", "come together"), ("closing in on each other", "close in on each other"),
    ),
    "moving apart": (
        ("moving apart", "move apart"), ("moving away from each other", "move away from each other"),
        ("separating", "separate"), ("drifting apart", "drift apart"),
    ),
    "passing": (
        ("passing each other", "pass each other"), ("crossing paths", "cross paths"),
        ("passing by each other", "pass by each other"), ("going past each other", "go past each other"),
    ),
}
# Ways of saying where the objects are; "{bg}" is a background name.
BACKGROUND_PHRASES = (
    "on a {bg} background", "over a {bg} background", "against a {bg} background",
    "in front of a {bg} background",
)
# CLIP4Clip trains with at most 32 tokens, start and end tokens included. Captions use
# about one token per word or comma; CLIP's byte-pair encoding splits these few words
# (checked with the CLIP tokenizer), so they count extra.
MAX_TOKENS = 32
MAX_WORDS = 25
_EXTRA_TOKENS = {
    "anticlockwise": 2, "counterclockwise": 1, "hexagon": 1, "checkered": 1, "bounces": 1,
    "drifts": 1, "rotates": 1, "shrinks": 1, "vanishes": 1,
}  # fmt: skip


def _articles(text: str) -> str:
    """Fix "a" before a vowel: "a orange heart on a ocean background" -> "an orange ... an ocean"."""
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def caption_length(text: str) -> int:
    """Estimated CLIP token count of a caption, start and end tokens included."""
    words = text.replace(",", " , ").split()
    return 2 + len(words) + sum(map(_EXTRA_TOKENS.get, words, itertools.repeat(0)))


def fits_token_budget(text: str) -> bool:
    """True when ``text`` fits CLIP4Clip's 32 tokens (and ``MAX_WORDS`` words)."""
    return caption_length(text) <= MAX_TOKENS and len(text.replace(",", " ").split()) <= MAX_WORDS


def _noun(obj: WorldObject, with_size: bool, article: str = "a") -> str:
    parts = [article, obj.size] if with_size else [article]
    return " ".join([*parts, obj.colour, obj.shape])


def canonical_caption(attributes: ClipAttributes) -> str:
    """The clip's full-detail caption in the fixed grammar (see the module docstring)."""
    objects = attributes.objects
    nouns = [_noun(o, with_size=True) for o in objects]
    background = f"on a {attributes.background} background"
    relation = attributes.relation
    if relation is not None:
        return _articles(f"{nouns[0]} and {nouns[1]} {RELATION_PHRASES[relation][0][0]} {background}")
    parts = [f"{n} {o.event}" for n, o in zip(nouns, objects, strict=True)]
    return _articles(f"{_join(parts)} {background}")


def _join(parts: list[str], last: str = "and") -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + f" {last} " + parts[-1]


def _pick(rng: np.random.Generator, options: tuple[Any, ...] | list[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _variant(attributes: ClipAttributes, rng: np.random.Generator, detail: bool) -> str:
    """One randomly phrased caption; ``detail=False`` drops sizes and the background."""
    objects = list(attributes.objects)
    relation = attributes.relation
    with_size = detail and rng.random() < 0.6
    with_bg = detail and rng.random() < 0.7
    if len(objects) > 1 and rng.random() < 0.5:
        objects = [objects[i] for i in rng.permutation(len(objects))]
    article = "a" if rng.random() < 0.75 else "the"
    background = _pick(rng, BACKGROUND_PHRASES).format(bg=attributes.background)
    present = rng.random() < 0.6  # "a red star moves left" vs "a red star moving left"
    form = 1 if present else 0
    if relation is not None:
        subject = f"{_noun(objects[0], with_size, article)} and {_noun(objects[1], with_size, article)}"
        action = f"{subject} {_pick(rng, RELATION_PHRASES[relation])[form]}"
    else:
        parts = [
            f"{_noun(o, with_size, article)} {_pick(rng, EVENT_PHRASES[o.event])[form]}"
            for o in objects
        ]
        action = _join(parts, last="while" if present and len(parts) == 2 and rng.random() < 0.5 else "and")
    if not with_bg:
        return f"a video of {action}" if not present and rng.random() < 0.3 else action
    style = int(rng.integers(3))
    if style == 0:
        return f"{action} {background}"
    if style == 1:
        return f"{background}, {action}"
    if present:  # "a dark background with a red star moves left" is not English
        return f"{action} {background}"
    return f"a {attributes.background} background with {action}"


def make_captions(attributes: ClipAttributes, rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` distinct captions (fewer only if the grammar runs out), canonical first."""
    captions = [canonical_caption(attributes)]
    for attempt in range(12 * n):
        if len(captions) >= n:
            break
        text = _articles(_variant(attributes, rng, detail=attempt < 8 * n))
        if not fits_token_budget(text):
            text = _articles(_variant(attributes, rng, detail=False))
        if text not in captions and fits_token_budget(text):
            captions.append(text)
    return captions


def make_still_captions(attributes: ClipAttributes, rng: np.random.Generator, n: int = 3) -> list[str]:
    """Captions for one still frame: objects and background, no motion words.

    Sizes of growing or shrinking objects are left out (a still frame catches them at an
    arbitrary size). The middle frame shows every object at least partly.
    """
    objects = attributes.objects
    background = attributes.background

    def nouns(with_size: bool) -> str:
        return _join([_noun(o, with_size and o.event not in ("growing", "shrinking")) for o in objects])

    candidates = [_articles(c) for c in (
        f"{nouns(True)} on a {background} background",
        nouns(False),
        f"a {background} background with {nouns(True)}",
        f"{nouns(False)} {_pick(rng, BACKGROUND_PHRASES).format(bg=background)}",
        f"a picture of {nouns(True)}",
    )]
    out = [candidates[0]]
    for i in rng.permutation(len(candidates) - 1) + 1:
        if len(out) >= n:
            break
        if candidates[i] not in out and fits_token_budget(candidates[i]):
            out.append(candidates[i])
    return out


POSITION_PHRASES = (
    "at the top left", "at the top", "at the top right", "on the left", "in the middle", "on the right",
    "at the bottom left", "at the bottom", "at the bottom right",
)  # fmt: skip


def position_phrase(x: float, y: float, ref: float) -> str:
    """Where a point of a ``ref``-pixel frame is, in a 3x3 grid: "at the top left", "in the middle"."""
    col = "left" if x < ref / 3 else "right" if x > 2 * ref / 3 else ""
    row = "top" if y < ref / 3 else "bottom" if y > 2 * ref / 3 else ""
    if row and col:
        return f"at the {row} {col}"
    if row:
        return f"at the {row}"
    return f"on the {col}" if col else "in the middle"


def frame_size(radius: float) -> str:
    """The size word for an object of ``radius`` reference pixels (see demo.world.sampling.SIZE_RADIUS)."""
    return "small" if radius < 13.5 else "medium" if radius < 19.5 else "large"


def describe_frame(objects: Sequence[tuple[WorldObject, tuple[float, ...]]], background: str,
                   ref: float, rng: np.random.Generator) -> str:
    """A caption of one frame: where each visible object is and how big it is right now.

    ``objects`` pairs each object's attributes with its state in the frame
    ``(x, y, radius, angle, opacity)``. Objects that have faded out are left out, and a
    frame with none left is an empty background. These captions teach the image stage
    the position, size and visibility features that the video stage's temporal head
    needs to tell a clip from its time reversal.
    """
    parts = []
    for obj, (x, y, radius, _angle, alpha) in objects:
        if alpha < 0.2:
            continue
        faint = "faint " if alpha < 0.7 else ""
        size = f"{frame_size(radius)} " if rng.random() < 0.7 else ""
        parts.append(f"a {faint}{size}{obj.colour} {obj.shape} {position_phrase(x, y, ref)}")
    if not parts:
        return _articles(f"an empty {background} background")
    candidates = [f"{_join(parts)} on a {background} background", _join(parts),
                  f"a {background} background with {_join(parts)}"]
    fitting = [c for c in candidates if fits_token_budget(_articles(c))]
    return _articles(_pick(rng, fitting) if fitting else _join(parts[:1]))


def event_labels() -> list[str]:
    """Canonical event and relation names: the zero-shot label set of the world."""
    return [*EVENTS, *RELATIONS]


def vocabulary() -> dict[str, list[str]]:
    """Every word kind the captions use: shapes, colours, sizes, backgrounds, events
    (canonical names and all their phrasings), relations (likewise) and background phrases."""
    return {
        "shapes": list(SHAPES),
        "colours": list(COLOURS),
        "sizes": list(SIZES),
        "backgrounds": list(BACKGROUNDS),
        "events": list(EVENTS),
        "event_phrases": [p for e in EVENTS for pair in EVENT_PHRASES[e] for p in pair],
        "relations": list(RELATIONS),
        "relation_phrases": [p for r in RELATIONS for pair in RELATION_PHRASES[r] for p in pair],
        "background_phrases": list(BACKGROUND_PHRASES),
        "position_phrases": list(POSITION_PHRASES),  # still-frame captions of the image stage
    }
