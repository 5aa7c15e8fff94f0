"""Moments: search results in long videos, with where they start and end.

An index built with ``--segment`` holds one row per window (:mod:`demo.index.segments`).
:class:`MomentSearch` turns window scores into :class:`Moment` hits: the best window of a video,
merged with the adjacent windows of the same video that score nearly as high (within
:data:`MERGE_MARGIN` of it), so a moment longer than one window comes back whole. Every window
of a candidate video is scored, not only the ones the first stage returned, so the merge sees
the neighbours whatever their rank. By default each video gives one moment (its best); more
moments of one video never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from demo.errors import InputError
from demo.index.segments import index_segments
from demo.index.video_index import Hit, VideoIndex

# Adjacent windows that score within this fraction of the best window's cosine join its moment
# (relative, so models whose cosines run lower merge as readily). Chosen on the world's long
# validation videos (`python -m demo evaluate --suite moments --split val --margins ...`).
MERGE_MARGIN = 0.15
ROW_FIELDS = ("id", "video_id", "start", "end", "path", "captions", "media")  # not copied into a moment's metadata


@dataclass(frozen=True)
class Moment(Hit):
    """A hit in a long video: ``id`` is the video, ``start``/``end`` in seconds, ``row`` the best
    window's row id (its embedding is what "more like this" searches with)."""

    start: float = 0.0
    end: float = 0.0
    row: str = ""


@dataclass(frozen=True)
class Span:
    """A moment inside one video, as positions into that video's windows (``peak`` scored best)."""

    peak: int
    first: int
    last: int
    score: float


def video_moments(starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, limit: int,
                  margin: float = MERGE_MARGIN) -> list[Span]:
    """Up to ``limit`` non-overlapping moments of one video, best first, from its windows' (in time
    order) scores: the best window not yet used, grown over adjacent windows (overlapping or
    touching ones) that score at least ``(1 - margin)`` times as high; every window overlapping a
    moment is used up by it. A negative ``margin`` never merges.

    >>> spans = video_moments(np.array([0., 4, 8, 12, 16]), np.array([8., 12, 16, 20, 24]),
    ...                       np.array([.1, .5, .49, .2, .3]), 2)
    >>> [(s.first, s.last, s.score) for s in spans]
    [(1, 2, 0.5), (4, 4, 0.3)]
    """
    n = len(scores)
    used = np.zeros(n, bool)
    out: list[Span] = []
    for i in np.argsort(-scores, kind="stable"):
        if len(out) == limit:
            break
        if used[i]:
            continue
        floor = scores[i] - margin * abs(scores[i]) if margin >= 0 else np.inf
        lo = hi = int(i)
        while lo > 0 and not used[lo - 1] and starts[lo] <= ends[lo - 1] + 1e-6 and scores[lo - 1] >= floor:
            lo -= 1
        while hi < n - 1 and not used[hi + 1] and starts[hi + 1] <= ends[hi] + 1e-6 and scores[hi + 1] >= floor:
            hi += 1
        used |= np.minimum(ends, ends[hi]) - np.maximum(starts, starts[lo]) > 1e-6
        out.append(Span(int(i), lo, hi, float(scores[i])))
    return out


class SegmentTable:
    """The rows of a segmented index grouped by video, each video's in time order."""

    def __init__(self, index: VideoIndex) -> None:
        groups: dict[str, list[int]] = {}
        for row, r in enumerate(index.metadata):
            groups.setdefault(str(r.get("video_id", r["id"])), []).append(row)
        self.starts = np.array([float(r.get("start", 0.0)) for r in index.metadata])
        self.ends = np.array([float(r.get("end", 0.0)) for r in index.metadata])
        self.rows = {v: np.array(sorted(rows, key=lambda x: self.starts[x]), np.int64) for v, rows in groups.items()}
        self.video_of = np.empty(len(index.metadata), object)
        for video, rows in self.rows.items():
            self.video_of[rows] = video
        self.row_of = {str(r["id"]): row for row, r in enumerate(index.metadata)}

    def duration(self, video_id: str) -> float:
        return float(self.ends[self.rows[video_id]].max())


class MomentSearch:
    """Moment search over a segmented :class:`VideoIndex` (see the module docstring)."""

    def __init__(self, index: VideoIndex, margin: float = MERGE_MARGIN) -> None:
        if index_segments(index.info) is None:
            raise InputError(f"index {index.root or ''} was built without --segment: it holds whole videos, "
                             "not moments; build one with `python -m demo index build VIDEOS --segment 8 --stride 4`")
        self.index, self.margin = index, margin
        self.table = SegmentTable(index)
        self._captions: dict[str, np.ndarray] | None = None  # video id -> its caption numbers, on first use

    def caption(self, video: str, row: int) -> str | None:
        """The caption of ``video`` that describes its window ``row`` best (the nearest caption
        embedding to the window's): a long video's captions name its parts, in any order and
        without times, so the window itself says which part it shows. None: no captions."""
        if self._captions is None:
            owners = self.table.video_of[np.asarray(self.index.caption_video, np.int64)]
            groups: dict[str, list[int]] = {}
            for c, owner in enumerate(owners):
                groups.setdefault(str(owner), []).append(c)
            self._captions = {v: np.array(cs, np.int64) for v, cs in groups.items()}
        numbers = self._captions.get(video)
        if numbers is None or not len(numbers):
            return None
        scores = np.asarray(self.index.caption_embeddings[numbers], np.float32) @ np.asarray(
            self.index.embeddings[row], np.float32)
        return self.index.caption_text(int(numbers[int(np.argmax(scores))]))

    def _video_scores(self, video: str, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self.table.rows[video]
        return rows, np.asarray(self.index.embeddings[rows], np.float32) @ q

    def _candidates(self, q: np.ndarray, videos: int, exact: bool, rerank: int | None) -> list[str]:
        """The first ``videos`` distinct videos of the index's ranking of windows."""
        n = len(self.index)
        want = min(n, max(100, 20 * videos))
        while True:
            _, rows = self.index.search_rows(q, k=want, exact=exact, rerank=rerank)
            found = list(dict.fromkeys(self.table.video_of[r] for r in rows[0] if r >= 0))
            if len(found) >= videos or want >= n:
                return found[:videos]
            want = min(n, want * 4)

    def search(self, q: np.ndarray, k: int = 10, per_video: int = 1, exact: bool = False,
               rerank: int | None = None, exclude: tuple[str, float, float] | None = None) -> list[Moment]:
        """The ``k`` best moments for a (D,) query, at most ``per_video`` from one video; ``exclude``
        (video id, start, end) drops moments overlapping that stretch (the query's own moment)."""
        if k < 1 or per_video < 1:
            raise InputError(f"k and per_video must be at least 1, got k={k}, per_video={per_video}")
        q = np.asarray(q, np.float32).reshape(-1)
        found: list[tuple[float, str, np.ndarray, Span]] = []
        for video in self._candidates(q, k + (exclude is not None), exact, rerank):
            rows, scores = self._video_scores(video, q)
            spans = video_moments(self.table.starts[rows], self.table.ends[rows], scores,
                                  per_video + (exclude is not None and exclude[0] == video), self.margin)
            spans = [s for s in spans if not _overlaps(exclude, video, self._bounds(rows, s))][:per_video]
            found += [(s.score, video, rows, s) for s in spans]
        found.sort(key=lambda f: -f[0])
        return [self._moment(rank, video, rows, span) for rank, (_, video, rows, span) in enumerate(found[:k], 1)]

    def in_video(self, q: np.ndarray, video_id: str, k: int = 50) -> list[Moment]:
        """Up to ``k`` non-overlapping moments of one video for a (D,) query, best first."""
        if video_id not in self.table.rows:
            raise InputError(f"no video with id {video_id!r} in the index ({len(self.table.rows)} videos)")
        rows, scores = self._video_scores(video_id, np.asarray(q, np.float32).reshape(-1))
        spans = video_moments(self.table.starts[rows], self.table.ends[rows], scores, k, self.margin)
        return [self._moment(rank, video_id, rows, s) for rank, s in enumerate(spans, 1)]

    def window(self, row_id: str) -> tuple[str, float, float]:
        """(video id, start, end) of window ``row_id``."""
        if row_id not in self.table.row_of:
            raise InputError(f"no window with id {row_id!r} in the index")
        row = self.table.row_of[row_id]
        return str(self.table.video_of[row]), float(self.table.starts[row]), float(self.table.ends[row])

    def _bounds(self, rows: np.ndarray, span: Span) -> tuple[float, float]:
        return float(self.table.starts[rows[span.first]]), float(self.table.ends[rows[span.last]])

    def _moment(self, rank: int, video: str, rows: np.ndarray, span: Span) -> Moment:
        first = self.index.metadata[int(rows[0])]
        peak = self.index.metadata[int(rows[span.peak])]
        start, end = self._bounds(rows, span)
        caption = self.caption(video, int(rows[span.peak])) or str((first.get("captions") or [""])[0])
        extra = {k: v for k, v in first.items() if k not in ROW_FIELDS}
        return Moment(rank, video, span.score, caption, str(first["path"]), extra, start=start, end=end,
                      row=str(peak["id"]))


def _overlaps(exclude: tuple[str, float, float] | None, video: str, bounds: tuple[float, float]) -> bool:
    if exclude is None or exclude[0] != video:
        return False
    return min(exclude[2], bounds[1]) - max(exclude[1], bounds[0]) > 0
