"""Batch assembly: which frames, captions and negatives a training step sees, drawn from the seeded rng.

Nothing here computes a loss (that is :mod:`demo.train.objectives`); everything random about a step
is drawn here, in a fixed order, so a run is reproducible from its seed and its resume state. Per
stage:

* ``frames``: one frame from anywhere in each clip (the frame probes' targets say what it shows);
* ``image``: one frame from the middle half of each clip with one of its still captions, or,
  for a ``frame_captions`` share of world clips, a caption of that very frame (where each
  object is, how big, how visible) with the objects mirrored as its own hard negative;
* ``video``: whole clips with one of their captions; for world clips a ``hard_negatives`` share
  get their caption with one event changed (:func:`demo.world.counterfactual`) and a
  ``look_negatives`` share with one object's colour or size changed (:func:`demo.world.look_changed`)
  as hard negatives, a
  ``reversed_videos`` share of the captions that read differently backwards also score their
  clip played backwards, and with ``frame_loss`` one frame per clip gets a frame caption too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from demo.models.temporal import Clip4ClipSettings
from demo.train.config import TrainConfig
from demo.train.data import FrameCache, Sample
from demo.train.events import event_target
from demo.video.sampling import clip4clip_indices
from demo.world import (
    canonical_caption,
    counterfactual,
    frame_caption_pair,
    look_changed,
    says_look_change,
    time_reversed,
)
from demo.world.text import make_captions


@dataclass(frozen=True)
class FrameCaptions:
    """The video stage's frame-caption loss: one sampled frame of each world clip and its caption."""

    rows: list[int]  # batch rows of the world clips
    picks: list[int]  # which sampled frame of each row
    captions: list[str]  # what that frame shows
    negatives: list[tuple[int, str]]  # (index into captions, the caption with the objects mirrored)


@dataclass(frozen=True)
class Batch:
    """One micro-batch. Tensors are on the training device."""

    indices: np.ndarray  # (B,) rows of the training data
    frames: torch.Tensor  # (B, T, 3, S, S) float; T = 1 in the frames and image stages
    masks: torch.Tensor  # (B, T) bool: real frames
    captions: list[str] = field(default_factory=list)  # (B,) one per clip; none in the frames stage
    negatives: list[tuple[int, str]] = field(default_factory=list)  # (row, caption): hard negatives of a row
    shown: torch.Tensor | None = None  # (B,) frames and image stages: which sampled frame each row shows
    reversed: np.ndarray | None = None  # (B,) bool: captions that also score their clip played backwards
    negative_events: np.ndarray | None = None  # (N, C) video stage: the events each hard negative names
    frame_captions: FrameCaptions | None = None  # video stage with frame_loss


def reversible(samples: list[Sample]) -> np.ndarray:
    """(N,) bool: world clips whose canonical caption changes when the clip plays backwards."""
    out = np.zeros(len(samples), dtype=bool)
    for i, sample in enumerate(samples):
        attributes = sample.attributes
        if attributes is not None and attributes.objects:  # a world clip
            out[i] = canonical_caption(attributes) != canonical_caption(time_reversed(attributes))
    return out


def frame_caption(sample: Sample, pick: int, settings: Clip4ClipSettings,
                  rng: np.random.Generator) -> tuple[str, str | None] | None:
    """Caption and mirrored negative of the ``pick``-th sampled frame of a world clip (else None)."""
    if sample.frames < 2 or sample.attributes is None or not sample.attributes.objects:
        return None
    shown = clip4clip_indices(sample.frames, sample.fps, settings.sample_fps, settings.max_frames)
    return frame_caption_pair(sample.attributes, int(shown[min(pick, len(shown) - 1)]), sample.frames - 1, rng)


def hard_negatives(samples: list[Sample], indices: np.ndarray, share: float, rng: np.random.Generator,
                   look: bool = False) -> list[tuple[int, str, np.ndarray]]:
    """For a ``share`` of the world clips in a batch: (position, a caption of the clip with one event
    changed (:func:`~demo.world.counterfactual`), or with ``look`` one object's colour or size
    (:func:`~demo.world.look_changed`, among the captions that name the change), phrased like any other
    caption, and the :func:`~demo.train.events.event_target` of the changed clip)."""
    out = []
    for position, i in enumerate(indices):
        attributes = samples[i].attributes
        if attributes is not None and attributes.objects and rng.random() < share:
            changed = look_changed(attributes, rng) if look else counterfactual(attributes, rng)
            captions = make_captions(changed, rng)
            if look:  # the canonical caption (first) always names it
                captions = [c for c in captions if says_look_change(attributes, changed, c)]
            out.append((position, str(captions[int(rng.integers(len(captions)))]), event_target(changed)))
    return out


def draw_batch(data: FrameCache, indices: np.ndarray, rng: np.random.Generator, config: TrainConfig,
               settings: Clip4ClipSettings, backwards: np.ndarray | None, device: str) -> Batch:
    """The stage's batch of the training rows ``indices``. ``backwards``: the (N,) :func:`reversible`
    flags of the training data when the model has a temporal head to score reversed clips (else None)."""
    if config.stage == "frames":
        return _frames_batch(data, indices, rng, device)
    if config.stage == "image":
        return _image_batch(data, indices, rng, config.frame_captions, settings, device)
    return _video_batch(data, indices, rng, config, settings, backwards, device)


def _frames_batch(data: FrameCache, indices: np.ndarray, rng: np.random.Generator, device: str) -> Batch:
    idx = torch.from_numpy(indices)
    counts = data.masks[idx].sum(1).numpy()
    picks = torch.from_numpy(rng.integers(0, np.maximum(counts, 1)))
    frames, masks = _shown_frames(data, idx, picks)
    return Batch(indices, frames.to(device), masks.to(device), shown=picks)


def _image_batch(data: FrameCache, indices: np.ndarray, rng: np.random.Generator, share: float,
                 settings: Clip4ClipSettings, device: str) -> Batch:
    samples, idx = data.samples, torch.from_numpy(indices)
    counts = data.masks[idx].sum(1).numpy()
    if share <= 0:  # still captions only (drawn before the frames, as always)
        captions = [str(rng.choice(samples[i].still_captions)) for i in indices]
    picks = [int(c // 4 + rng.integers(0, max(1, c // 2))) for c in counts]
    frames, masks = _shown_frames(data, idx, torch.tensor(picks))
    negatives: list[tuple[int, str]] = []
    if share > 0:
        captions = []
        for position, (i, pick) in enumerate(zip(indices, picks, strict=True)):
            if rng.random() < share and (pair := frame_caption(samples[i], pick, settings, rng)) is not None:
                captions.append(pair[0])
                if pair[1] is not None:
                    negatives.append((position, pair[1]))
            else:
                captions.append(str(rng.choice(samples[i].still_captions)))
    return Batch(indices, frames.to(device), masks.to(device), captions, negatives, shown=torch.tensor(picks))


def _video_batch(data: FrameCache, indices: np.ndarray, rng: np.random.Generator, config: TrainConfig,
                 settings: Clip4ClipSettings, backwards: np.ndarray | None, device: str) -> Batch:
    samples, idx = data.samples, torch.from_numpy(indices)
    masks = data.masks[idx]
    captions = [str(rng.choice(samples[i].captions)) for i in indices]
    changed = hard_negatives(samples, indices, config.hard_negatives, rng) if config.hard_negatives > 0 else []
    if config.look_negatives > 0:  # drawn after the event ones, so runs without them draw as before
        changed += hard_negatives(samples, indices, config.look_negatives, rng, look=True)
    negatives = [(position, caption) for position, caption, _ in changed]
    events = np.stack([e for _, _, e in changed]) if changed else None
    reversed_rows = None
    if backwards is not None and config.reversed_videos > 0:  # meanP cannot see order: only a head gets these
        reversed_rows = backwards[indices] & (rng.random(len(indices)) < config.reversed_videos)
    frame_rows = None
    if config.frame_loss > 0:
        frame_rows = _frame_captions(samples, indices, masks.sum(1).numpy(), settings, rng)
    return Batch(indices, data.frames[idx].float().to(device), masks.to(device), captions, negatives,
                 reversed=reversed_rows, frame_captions=frame_rows, negative_events=events)


def _frame_captions(samples: list[Sample], indices: np.ndarray, counts: np.ndarray, settings: Clip4ClipSettings,
                    rng: np.random.Generator) -> FrameCaptions | None:
    """One random sampled frame of each world clip of a video batch and its caption (None: under two)."""
    rows, picks, captions, own = [], [], [], []
    for position, i in enumerate(indices):
        pick = int(rng.integers(0, max(1, counts[position])))
        pair = frame_caption(samples[i], pick, settings, rng)
        if pair is not None:
            rows.append(position)
            picks.append(pick)
            captions.append(pair[0])
            own.append(pair[1])
    if len(rows) < 2:
        return None
    return FrameCaptions(rows, picks, captions, [(k, c) for k, c in enumerate(own) if c is not None])


def _shown_frames(data: FrameCache, idx: torch.Tensor, picks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, 3, S, S) float frames and (B, 1) masks of the ``picks``-th sampled frame of each clip."""
    return data.frames[idx, picks].float().unsqueeze(1), torch.ones(len(idx), 1, dtype=torch.bool)
