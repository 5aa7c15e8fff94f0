"""Frames to model input: resize, centre crop and normalise, and the two ways a clip is loaded.

Two ways to reach the model's size (``Clip4ClipSettings.frame_resize``):

* "decoder": frames scaled inside the decoder to about the model's size, then :func:`preprocess`
  crops (and resizes what is left with torch's antialiased bicubic): fast, and what this
  project's own checkpoints were trained and indexed with;
* "pil-bicubic": frames decoded at full resolution, then :func:`preprocess_reference`: PIL's
  bicubic resize of the whole RGB frame (short side to S), centre crop, CLIP mean/std, exactly
  as CLIP4Clip's and the Searchium notebook's torchvision transforms do it on PIL images;
* "mmaction2": full resolution, then :func:`preprocess_mmaction2`: MMAction2's CLIP4Clip test
  pipeline (``Resize(scale=(-1, 256))``, ``CenterCrop(224)``, its 0-255 mean/std).

X-CLIP frames go through the checkpoint's own ``XCLIPProcessor`` when it has one (its resample,
size and crop), at full resolution. CLIP4Clip normalises with CLIP's mean/std and X-CLIP with
ImageNet's (the statistics each was trained with); :func:`load_clip4clip_clip` and
:func:`load_uniform_clip` decode and sample a file the way each model expects. torch is
imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from demo.video.decode import VideoSource
from demo.video.sampling import sample_indices, uniform_indices

if TYPE_CHECKING:
    import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# MMAction2's CLIP4Clip config: CLIP's statistics on the 0-255 scale, rounded to three decimals.
MMACTION2_MEAN = (122.771, 116.746, 104.093)
MMACTION2_STD = (68.500, 66.632, 70.323)


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


def resize_crop_pil(frames: np.ndarray, image_size: int, resample: int | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, S, S, 3) uint8 the way torchvision's ``Resize(S)`` + ``CenterCrop(S)``
    treat a PIL image: the short side to S and the long side to ``int(S * long / short)`` with PIL's
    (antialiased) filter ``resample`` (default bicubic), then the centre S x S, its offset rounded."""
    from PIL import Image

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    resample = Image.Resampling.BICUBIC if resample is None else resample
    out = np.empty((len(frames), image_size, image_size, 3), np.uint8)
    for i, frame in enumerate(frames):
        image = Image.fromarray(frame, "RGB")
        w, h = image.size
        size = (image_size, int(image_size * h / w)) if w <= h else (int(image_size * w / h), image_size)
        image = image.resize(size, resample)
        left, top = int(round((size[0] - image_size) / 2.0)), int(round((size[1] - image_size) / 2.0))
        out[i] = np.asarray(image.crop((left, top, left + image_size, top + image_size)))
    return out


def preprocess_reference(frames: np.ndarray, image_size: int, mean: Sequence[float] = CLIP_MEAN,
                         std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """(T, H, W, 3) uint8 full-resolution frames -> (T, 3, S, S) float32: :func:`resize_crop_pil`,
    scale to [0, 1], ``(x - mean) / std`` (CLIP's by default)."""
    import torch

    if len(frames) == 0:
        return torch.zeros((0, 3, image_size, image_size), dtype=torch.float32)
    x = torch.from_numpy(resize_crop_pil(frames, image_size)).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean_t) / std_t).contiguous()


def preprocess_mmaction2(frames: np.ndarray, image_size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 full-resolution frames -> (T, 3, S, S) float32 as MMAction2's CLIP4Clip test
    pipeline: short side to 8/7 S (256 for S = 224; long side ``int(long * scale + 0.5)``), bilinear
    without antialiasing back to uint8, the centre S x S (offsets rounded down), then
    ``(x - mean) / std`` with :data:`MMACTION2_MEAN` / :data:`MMACTION2_STD` on the 0-255 scale.

    MMAction2 resizes with OpenCV's ``INTER_LINEAR``, whose 11-bit fixed-point weights can land a
    pixel one grey level away from the float bilinear used here (OpenCV is not a dependency)."""
    import torch
    import torch.nn.functional as F

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    if t == 0:
        return torch.zeros((0, 3, image_size, image_size), dtype=torch.float32)
    scale = round(image_size * 8 / 7) / min(h, w)
    size = (int(h * scale + 0.5), int(w * scale + 0.5))
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False).round_().clamp_(0, 255)
    top, left = (size[0] - image_size) // 2, (size[1] - image_size) // 2
    x = x[:, :, top : top + image_size, left : left + image_size]
    mean_t = torch.tensor(MMACTION2_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(MMACTION2_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean_t) / std_t).contiguous()


def _to_model_size(frames: np.ndarray, image_size: int, resize: str) -> torch.Tensor:
    """Decoded frames -> (T, 3, S, S) model input by ``resize`` (one of ``demo.models.temporal.RESIZES``)."""
    if resize == "pil-bicubic":
        return preprocess_reference(frames, image_size)
    if resize == "mmaction2":
        return preprocess_mmaction2(frames, image_size)
    return preprocess(frames, image_size, CLIP_MEAN, CLIP_STD)


def load_clip4clip_clip(
    path: str | Path, image_size: int, sample_fps: float = 1.0, max_frames: int = 12,
    sampling: str = "float-fps", resize: str = "decoder",
) -> tuple[torch.Tensor, torch.Tensor]:
    """A clip as CLIP4Clip sees it -> frames (T, 3, S, S) float32, mask (T,) bool.

    Frames are picked by ``sampling`` (:func:`demo.video.sampling.sample_indices`), brought to S
    by ``resize`` ("decoder", "pil-bicubic" or "mmaction2", see the module docstring) and normalised
    with CLIP's mean/std (MMAction2's rounding of it for "mmaction2"). T is ``max_frames``, slots past
    the clip's sample count zeros with ``mask``
    False; with "every-second" sampling (no cap) T is the sample count and every slot is real.
    """
    import torch

    full_resolution = resize != "decoder"
    with VideoSource(Path(path), short_side=None if full_resolution else image_size) as src:
        idx = sample_indices(sampling, src.info.num_frames, src.info.fps, sample_fps, max_frames)
        frames = src.read(idx)
    x = _to_model_size(frames, image_size, resize)
    slots = len(x) if sampling == "every-second" else max_frames
    out = torch.zeros((slots, 3, image_size, image_size), dtype=torch.float32)
    out[: len(x)] = x
    mask = torch.zeros(slots, dtype=torch.bool)
    mask[: len(x)] = True
    return out, mask


def stack_clips(clips: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of (T_i, 3, S, S) frames and (T_i,) masks -> (B, T, 3, S, S), (B, T) with T = max T_i
    (shorter clips padded with zeros and False)."""
    import torch

    t = max(len(m) for _, m in clips)
    frames = torch.zeros((len(clips), t, *clips[0][0].shape[1:]), dtype=clips[0][0].dtype)
    mask = torch.zeros((len(clips), t), dtype=torch.bool)
    for i, (f, m) in enumerate(clips):
        frames[i, : len(f)], mask[i, : len(m)] = f, m
    return frames, mask


def load_uniform_clip(
    path: str | Path, num_frames: int, image_size: int, mean: Sequence[float], std: Sequence[float],
    processor: Any | None = None,
) -> tuple[torch.Tensor, int]:
    """``num_frames`` frames at segment centres -> ((num_frames, 3, S, S) float32, distinct count).

    The count is the number of distinct source frames: below ``num_frames`` when the clip
    is shorter than ``num_frames`` and frames were repeated (X-CLIP samples 8). With an image
    ``processor`` (an X-CLIP checkpoint's ``XCLIPProcessor.image_processor``) the frames are
    decoded at full resolution and go through it, exactly as ``XCLIPProcessor(videos=...)``
    prepares them; without one they are decoded at short side ~S and :func:`preprocess`-ed.
    """
    import torch

    with VideoSource(Path(path), short_side=None if processor is not None else image_size) as src:
        idx = uniform_indices(src.info.num_frames, num_frames)
        unique, inverse = np.unique(idx, return_inverse=True)
        frames = src.read(unique)
    # Preprocess each distinct frame once, then repeat the tensors.
    if processor is not None:
        pixels = processor([list(frames)], return_tensors="pt")["pixel_values"][0]
        x = torch.as_tensor(pixels, dtype=torch.float32)
    else:
        x = preprocess(frames, image_size, mean, std)
    return x[inverse.reshape(-1)].contiguous(), int(len(unique))
