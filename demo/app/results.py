"""What the service's search actions return: plain dataclasses the page formats (:mod:`demo.app.format`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from demo.index.video_index import CaptionHit
    from demo.search.timeline import TimelineEntry


MODES = ("binary + rerank", "exact")
MAX_K = 24


def clamp_k(k: float | None) -> int:
    """A count from a slider (or the API) as an int in 1..MAX_K.

    >>> clamp_k(0), clamp_k(7.0), clamp_k(1000)
    (1, 7, 24)
    """
    return max(1, min(MAX_K, int(k or 1)))


@dataclass(frozen=True)
class VideoHit:
    """One result; ``src`` is what the page plays: a URL, or the app's media route (relative to the
    page) for a local clip; None when the clip is unavailable. A moment in a long video carries
    ``start``/``end`` (seconds); ``window`` is what "more like this" asks with (the result's id in
    the index)."""

    rank: int
    id: str
    score: float
    caption: str
    src: str | None
    start: float | None = None
    end: float | None = None
    window: str | None = None


@dataclass(frozen=True)
class SearchResult:
    query: str
    hits: list[VideoHit]
    encode_ms: float
    search_ms: float
    mode: str
    corpus: int  # videos in the index
    notes: tuple[str, ...] = ()  # why the results may not fit the query (unknown words, low scores, a cut)
    kind: str = "text"  # what asked: "text", "image" or "like" (more like this)
    moments: bool = False  # the index holds long videos: hits are moments with start and end


@dataclass(frozen=True)
class DescribeResult:
    """Video -> text: ranked captions; ``clip_id`` is set when the clip is in the corpus; ``timeline``
    holds the best caption per stretch of a long video (empty for a short clip)."""

    captions: list[CaptionHit]
    clip_id: str | None
    encode_ms: float
    search_ms: float
    timeline: list[TimelineEntry] = field(default_factory=list)
    source: str = ""  # how the captions were found (Searcher.describe_source)


@dataclass(frozen=True)
class VideoMoments:
    """"More from this video": the moments of one long video that match the query, in time order."""

    video_id: str
    title: str
    src: str | None
    duration: float
    query: str
    moments: list[VideoHit]
    search_ms: float

