"""Which frames of a clip a model sees: the CLIP4Clip sampling rules and X-CLIP's segment centres.

Three rules for CLIP4Clip models (``Clip4ClipSettings.frame_sampling``):

* :func:`clip4clip_indices` ("float-fps"): this project's own rule, from the real (float) frame rate;
* :func:`reference_indices` ("clip4clip"): CLIP4Clip's dataloader, whole-number fps, floor when thinning;
* :func:`every_second_indices` ("every-second"): the Searchium WebVid notebook, every 1-fps frame, no cap.

Pure arithmetic on frame counts and rates; nothing is decoded here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Frame rates outside this range are metadata garbage (0, NaN, 90000 from a timebase).
MAX_PLAUSIBLE_FPS = 1000.0


def valid_fps(value: Any) -> float | None:
    """``value`` as a frame rate, or None when it is not a plausible one (garbage metadata)."""
    try:
        fps = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return fps if 0.0 < fps <= MAX_PLAUSIBLE_FPS and math.isfinite(fps) else None


def clip4clip_indices(
    num_frames: int, fps: float, sample_fps: float = 1.0, max_frames: int = 12
) -> np.ndarray:
    """CLIP4Clip sampling: one frame every ``1 / sample_fps`` s, then uniformly down to ``max_frames``.

    Sample k is the frame on screen at ``k / sample_fps`` seconds, computed from the real
    (float) fps: CLIP4Clip's reference code truncates 29.97 to 29 and drifts by a frame
    every second. Returns sorted int64 indices, 1 <= len <= max_frames.
    """
    if num_frames < 1 or max_frames < 1:
        raise ValueError(f"need num_frames >= 1 and max_frames >= 1, got {num_frames} and {max_frames}")
    if valid_fps(fps) is None or not (sample_fps > 0 and math.isfinite(sample_fps)):
        raise ValueError(f"need positive finite fps and sample_fps, got {fps} and {sample_fps}")
    step = fps / sample_fps  # frames between samples
    # Samples at t = k / sample_fps for every t inside the clip (t < num_frames / fps);
    # the epsilons absorb float error such as 3 * (30 / 3) = 29.999999.
    count = max(1, math.ceil(num_frames / step - 1e-9))
    samples = np.minimum(np.floor(np.arange(count) * step + 1e-6), num_frames - 1).astype(np.int64)
    if count > max_frames:
        samples = samples[np.linspace(0, count - 1, max_frames).round().astype(np.int64)]
    return samples


def whole_fps(fps: float) -> int:
    """The frame rate as CLIP4Clip's extractor reads it: OpenCV's float rate cut to an int
    (29.97 -> 29), at least 1 (a rate below 1 fps would divide by zero there)."""
    return max(1, int(fps))


def _per_second(num_frames: int, fps: float, sample_fps: float) -> np.ndarray:
    """CLIP4Clip's extractor: in every whole second ``s``, the frames ``s * F + j * (F // sample_fps)``
    for the first ``sample_fps`` values of j (F = :func:`whole_fps`), stopping at the first frame
    past the end of the clip."""
    if num_frames < 1:
        raise ValueError(f"need num_frames >= 1, got {num_frames}")
    if valid_fps(fps) is None or not (sample_fps > 0 and math.isfinite(sample_fps)):
        raise ValueError(f"need positive finite fps and sample_fps, got {fps} and {sample_fps}")
    f = whole_fps(fps)
    per_second = max(1, int(sample_fps))
    offsets = np.arange(0, f, max(1, f // per_second))[:per_second]
    seconds = np.arange(-(-num_frames // f) + 1)  # 0 .. ceil(num_frames / F), as the extractor loops
    frames = (seconds[:, None] * f + offsets[None, :]).reshape(-1)
    past = np.flatnonzero(frames >= num_frames)
    return frames[: past[0] if len(past) else len(frames)].astype(np.int64)


def reference_indices(num_frames: int, fps: float, sample_fps: float = 1.0, max_frames: int = 12) -> np.ndarray:
    """CLIP4Clip's sampling ("clip4clip"): :func:`_per_second`, then, when more than
    ``max_frames`` were taken, the ones at ``linspace(0, n - 1, max_frames)`` rounded down.

    >>> reference_indices(300, 29.97).tolist()  # 29 fps: frames 0, 29, ..., 290 (11 s)
    [0, 29, 58, 87, 116, 145, 174, 203, 232, 261, 290]
    >>> reference_indices(20 * 30, 30.0).tolist()  # 20 samples thinned to 12 by floor
    [0, 30, 90, 150, 180, 240, 300, 360, 390, 450, 510, 570]
    """
    if max_frames < 1:
        raise ValueError(f"need max_frames >= 1, got {max_frames}")
    samples = _per_second(num_frames, fps, sample_fps)
    if len(samples) > max_frames:
        samples = samples[np.floor(np.linspace(0, len(samples) - 1, max_frames)).astype(np.int64)]
    return samples


def every_second_indices(num_frames: int, fps: float) -> np.ndarray:
    """The Searchium WebVid notebook's sampling ("every-second"): frame ``s * F`` for every whole
    second s of the clip (F = :func:`whole_fps`), no cap.

    >>> every_second_indices(95, 25.0).tolist()
    [0, 25, 50, 75]
    """
    return _per_second(num_frames, fps, 1.0)


def sample_indices(rule: str, num_frames: int, fps: float, sample_fps: float, max_frames: int) -> np.ndarray:
    """The frames rule ``rule`` (one of ``demo.models.temporal.SAMPLINGS``) picks."""
    if rule == "float-fps":
        return clip4clip_indices(num_frames, fps, sample_fps, max_frames)
    if rule == "clip4clip":
        return reference_indices(num_frames, fps, sample_fps, max_frames)
    if rule == "every-second":
        return every_second_indices(num_frames, fps)
    raise ValueError(f"unknown frame sampling {rule!r}")


def uniform_indices(num_frames: int, n: int) -> np.ndarray:
    """``n`` frames at the centres of ``n`` equal segments -> sorted int64 (n,).

    A clip shorter than ``n`` frames repeats frames (in order) to fill all ``n`` slots.
    """
    if num_frames < 1 or n < 1:
        raise ValueError(f"need num_frames >= 1 and n >= 1, got {num_frames} and {n}")
    centres = (np.arange(n) + 0.5) * (num_frames / n)
    return np.minimum(np.floor(centres), num_frames - 1).astype(np.int64)
