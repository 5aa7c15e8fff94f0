"""The app's actions on long videos, and the other ways to ask: by image, and "more like this".

:class:`Explorer` deals with moments (hits with a start and an end, from an index built with
``--segment``): turning search hits into what the page plays, "more from this video", timelines
(captions along a long video), image queries and "more like this". It works on whole-clip indexes
too, where a hit is a video. :class:`demo.app.service.DemoService` builds one and hands its
actions to the page.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from demo.app.messages import corpus_id, friendly
from demo.app.results import MODES, DescribeResult, SearchResult, VideoHit, VideoMoments, clamp_k
from demo.errors import InputError
from demo.search.moments import Moment, SegmentTable
from demo.search.text import clean_query
from demo.search.timeline import TimelineEntry, merge_entries, tiles
from demo.video.decode import probe

if TYPE_CHECKING:
    from demo.index.video_index import CaptionHit, Hit
    from demo.search.searcher import Searcher, Timed

ClipSource = Callable[[str], str | None]  # corpus clip id -> what a page plays (None: unavailable)
UploadCheck = Callable[[str | None], str]  # an upload -> its path once within the limits, else DemoError

MORE_SHARE = 0.6  # "more from this video" lists moments scoring at least this share of its best one
MORE_LIMIT = 12


class Explorer:
    """Moment-aware actions over one searcher.

    Needs, and holds nothing else: ``searcher`` (the model and index; its ``moments`` when the index
    holds long videos), ``clip_src`` (what a page plays for a corpus clip id, None when the clip is
    unavailable) and ``check_upload`` (an uploaded file's path once it is within the app's limits;
    raises a DemoError otherwise).
    """

    def __init__(self, searcher: Searcher, clip_src: ClipSource, check_upload: UploadCheck) -> None:
        self.searcher, self.clip_src, self.check_upload = searcher, clip_src, check_upload

    def long_videos(self) -> bool:
        """Whether the index holds long videos as windows (results are moments)."""
        return self.searcher.moments is not None

    def corpus_size(self) -> int:
        """Videos in the index (a long video counts once, not per window)."""
        moments = self.searcher.moments
        return len(self.searcher.index) if moments is None else len(moments.table.rows)

    def video_hit(self, hit: Hit | Moment) -> VideoHit:
        """A search hit as the page shows it (a moment keeps its times and the video's title)."""
        if isinstance(hit, Moment):  # its caption is the part of the video it covers
            return VideoHit(hit.rank, hit.id, hit.score, hit.caption, self.clip_src(hit.id), hit.start, hit.end,
                            hit.row)
        return VideoHit(hit.rank, hit.id, hit.score, hit.caption, self.clip_src(hit.id), window=hit.id)

    def _result(self, query: str, timed: Timed, mode: str, kind: str) -> SearchResult:
        hits = [self.video_hit(h) for h in timed.hits]
        return SearchResult(query, hits, timed.encode_ms, timed.search_ms, mode, self.corpus_size(),
                            kind=kind, moments=self.long_videos())

    def search_image(self, image: str | None, k: float = 10, mode: str = MODES[0],
                     per_video: float = 1) -> SearchResult:
        """Videos (moments) that look like a photo or a saved frame, by CLIP's image tower."""
        if not image:
            raise InputError("no image: upload a photo or a frame first")
        timed = self.searcher.search_image_timed(image, k=clamp_k(k), exact=mode == "exact",
                                                 per_video=clamp_k(per_video))
        return self._result(f"the image {Path(image).name}", timed, mode, "image")

    def more_like_this(self, result_id: str | None, k: float = 10, mode: str = MODES[0],
                       per_video: float = 1) -> SearchResult:
        """Results like one result (its ``window`` id), its own stored embedding as the query."""
        result_id = corpus_id(result_id)
        if not result_id:
            raise InputError("no result given: pick one whose look-alikes you want")
        timed = self.searcher.more_like_this(result_id, k=clamp_k(k), exact=mode == "exact",
                                             per_video=clamp_k(per_video))
        return self._result(f"more like {result_id}", timed, mode, "like")

    def more_from_video(self, query: str | None, video_id: str | None) -> VideoMoments:
        """The moments of one long video that match the query (scoring at least :data:`MORE_SHARE`
        of its best moment's score, at most :data:`MORE_LIMIT`), in time order."""
        video_id = corpus_id(video_id)
        if not video_id:
            raise InputError("no video given: pick a result first")
        text = clean_query(query)
        timed = self.searcher.moments_in_video(text, video_id)
        best = timed.hits[0].score if timed.hits else 0.0
        good = [h for h in timed.hits[:MORE_LIMIT] if h.score >= best - (1 - MORE_SHARE) * abs(best)]
        hits = sorted((self.video_hit(h) for h in good), key=lambda h: h.start or 0.0)
        first = self.searcher.index.metadata[int(self._windows(video_id)[1][0])]
        title = str(first.get("title") or video_id)
        return VideoMoments(video_id, title, self.clip_src(video_id), self.searcher.video_duration(video_id) or 0.0,
                            text, hits, timed.search_ms)

    def timeline(self, video: str | None, clip_id: str | None = None) -> list[TimelineEntry]:
        """Captions along a long video: a long video of the index (``clip_id``; from its stored
        window embeddings) or an upload longer than one stretch (empty for a shorter clip)."""
        clip_id = corpus_id(clip_id)
        if clip_id:
            return self._stored_timeline(clip_id) if self.is_long_video(clip_id) else []
        path = self.check_upload(video)
        spec = tiles(self.searcher.index)
        if friendly(path, lambda: probe(path)).duration <= spec.segment:
            return []
        return friendly(path, lambda: self.searcher.describe_timeline(path, spec.segment))

    def describe_long_video(self, video_id: str, k: int) -> DescribeResult:
        """Video -> text for a long video of the index: captions for the whole of it (the mean of its
        stored window embeddings)."""
        index = self.searcher.index
        t0 = time.perf_counter()
        emb = np.asarray(index.embeddings[self._windows(video_id)[1]], np.float32)
        hits = self.by_video(index.describe(emb.mean(axis=0), k=k))
        return DescribeResult(hits, video_id, 0.0, (time.perf_counter() - t0) * 1e3)

    def _windows(self, video_id: str) -> tuple[SegmentTable, np.ndarray]:
        """The index's table of windows and the rows of one long video's windows, in time order."""
        moments = self.searcher.moments
        if moments is None or video_id not in moments.table.rows:
            raise InputError(f"no long video with id {video_id!r} in the index")
        return moments.table, moments.table.rows[video_id]

    def _stored_timeline(self, video_id: str) -> list[TimelineEntry]:
        """Back-to-back stored windows of one long video, each with its best caption."""
        index = self.searcher.index
        table, rows = self._windows(video_id)
        entries: list[TimelineEntry] = []
        end = -1.0
        for row in rows:
            start = float(table.starts[row])
            if start >= end - 1e-6:
                best = index.describe(np.asarray(index.embeddings[row], np.float32), k=1)
                end = float(table.ends[row])
                entries.append(TimelineEntry(start, end, best[0].caption if best else None,
                                             best[0].score if best else 0.0))
        return merge_entries(entries)

    def by_video(self, hits: list[CaptionHit]) -> list[CaptionHit]:
        """Captions of a long-video index name their video, not the window row that holds them."""
        moments = self.searcher.moments
        if moments is None:
            return hits
        return [replace(h, video_id=moments.window(h.video_id)[0]) for h in hits]

    def is_long_video(self, clip_id: str) -> bool:
        moments = self.searcher.moments
        return moments is not None and clip_id in moments.table.rows
