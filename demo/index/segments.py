"""Indexes of long videos: one row per window, and how one video's windows are embedded.

An index built with ``--segment S --stride T`` records ``{"segment": S, "stride": T}`` as the
manifest's ``segments`` field and holds one row per window::

    {"id": "<video id>@<start>", "video_id": ..., "start": s, "end": e, "path": ..., "captions": [...]}

``start`` and ``end`` are seconds. The video's captions and other metadata sit on its first
window's row only (the caption embeddings of video -> text point there); the other rows carry
the ids, times and path. A video's rows are consecutive and in time order.

:func:`embed_video_windows` embeds one video's windows from one streaming decode
(:func:`demo.video.windows.stream_windows`): each distinct sampled frame goes through the image
tower once, and the temporal head pools each window's frames, so a window's embedding is what
the model gives the same stretch cut out as a clip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from demo.errors import IndexFormatError
from demo.models.fingerprint import ModelFingerprint
from demo.video.decode import probe
from demo.video.preprocess import CLIP_MEAN, CLIP_STD, preprocess
from demo.video.windows import SegmentSpec, Window, WindowFrames, decoded_ahead, plan_windows, stream_windows

SEGMENTS = "segments"  # the manifest field


class WindowEncoder(Protocol):
    """What embedding windows needs from an encoder (``Clip4ClipEncoder`` provides it)."""

    @property
    def fingerprint(self) -> ModelFingerprint: ...

    def frame_features(self, pixels: Any) -> np.ndarray: ...  # (N, 3, S, S) -> (N, D), not normalised

    def pool_frames(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray: ...  # (B,T,D),(B,T) -> (B,D)


def row_id(video_id: str, start: float) -> str:
    """The row id of the window of ``video_id`` starting at ``start`` seconds.

    >>> row_id("walk", 12.0), row_id("walk", 2.5)
    ('walk@12', 'walk@2.5')
    """
    return f"{video_id}@{round(start, 3):g}"


def index_segments(info: dict[str, Any]) -> SegmentSpec | None:
    """The segmenting an index's manifest info records (None: one row per whole video)."""
    raw = info.get(SEGMENTS)
    if raw is None:
        return None
    try:
        return SegmentSpec.from_dict(raw)
    except (KeyError, TypeError, ValueError) as err:
        raise IndexFormatError(f"the manifest's {SEGMENTS!r} field is damaged ({raw!r}); rebuild the index") from err


def window_rows(video_id: str, path: str, windows: list[tuple[float, float]],
                first: dict[str, Any]) -> list[dict[str, Any]]:
    """The index rows of one video's windows; ``first`` (the video's captions and metadata) goes on
    the first row only."""
    rows = []
    for n, (start, end) in enumerate(windows):
        row = {"id": row_id(video_id, start), "video_id": video_id, "start": start, "end": end, "path": path}
        rows.append({**first, **row} if n == 0 else {**row, "captions": []})
    return rows


@dataclass(frozen=True)
class EmbeddedWindows:
    """A batch of a video's windows: their (B, D) embeddings, or the windows that were skipped."""

    windows: list[Window]
    embeddings: np.ndarray | None  # None: skipped
    reason: str | None = None


@dataclass(frozen=True)
class VideoPlan:
    """One video's windows and the rate they were planned at."""

    duration: float
    fps: float
    windows: list[Window]


def plan_video(path: str | Path, spec: SegmentSpec, encoder: WindowEncoder) -> VideoPlan:
    """Probe ``path`` and plan its windows with the encoder's sampling (VideoDecodeError if it is
    not a video)."""
    info = probe(path)
    fp = encoder.fingerprint
    return VideoPlan(info.duration, info.fps, plan_windows(info.num_frames, info.fps, spec, fp.sample_fps, fp.frames))


class _FrameCache:
    """Image-tower features of the sampled frames, by frame index, for the windows in flight."""

    def __init__(self, encoder: WindowEncoder, image_size: int) -> None:
        self.encoder, self.image_size = encoder, image_size
        self.features: dict[int, np.ndarray] = {}

    def pooled(self, batch: list[WindowFrames]) -> np.ndarray:
        new: dict[int, np.ndarray] = {}
        for item in batch:
            assert item.frames is not None
            for index, frame in zip(item.window.indices, item.frames, strict=True):
                if int(index) not in self.features:
                    new.setdefault(int(index), frame)
        if new:
            pixels = preprocess(np.stack(list(new.values())), self.image_size, CLIP_MEAN, CLIP_STD)
            self.features.update(zip(new, self.encoder.frame_features(pixels), strict=True))
        t = max(len(item.window.indices) for item in batch)
        dim = next(iter(self.features.values())).shape[-1]
        feats = np.zeros((len(batch), t, dim), np.float32)
        mask = np.zeros((len(batch), t), bool)
        for b, item in enumerate(batch):
            n = len(item.window.indices)
            feats[b, :n] = [self.features[int(i)] for i in item.window.indices]
            mask[b, :n] = True
        keep = int(batch[-1].window.indices[0])  # later windows never sample earlier frames
        for index in [i for i in self.features if i < keep]:
            del self.features[index]
        return self.encoder.pool_frames(feats, mask)


def embed_video_windows(path: str | Path, plan: VideoPlan, encoder: WindowEncoder,
                        todo: list[Window] | None = None, batch_size: int = 32) -> Iterator[EmbeddedWindows]:
    """Embed the windows ``todo`` (default: all of ``plan``'s) of the video at ``path`` in batches of
    up to ``batch_size``, decoding the file once from the first of them (in a thread of its own,
    ahead of the model); windows whose frames could not be decoded come back as skipped batches
    with the reason."""
    windows = plan.windows if todo is None else todo
    cache = _FrameCache(encoder, encoder.fingerprint.image_size)
    batch: list[WindowFrames] = []
    for item in decoded_ahead(stream_windows(path, windows, plan.fps, encoder.fingerprint.image_size)):
        if item.frames is None:
            if batch:
                yield EmbeddedWindows([b.window for b in batch], cache.pooled(batch))
                batch = []
            yield EmbeddedWindows([item.window], None, item.reason)
            continue
        batch.append(item)
        if len(batch) == batch_size:
            yield EmbeddedWindows([b.window for b in batch], cache.pooled(batch))
            batch = []
    if batch:
        yield EmbeddedWindows([b.window for b in batch], cache.pooled(batch))


def format_time(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on); fractions of a second are dropped.

    >>> format_time(8), format_time(75.5), format_time(3725)
    ('0:08', '1:15', '1:02:05')
    """
    s = int(seconds + 1e-6)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def format_span(start: float, end: float) -> str:
    """``0:08–0:16``."""
    return f"{format_time(start)}–{format_time(end)}"
