"""Opening, probing and reading videos: decord first, PyAV where decord cannot.

Decoding goes through decord, which builds a frame index when it opens a file (so
random access is frame-accurate) and can scale while it decodes; PyAV is the
fallback for files decord cannot open, and for a decord bug with a few small frame
widths (see :func:`decord_misreads`). Every way a file can be bad (missing,
empty, not a video, audio only, truncated, corrupt, no frames) ends in
:class:`~demo.errors.VideoDecodeError` naming the file and the reason.

decord and PyAV are imported inside the functions that use them, so importing this
module (and the app, the CLI) stays quick.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from demo.errors import VideoDecodeError
from demo.video.sampling import valid_fps

log = logging.getLogger(__name__)

# Used only when neither decord nor the container knows the frame rate.
_ASSUMED_FPS = 25.0


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video: frame count, frame rate, native size."""

    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Length in seconds, ``num_frames / fps``."""
        return self.num_frames / self.fps


@dataclass(frozen=True)
class _Header:
    """Container metadata read by PyAV (and the first frame's display rotation); 0 means unknown."""

    stream_index: int
    width: int  # as stored
    height: int
    num_frames: int
    fps: float
    rotation: int = 0  # degrees counter-clockwise to show it upright: 0, 90, 180 or 270

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown: a phone's portrait clip is stored landscape with a 90 or
        270 degree rotation in its display matrix."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


def _short_reason(exc: BaseException) -> str:
    """The reason in words. decord's messages carry "[12:00:00] /path/file.cc:218: " prefixes
    (nested when rethrown) and sometimes a stack trace; PyAV's an errno and the quoted path
    ("[Errno 1094995529] Invalid data found when processing input: '/x.mp4'"): keep the first line
    without them (the path is named by the message that carries the reason).

    >>> _short_reason(OSError("[Errno 1094995529] Invalid data found when processing input: '/t/a b.mp4'"))
    'invalid data found when processing input'
    """
    lines = str(exc).strip().splitlines()
    text = re.sub(r"\[[\d:]+\] \S+:\d+: ", "", lines[0]).strip() if lines else ""
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text)
    text = re.sub(r":\s*'[^']*'$", "", text).strip()
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]
    return (text or type(exc).__name__)[:200]


def _read_header(path: Path) -> _Header:
    import av

    if not path.exists():
        raise VideoDecodeError(f"{path}: no such file")
    if path.is_dir():
        raise VideoDecodeError(f"{path} is a folder, not a video file")
    if not path.is_file():
        raise VideoDecodeError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise VideoDecodeError(f"{path}: not a readable video ({_short_reason(exc)})") from exc
    with container:
        fmt = container.format.name
        if fmt == "image2" or fmt.endswith("_pipe"):
            raise VideoDecodeError(f"{path}: a still image ({fmt}), not a video")
        # Cover art in audio files shows up as a one-frame "attached picture" video stream.
        streams = [
            s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic
        ]
        if not streams:
            kinds = ", ".join(sorted({str(s.type) for s in container.streams})) or "none"
            raise VideoDecodeError(f"{path}: no video stream (streams: {kinds})")
        stream = streams[0]
        fps = next(
            (f for f in map(valid_fps, (stream.average_rate, stream.guessed_rate, stream.base_rate)) if f),
            0.0,
        )
        ctx = stream.codec_context
        return _Header(stream.index, int(ctx.width or 0), int(ctx.height or 0), int(stream.frames or 0), fps,
                       _rotation(container, stream))


def _rotation(container: Any, stream: Any) -> int:
    """The stream's display rotation (counter-clockwise degrees, a multiple of 90), from its first
    frame's display matrix: PyAV shows it per frame only. 0 when the first frame does not decode
    (reading the frames then says why)."""
    import av

    try:
        frame = next(container.decode(stream), None)
    except (av.FFmpegError, OSError):
        return 0
    degrees = float(getattr(frame, "rotation", 0) or 0)
    return int(round(degrees / 90)) % 4 * 90


def _count_packets(path: Path, stream_index: int) -> int:
    """Frame count by demuxing (no decoding), for containers that do not store it."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = next(s for s in container.streams.video if s.index == stream_index)
            return sum(1 for p in container.demux(stream) if p.size > 0)
    except (av.FFmpegError, OSError) as exc:
        raise VideoDecodeError(f"{path}: cannot count frames ({_short_reason(exc)})") from exc


def _even(x: float) -> int:
    return max(2, 2 * int(x / 2 + 0.5))


def decord_misreads(width: int) -> bool:
    """True for frame widths decord returns garbled (dmlc/decord#93, #336).

    decord infers the channel count from the RGB row stride. ffmpeg pads rows to a
    multiple of 32 (64 on some CPUs) pixels; when the padded row is a multiple of the
    width (48 -> 64 px = 192 bytes = 4 x 48), decord sees 4 channels and get_batch fails
    with "The size must exactly match". Only widths up to 144 are affected.
    """
    for align in (32, 64):
        padded = -(-width // align) * align
        if padded != width and (3 * padded) % width == 0:
            return True
    return False


def _decode_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) to decode at: short side ~``short_side``, aspect kept, even; never upscaled."""
    if short_side is None or min(width, height) <= short_side:
        return width, height
    scale = short_side / min(width, height)
    w, h = _even(width * scale), _even(height * scale)
    # Step around the few widths decord garbles; 2 px changes the aspect ratio negligibly.
    w = next(c for d in range(0, 64, 2) for c in (w + d, w - d) if c >= 2 and not decord_misreads(c))
    return w, h


class VideoSource:
    """An opened video: its header, and a decord reader unless decord could not open it.

    ``info`` is what :func:`probe` reports, ``read(indices)`` what :func:`read_frames` returns
    (at short side ~``short_side``). The reader is created at the reduced decode size, so
    probing and reading share one open (:mod:`demo.video.preprocess` samples from ``info``,
    then reads). Use as a context manager: decord holds the file handle until the reader is freed.
    """

    def __init__(self, path: Path, short_side: int | None = None) -> None:
        self.path = path
        self.header = _read_header(path)
        if self.header.width <= 0 or self.header.height <= 0:
            raise VideoDecodeError(f"{path}: video stream has no frame size (no frames?)")
        self.size = _decode_size(*self.header.display_size, short_side)  # as shown: decord rotates
        self.reader = self._open_decord()
        try:
            self.info = self._info()
        except BaseException:
            self.close()
            raise

    def _open_decord(self) -> Any | None:
        decord = quiet_decord()
        if decord is None:  # e.g. platforms without decord wheels: PyAV does everything
            return None
        scaled = self.size != self.header.display_size
        if decord_misreads(self.size[0]):  # only tiny native widths get here
            log.info("%s: width %d trips a decord bug; decoding with PyAV", self.path, self.size[0])
            return None
        width, height = self.size if scaled else (-1, -1)
        try:
            return decord.VideoReader(str(self.path), width=width, height=height)
        except (decord.DECORDError, RuntimeError, AssertionError) as exc:  # asserts on 0 frames
            log.debug("decord cannot open %s (%s); decoding with PyAV", self.path, _short_reason(exc))
            return None

    def _info(self) -> VideoInfo:
        h = self.header
        num_frames = len(self.reader) if self.reader is not None else h.num_frames
        if num_frames <= 0:
            # decord's count comes from scanning packets; a zero means its open went wrong.
            self.reader = None
            num_frames = h.num_frames or _count_packets(self.path, h.stream_index)
        if num_frames <= 0:
            raise VideoDecodeError(f"{self.path}: video stream has no frames")
        fps = (valid_fps(self.reader.get_avg_fps()) if self.reader is not None else None) or h.fps
        if not fps:
            log.warning("%s: unknown frame rate, assuming %.0f fps", self.path, _ASSUMED_FPS)
            fps = _ASSUMED_FPS
        width, height = h.display_size
        return VideoInfo(num_frames=num_frames, fps=fps, width=width, height=height)

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) -> (T, h, w, 3) uint8 at the decode size."""
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        n = self.info.num_frames
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise ValueError(f"frame indices {bad[:5]} out of range for {n} frames in {self.path}")
        width, height = self.size
        if not idx:
            return np.zeros((0, height, width, 3), np.uint8)
        frames = _read_decord(self.path, self.reader, idx) if self.reader is not None else None
        if frames is None or frames.shape != (len(idx), height, width, 3):
            if frames is not None:
                log.warning("%s: decord returned %s; decoding with PyAV", self.path, frames.shape)
            frames = _decode_pyav(self, idx)
        if frames.shape != (len(idx), height, width, 3):
            raise VideoDecodeError(
                f"{self.path}: decoder returned {frames.shape}, expected {(len(idx), height, width, 3)}"
            )
        return frames

    def close(self) -> None:
        self.reader = None  # decord frees the handle when the reader is collected

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@functools.cache
def quiet_decord() -> Any | None:
    """decord, with its bundled ffmpeg's log turned off (None where decord is not installed).

    That ffmpeg prints to stderr on its own ("[mov,mp4 @ 0x...] partial file" and a line per
    damaged frame); every failure already ends in one VideoDecodeError naming the file and why.
    """
    try:
        import decord
    except ImportError:
        return None
    decord.logging.set_level(decord.logging.QUIET)
    return decord


def _read_decord(path: Path, reader: Any, idx: list[int]) -> np.ndarray | None:
    """Frames from decord; None where decord failed, for PyAV to try: decord's own bugs (its
    stride bug, and files ffmpeg decodes whole that decord stops in, such as realtime VP9 webm
    with error -11) are not the file's fault. A file that is really damaged fails in PyAV too,
    which then says why."""
    import decord

    try:
        # One call: decord sorts the indices, seeks to each keyframe at most once,
        # and copies repeated indices instead of decoding them again.
        batch = reader.get_batch(idx)
    except (decord.DECORDError, RuntimeError, ValueError, IndexError, OSError) as exc:
        log.info("%s: decord failed (%s); decoding with PyAV", path, _short_reason(exc))
        return None
    # Another module may have switched decord's bridge to torch; accept either.
    array = batch.asnumpy() if hasattr(batch, "asnumpy") else batch.numpy()
    return np.ascontiguousarray(array, dtype=np.uint8)


def _decode_pyav(src: VideoSource, idx: list[int]) -> np.ndarray:
    """Decode sequentially with PyAV up to the last wanted frame (the fallback path)."""
    import av

    wanted, last = set(idx), max(idx)
    turns = src.header.rotation // 90  # PyAV hands frames over as stored: turn them as shown
    width, height = src.size if turns % 2 == 0 else src.size[::-1]
    got: dict[int, np.ndarray] = {}
    decoded = 0
    try:
        with av.open(str(src.path)) as container:
            stream = next(s for s in container.streams.video if s.index == src.header.stream_index)
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if decoded in wanted:
                    stored = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="BICUBIC")
                    got[decoded] = np.ascontiguousarray(np.rot90(stored, turns)) if turns else stored
                decoded += 1
                if decoded > last:
                    break
    except (av.FFmpegError, OSError) as exc:
        raise VideoDecodeError(
            f"{src.path}: corrupt video data after {decoded} frames ({_short_reason(exc)})"
        ) from exc
    missing = sorted(wanted - got.keys())
    if missing:
        raise VideoDecodeError(
            f"{src.path}: truncated or corrupt: only {decoded} of {src.info.num_frames} frames "
            f"decodable, frame {missing[0]} is missing"
        )
    return np.stack([got[i] for i in idx])


def check_video(path: str | Path) -> None:
    """Refuse what cannot be a video, from its header alone (milliseconds; decodes at most one
    frame): a missing file, a folder, an empty file, a still image, audio only, not a video.
    Raises :class:`VideoDecodeError` naming the file and why."""
    _read_header(Path(path))


def probe(path: str | Path) -> VideoInfo:
    """Frame count, frame rate and native size of a video (opens it; decodes nothing)."""
    with VideoSource(Path(path)) as src:
        return src.info


def read_frames(
    path: str | Path, indices: Sequence[int] | np.ndarray, short_side: int | None = None
) -> np.ndarray:
    """Decode the frames at ``indices`` -> (T, H, W, 3) uint8, in the order given.

    With ``short_side`` the frames are scaled while decoding so the short side is about
    ``short_side`` (aspect kept, even sizes, never upscaled): HD frames come back small
    (a tenth of the memory at 720p) and :func:`preprocess` then only crops. Raises
    ``ValueError`` for out-of-range indices and :class:`VideoDecodeError` when the file
    cannot be decoded.
    """
    with VideoSource(Path(path), short_side) as src:
        return src.read(indices)
