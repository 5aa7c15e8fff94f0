"""Event centres: one learned direction per event of the world, shared by captions and clips.

The contrastive loss alone left the text tower embedding "a red circle moving up", "... moving
down", "... bouncing" and "... staying still" at cosine 0.985-0.990 with one another, while the
frames carried vertical motion (docs/experiments.md, 2026-12-04): in a random batch colour and
shape tell clips apart, and an order-blind meanP loss pulls a caption and its time reversal
together. So, as stage 0 told the frames what shape they show, this tells both towers what
happens: each caption (its batch captions and its event-changed hard negatives, whose events are
known) and each clip's head embedding (and the clip played backwards, which shows the reversed
events) is scored against :data:`CLASSES` unit centres at a fixed scale, and the cross-entropy
with the events it shows is a loss term (``TrainConfig.event_loss``). Centres are shared by the two
sides, so "moving up" captions and moving-up clips are pulled toward the same direction and away
from "moving down". A fixed, low scale (a cosine classifier) makes the classes cost real angle:
at scale 10 a confident choice needs cosines about 0.5 apart, where a learned scale could read
cosines 0.99 apart and leave them there. The centres are dropped after training.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from demo.world import EVENTS, RELATIONS, ClipAttributes, time_reversed

CLASSES = (*EVENTS, *RELATIONS)
SCALE = 10.0  # logit scale of the cosine classifier (see the module docstring)


def event_target(attributes: ClipAttributes | None) -> np.ndarray:
    """(len(CLASSES),) what a clip shows: its relation, else its objects' events, shared evenly
    (all zero for a clip without attributes, which the loss then leaves out).

    >>> from demo.world import WorldObject
    >>> o = WorldObject("star", "red", "small", "moving up", 0, 0, 0, 0, 9, 9, 0, 0, 1, 1, 0, 0)
    >>> CLASSES[int(event_target(ClipAttributes((o,), "dark")).argmax())]
    'moving up'
    """
    out = np.zeros(len(CLASSES), dtype=np.float32)
    if attributes is None or not attributes.objects:
        return out
    if attributes.relation is not None:
        out[CLASSES.index(attributes.relation)] = 1.0
        return out
    for obj in attributes.objects:
        out[CLASSES.index(obj.event)] += 1.0 / len(attributes.objects)
    return out


def clip_targets(attributes: list[ClipAttributes | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) targets of clips played forwards and backwards."""
    forwards = np.stack([event_target(a) for a in attributes])
    backwards = np.stack([event_target(time_reversed(a) if a is not None and a.objects else None)
                          for a in attributes])
    return torch.from_numpy(forwards), torch.from_numpy(backwards)


class EventCentres(nn.Module):
    """One unit centre per class (default: the events, :data:`CLASSES`) in the D-wide joint space and the
    cross-entropy against them. :mod:`demo.train.looks` uses the same classifier for colour, shape and size."""

    def __init__(self, dim: int, classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.randn(classes, dim) * dim ** -0.5)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(N, >= D) embeddings (the first D entries are read, normalised) -> (N, C) logits."""
        head = nn.functional.normalize(embeddings[:, :self.centres.shape[1]].float(), dim=-1)
        return SCALE * head @ nn.functional.normalize(self.centres, dim=-1).t()

    def loss(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """Mean cross-entropy of the rows with a target ((N, C) distributions; all-zero rows left out)."""
        rows = targets.sum(-1) > 0
        if not bool(rows.any()):
            return None
        targets = targets.to(embeddings.device)
        logp = torch.log_softmax(self.logits(embeddings), -1)
        return -(targets * logp).sum(-1)[rows.to(embeddings.device)].mean()

    @torch.no_grad()
    def accuracy(self, embeddings: torch.Tensor, targets: torch.Tensor) -> float:
        """% of the rows with one event whose best centre is it (validation)."""
        rows = (targets > 0.99).any(-1)
        if not bool(rows.any()):
            return float("nan")
        guess = self.logits(embeddings).argmax(-1).cpu()
        return 100.0 * float((guess[rows] == targets.argmax(-1)[rows]).float().mean())
