"""The training objectives: pure functions from a batch and its embeddings to named losses.

Each returns a dict of weighted loss terms, e.g. ``{"contrastive": ..., "layout": ...}``; the loop
(:class:`demo.train.loop.Trainer`) adds up whatever the stage's objectives return. The arithmetic
of the contrastive terms is generic (:mod:`demo.train.losses`); what makes these world-specific is
which extra negatives and targets the batch carries (:mod:`demo.train.batches`):

* :func:`contrastive` -- captions against pooled videos, per trained pooling (meanP and the heads), with
  each clip's event-changed hard negative captions and, for a head, its reversed clip as a
  negative video of the captions that read differently backwards;
* :func:`events` -- captions, hard negatives and each head's clips (forwards and backwards) against
  the shared event centres (:mod:`demo.train.events`);
* :func:`looks` -- the same against colour, shape and size centres (:mod:`demo.train.looks`);
* :func:`frame_caption` -- one frame per world clip against a caption of where its objects are;
* :func:`frame_probes` -- the layout regression and shape classification of every frame shown
  (:mod:`demo.train.probes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from demo.train.batches import Batch
from demo.train.events import EventCentres
from demo.train.looks import LookCentres
from demo.train.losses import caption_video_infonce
from demo.train.probes import LayoutTargets, ShapeTargets


@dataclass(frozen=True)
class Embeddings:
    """What the model made of a batch: the inputs of the objectives."""

    text: torch.Tensor | None  # (B + N, D) the batch's captions, then its N hard negatives (None: frames stage)
    per_frame: torch.Tensor  # (B, T, D) frame embeddings (zero where masked)
    scale: torch.Tensor  # the logit scale: exp of the learned temperature, at most 100
    videos: dict[str, torch.Tensor]  # (B, E) unit video embedding per trained pooling ("meanP", "seqTransf", ...)
    backwards: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, E) per head: the clips played backwards
    frame_text: torch.Tensor | None = None  # (F + M, D) the frame captions, then their M mirrored negatives
    head_text: dict[str, torch.Tensor] = field(default_factory=dict)  # (B + N, E) heads with a text side (tdb+tab)


def contrastive(batch: Batch, emb: Embeddings) -> dict[str, torch.Tensor]:
    """``{"contrastive": mean over the trained poolings of caption <-> video InfoNCE}``."""
    assert emb.text is not None
    losses = []
    for pooling, videos in emb.videos.items():
        own_videos: list[tuple[torch.Tensor, np.ndarray]] = []
        if pooling in emb.backwards and batch.reversed is not None:
            own_videos.append((emb.backwards[pooling], batch.reversed))
        text = emb.head_text.get(pooling, emb.text)
        losses.append(caption_video_infonce(text, videos, batch.captions, batch.negatives, emb.scale, own_videos))
    return {"contrastive": torch.stack(losses).mean()}


def events(batch: Batch, emb: Embeddings, centres: EventCentres, targets: tuple[torch.Tensor, torch.Tensor],
           weight: float) -> dict[str, torch.Tensor]:
    """``{"events": weight x (text term + video term)}``: the cross-entropy of the captions and hard
    negatives, and (averaged) of each head's clips played forwards and backwards, against the shared event
    centres. ``targets``: the (N, C) forwards and backwards event targets of the training clips. Empty
    when no caption or clip of the batch has an event."""
    assert emb.text is not None
    forwards, backwards = (t[torch.from_numpy(batch.indices)] for t in targets)
    said = forwards if batch.negative_events is None else torch.cat([forwards, torch.from_numpy(batch.negative_events)])
    text = centres.loss(emb.text, said)
    shown = [centres.loss(v, forwards) for p, v in emb.videos.items() if p != "meanP"]
    shown += [centres.loss(v, backwards) for v in emb.backwards.values()]
    return _text_and_clips("events", text, shown, weight)


def looks(batch: Batch, emb: Embeddings, centres: LookCentres, targets: dict[str, torch.Tensor],
          weight: float) -> dict[str, torch.Tensor]:
    """``{"looks": weight x (text term + video term)}`` against the look centres: each caption and hard
    negative with the colour, shape and size it names, each head's clip (forwards and backwards) with its
    objects' (``targets``: per look, (N, C) of the training clips). Empty when nothing in the batch has one."""
    assert emb.text is not None
    text = centres.loss(emb.text, centres.text_targets([*batch.captions, *(c for _, c in batch.negatives)]))
    clips = {look: t[torch.from_numpy(batch.indices)] for look, t in targets.items()}
    seen = [centres.loss(v, clips) for p, v in [*emb.videos.items(), *emb.backwards.items()] if p != "meanP"]
    return _text_and_clips("looks", text, seen, weight)


def _text_and_clips(name: str, text: torch.Tensor | None, clips: list[torch.Tensor | None],
                    weight: float) -> dict[str, torch.Tensor]:
    """``{name: weight x (text term + mean of the clip terms)}`` of a centres classifier; a term that is None
    (no row with a target) is left out, and with none at all the result is empty."""
    terms = [t for t in clips if t is not None]
    parts = [t for t in (text, torch.stack(terms).mean() if terms else None) if t is not None]
    return {name: weight * sum(parts[1:], parts[0])} if parts else {}


def frame_caption(batch: Batch, emb: Embeddings, weight: float) -> dict[str, torch.Tensor]:
    """``{"frame_caption": weight x InfoNCE of one frame per world clip against its frame caption}``:
    keeps where things are in the frame embeddings, whose change the temporal head reads as direction.
    Empty when the batch has no frame captions."""
    frames = batch.frame_captions
    if frames is None or emb.frame_text is None:
        return {}
    picked = emb.per_frame[torch.tensor(frames.rows), torch.tensor(frames.picks)].float()
    videos = torch.nn.functional.normalize(picked, dim=-1)
    return {"frame_caption": weight * caption_video_infonce(emb.frame_text, videos, frames.captions,
                                                            frames.negatives, emb.scale)}


def frame_probes(batch: Batch, per_frame: torch.Tensor, layout: tuple[LayoutTargets, float] | None,
                 shapes: tuple[ShapeTargets, float] | None) -> dict[str, torch.Tensor]:
    """``{"layout": ..., "shape": ...}``: each probe's (targets, weight) term over the frames the batch
    shows (``batch.shown`` in the frames and image stages), left out when no frame has a target."""
    out = {}
    for name, probe in (("layout", layout), ("shape", shapes)):
        if probe is not None:
            targets, weight = probe
            term = targets.loss(batch.indices, per_frame, batch.masks, batch.shown)
            if term is not None:
                out[name] = weight * term
    return out
