"""Frame probes: what each frame of a world clip shows, and the linear readouts trained on it.

:class:`LayoutTargets` (where objects are, how big, how visible, how turned) and
:class:`ShapeTargets` (which shapes a frame shows) turn a world clip's attributes into
per-frame targets and own the linear probe that reads them off the frame embeddings.
The trainer adds their losses (``TrainConfig.layout_loss``, ``shape_loss``); the ``frames``
stage trains the vision tower on them alone. The probes are dropped after training.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from demo.errors import InputError
from demo.models.clip4clip import Clip4Clip
from demo.models.temporal import Clip4ClipSettings
from demo.train.data import FrameCache, Sample
from demo.video.sampling import clip4clip_indices
from demo.world import LAYOUT_DIM, LAYOUT_LONE, SHAPES, ClipAttributes, frame_layout, frame_shapes


def sampled_world_frames(samples: list[Sample], settings: Clip4ClipSettings
                         ) -> Iterator[tuple[int, int, ClipAttributes, int, int]]:
    """(clip i, slot k, attributes, frame index, last frame index) of every frame the model is
    given of each world clip (the probe losses' targets are computed per such frame)."""
    for i, sample in enumerate(samples):
        if sample.frames < 2 or sample.attributes is None or not sample.attributes.objects:
            continue
        shown = clip4clip_indices(sample.frames, sample.fps, settings.sample_fps, settings.max_frames)
        for k, frame in enumerate(shown):
            yield i, k, sample.attributes, int(frame), sample.frames - 1


def probe_inputs(per_frame: torch.Tensor) -> torch.Tensor:
    """Unit-length frame embeddings scaled by sqrt(D): what the frame probes read (the
    contrastive losses see only directions)."""
    return torch.nn.functional.normalize(per_frame.float(), dim=-1) * math.sqrt(per_frame.shape[-1])


def shown_frame(values: torch.Tensor, shown: torch.Tensor | None) -> torch.Tensor:
    """(B, T, ...) per-frame values, or in the image stage (``shown`` (B,) given) the frame each
    row shows, as (B, 1, ...)."""
    if shown is None:
        return values
    return values[torch.arange(len(values)), shown].unsqueeze(1)


class LayoutTargets:
    """Per-frame layout targets of world clips and the linear probe that reads them off the
    frame embeddings (``TrainConfig.layout_loss``).

    Targets are :func:`demo.world.frame_layout` of each sampled frame, standardised per value
    over the training frames, so the loss is about 1 - R^2 averaged over the values. The probe
    sees unit-length frame embeddings scaled by sqrt(D), as the contrastive losses see only
    directions.
    """

    def __init__(self, train: list[Sample], val: list[Sample], settings: Clip4ClipSettings, dim: int,
                 angle_weight: float = 1.0) -> None:
        self.settings, self.dim = settings, dim
        self.weight = torch.ones(LAYOUT_DIM)  # each value's weight in the loss
        self.weight[LAYOUT_LONE + 4:] = angle_weight  # the angle code's two values
        self.train, self.train_mask = self._targets(train)
        self.val, self.val_mask = self._targets(val)
        if not self.train_mask.any():
            raise InputError("layout_loss needs world clips (a world .jsonl file with attributes)")
        count = self.train_mask.sum((0, 1)).clamp(min=1)
        values = torch.where(self.train_mask, self.train, 0.0)
        self.mean = values.sum((0, 1)) / count
        var = (torch.where(self.train_mask, self.train - self.mean, 0.0) ** 2).sum((0, 1)) / count
        self.std = var.sqrt().clamp(min=1e-3)
        self.probe = torch.nn.Linear(dim, LAYOUT_DIM)
        torch.nn.init.zeros_(self.probe.weight)  # predicts the mean: loss 1 at the start
        torch.nn.init.zeros_(self.probe.bias)

    def _targets(self, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.settings.max_frames
        values = torch.zeros(len(samples), t, LAYOUT_DIM)
        mask = torch.zeros(len(samples), t, LAYOUT_DIM, dtype=torch.bool)
        for i, k, attributes, frame, last in sampled_world_frames(samples, self.settings):
            v, m = frame_layout(attributes, frame, last)
            values[i, k], mask[i, k] = torch.from_numpy(v), torch.from_numpy(m)
        return values, mask

    def loss(self, indices: np.ndarray, per_frame: torch.Tensor, masks: torch.Tensor,
             shown: torch.Tensor | None = None) -> torch.Tensor | None:
        """Masked mean squared error of the standardised targets of a batch's frames.
        ``per_frame`` (B, T, D); in the image stage T = 1 and ``shown`` (B,) says which frame."""
        idx = torch.from_numpy(indices)
        target, mask = shown_frame(self.train[idx], shown), shown_frame(self.train_mask[idx], shown)
        mask = mask & masks.cpu().unsqueeze(-1)
        if not mask.any():
            return None
        device = per_frame.device
        target = ((target - self.mean) / self.std).to(device)
        error = self.weight.to(device) * (self.probe(probe_inputs(per_frame)) - target) ** 2
        return error[mask.to(device)].mean()

    @torch.inference_mode()
    def fit_probe(self, model: Clip4Clip, data: FrameCache, clips: int = 512, ridge: float = 1.0) -> None:
        """Start the probe at the ridge solution on the first ``clips`` training clips, so that its
        first gradients into the model already point somewhere useful."""
        model.eval()
        device = next(model.parameters()).device
        n = min(clips, len(data))
        per_frame = torch.cat([model.frame_embeddings(data.frames[i:i + 64].float().to(device),
                                                      data.masks[i:i + 64].to(device)).float().cpu()
                               for i in range(0, n, 64)])
        model.train()
        x = probe_inputs(per_frame)
        x = torch.cat([x, torch.ones(*x.shape[:2], 1)], -1)
        frame_mask = data.masks[:n]
        target = (self.train[:n] - self.mean) / self.std
        weight = torch.zeros(self.probe.out_features, self.dim + 1)
        for j in range(self.probe.out_features):
            rows = self.train_mask[:n, :, j] & frame_mask
            if rows.sum() < 8:
                continue
            a, b = x[rows], target[:, :, j][rows]
            weight[j] = torch.linalg.solve(a.t() @ a + ridge * torch.eye(self.dim + 1), a.t() @ b)
        self.probe.weight.copy_(weight[:, :-1])
        self.probe.bias.copy_(weight[:, -1])

    def validate(self, per_frame: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
        """The probe's R^2 on the validation frames: overall, the coverage map, a lone object's
        x, y and angle code."""
        pred = self.probe(probe_inputs(per_frame)).cpu()
        target = (self.val - self.mean) / self.std
        mask = self.val_mask & masks.cpu().unsqueeze(-1)

        def r2(columns: slice) -> float:
            m = mask[..., columns]
            t, p = target[..., columns][m], pred[..., columns][m]
            return float(1.0 - ((t - p) ** 2).sum() / ((t - t.mean()) ** 2).sum().clamp(min=1e-9))

        g = LAYOUT_LONE
        return {"all": r2(slice(None)), "coverage": r2(slice(0, g)), "x": r2(slice(g, g + 1)),
                "y": r2(slice(g + 1, g + 2)), "angle": r2(slice(g + 4, g + 6))}


class ShapeTargets:
    """Which shapes each sampled frame of a world clip shows, and the linear classifier that reads
    them off the frame embeddings (``TrainConfig.shape_loss``).

    The loss is the cross-entropy between the classifier's softmax over the shapes and the shapes
    the frame shows (spread evenly when there are several); frames without a visible object are
    left out. Validation reports how often the classifier names the shape of a lone object.
    """

    def __init__(self, train: list[Sample], val: list[Sample], settings: Clip4ClipSettings, dim: int) -> None:
        self.settings = settings
        self.train = self._targets(train)
        self.val = self._targets(val)
        if not (self.train.sum(-1) > 0).any():
            raise InputError("shape_loss needs world clips (a world .jsonl file with attributes)")
        self.probe = torch.nn.Linear(dim, len(SHAPES))
        torch.nn.init.zeros_(self.probe.weight)
        torch.nn.init.zeros_(self.probe.bias)

    def _targets(self, samples: list[Sample]) -> torch.Tensor:
        """(N, T, shapes) 0/1: the shapes each sampled frame shows (all 0: none, or not a world clip)."""
        out = torch.zeros(len(samples), self.settings.max_frames, len(SHAPES))
        for i, k, attributes, frame, last in sampled_world_frames(samples, self.settings):
            out[i, k] = torch.from_numpy(frame_shapes(attributes, frame, last))
        return out

    def _logits(self, per_frame: torch.Tensor) -> torch.Tensor:
        return self.probe(probe_inputs(per_frame))

    def loss(self, indices: np.ndarray, per_frame: torch.Tensor, masks: torch.Tensor,
             shown: torch.Tensor | None = None) -> torch.Tensor | None:
        """Mean cross-entropy over a batch's frames that show an object. ``per_frame`` (B, T, D);
        in the image stage T = 1 and ``shown`` (B,) says which frame."""
        target = shown_frame(self.train[torch.from_numpy(indices)], shown)
        rows = (target.sum(-1) > 0) & masks.cpu()
        if not rows.any():
            return None
        device = per_frame.device
        target = (target / target.sum(-1, keepdim=True).clamp(min=1)).to(device)
        logp = torch.log_softmax(self._logits(per_frame), dim=-1)
        return -(target * logp).sum(-1)[rows.to(device)].mean()

    def validate(self, per_frame: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
        """Accuracy (%) on the validation frames that show exactly one shape, and how many there were."""
        lone = (self.val.sum(-1) == 1) & masks.cpu()
        if not lone.any():
            return {"accuracy": float("nan"), "frames": 0.0}
        guess = self._logits(per_frame).argmax(-1).cpu()
        right = (guess == self.val.argmax(-1))[lone]
        return {"accuracy": 100.0 * float(right.float().mean()), "frames": float(lone.sum())}
