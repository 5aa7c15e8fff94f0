"""Decode and preprocessing latency on one synthetic clip.

Rerun with::

    python -c "from demo.bench.decode import *; print(format_decode_markdown(bench_decode()))"

``bench_decode(height=720)`` shows what decoding at reduced resolution buys on HD input
(at 224p the reduced and full decodes are the same work).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from demo.video.decode import probe, read_frames
from demo.video.mp4 import write_mp4
from demo.video.preprocess import CLIP_MEAN, CLIP_STD, load_clip4clip_clip, preprocess
from demo.video.sampling import clip4clip_indices


def synthetic_frames(seconds: float, height: int, fps: float, seed: int = 0) -> np.ndarray:
    """(T, height, ~16/9 height, 3) uint8: drifting stripes, a square crossing the frame, light noise.

    Texture and noise matter: a flat frame compresses to almost nothing and decodes
    unrealistically fast.
    """
    width = max(2, 2 * round(height * 16 / 9 / 2))  # 224 -> 398, 720 -> 1280
    count = max(1, round(seconds * fps))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    side = max(2, height // 4)
    frames = np.empty((count, height, width, 3), np.uint8)
    for k in range(count):
        t = k / fps
        frames[k, ..., 0] = 96 + 64 * np.sin((xx + 40 * t) / 17)
        frames[k, ..., 1] = 96 + 64 * np.sin((yy - 25 * t) / 11)
        frames[k, ..., 2] = 96 + 64 * np.sin((xx + yy + 60 * t) / 23)
        frames[k] += rng.integers(0, 16, (height, width, 1), dtype=np.uint8)
        x = int((width - side) * k / max(count - 1, 1))
        top = (height - side) // 2
        frames[k, top : top + side, x : x + side] = 255
    return frames


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def bench_decode(
    seconds: float = 10.0,
    height: int = 224,
    fps: float = 30.0,
    max_frames: int = 12,
    image_size: int = 224,
    repeats: int = 5,
    workdir: Path | None = None,
) -> dict[str, float]:
    """Median wall time (ms) of decoding and preprocessing the CLIP4Clip frames of one clip.

    Writes a ``seconds``-long synthetic clip of ``height`` p (16:9) at ``fps``, then times:
    probe + read_frames of the CLIP4Clip frames decoded at short side ``image_size``
    (``probe_read_reduced_ms``) and at full resolution (``probe_read_full_ms``),
    :func:`preprocess` of each set of frames (``preprocess_ms``, ``preprocess_full_ms``:
    the second has to resize, which is where HD input costs most), and the whole
    :func:`load_clip4clip_clip` (``load_clip_ms``, one open for probe and read). Each is
    run once untimed first. The clip's settings come back in the same dict.
    """
    import torch

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(workdir) if workdir is not None else Path(tmp)
        path = folder / f"bench_{height}p_{seconds:g}s.mp4"
        frames = synthetic_frames(seconds, height, fps)
        write_mp4(path, frames, fps)
        del frames

        def decode(short_side: int | None) -> np.ndarray:
            info = probe(path)
            idx = clip4clip_indices(info.num_frames, info.fps, max_frames=max_frames)
            return read_frames(path, idx, short_side=short_side)

        reduced = decode(image_size)
        full = decode(None)
        preprocess(reduced, image_size, CLIP_MEAN, CLIP_STD)
        load_clip4clip_clip(path, image_size, max_frames=max_frames)
        timings = {
            "probe_read_reduced_ms": _median_ms(lambda: decode(image_size), repeats),
            "probe_read_full_ms": _median_ms(lambda: decode(None), repeats),
            "preprocess_ms": _median_ms(lambda: preprocess(reduced, image_size, CLIP_MEAN, CLIP_STD), repeats),
            "preprocess_full_ms": _median_ms(lambda: preprocess(full, image_size, CLIP_MEAN, CLIP_STD), repeats),
            "load_clip_ms": _median_ms(lambda: load_clip4clip_clip(path, image_size, max_frames=max_frames), repeats),
        }
        info = probe(path)
        return {
            "seconds": float(seconds),
            "fps": float(info.fps),
            "width": float(info.width),
            "height": float(info.height),
            "frames": float(len(reduced)),
            "image_size": float(image_size),
            "decode_short_side": float(min(reduced.shape[1:3])),
            "full_short_side": float(min(full.shape[1:3])),
            "torch_threads": float(torch.get_num_threads()),
            **timings,
        }


def format_decode_markdown(result: dict[str, float]) -> str:
    """A short Markdown table of :func:`bench_decode`'s result."""
    r = result
    size = int(r["image_size"])
    frames = int(r["frames"])
    rows = [
        (
            f"probe + read_frames, decoded at short side {int(r['decode_short_side'])}",
            "probe_read_reduced_ms",
        ),
        (
            f"probe + read_frames, full resolution (short side {int(r['full_short_side'])})",
            "probe_read_full_ms",
        ),
        (f"preprocess the reduced frames to {frames}x3x{size}x{size}", "preprocess_ms"),
        ("preprocess the full-resolution frames (resize + crop)", "preprocess_full_ms"),
        ("load_clip4clip_clip (one open, reduced decode + preprocess)", "load_clip_ms"),
    ]
    lines = [
        f"Clip: {r['seconds']:g} s, {int(r['width'])}x{int(r['height'])} at {r['fps']:g} fps; "
        f"{frames} CLIP4Clip frames, image size {size}, {int(r['torch_threads'])} torch threads.",
        "",
        "| step | median ms |",
        "|---|---:|",
    ]
    lines += [f"| {label} | {r[key]:.1f} |" for label, key in rows]
    return "\n".join(lines) + "\n"
