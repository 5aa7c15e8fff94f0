"""Video -> text along a long video: the caption that fits each stretch best, as a timeline.

The video is cut into back-to-back tiles (windows with the stride equal to their length),
each tile is embedded like a window of a segmented index (:mod:`demo.index.segments`), and each
gets the index's closest caption; neighbouring tiles with the same caption become one entry::

    0:00–0:08 a red circle moving left; 0:08–0:16 a green star growing; ...
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from demo.index.segments import WindowEncoder, embed_video_windows, format_span, index_segments, plan_video
from demo.index.video_index import VideoIndex
from demo.video.windows import SegmentSpec

DEFAULT_TILE = 4.0  # seconds per tile when the index was built without --segment


@dataclass(frozen=True)
class TimelineEntry:
    """A stretch of the video and its best caption (None where the frames were damaged)."""

    start: float
    end: float
    caption: str | None
    score: float
    note: str | None = None  # why there is no caption

    def text(self) -> str:
        return f"{format_span(self.start, self.end)} {self.caption or f'(skipped: {self.note})'}"


def tiles(index: VideoIndex, segment: float | None = None) -> SegmentSpec:
    """Back-to-back tiles of ``segment`` seconds (default: the index's window length, else
    :data:`DEFAULT_TILE`)."""
    spec = index_segments(index.info)
    length = segment if segment is not None else spec.segment if spec is not None else DEFAULT_TILE
    return SegmentSpec(length, length)


def describe_timeline(path: str | Path, encoder: WindowEncoder, index: VideoIndex,
                      spec: SegmentSpec) -> list[TimelineEntry]:
    """The timeline of the video at ``path`` against ``index``'s captions (VideoDecodeError if the
    file is not a video at all)."""
    plan = plan_video(path, spec, encoder)
    entries: list[TimelineEntry] = []
    for batch in embed_video_windows(path, plan, encoder):
        if batch.embeddings is None:
            entries += [TimelineEntry(w.start, w.end, None, 0.0, batch.reason) for w in batch.windows]
            continue
        for window, vec in zip(batch.windows, batch.embeddings, strict=True):
            best = index.describe(vec, k=1)
            caption, score = (best[0].caption, best[0].score) if best else (None, 0.0)
            entries.append(TimelineEntry(window.start, window.end, caption, score,
                                         None if best else "the index holds no captions"))
    return merge_entries(entries)


def merge_entries(entries: list[TimelineEntry]) -> list[TimelineEntry]:
    """Neighbouring entries with the same caption as one (its best score).

    >>> entries = [TimelineEntry(0, 4, "a", .5), TimelineEntry(4, 8, "a", .7), TimelineEntry(8, 9, "b", .1)]
    >>> [(e.start, e.end, e.caption, e.score) for e in merge_entries(entries)]
    [(0, 8, 'a', 0.7), (8, 9, 'b', 0.1)]
    """
    out: list[TimelineEntry] = []
    for e in entries:
        last = out[-1] if out else None
        if last is not None and last.caption == e.caption and last.note == e.note and last.end >= e.start - 1e-6:
            out[-1] = TimelineEntry(last.start, e.end, e.caption, max(last.score, e.score), e.note)
        else:
            out.append(e)
    return out


def timeline_text(entries: list[TimelineEntry]) -> str:
    """One line: ``0:00–0:08 a red circle moving left; 0:08–0:16 ...``."""
    return "; ".join(e.text() for e in entries)
