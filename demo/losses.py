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


def multi_positive_infonce(logits: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """InfoNCE where several columns can be correct: ``groups[i] == groups[j]`` marks a positive.

    Used when a batch holds two captions of the same clip, or two clips that share a
    caption (the embedded world repeats simple descriptions): treating those as
    negatives would punish the model for being right. For distinct groups this
    equals :func:`symmetric_infonce`.
    """
    positives = groups.unsqueeze(0) == groups.unsqueeze(1)
    masked = logits.masked_fill(~positives, float("-inf"))
    # -log of the probability mass on any correct column (rows) / row (columns).
    rows = logits.logsumexp(dim=1) - masked.logsumexp(dim=1)
    cols = logits.logsumexp(dim=0) - masked.logsumexp(dim=0)
    return (rows.mean() + cols.mean()) / 2
