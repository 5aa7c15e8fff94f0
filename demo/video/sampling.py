"""Which frames of a clip a model sees: CLIP4Clip's 1-fps sampling and X-CLIP's segment centres.

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


def uniform_indices(num_frames: int, n: int) -> np.ndarray:
    """``n`` frames at the centres of ``n`` equal segments -> sorted int64 (n,).

    A clip shorter than ``n`` frames repeats frames (in order) to fill all ``n`` slots.
    """
    if num_frames < 1 or n < 1:
        raise ValueError(f"need num_frames >= 1 and n >= 1, got {num_frames} and {n}")
    centres = (np.arange(n) + 0.5) * (num_frames / n)
    return np.minimum(np.floor(centres), num_frames - 1).astype(np.int64)
