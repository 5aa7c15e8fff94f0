"""Which frames of a clip a model sees: the CLIP4Clip sampling rules and X-CLIP's segment centres.

Three rules for CLIP4Clip models (``Clip4ClipSettings.frame_sampling``):

* :func:`clip4clip_indices` ("float-fps"): this project's own rule, from the real (float) frame rate;
* :func:`reference_indices` ("clip4clip"): CLIP4Clip's dataloader, whole-number fps, floor when thinning;
* :func:`every_second_indices` ("every-second"): the Searchium WebVid notebook, every 1-fps frame, no cap;
* :func:`clip2video_indices` ("clip2video"): CLIP2Video's frame folders and dataloader;
* :func:`mmaction2_indices` ("mmaction2"): MMAction2's ``UniformSample`` in test mode.

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


CLIP2VIDEO_EXTRACT_FPS = 5.0  # CLIP2Video's sample_frame.py writes every clip as JPEGs with ``ffmpeg -r 5``


def clip2video_indices(num_frames: int, fps: float, feature_framerate: int = 2, max_frames: int = 12) -> np.ndarray:
    """CLIP2Video's sampling ("clip2video"): the clip as a 5-fps frame sequence (n frames), of which
    ``n // feature_framerate`` at ``linspace(0, n - 1, ...)`` rounded down, then, when more than
    ``max_frames``, again at ``linspace`` rounded down (its ``RawFrameExtractor.video_to_tensor``).

    The 5-fps sequence is taken as the frame on screen at each k / 5 s (:func:`clip4clip_indices`);
    CLIP2Video makes it with ``ffmpeg -r 5``, whose frame dropping can pick a neighbouring frame
    (not checked here: no ffmpeg), and stores JPEGs (``-q 0``), whose compression is not reproduced.
    Where CLIP2Video finds no frame at all (a clip under 0.4 s) it embeds an empty clip; we take frame 0.

    >>> clip2video_indices(300, 30.0).tolist()  # 10 s: 50 frames at 5 fps, 25 of them, 12 of those
    [0, 24, 48, 72, 96, 120, 156, 180, 204, 228, 252, 294]
    """
    five = clip4clip_indices(num_frames, fps, CLIP2VIDEO_EXTRACT_FPS, max_frames=num_frames)
    keep = len(five) // max(1, feature_framerate)
    if keep == 0:
        return five[:1]
    picked = five[np.floor(np.linspace(0, len(five) - 1, keep)).astype(np.int64)]
    if len(picked) > max_frames:
        picked = picked[np.floor(np.linspace(0, len(picked) - 1, max_frames)).astype(np.int64)]
    return picked


def mmaction2_indices(num_frames: int, clip_len: int = 12) -> np.ndarray:
    """MMAction2's ``UniformSample(clip_len, num_clips=1, test_mode=True)`` ("mmaction2"): segments of
    ``(num_frames - 1) / clip_len`` frames, from each the frame at ``round(start)`` plus half a segment
    (rounded down); always ``clip_len`` indices, repeated in a short clip. ``np.round`` rounds halves
    to even, as there.

    >>> mmaction2_indices(30, 4).tolist()  # segments of 7.25 frames; round(14.5) is 14
    [3, 10, 17, 25]
    """
    if num_frames < 1 or clip_len < 1:
        raise ValueError(f"need num_frames >= 1 and clip_len >= 1, got {num_frames} and {clip_len}")
    segment = float(num_frames - 1) / clip_len
    offset = int(segment / 2)
    return np.array([int(np.round(segment * i)) + offset for i in range(clip_len)], dtype=np.int64)


def sample_indices(rule: str, num_frames: int, fps: float, sample_fps: float, max_frames: int) -> np.ndarray:
    """The frames rule ``rule`` (one of ``demo.models.temporal.SAMPLINGS``) picks. For "clip2video",
    ``sample_fps`` is 5 / CLIP2Video's ``feature_framerate`` (2.5 for its released checkpoints)."""
    if rule == "float-fps":
        return clip4clip_indices(num_frames, fps, sample_fps, max_frames)
    if rule == "clip4clip":
        return reference_indices(num_frames, fps, sample_fps, max_frames)
    if rule == "every-second":
        return every_second_indices(num_frames, fps)
    if rule == "clip2video":
        return clip2video_indices(num_frames, fps, round(CLIP2VIDEO_EXTRACT_FPS / sample_fps), max_frames)
    if rule == "mmaction2":
        return mmaction2_indices(num_frames, max_frames)
    raise ValueError(f"unknown frame sampling {rule!r}")


def uniform_indices(num_frames: int, n: int) -> np.ndarray:
    """``n`` frames at the centres of ``n`` equal segments -> sorted int64 (n,).

    A clip shorter than ``n`` frames repeats frames (in order) to fill all ``n`` slots.
    """
    if num_frames < 1 or n < 1:
        raise ValueError(f"need num_frames >= 1 and n >= 1, got {num_frames} and {n}")
    centres = (np.arange(n) + 0.5) * (num_frames / n)
    return np.minimum(np.floor(centres), num_frames - 1).astype(np.int64)
