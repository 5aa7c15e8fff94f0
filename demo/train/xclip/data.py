"""X-CLIP's classes on the world: labels, their held-out rewordings, and labelled, decoded clips.

X-CLIP is trained and scored on the world's event and relation labels
(:func:`demo.world.event_labels`). A clip's class is :func:`clip_label`; clips with several
objects doing different things have none and are left out. :data:`REWORDED` asks for each class in
a phrasing the training prompts never use, to measure how far the text tower's synonyms carry.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from demo.errors import DemoError, InputError
from demo.video.preprocess import load_uniform_clip
from demo.world import ClipAttributes
from demo.world.changes import REVERSE
from demo.world.text import EVENT_PHRASES, RELATION_PHRASES

log = logging.getLogger(__name__)

TEMPLATE = "{}"  # class prompt: the bare label, as the classify tab sends it
# Each canonical label worded as the world's captions also say it (demo.world.text), but
# never as the training prompts do: the text tower learned these from CLIP4Clip captions.
REWORDED: dict[str, str] = {
    "moving left": "sliding to the left", "moving right": "sliding to the right",
    "moving up": "rising", "moving down": "sinking",
    "turning clockwise": "rotating clockwise", "turning anticlockwise": "spinning counterclockwise",
    "growing": "getting bigger", "shrinking": "getting smaller", "bouncing": "hopping",
    "appearing": "fading in", "disappearing": "fading out", "staying still": "not moving",
    "approaching": "moving toward each other", "moving apart": "separating", "passing": "crossing paths",
}  # fmt: skip
# The class of a clip played backwards (the world's time-reversal pairs obey it exactly).
REVERSED_CLASS: dict[str, str] = REVERSE


def clip_label(attributes: ClipAttributes) -> str | None:
    """The clip's class, as :func:`demo.world.clip_event`, or None when it is ambiguous.

    Ambiguous: several independent objects doing different things (the label would name
    only the first). Relations are never ambiguous; objects doing the same event neither.
    """
    if attributes.relation:
        return str(attributes.relation)
    events = {str(o.event) for o in attributes.objects}
    return events.pop() if len(events) == 1 else None


@dataclass(frozen=True)
class LabelledClip:
    """A world clip with an unambiguous class (:func:`clip_label`)."""

    id: str
    path: Path
    label: str


def read_labelled(jsonl: str | Path, limit: int | None = None) -> tuple[list[LabelledClip], int]:
    """Unambiguous clips of a world ``<split>.jsonl`` (first ``limit``) and how many were excluded."""
    path = Path(jsonl)
    if not path.is_file():
        raise InputError(f"world split {path} does not exist (render it with `python -m demo synth`)")
    clips, excluded = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        label = clip_label(ClipAttributes.from_dict(row["attributes"]))
        if label is None:
            excluded += 1
            continue
        clips.append(LabelledClip(row["id"], (path.parent / row["path"]).resolve(), label))
        if limit and len(clips) >= limit:
            break
    return clips, excluded


def load_frames(paths: list[Path], num_frames: int, image_size: int, mean: tuple[float, ...],
                std: tuple[float, ...], workers: int = 2, progress: bool = True,
                desc: str = "decoding clips") -> tuple[torch.Tensor, list[int]]:
    """Decode each clip once -> ((N', T, 3, S, S) float16, indices of the N' decoded clips).

    Undecodable clips are logged and left out.
    """
    def load(path: Path) -> torch.Tensor | str:
        try:
            return load_uniform_clip(path, num_frames, image_size, mean, std)[0].to(torch.float16)
        except DemoError as err:
            return str(err)

    frames, kept = [], []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = tqdm(pool.map(load, paths), total=len(paths), desc=desc, disable=not progress, unit="clip")
        for i, result in enumerate(results):
            if isinstance(result, str):
                log.warning("skipping %s", result)
                continue
            frames.append(result)
            kept.append(i)
    if not frames:
        raise InputError(f"none of the {len(paths)} clips could be decoded")
    return torch.stack(frames), kept


def training_phrasings(classes: list[str]) -> list[list[str]]:
    """Per class: its canonical name and the world's other participle phrasings of it, minus
    the :data:`REWORDED` one (and so never a test wording)."""
    phrases = {**EVENT_PHRASES, **RELATION_PHRASES}
    return [[c] + [p for p, _ in phrases[c] if p not in (c, REWORDED[c])] for c in classes]
