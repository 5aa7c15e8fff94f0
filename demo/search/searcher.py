"""Text -> video and video -> text search over one index with one model.

:func:`open_searcher` resolves a preset (or explicit ``--model`` / ``--index``),
loads the model the index was built with unless told otherwise, and refuses an
index whose manifest does not match the model. The CLI and the app both search
through :class:`Searcher`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import IndexFormatError, InputError
from demo.index import store
from demo.index.format import MANIFEST
from demo.index.segments import index_segments
from demo.index.video_index import CaptionHit, Hit, VideoIndex
from demo.models.encoders import Clip4ClipEncoder
from demo.presets import Preset
from demo.search.moments import Moment, MomentSearch
from demo.search.text import clean_query
from demo.search.timeline import TimelineEntry, describe_timeline, tiles
from demo.video.images import load_image
from demo.video.windows import SegmentSpec

log = logging.getLogger(__name__)
NEIGHBOURS = 64  # nearest videos whose captions describe a clip in an index without caption embeddings


def hit_to_dict(hit: Hit | Moment | CaptionHit) -> dict[str, Any]:
    """A flat JSON-able row: rank, id, score, caption, (for a moment: start, end and the best window's
    id), path_or_url, then the metadata."""
    if isinstance(hit, CaptionHit):
        return {"rank": hit.rank, "id": hit.video_id, "score": round(hit.score, 6), "caption": hit.caption}
    row: dict[str, Any] = {"rank": hit.rank, "id": hit.id, "score": round(hit.score, 6), "caption": hit.caption}
    if isinstance(hit, Moment):
        row.update(start=hit.start, end=hit.end, window=hit.row)
    row["path_or_url"] = hit.path_or_url
    row.update({k: v for k, v in hit.metadata.items() if k not in row})
    return row


def read_manifest(index_dir: str | Path) -> dict[str, Any]:
    """The index's manifest, or one line saying why there is none (see :mod:`demo.index.store`)."""
    path = Path(index_dir) / MANIFEST
    if not path.is_file():
        if not Path(index_dir).exists():
            raise IndexFormatError(f"index folder {index_dir} does not exist; build one with "
                                   "`python -m demo index build SOURCE --out DIR`")
        raise IndexFormatError(f"{index_dir} is not a finished index (no {MANIFEST})")
    return store.read_manifest(Path(index_dir))


@dataclass
class Timed:
    """Results plus how long the model and the index took, in milliseconds."""

    hits: list[Any]
    encode_ms: float
    search_ms: float


class Searcher:
    """One encoder and the index it built; both loaded once. Over an index of long videos (built
    with ``--segment``) searches return :class:`~demo.search.moments.Moment` hits, else :class:`Hit`."""

    def __init__(self, encoder: Clip4ClipEncoder, index: VideoIndex, model_source: str) -> None:
        self.encoder, self.index, self.model_source = encoder, index, model_source
        self.segments: SegmentSpec | None = index_segments(index.info)
        self.moments = MomentSearch(index) if self.segments is not None else None

    def search_text(self, text: str, k: int = 10, exact: bool = False,
                    rerank: int | None = None, per_video: int = 1) -> list[Hit | Moment]:
        return self.search_text_timed(text, k, exact, rerank, per_video).hits

    def search_text_timed(self, text: str, k: int = 10, exact: bool = False,
                          rerank: int | None = None, per_video: int = 1) -> Timed:
        query = clean_query(text)
        return self._timed(lambda: self.encoder.encode_texts([query])[0], k, exact, rerank, per_video)

    def search_image_timed(self, path: str | Path, k: int = 10, exact: bool = False,
                           rerank: int | None = None, per_video: int = 1) -> Timed:
        """Videos (moments) that look like the image at ``path``, by CLIP's image tower."""
        image = load_image(path)
        return self._timed(lambda: self.encoder.encode_images(image[None])[0], k, exact, rerank, per_video)

    def more_like_this(self, result_id: str, k: int = 10, exact: bool = False,
                       per_video: int = 1) -> Timed:
        """Results like result ``result_id`` (a video's id; a moment's ``window``), its own stored
        embedding as the query; the result itself (its stretch of video) is left out."""
        if self.moments is not None and result_id in self.moments.table.rows:
            first = self.index.metadata[int(self.moments.table.rows[result_id][0])]["id"]
            raise InputError(f"{result_id!r} is a whole long video; give one of its moments: the 'window' of a "
                             f"result, such as {first!r}")
        vec = self.index.vector(result_id)
        if self.moments is not None:
            exclude = self.moments.window(result_id)
            return self._timed(lambda: vec, k, exact, None, per_video, exclude)
        timed = self._timed(lambda: vec, k + 1, exact, None, per_video)
        others = [h for h in timed.hits if h.id != result_id][:k]
        return Timed([replace(h, rank=n) for n, h in enumerate(others, 1)], timed.encode_ms, timed.search_ms)

    def moments_in_video(self, text: str, video_id: str, k: int = 50) -> Timed:
        """Every moment of one video for the query (best first; sort by ``start`` for a timeline)."""
        if self.moments is None:
            raise InputError("this index holds whole videos, not moments (it was built without --segment)")
        query = clean_query(text)
        moments = self.moments
        t0 = time.perf_counter()
        vec = self.encoder.encode_texts([query])[0]
        t1 = time.perf_counter()
        hits = moments.in_video(vec, video_id, k)
        return Timed(hits, (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3)

    def video_duration(self, video_id: str) -> float | None:
        """The length of an indexed long video in seconds (None for a whole-clip index)."""
        return None if self.moments is None else self.moments.table.duration(video_id)

    def _timed(self, embed: Callable[[], np.ndarray], k: int, exact: bool, rerank: int | None, per_video: int,
               exclude: tuple[str, float, float] | None = None) -> Timed:
        if k < 1 or per_video < 1:
            raise InputError(f"k and per_video must be at least 1, got k={k}, per_video={per_video}")
        t0 = time.perf_counter()
        vec = embed()
        t1 = time.perf_counter()
        hits: list[Any]
        if self.moments is not None:
            hits = self.moments.search(vec, k, per_video, exact, rerank, exclude)
        else:
            hits = self.index.search(vec, k=k, exact=exact, rerank=rerank)[0]  # None: the index default
        return Timed(hits, (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3)

    def embed_video(self, path: str | Path) -> np.ndarray:
        """(D,) embedding of one clip (VideoDecodeError if it is not a video)."""
        frames, mask = self.encoder.load_video(path)
        return self.encoder.encode_frames(frames[None], mask[None])[0]

    def describe_video(self, path: str | Path, k: int = 10) -> list[CaptionHit]:
        return self.describe_video_timed(path, k).hits

    def describe_video_timed(self, path: str | Path, k: int = 10) -> Timed:
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        t0 = time.perf_counter()
        vec = self.embed_video(path)
        t1 = time.perf_counter()
        hits = self.describe_vector(vec, k=k)
        return Timed(hits, (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3)

    def describe_vector(self, vec: np.ndarray, k: int = 10) -> list[CaptionHit]:
        """Video -> text for a (D,) video embedding: over every caption embedding of the index when it
        has them, else over the captions of the :data:`NEIGHBOURS` videos nearest it, embedded now."""
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        if len(self.index.caption_video) or not len(self.index):
            return self.index.describe(vec, k=k)
        _, rows = self.index.search_rows(vec, k=NEIGHBOURS)
        pairs: dict[str, str] = {}  # caption -> the id of the nearest video that has it
        for row in rows[0][rows[0] >= 0]:
            meta = self.index.metadata[int(row)]
            for caption in meta.get("captions") or []:
                pairs.setdefault(str(caption), str(meta["id"]))  # a caption shared by videos: the nearest one
        if not pairs:
            return []
        texts = list(pairs)
        scores = self.encoder.encode_texts(texts) @ np.asarray(vec, np.float32) / max(float(np.linalg.norm(vec)), 1e-12)
        order = np.argsort(-scores, kind="stable")[:k]
        return [CaptionHit(n, texts[i], float(scores[i]), pairs[texts[i]]) for n, i in enumerate(order, 1)]

    @property
    def describe_source(self) -> str:
        """How video -> text finds its captions, in a sentence for the page."""
        m = len(self.index.caption_video)
        if m or not len(self.index):
            return f"ranked over all {m:,} caption embeddings of the index"
        return (f"ranked over the captions of the {NEIGHBOURS} indexed videos nearest the clip (embedded on "
                f"demand: this index of {len(self.index):,} videos stores no caption embeddings)")

    def describe_timeline(self, path: str | Path, segment: float | None = None) -> list[TimelineEntry]:
        """Captions along the video at ``path``, one per stretch of ``segment`` seconds (default: the
        index's window length, else 4 s); see :mod:`demo.search.timeline`."""
        return describe_timeline(path, self.encoder, self.index, tiles(self.index, segment))

    def summary(self) -> dict[str, Any]:
        manifest = self.index.manifest()
        return {"model": self.model_source, "model_name": self.encoder.name, "pooling": self.encoder.pooling,
                "index": str(self.index.root), "videos": manifest["count"], "captions": manifest["captions"],
                "dim": self.encoder.dim, "device": self.encoder.device,
                "frames": self.encoder.settings.frame_cap or "every-second", "sample_fps": self.encoder.sample_fps,
                "segments": None if self.segments is None else self.segments.to_dict(),
                "long_videos": None if self.moments is None else len(self.moments.table.rows)}


def open_searcher(preset: Preset, device: str | None = None) -> Searcher:
    """Load the preset's index and the model it was built with (``--model`` overrides it), embedding
    uploads with the index's frame sampling and resizing (:meth:`Preset.following_index`); an index
    made by another model is refused (IndexFormatError)."""
    if preset.index is None:
        raise InputError("no index given: pass --index DIR (build one with `python -m demo index build`)")
    bound = preset.following_index(read_manifest(preset.index))
    encoder = bound.open_encoder(device)
    loaded = VideoIndex.load(preset.index, expect=encoder.fingerprint)
    log.info("loaded %s with %d videos, model %s", preset.index, len(loaded), encoder.name)
    return Searcher(encoder, loaded, bound.model)
