"""What a video or image stage reports on the validation clips each epoch (beside the frame probes).

Per pooling (meanP and every temporal head): text -> video and video -> text retrieval metrics of the
canonical captions; per head, how often a caption whose meaning changes backwards scores its clip above
the same frames played backwards (``<head>/order``); with event centres (:mod:`demo.train.events`), how
often the captions and each head's clips land nearest their own event (``events/...``).
"""

from __future__ import annotations

import numpy as np
import torch

from demo.evaluate.metrics import retrieval_metrics
from demo.models.clip4clip import Clip4Clip
from demo.models.temporal import masked_mean, reverse_frames
from demo.train.events import EventCentres


def pooled_metrics(model: Clip4Clip, texts: dict[str, torch.Tensor], per_frame: torch.Tensor, masks: torch.Tensor,
                   reversible: np.ndarray, events: tuple[EventCentres, torch.Tensor] | None = None
                   ) -> dict[str, dict[str, float]]:
    """The metrics above. ``texts``: the (N, E) canonical caption embeddings as each pooling compares them
    (``"meanP"``: the plain ones, used by every head without its own text side); ``per_frame`` (N, T, D)
    and ``masks`` (N, T) the clips' frames; ``reversible`` (N,) bool; ``events``: the centres and the (N, C)
    event targets of the clips."""
    videos = {"meanP": masked_mean(per_frame, masks)}
    videos.update({name: head(per_frame, masks) for name, head in model.heads.items()})
    metrics: dict[str, dict[str, float]] = {}
    for name, video in videos.items():
        text = texts.get(name, texts["meanP"])
        sim = (text @ video.t()).float().cpu().numpy()
        metrics[f"{name}/t2v"], metrics[f"{name}/v2t"] = retrieval_metrics(sim), retrieval_metrics(sim.T)
        if name != "meanP" and reversible.any():
            rows = torch.from_numpy(np.flatnonzero(reversible)).to(video.device)
            backwards = model.heads[name](reverse_frames(per_frame[rows], masks[rows]), masks[rows])
            ahead = ((text[rows] * video[rows]).sum(-1) > (text[rows] * backwards).sum(-1)).float().mean()
            metrics[f"{name}/order"] = {"ahead": 100.0 * float(ahead), "clips": float(len(rows))}
    if events is not None:
        centres, targets = events
        accuracy = {"text": centres.accuracy(texts["meanP"], targets)}
        accuracy.update({name: centres.accuracy(v, targets) for name, v in videos.items() if name != "meanP"})
        metrics["events/accuracy"] = accuracy
    return metrics
