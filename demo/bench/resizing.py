"""``python -m demo bench resize``: what CLIP4Clip's reference resizing costs, and what it changes.

The reference (``frame_resize="pil-bicubic"``) decodes every sampled frame at full resolution and
resizes the RGB frame with PIL's bicubic filter; this project's own path (``"decoder"``) lets the
decoder scale while decoding. Per clip size, the median time of ``load_clip4clip_clip`` both ways
(CLIP4Clip's 12 frames at 224 px, and the webvid preset's every-second frames); per texture
(smooth, medium, fine), the mean difference between the two inputs in grey levels (0-255).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from demo.bench.decode import synthetic_frames
from demo.video.mp4 import write_mp4
from demo.video.preprocess import CLIP_STD, load_clip4clip_clip


def texture_frames(kind: str, seconds: float, height: int, fps: float, seed: int = 0) -> np.ndarray:
    """(T, height, 16/9 height, 3) uint8 frames of "smooth" (gradients), "medium" (the decode bench's
    stripes and noise) or "fine" (1-3 px detail) texture, moving."""
    if kind == "medium":
        return synthetic_frames(seconds, height, fps, seed)
    width = 2 * round(height * 16 / 9 / 2)
    count = max(1, round(seconds * fps))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((count, height, width, 3), np.uint8)
    for k in range(count):
        shift = 3.0 * k
        if kind == "smooth":
            base = np.stack([(xx + shift) / width, yy / height, (xx + yy) / (width + height)], -1) * 200 + 20
        else:
            base = 128 + 90 * np.stack([np.sin((xx + shift) * 2.1), np.sin(yy * 1.7 + shift), np.sin((xx - yy) * 2.9)],
                                       -1)
            base += rng.normal(0, 20, (height, width, 1))
        frames[k] = np.clip(base, 0, 255).astype(np.uint8)
    return frames


def _median_s(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_resize(workdir: Path | None = None, heights: tuple[int, ...] = (336, 720), seconds: float = 10.0,
                 fps: float = 29.97, repeats: int = 3) -> dict[str, Any]:
    """Timings per clip height and input differences per texture (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(workdir or tmp)
        timing = []
        for height in heights:
            path = folder / f"resize_{height}p.mp4"
            write_mp4(path, texture_frames("medium", seconds, height, fps), fps)
            row: dict[str, Any] = {"height": height, "seconds": seconds, "fps": fps}
            for name, kwargs in (("decoder_ms", {"sampling": "clip4clip", "resize": "decoder"}),
                                 ("reference_ms", {"sampling": "clip4clip", "resize": "pil-bicubic"}),
                                 ("every_second_ms", {"sampling": "every-second", "resize": "pil-bicubic"})):
                row[name] = 1e3 * _median_s(lambda p=path, kw=kwargs: load_clip4clip_clip(p, 224, **kw), repeats)
            timing.append(row)
        errors = {}
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        for kind in ("smooth", "medium", "fine"):
            path = folder / f"texture_{kind}.mp4"
            write_mp4(path, texture_frames(kind, 4.0, heights[0], fps), fps)
            a, mask = load_clip4clip_clip(path, 224, sampling="clip4clip", resize="decoder")
            b, _ = load_clip4clip_clip(path, 224, sampling="clip4clip", resize="pil-bicubic")
            errors[kind] = float(((a - b) * std)[mask].abs().mean() * 255)
    return {"timing": timing, "grey_level_error": errors, "threads": torch.get_num_threads()}


def format_resize_markdown(result: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"`python -m demo bench resize` on {meta['date']}: CPU {meta.get('cpu', '?')}, {meta.get('cores', '?')} "
             f"cores, {result['threads']} torch threads. Median wall time of `load_clip4clip_clip` (decode, sample, "
             "resize, crop, normalise) for one clip, 224 px:", "",
             "| clip | decoder-scaled, CLIP4Clip frames (ours) | PIL bicubic, CLIP4Clip frames (reference) | "
             "PIL bicubic, every-second frames (webvid preset) |", "|---|---:|---:|---:|"]
    for r in result["timing"]:
        width = 2 * round(r["height"] * 16 / 9 / 2)
        lines.append(f"| {r['seconds']:g} s, {width}x{r['height']}, {r['fps']:g} fps | {r['decoder_ms']:.0f} ms | "
                     f"{r['reference_ms']:.0f} ms | {r['every_second_ms']:.0f} ms |")
    e = result["grey_level_error"]
    lines += ["", "Mean absolute difference between the decoder-scaled and the reference input, in grey levels "
              f"(0-255), {result['timing'][0]['height']}p clips: smooth {e['smooth']:.2f}, medium {e['medium']:.2f}, "
              f"fine {e['fine']:.2f}. The embedded preset keeps the decoder-scaled path it was trained with; "
              "hub checkpoints, converted CLIP4Clip checkpoints and the webvid preset use the reference."]
    return "\n".join(lines) + "\n"
