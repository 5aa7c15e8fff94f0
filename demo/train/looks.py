"""Look centres: the event centres' cosine classifier (:mod:`demo.train.events`) with how objects look.

With the event centres both towers learned to rank by event; nothing after them asked for the object's
colour once the event was right, and colour fell to 61-65% of the free-form top 5 (docs/experiments.md,
issue 34); colour-changed captions as hard negatives did not bring it back. This puts each look
(colour, shape, size: :data:`LOOKS`, those of ``TrainConfig.looks``) where the events are: each caption
(and hard negative) is scored against one unit centre per value of the look, its target the values it
names; each head's clip (forwards and backwards) against the same centres, its target its objects'
values, shared evenly. A caption that names none (most leave out the size), or a clip without
attributes, is left out of that look's term.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from demo.train.events import EventCentres
from demo.world import COLOURS, SHAPES, SIZES, ClipAttributes, vocabulary

LOOKS = {"colour": COLOURS, "shape": SHAPES, "size": SIZES}
_WORD = re.compile(r"[a-z]+")
# Phrases that use a look's word for something else ("growing from small to large", "cross paths"):
# taken out of a caption before its words are read, longest first.
_OTHER = ("events", "event_phrases", "relations", "relation_phrases")
_PHRASES = sorted({p for key in _OTHER for p in vocabulary()[key]}, key=len, reverse=True)


def named(text: str, look: str) -> np.ndarray:
    """(len(LOOKS[look]),) the values of ``look`` that ``text`` names, shared evenly (all zero: none).

    >>> [COLOURS[i] for i in np.flatnonzero(named("A pink triangle and a purple circle", "colour"))]
    ['purple', 'pink']
    >>> named("a red circle growing from small to large", "size").sum()  # the event's words are not a size
    np.float32(0.0)
    """
    text = text.lower()
    for phrase in _PHRASES:
        text = text.replace(phrase, " ")
    words = set(_WORD.findall(text))
    out = np.array([v in words for v in LOOKS[look]], dtype=np.float32)
    return out / out.sum() if out.any() else out


def shown(attributes: ClipAttributes | None, look: str) -> np.ndarray:
    """(len(LOOKS[look]),) the values of ``look`` of a clip's objects, shared evenly (all zero without any)."""
    values = LOOKS[look]
    out = np.zeros(len(values), dtype=np.float32)
    objects = attributes.objects if attributes is not None else ()
    for obj in objects:
        out[values.index(getattr(obj, look))] += 1.0 / len(objects)
    return out


class LookCentres(nn.Module):
    """One :class:`~demo.train.events.EventCentres` per look; the loss is the mean of their terms."""

    def __init__(self, dim: int, looks: tuple[str, ...]) -> None:
        super().__init__()
        self.centres = nn.ModuleDict({look: EventCentres(dim, len(LOOKS[look])) for look in looks})

    @property
    def looks(self) -> tuple[str, ...]:
        return tuple(self.centres.keys())

    def targets(self, attributes: list[ClipAttributes | None]) -> dict[str, torch.Tensor]:
        """Per look, the (N, C) targets of clips with these attributes (played backwards: the same)."""
        return {look: torch.from_numpy(np.stack([shown(a, look) for a in attributes])) for look in self.looks}

    def text_targets(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {look: torch.from_numpy(np.stack([named(t, look) for t in texts])) for look in self.looks}

    def loss(self, embeddings: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Mean over the looks of the cross-entropy of the rows with a target (None: no row has any)."""
        terms = []
        for look in self.looks:
            centres = self.centres[look]
            assert isinstance(centres, EventCentres)
            if (term := centres.loss(embeddings, targets[look])) is not None:
                terms.append(term)
        return torch.stack(terms).mean() if terms else None
