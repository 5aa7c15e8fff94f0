"""Contrastive losses for text-video training."""

from __future__ import annotations

import torch
from torch import nn


def symmetric_infonce(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a (B, B) logits matrix whose diagonal holds the pairs.

    The mean of text->video and video->text cross-entropy, as in CLIP and CLIP4Clip.
    ``logits`` should already be scaled by the learned temperature.

    >>> round(float(symmetric_infonce(torch.eye(3) * 100)), 4)
    0.0
    """
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"expected a square logits matrix, got shape {tuple(logits.shape)}")
    target = torch.arange(logits.shape[0], device=logits.device)
    return (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.t(), target)) / 2


def multi_positive_infonce(
    logits: torch.Tensor, groups: torch.Tensor, own_negatives: torch.Tensor | None = None,
    own_negative_videos: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE where several columns can be correct: ``groups[i] == groups[j]`` marks a positive.

    Used when a batch holds two captions of the same clip, or two clips that share a
    caption (the embedded world repeats simple descriptions): treating those as
    negatives would punish the model for being right. For distinct groups this
    equals :func:`symmetric_infonce`.

    ``own_negatives`` (B,) or (K, B): for each clip, the logits of up to K hard negative
    captions of its own (its caption with the event or a shape changed; ``-inf`` where it has
    fewer). They join that clip's video->text softmax only: a changed caption may well describe
    another clip of the batch (a time-reversed twin), so it is no negative for the others.

    ``own_negative_videos`` (B,) or (B, K): likewise for each caption, the logits of up to K
    hard negative videos of its own (its clip played backwards, its clip frozen on one frame;
    ``-inf`` where one does not apply). They join that caption's text->video softmax only.

    >>> logits, groups = torch.eye(2) * 5, torch.arange(2)
    >>> easy = multi_positive_infonce(logits, groups)
    >>> hard = multi_positive_infonce(logits, groups, torch.tensor([4.0, float("-inf")]))
    >>> bool(hard > easy)
    True
    >>> two = torch.tensor([[4.0, float("-inf")], [3.0, float("-inf")]])
    >>> bool(multi_positive_infonce(logits, groups, two) > hard)
    True
    >>> backwards = multi_positive_infonce(logits, groups, None, torch.tensor([5.0, float("-inf")]))
    >>> bool(backwards > easy)
    True
    >>> both = torch.tensor([[5.0, 4.0], [float("-inf"), float("-inf")]])
    >>> bool(multi_positive_infonce(logits, groups, None, both) > backwards)
    True
    """
    positives = groups.unsqueeze(0) == groups.unsqueeze(1)
    masked = logits.masked_fill(~positives, float("-inf"))
    # -log of the probability mass on any correct column (rows) / row (columns).
    if own_negative_videos is not None and own_negative_videos.ndim == 1:
        own_negative_videos = own_negative_videos.unsqueeze(1)
    every_video = logits if own_negative_videos is None else torch.cat([logits, own_negative_videos], 1)
    rows = every_video.logsumexp(dim=1) - masked.logsumexp(dim=1)
    if own_negatives is not None and own_negatives.ndim == 1:
        own_negatives = own_negatives.unsqueeze(0)
    every_text = logits if own_negatives is None else torch.cat([logits, own_negatives], dim=0)
    cols = every_text.logsumexp(dim=0) - masked.logsumexp(dim=0)
    return (rows.mean() + cols.mean()) / 2
