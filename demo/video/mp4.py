"""Writing browser-playable mp4 files (H.264, yuv420p, moov atom first)."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from demo.video.sampling import MAX_PLAUSIBLE_FPS, valid_fps


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, threads: int = 0) -> None:
    """Write ``frames`` (T, H, W, 3) uint8 as an H.264 yuv420p mp4 that browsers play.

    Width and height must be even (yuv420p subsamples chroma by 2). The moov atom is
    moved to the front (``+faststart``) so a browser can start playing before the
    whole file has arrived. Fractional rates (29.97) are kept exactly. The file is
    written next to ``path`` and renamed, so a reader never sees half a file.
    ``threads``: x264's encoder threads (0: its own choice, one or more per core); a caller
    that already runs one encoder per core (``demo.world.synth``) passes 1.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    if len(frames) == 0:
        raise ValueError(f"need at least one frame, got T=0 H={frames.shape[1]} W={frames.shape[2]}")
    write_mp4_frames(path, iter(frames), fps, threads)


def write_mp4_frames(path: str | Path, frames: Iterable[np.ndarray], fps: float, threads: int = 0) -> int:
    """:func:`write_mp4` for frames that arrive one (H, W, 3) uint8 array at a time (a long video
    never has to be in memory whole); returns how many were written. The first frame sets the size."""
    import av

    if valid_fps(fps) is None:
        raise ValueError(f"fps must be in (0, {MAX_PLAUSIBLE_FPS:g}], got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not demo.files.atomic_write, which takes the bytes whole: PyAV muxes into a path as it
    # encodes, so the frames stream into a hidden sibling that is renamed when complete.
    tmp = path.with_name(f".{path.name}.partial")
    count = 0
    try:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream: Any = None
            for frame in frames:
                if stream is None:
                    stream = _video_stream(container, frame, fps, threads)
                if frame.shape != (stream.height, stream.width, 3) or frame.dtype != np.uint8:
                    raise ValueError(f"frame {count} is {frame.shape} {frame.dtype}, expected "
                                     f"({stream.height}, {stream.width}, 3) uint8")
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
                count += 1
            if stream is None:
                raise ValueError("need at least one frame, got none")
            for packet in stream.encode():
                container.mux(packet)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _video_stream(container: Any, first: np.ndarray, fps: float, threads: int) -> Any:
    if first.ndim != 3 or first.shape[-1] != 3 or first.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 frames, got {first.shape} {first.dtype}")
    h, w, _ = first.shape
    if h % 2 or w % 2:
        raise ValueError(f"need at least one frame and even width/height, got H={h} W={w}")
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.options = {"crf": "23", "preset": "veryfast", "threads": str(max(0, int(threads)))}
    return stream
