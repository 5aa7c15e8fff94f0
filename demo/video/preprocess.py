"""Frames to model input: resize, centre crop and normalise, and the two ways a clip is loaded.

CLIP4Clip normalises with CLIP's mean/std and X-CLIP with ImageNet's (the statistics
each was trained with); :func:`load_clip4clip_clip` and :func:`load_uniform_clip` decode
and sample a file the way each model expects. torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from demo.video.decode import VideoSource
from demo.video.sampling import clip4clip_indices, uniform_indices

if TYPE_CHECKING:
    import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess(
    frames: np.ndarray, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, S, S) float32 with S = ``image_size``.

    Short side to S (bicubic with antialias, as PIL does for CLIP), centre crop S x S,
    scale to [0, 1], then ``(x - mean) / std`` per channel. Pass CLIP's mean/std for
    CLIP4Clip and ImageNet's for X-CLIP.
    """
    import torch
    import torch.nn.functional as F

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    if image_size < 1 or len(mean) != 3 or len(std) != 3:
        raise ValueError(f"need image_size >= 1 and 3-channel mean/std, got {image_size}, {mean}, {std}")
    t, h, w, _ = frames.shape
    if t == 0:
        return torch.zeros((0, 3, image_size, image_size), dtype=torch.float32)
    if min(h, w) == image_size:
        # Already at scale (the usual case after a reduced-resolution decode): crop the
        # uint8 frames first so only S x S pixels are converted to float.
        top, left = int(round((h - image_size) / 2)), int(round((w - image_size) / 2))
        crop = np.ascontiguousarray(frames[:, top : top + image_size, left : left + image_size])
        x = torch.from_numpy(crop).permute(0, 3, 1, 2).float().div_(255.0)
    else:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
        scale = image_size / min(h, w)
        size = (max(image_size, round(h * scale)), max(image_size, round(w * scale)))
        # Bicubic overshoots at edges; clamp like the uint8 round trip in PIL would.
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp_(0.0, 1.0)
        top, left = int(round((size[0] - image_size) / 2)), int(round((size[1] - image_size) / 2))
        x = x[:, :, top : top + image_size, left : left + image_size]
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean_t) / std_t).contiguous()


def load_clip4clip_clip(
    path: str | Path, image_size: int, sample_fps: float = 1.0, max_frames: int = 12
) -> tuple[torch.Tensor, torch.Tensor]:
    """A clip as CLIP4Clip sees it -> frames (max_frames, 3, S, S) float32, mask (max_frames,) bool.

    Frames are sampled with :func:`clip4clip_indices`, decoded at short side ~S, and
    normalised with CLIP's mean/std; slots past the clip's sample count are zeros with
    ``mask`` False.
    """
    import torch

    with VideoSource(Path(path), short_side=image_size) as src:
        idx = clip4clip_indices(src.info.num_frames, src.info.fps, sample_fps, max_frames)
        frames = src.read(idx)
    x = preprocess(frames, image_size, CLIP_MEAN, CLIP_STD)
    out = torch.zeros((max_frames, 3, image_size, image_size), dtype=torch.float32)
    out[: len(x)] = x
    mask = torch.zeros(max_frames, dtype=torch.bool)
    mask[: len(x)] = True
    return out, mask


def load_uniform_clip(
    path: str | Path, num_frames: int, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> tuple[torch.Tensor, int]:
    """``num_frames`` frames at segment centres -> ((num_frames, 3, S, S) float32, distinct count).

    The count is the number of distinct source frames: below ``num_frames`` when the clip
    is shorter than ``num_frames`` and frames were repeated (X-CLIP samples 8).
    """
    with VideoSource(Path(path), short_side=image_size) as src:
        idx = uniform_indices(src.info.num_frames, num_frames)
        unique, inverse = np.unique(idx, return_inverse=True)
        frames = src.read(unique)
    # Preprocess each distinct frame once, then repeat the tensors.
    x = preprocess(frames, image_size, mean, std)[inverse.reshape(-1)]
    return x.contiguous(), int(len(unique))
