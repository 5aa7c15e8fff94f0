"""Which world to build (:class:`WorldConfig`) and what one of its clips is (:class:`ClipSpec`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from demo.world.attributes import ClipAttributes
from demo.world.text import COLOURS, SHAPES

SPLITS = ("train", "val", "test")
SPLIT_CODE = {"train": 0, "val": 1, "test": 2}  # part of each clip's random seed


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
        if split not in SPLIT_CODE:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return int(getattr(self, f"n_{split}"))


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip and describe it. Treat as read-only."""

    id: str
    split: str
    seed: int  # background texture and tint
    duration: float  # seconds
    fps: int
    size: int
    attributes: ClipAttributes
    captions: list[str]  # canonical caption first
    still_captions: list[str] = field(default_factory=list)  # one frame: no motion words

    @property
    def num_frames(self) -> int:
        return int(round(self.duration * self.fps))


def clip_event(spec: ClipSpec) -> str:
    """The clip's canonical label: its relation if it has one, else its first object's event.

    With several independent objects the first object (the first one the canonical
    caption names) stands for the clip.
    """
    relation = spec.attributes.relation
    return str(relation) if relation else str(spec.attributes.objects[0].event)
