"""Long videos as overlapping windows: where the windows lie, which frames each one samples, and
one streaming decode that hands each window its frames.

A window of ``segment`` seconds starts every ``stride`` seconds (:class:`SegmentSpec`); inside
each, frames are sampled exactly as the model samples a whole clip
(:func:`demo.video.sampling.clip4clip_indices` on the window's frames), so a window embeds like a
clip cut out of the video. Windows that start on the sampling grid share frames with their
neighbours; the caller embeds each distinct frame once.

:func:`stream_windows` decodes the file once, front to back (PyAV, packet by packet), keeps only
the frames some window samples, and yields each window as soon as its last frame has gone by: a
window's frames are in memory only while it is pending, so an hour of video costs what a few
windows cost. A packet that fails to decode loses the frames up to the next keyframe (later
frames would be drawn from missing references); windows that need one of them come back with
``frames=None`` and the reason, and the windows before and after are unaffected.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import InputError, VideoDecodeError
from demo.video.sampling import clip4clip_indices


@dataclass(frozen=True)
class SegmentSpec:
    """Windows of ``segment`` seconds every ``stride`` seconds (``stride <= segment``: every moment
    of the video is in at least one window).

    >>> SegmentSpec(8, 4).bounds(30.0)[-2:]
    [(20.0, 28.0), (24.0, 30.0)]
    >>> SegmentSpec(8, 4).bounds(5.0)
    [(0.0, 5.0)]
    """

    segment: float
    stride: float

    def __post_init__(self) -> None:
        for name, value in (("segment", self.segment), ("stride", self.stride)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InputError(f"--{name} must be a positive number of seconds, got {value!r}")
        if self.stride > self.segment:
            raise InputError(f"--stride {self.stride:g} s is longer than --segment {self.segment:g} s: the video "
                             "between windows would be in none; use a stride of at most the segment")

    @classmethod
    def of(cls, segment: float | None, stride: float | None = None) -> SegmentSpec | None:
        """The spec a command line asks for: None without ``segment``; ``stride`` defaults to half of it."""
        if segment is None:
            if stride is not None:
                raise InputError("--stride needs --segment (the window length in seconds)")
            return None
        return cls(float(segment), float(stride) if stride is not None else float(segment) / 2)

    def to_dict(self) -> dict[str, float]:
        return {"segment": self.segment, "stride": self.stride}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegmentSpec:
        return cls(float(d["segment"]), float(d["stride"]))

    def describe(self) -> str:
        return f"--segment {self.segment:g} --stride {self.stride:g}"

    def bounds(self, duration: float) -> list[tuple[float, float]]:
        """(start, end) in seconds of every window of a ``duration``-second video, in order.

        A video no longer than one window is one window. The last window ends at the end of the
        video (it may be shorter than ``segment``); a tail shorter than half a segment joins the
        window before it instead of making a sliver of its own.
        """
        if not duration > 0:
            raise InputError(f"a video needs a positive duration to be cut into windows, got {duration!r}")
        if duration <= self.segment + 1e-6:
            return [(0.0, _ms(duration))]
        out: list[tuple[float, float]] = []
        k = 0
        while True:
            start = k * self.stride
            if start + self.segment >= duration - 1e-6:
                if out and duration - start < self.segment / 2 and out[-1][1] > start - 1e-6:
                    out[-1] = (out[-1][0], _ms(duration))
                else:
                    out.append((_ms(start), _ms(duration)))
                return out
            out.append((_ms(start), _ms(start + self.segment)))
            k += 1


def _ms(t: float) -> float:
    return round(float(t), 3)


@dataclass(frozen=True)
class Window:
    """One window of a video: its number (0-based, in time order), bounds in seconds, and the frame
    indices the model samples in it (sorted, 1 to ``max_frames`` of them)."""

    number: int
    start: float
    end: float
    indices: np.ndarray


def plan_windows(num_frames: int, fps: float, spec: SegmentSpec, sample_fps: float,
                 max_frames: int) -> list[Window]:
    """Every window of a video of ``num_frames`` frames at ``fps``, with the model's sampling in each."""
    if num_frames < 1:
        raise VideoDecodeError(f"a video with {num_frames} frames has no windows")
    out = []
    for number, (start, end) in enumerate(spec.bounds(num_frames / fps)):
        first = min(num_frames - 1, int(round(start * fps)))
        stop = max(first + 1, min(num_frames, int(round(end * fps))))
        indices = first + clip4clip_indices(stop - first, fps, sample_fps, max_frames)
        out.append(Window(number, start, end, indices))
    return out


@dataclass(frozen=True)
class WindowFrames:
    """What :func:`stream_windows` hands out for one window: its frames (T, h, w, 3) uint8 in the
    order of ``window.indices``, or None and why they could not be decoded."""

    window: Window
    frames: np.ndarray | None
    reason: str | None = None


class _Sampler:
    """Picks, from frames decoded in time order, the frame on screen at each wanted index's time.

    A frame is trusted unless a packet failed to decode since the last keyframe; a wanted time that
    falls on an untrusted frame, or in a gap left by lost packets, is recorded as lost.
    """

    def __init__(self, wanted: Iterable[int], fps: float, size: tuple[int, int]) -> None:
        self.targets = sorted(set(int(i) for i in wanted))
        self.fps, self.size = fps, size
        self.half = 0.5 / fps
        self.next = 0  # position in targets of the first index not yet settled
        self.got: dict[int, np.ndarray] = {}
        self.lost: dict[int, float] = {}  # index -> time of the last good frame before it (-1: none)
        self.prev: tuple[float, Any] | None = None  # (time, frame or None when untrusted)
        self.prev_array: np.ndarray | None = None
        self.error_since_prev = False
        self.tainted = False
        self.last_good = -1.0

    def error(self) -> None:
        self.error_since_prev = self.tainted = True

    def frame(self, t: float, frame: Any) -> None:
        if self.prev is not None and t < self.prev[0] - 1e-9:
            return  # out of order (left over from a broken stretch): its slot has passed
        self._settle(lambda target: target + self.half < t)
        if frame.key_frame:
            self.tainted = False
        self.prev = (t, None if self.tainted else frame)
        self.prev_array = None
        self.error_since_prev = False

    def finish(self) -> None:
        self._settle(lambda target: True, end=True)

    @property
    def settled(self) -> int:
        """Wanted indices below this one are settled (in ``got`` or ``lost``)."""
        return self.targets[self.next] if self.next < len(self.targets) else 1 << 62

    def _settle(self, due: Any, end: bool = False) -> None:
        while self.next < len(self.targets):
            index = self.targets[self.next]
            target = index / self.fps
            if not due(target):
                return
            self.next += 1
            prev = self.prev
            late = prev is not None and target > prev[0] + self.half
            if prev is None or prev[1] is None or (late and (self.error_since_prev or end)):
                self.lost[index] = self.last_good if prev is None or prev[1] is None else prev[0]
                continue
            if self.prev_array is None:
                width, height = self.size
                self.prev_array = prev[1].to_ndarray(width=width, height=height, format="rgb24",
                                                     interpolation="BICUBIC")
                self.last_good = prev[0]
            self.got[index] = self.prev_array


def _decode_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    if min(width, height) <= short_side:  # never upscaled: preprocessing scales to the model's size
        return width, height
    scale = short_side / min(width, height)
    return max(short_side, 2 * round(width * scale / 2)), max(short_side, 2 * round(height * scale / 2))


def stream_windows(path: str | Path, windows: list[Window], fps: float,
                   short_side: int) -> Iterator[WindowFrames]:
    """Decode ``path`` once, from the first of ``windows`` to the last, and yield every window with
    its sampled frames (scaled to short side ~``short_side``) as soon as they have all gone by.

    ``windows`` must be in time order (a later subset of :func:`plan_windows`' list resumes a
    video: the decoder seeks to the first one's start). Raises VideoDecodeError when the file
    cannot be opened at all; frames lost inside the file make their windows come back empty.
    """
    import av

    if not windows:
        return
    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise VideoDecodeError(f"{path}: not a readable video ({exc})") from exc
    with container:
        streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not streams:
            raise VideoDecodeError(f"{path}: no video stream")
        stream = streams[0]
        stream.thread_type = "AUTO"
        ctx = stream.codec_context
        sampler = _Sampler((i for w in windows for i in w.indices), fps,
                           _decode_size(int(ctx.width or short_side), int(ctx.height or short_side), short_side))
        base = stream.time_base or Fraction(1, 1_000_000)
        origin = float(stream.start_time * base) if stream.start_time is not None else 0.0
        if windows[0].start > 0:  # resuming: from the keyframe before the first window
            container.seek(int((origin + windows[0].start) / base), stream=stream, backward=True)
        pending = list(windows)
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                sampler.error()
                continue
            for frame in decoded:
                if frame.time is not None:
                    sampler.frame(float(frame.time) - origin, frame)
            yield from _ready(pending, sampler)
            if not pending:
                return
        sampler.finish()
        yield from _ready(pending, sampler)


def decoded_ahead(items: Iterator[WindowFrames], size: int = 16) -> Iterator[WindowFrames]:
    """``items`` (a :func:`stream_windows` generator) run in a thread of its own, up to ``size``
    windows ahead of the caller: the decoder (PyAV releases the GIL) works while the caller embeds.
    Errors reach the caller; when the caller stops early, the thread stops at its next window."""
    out: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=size)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        out.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            out.put(("end", None))
        except BaseException as err:  # noqa: BLE001 - handed to the caller, who raises it
            out.put(("error", err))

    thread = threading.Thread(target=produce, name="decode-windows", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = out.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=5)


def _ready(pending: list[Window], sampler: _Sampler) -> Iterator[WindowFrames]:
    """Pop and yield the leading windows whose frames are all settled; forget frames no pending
    window needs any more."""
    while pending and int(pending[0].indices[-1]) < sampler.settled:
        window = pending.pop(0)
        lost = [i for i in window.indices if int(i) in sampler.lost]
        if lost:
            since = sampler.lost[int(lost[0])]
            where = f"after {since:.1f} s" if since >= 0 else "from the start"
            yield WindowFrames(window, None, f"frames {where} could not be decoded (damaged data)")
        else:
            yield WindowFrames(window, np.stack([sampler.got[int(i)] for i in window.indices]))
    keep = int(pending[0].indices[0]) if pending else 1 << 62
    for table in (sampler.got, sampler.lost):
        for i in [i for i in table if i < keep]:
            del table[i]
