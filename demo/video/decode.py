"""Video decoding, frame sampling, preprocessing, and browser-playable mp4 writing.

Decoding goes through decord, which builds a frame index when it opens a file (so
random access is frame-accurate) and can scale while it decodes; PyAV is the
fallback for files decord cannot open, and for a decord bug with a few small frame
widths (see ``_decord_misreads``). Every way a file can be bad (missing,
empty, not a video, audio only, truncated, corrupt, no frames) ends in
:class:`~demo.errors.VideoDecodeError` naming the file and the reason.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from demo.errors import VideoDecodeError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Frame rates outside this range are metadata garbage (0, NaN, 90000 from a timebase).
_MAX_PLAUSIBLE_FPS = 1000.0
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
    """Container metadata read by PyAV without decoding; 0 means unknown."""

    stream_index: int
    width: int
    height: int
    num_frames: int
    fps: float


def _valid_fps(value: Any) -> float | None:
    try:
        fps = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return fps if 0.0 < fps <= _MAX_PLAUSIBLE_FPS and math.isfinite(fps) else None


def _short_reason(exc: BaseException) -> str:
    # decord's messages carry "[12:00:00] /path/file.cc:218: " prefixes (nested when
    # rethrown) and sometimes a stack trace: keep the first line without them.
    lines = str(exc).strip().splitlines()
    text = re.sub(r"\[[\d:]+\] \S+:\d+: ", "", lines[0]).strip() if lines else ""
    return (text or type(exc).__name__)[:200]


def _read_header(path: Path) -> _Header:
    import av

    if not path.exists():
        raise VideoDecodeError(f"{path}: no such file")
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
            (f for f in map(_valid_fps, (stream.average_rate, stream.guessed_rate, stream.base_rate)) if f),
            0.0,
        )
        ctx = stream.codec_context
        return _Header(stream.index, int(ctx.width or 0), int(ctx.height or 0), int(stream.frames or 0), fps)


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


def _decord_misreads(width: int) -> bool:
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
    w = next(c for d in range(0, 64, 2) for c in (w + d, w - d) if c >= 2 and not _decord_misreads(c))
    return w, h


class _Source:
    """An opened video: its header, and a decord reader unless decord could not open it.

    The reader is created at the reduced decode size, so probing and reading share one
    open. Use as a context manager: decord holds the file handle until the reader is freed.
    """

    def __init__(self, path: Path, short_side: int | None = None) -> None:
        self.path = path
        self.header = _read_header(path)
        if self.header.width <= 0 or self.header.height <= 0:
            raise VideoDecodeError(f"{path}: video stream has no frame size (no frames?)")
        self.size = _decode_size(self.header.width, self.header.height, short_side)
        self.reader = self._open_decord()
        try:
            self.info = self._info()
        except BaseException:
            self.close()
            raise

    def _open_decord(self) -> Any | None:
        try:
            import decord
        except ImportError:  # e.g. platforms without decord wheels: PyAV does everything
            return None
        scaled = self.size != (self.header.width, self.header.height)
        if _decord_misreads(self.size[0]):  # only tiny native widths get here
            log.info("%s: width %d trips a decord bug; decoding with PyAV", self.path, self.size[0])
            return None
        width, height = self.size if scaled else (-1, -1)
        try:
            return decord.VideoReader(str(self.path), width=width, height=height)
        except (decord.DECORDError, RuntimeError, AssertionError) as exc:  # asserts on 0 frames
            log.info("decord cannot open %s (%s); decoding with PyAV", self.path, _short_reason(exc))
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
        fps = (_valid_fps(self.reader.get_avg_fps()) if self.reader is not None else None) or h.fps
        if not fps:
            log.warning("%s: unknown frame rate, assuming %.0f fps", self.path, _ASSUMED_FPS)
            fps = _ASSUMED_FPS
        return VideoInfo(num_frames=num_frames, fps=fps, width=h.width, height=h.height)

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

    def __enter__(self) -> _Source:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _read_decord(path: Path, reader: Any, idx: list[int]) -> np.ndarray | None:
    """Frames from decord; None where decord's own stride bug (not the file) made it fail."""
    import decord

    try:
        # One call: decord sorts the indices, seeks to each keyframe at most once,
        # and copies repeated indices instead of decoding them again.
        batch = reader.get_batch(idx)
    except (decord.DECORDError, RuntimeError) as exc:
        if "size must exactly match" in str(exc):
            log.warning("%s: decord stride bug (%s); decoding with PyAV", path, _short_reason(exc))
            return None
        raise VideoDecodeError(f"{path}: corrupt video data ({_short_reason(exc)})") from exc
    # Another module may have switched decord's bridge to torch; accept either.
    array = batch.asnumpy() if hasattr(batch, "asnumpy") else batch.numpy()
    return np.ascontiguousarray(array, dtype=np.uint8)


def _decode_pyav(src: _Source, idx: list[int]) -> np.ndarray:
    """Decode sequentially with PyAV up to the last wanted frame (the fallback path)."""
    import av

    wanted, last = set(idx), max(idx)
    width, height = src.size
    got: dict[int, np.ndarray] = {}
    decoded = 0
    try:
        with av.open(str(src.path)) as container:
            stream = next(s for s in container.streams.video if s.index == src.header.stream_index)
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if decoded in wanted:
                    got[decoded] = frame.to_ndarray(
                        width=width, height=height, format="rgb24", interpolation="BICUBIC"
                    )
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


def probe(path: str | Path) -> VideoInfo:
    """Frame count, frame rate and native size of a video (opens it; decodes nothing)."""
    with _Source(Path(path)) as src:
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
    with _Source(Path(path), short_side) as src:
        return src.read(indices)


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
    if _valid_fps(fps) is None or not (sample_fps > 0 and math.isfinite(sample_fps)):
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


def load_clip4clip_clip(
    path: str | Path, image_size: int, sample_fps: float = 1.0, max_frames: int = 12
) -> tuple[torch.Tensor, torch.Tensor]:
    """A clip as CLIP4Clip sees it -> frames (max_frames, 3, S, S) float32, mask (max_frames,) bool.

    Frames are sampled with :func:`clip4clip_indices`, decoded at short side ~S, and
    normalised with CLIP's mean/std; slots past the clip's sample count are zeros with
    ``mask`` False.
    """
    import torch

    with _Source(Path(path), short_side=image_size) as src:
        idx = clip4clip_indices(src.info.num_frames, src.info.fps, sample_fps, max_frames)
        frames = src.read(idx)
    x = preprocess(frames, image_size, CLIP_MEAN, CLIP_STD)
    out = torch.zeros((max_frames, 3, image_size, image_size), dtype=torch.float32)
    out[: len(x)] = x
    mask = torch.zeros(max_frames, dtype=torch.bool)
    mask[: len(x)] = True
    return out, mask


def load_uniform_clip(
    path: str | Path, num_frames: int, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> tuple[torch.Tensor, int]:
    """``num_frames`` frames at segment centres -> ((num_frames, 3, S, S) float32, distinct count).

    The count is the number of distinct source frames: below ``num_frames`` when the clip
    is shorter than ``num_frames`` and frames were repeated (X-CLIP samples 8).
    """
    with _Source(Path(path), short_side=image_size) as src:
        idx = uniform_indices(src.info.num_frames, num_frames)
        unique, inverse = np.unique(idx, return_inverse=True)
        frames = src.read(unique)
    # Preprocess each distinct frame once, then repeat the tensors.
    x = preprocess(frames, image_size, mean, std)[inverse.reshape(-1)]
    return x.contiguous(), int(len(unique))


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, threads: int = 0) -> None:
    """Write ``frames`` (T, H, W, 3) uint8 as an H.264 yuv420p mp4 that browsers play.

    Width and height must be even (yuv420p subsamples chroma by 2). The moov atom is
    moved to the front (``+faststart``) so a browser can start playing before the
    whole file has arrived. Fractional rates (29.97) are kept exactly. The file is
    written next to ``path`` and renamed, so a reader never sees half a file.
    ``threads``: x264's encoder threads (0: its own choice, one or more per core); a caller
    that already runs one encoder per core (``demo.world.synth``) passes 1.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    if t == 0 or h % 2 or w % 2:
        raise ValueError(f"need at least one frame and even width/height, got T={t} H={h} W={w}")
    if _valid_fps(fps) is None:
        raise ValueError(f"fps must be in (0, {_MAX_PLAUSIBLE_FPS:g}], got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": "23", "preset": "veryfast", "threads": str(max(0, int(threads)))}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
