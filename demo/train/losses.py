"""Contrastive losses for text-video training: pure functions of logits or embeddings.

:func:`symmetric_infonce` is CLIP's; :func:`multi_positive_infonce` lets several columns be right
and gives a clip (or a caption) hard negatives of its own; :func:`caption_video_infonce` builds
those logits from caption and video embeddings, treating identical captions as positives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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


def caption_video_infonce(text: torch.Tensor, videos: torch.Tensor, captions: list[str],
                          negatives: Sequence[tuple[int, str]], scale: torch.Tensor,
                          own_videos: Sequence[tuple[torch.Tensor, np.ndarray]] = ()) -> torch.Tensor:
    """:func:`multi_positive_infonce` of ``videos`` (B, D, unit) against the first B rows of ``text``.

    ``captions`` are the B caption strings (identical strings in one batch are positives for each
    other's clips). The other rows of ``text`` embed ``negatives``, (row, caption) pairs: hard
    negative captions, each counted against its own row's clip only (a clip may have several).
    ``own_videos``: pairs of (B, D) negative videos (each clip played backwards) and the (B,) bool
    rows whose caption they are a negative for. ``scale`` is the logit scale.
    """
    device = text.device
    _, groups = np.unique(np.array(captions), return_inverse=True)
    group_ids = torch.from_numpy(groups).to(device)
    positive, negative = text[:len(captions)].float(), text[len(captions):].float()
    own = None
    if negatives:
        # one row of logits per rank among a clip's own negatives (-inf where it has fewer)
        owners = np.array([i for i, _ in negatives])
        ranks = np.array([np.count_nonzero(owners[:j] == r) for j, r in enumerate(owners)])
        own = torch.full((int(ranks.max()) + 1, len(captions)), float("-inf"), device=device)
        at = torch.from_numpy(owners).to(device)
        own[torch.from_numpy(ranks).to(device), at] = scale * (negative * videos[at].float()).sum(-1)
    columns = []
    for other, applies in own_videos:
        if applies.any():
            column = torch.full((len(captions),), float("-inf"), device=device)
            rows = torch.from_numpy(np.flatnonzero(applies)).to(device)
            column[rows] = scale * (positive[rows] * other[rows].float()).sum(-1)
            columns.append(column)
    extra = torch.stack(columns, 1) if columns else None
    return multi_positive_infonce(scale * positive @ videos.float().t(), group_ids, own, extra)
