"""The video index: an on-disk folder format and the :class:`VideoIndex` that searches it.

Folder layout (``FORMAT_VERSION`` 1), ``N`` videos, ``M`` captions, ``D``-d embeddings:

- ``manifest.json``           written LAST; its presence marks a complete index
- ``metadata.jsonl``          N rows ``{"id", "path" (file or URL), "captions": [...], ...}``
- ``embeddings.npy``          (N, D) float16, L2-normalised, memory-mapped on load
- ``codes.npy``               (N, D/8) uint8, ``np.packbits(embeddings > 0, axis=1)``
- ``caption_embeddings.npy``  (M, D) float16, L2-normalised, memory-mapped on load
- ``caption_video.npy``       (M,) int64: the metadata ROW (0..N-1) of each caption; the
                              j-th caption embedding of row r is ``metadata[r]["captions"][j]``

Folders are written atomically (sibling temp folder, manifest last, then rename), so a
reader sees either no index or a whole one. Importing precomputed embeddings lives in
:func:`demo.index.build.from_precomputed`, building from video files in
:func:`demo.index.build.build_index`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import IndexFormatError, InputError
from demo.models.fingerprint import ModelFingerprint

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
METADATA = "metadata.jsonl"
ARRAY_FILES = ("embeddings.npy", "codes.npy", "caption_embeddings.npy", "caption_video.npy")
PARTIAL_SUFFIX = ".partial"
INFO_FIELDS = ("model_path", "source", "media_root")  # optional manifest fields kept through save/load
_SCAN_ROWS = 65536  # float rows scored per block in exact search (bounds memory on a memmap)
# When search() is not told how deep to rerank: RERANK_FRACTION of the index, within
# [DEFAULT_RERANK, MAX_DEFAULT_RERANK]. On near-duplicate-heavy data the depth that keeps
# recall@1 vs exact search >= 0.99 grows with N (see BENCHMARKS.md, "python -m demo bench").
DEFAULT_RERANK = 100
RERANK_FRACTION = 0.02
MAX_DEFAULT_RERANK = 10000
# Binary scans of at most this many queries run on ONE OpenMP thread: one 1M-code scan is
# memory-bound (~2 ms), and a second thread only adds OpenMP's barrier, which collapses to
# 100+ ms when another process holds the other core (measured on a 2-core machine).
_SINGLE_THREAD_QUERIES = 32
SHARD_MIN_ROWS = 200_000  # binary indexes this large scan their codes on parallel threads
_RERANK_PAIRS = 16384  # (query, candidate) pairs scored at once in rerank_rows (~32 MB at D=512)


@dataclass(frozen=True)
class Hit:
    """One text->video result; ``metadata`` is the row without id/path (captions, attributes, ...)."""

    rank: int
    id: str
    score: float
    caption: str
    path_or_url: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaptionHit:
    """One video->text result: a caption of video ``video_id`` and its cosine score."""

    rank: int
    caption: str
    score: float
    video_id: str


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """(..., D) -> float32 rows of unit length (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def binarize(x: np.ndarray) -> np.ndarray:
    """(N, D) floats -> (N, D/8) uint8 sign codes: ``np.packbits(x > 0)``, big-endian bit order."""
    return np.packbits(np.asarray(x) > 0, axis=-1)


def _top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` of (Q, n) scores with their ids, sorted by score desc, then id asc."""
    if scores.shape[1] > k:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        scores, ids = np.take_along_axis(scores, part, 1), np.take_along_axis(ids, part, 1)
    # Two stable sorts instead of a per-row lexsort: by id, then by score.
    by_id = np.argsort(ids, axis=1, kind="stable")
    scores, ids = np.take_along_axis(scores, by_id, 1), np.take_along_axis(ids, by_id, 1)
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def default_rerank(n: int) -> int:
    """Hamming candidates reranked by cosine in an index of ``n`` rows when not told."""
    return int(min(max(DEFAULT_RERANK, math.ceil(RERANK_FRACTION * n)), MAX_DEFAULT_RERANK))


def build_binary_index(codes: np.ndarray, dim: int, shards: int | None = None) -> Any:
    """A faiss binary index over (N, dim/8) uint8 sign codes (faiss keeps its own copy).

    faiss splits a search's work by query, so one query scans every code on one core. From
    :data:`SHARD_MIN_ROWS` codes on (or with ``shards`` > 1), the codes are split into one
    ``IndexBinaryFlat`` per core (at most 4) under an ``IndexBinaryShards`` that scans them on
    parallel threads and merges the results: the same nearest codes, about 2x sooner on 2
    cores (BENCHMARKS.md). Shard threads are plain threads, not OpenMP, so a busy core slows
    its shard but does not stall the others at a barrier.
    """
    import faiss

    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if shards is None:
        shards = min(os.cpu_count() or 1, 4) if len(codes) >= SHARD_MIN_ROWS else 1
    if shards <= 1:
        return _flat_binary_index(codes, dim)
    # threaded; shard i's ids follow shard i-1's (the stubs know only the 1-argument form)
    index = faiss.IndexBinaryShards(dim, True, True)  # type: ignore[call-arg]
    parts = [_flat_binary_index(part, dim) for part in np.array_split(codes, shards)]
    for part in parts:
        index.add_shard(part)
    index.referenced_objects = parts  # type: ignore[attr-defined]  # faiss keeps raw pointers: hold the shards
    return index


def _flat_binary_index(codes: np.ndarray, dim: int) -> Any:
    import faiss

    index = faiss.IndexBinaryFlat(dim)
    # Counting by distance instead of a heap: the same results, as fast at k=100 and 2-3x
    # faster at the k of a deep rerank (1000-10000).
    index.use_heap = False  # type: ignore[attr-defined]  # (missing from faiss's stubs)
    index.add(codes)
    return index


@contextlib.contextmanager
def _faiss_threads(queries: int) -> Iterator[None]:
    """Run faiss on ONE OpenMP thread for small batches (see ``_SINGLE_THREAD_QUERIES``).
    The OpenMP thread count is per calling thread, so this does not leak into other threads."""
    import faiss

    if queries > _SINGLE_THREAD_QUERIES:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def hamming_search(binary_index: Any, queries: np.ndarray, r: int) -> np.ndarray:
    """(Q, D) float queries -> (Q, r) int64 rows nearest in Hamming distance of the sign
    codes, nearest first; faiss pads with -1 when the index holds fewer than ``r`` rows."""
    codes = binarize(queries)
    with _faiss_threads(len(codes)):
        return np.asarray(binary_index.search(codes, r)[1], dtype=np.int64)


@functools.cache
def _fp16_decoder(dim: int) -> Any:
    import faiss

    return faiss.ScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16)


def _float32_rows(embeddings: np.ndarray, rows: np.ndarray, queries: int) -> np.ndarray:
    """embeddings[rows] as float32. float16 goes through faiss's vectorised decoder: numpy's
    float16 cast is scalar (~2 ns a value; 10 ms for the 10,000 rows of a deep rerank)."""
    block = np.asarray(embeddings[rows])
    if block.dtype != np.float16 or block.ndim != 2 or not len(block):
        return np.asarray(block, dtype=np.float32)
    with _faiss_threads(queries):
        out = _fp16_decoder(block.shape[1]).decode(np.ascontiguousarray(block).view(np.uint8))
    return np.asarray(out, dtype=np.float32).reshape(block.shape)


def rerank_rows(
    embeddings: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine top-``k`` of each query among its own candidate rows.

    embeddings: (N, D) float rows (a float16 memmap is fine); queries: (Q, D) float32,
    unit length; candidates: (Q, R) int64 rows, -1 for none. Per chunk of queries the union
    of their candidates is read once, in ascending row order (front to back through a
    memmap). Scores come from numpy's own loops, not BLAS: these products are small, and
    BLAS threads stall when another process holds the other cores. Returns scores
    (Q, min(k, R)) float32 and rows (Q, min(k, R)) int64 sorted by score desc then row asc;
    missing slots are -inf / -1.
    """
    q = np.asarray(queries, dtype=np.float32)
    cand = np.asarray(candidates, dtype=np.int64)
    k = min(k, cand.shape[1])
    out_s = np.full((len(q), k), -np.inf, np.float32)
    out_i = np.full((len(q), k), -1, np.int64)
    step = max(1, _RERANK_PAIRS // max(1, cand.shape[1]))
    for s in range(0, len(q), step):
        c, qc = cand[s : s + step], q[s : s + step]
        valid = c >= 0
        rows, where = np.unique(np.where(valid, c, 0), return_inverse=True)
        vecs = _float32_rows(embeddings, rows, len(q))  # (U, D)
        if len(c) == 1:  # one query: score the unique rows, no (R, D) gather
            scores = np.einsum("ud,d->u", vecs, qc[0])[where.reshape(c.shape)]
        else:
            scores = np.einsum("qrd,qd->qr", vecs[where.reshape(c.shape)], qc)
        scores[~valid] = -np.inf
        out_s[s : s + len(c)], out_i[s : s + len(c)] = _top_k(scores, c, k)
    return out_s, out_i


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic | np.ndarray):
        return o.tolist()
    if isinstance(o, Path | tuple | set):
        return str(o) if isinstance(o, Path) else list(o)
    raise TypeError(f"metadata value {o!r} ({type(o).__name__}) is not JSON-serialisable")


def _fsynced_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class VideoIndex:
    """N video embeddings + metadata + caption embeddings, searchable both ways.

    Make one with :meth:`from_arrays` or open a folder with :meth:`load`; persist with :meth:`save`.
    """

    def __init__(
        self,
        fingerprint: ModelFingerprint,
        embeddings: np.ndarray,
        codes: np.ndarray,
        metadata: list[dict[str, Any]],
        caption_embeddings: np.ndarray,
        caption_video: np.ndarray,
        created: str | None = None,
        root: Path | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.fingerprint = fingerprint
        # Extra manifest fields: "model_path" (how to load the model that built it), "source",
        # "media_root" (the folder that relative metadata paths are relative to).
        self.info: dict[str, Any] = dict(info or {})
        self.embeddings = embeddings  # (N, D) float16, a read-only memmap when loaded
        self.codes = codes  # (N, D/8) uint8
        self.metadata = metadata
        self.caption_embeddings = caption_embeddings  # (M, D) float16
        self.caption_video = caption_video  # (M,) int64 rows into metadata
        self.created = created or datetime.now(UTC).isoformat(timespec="seconds")
        self.root = root
        self._row = {str(r["id"]): i for i, r in enumerate(metadata)}
        self._binary: Any = None  # faiss.IndexBinaryFlat, built on first binary search
        self._lock = threading.Lock()
        self._caption_nth = self._validate(str(root) if root else "index")

    def _validate(self, where: str) -> np.ndarray:
        """Check shapes/dtypes/ids; return (M,) position of each caption in its row's list."""
        n, d, m = len(self.metadata), self.fingerprint.dim, len(self.caption_video)
        if d % 8:
            raise IndexFormatError(f"{where}: dim {d} is not a multiple of 8 (needed for packed codes)")
        expected = {
            "embeddings": ((n, d), np.float16),
            "codes": ((n, d // 8), np.uint8),
            "caption_embeddings": ((m, d), np.float16),
            "caption_video": ((m,), np.int64),
        }
        for name, (shape, dtype) in expected.items():
            arr = getattr(self, name)
            if arr.shape != shape or arr.dtype != dtype:
                raise IndexFormatError(
                    f"{where}: {name} is {arr.shape} {arr.dtype}, expected {shape} {np.dtype(dtype)}"
                )
        if len(self._row) != n:
            raise IndexFormatError(f"{where}: metadata ids are not unique ({n} rows, {len(self._row)} ids)")
        cv = np.asarray(self.caption_video)
        if m and (cv.min() < 0 or cv.max() >= n):
            raise IndexFormatError(
                f"{where}: caption_video holds rows {cv.min()}..{cv.max()}, outside [0, {n})"
            )
        # nth[c]: how many earlier captions belong to the same row, i.e. the index of
        # caption c in its row's "captions" list (computed with one stable sort).
        order = np.argsort(cv, kind="stable")
        starts = np.searchsorted(cv[order], cv[order], side="left")
        nth = np.empty(m, np.int64)
        nth[order] = np.arange(m) - starts
        have = np.array([len(r.get("captions") or []) for r in self.metadata], np.int64)
        short = np.flatnonzero(nth >= have[cv])
        if len(short):
            row = int(cv[short[0]])
            raise IndexFormatError(f"{where}: row {row} has {have[row]} captions but more caption embeddings")
        return nth

    def __len__(self) -> int:
        return len(self.metadata)

    @property
    def ids(self) -> list[str]:
        return list(self._row)

    def vector(self, video_id: str) -> np.ndarray:
        """(D,) float32 embedding of a corpus video (to describe a clip that is already indexed)."""
        if video_id not in self._row:
            raise InputError(f"no video with id {video_id!r} in the index ({len(self)} videos)")
        return np.asarray(self.embeddings[self._row[video_id]], dtype=np.float32)

    @classmethod
    def from_arrays(
        cls,
        fingerprint: ModelFingerprint,
        embeddings: np.ndarray,
        metadata: Sequence[dict[str, Any]],
        caption_embeddings: np.ndarray | None = None,
        caption_video: np.ndarray | Sequence[int] | None = None,
        codes: np.ndarray | None = None,
    ) -> VideoIndex:
        """In-memory index. embeddings: (N, D) floats, normalised here; metadata: N dicts with
        ``id`` and ``path``; caption_embeddings (M, D) with caption_video (M,) metadata rows;
        codes: (N, D/8) uint8, or None to derive them from the embeddings."""
        emb = l2_normalize(embeddings)
        if emb.ndim != 2 or emb.shape[1] != fingerprint.dim:
            raise IndexFormatError(f"embeddings are {emb.shape}, expected (N, {fingerprint.dim})")
        if not np.isfinite(emb).all():
            raise IndexFormatError(
                f"{int((~np.isfinite(emb)).any(axis=1).sum())} embedding row(s) hold NaN/inf"
            )
        rows = []
        for i, r in enumerate(metadata):
            if "id" not in r or "path" not in r:
                raise IndexFormatError(f"metadata row {i} needs 'id' and 'path', got keys {sorted(r)}")
            rows.append(
                {**r, "id": str(r["id"]), "path": str(r["path"]), "captions": list(r.get("captions") or [])}
            )
        if len(rows) != len(emb):
            raise IndexFormatError(f"{len(emb)} embeddings but {len(rows)} metadata rows")
        if caption_embeddings is None:
            cap, cv = np.zeros((0, fingerprint.dim), np.float16), np.zeros(0, np.int64)
        elif caption_video is None:
            raise IndexFormatError("caption_embeddings given without caption_video")
        else:
            cap = l2_normalize(caption_embeddings).astype(np.float16)
            cv = np.asarray(caption_video).astype(np.int64)
        codes = binarize(emb) if codes is None else np.asarray(codes)
        return cls(fingerprint, emb.astype(np.float16), codes, rows, cap, cv)

    @classmethod
    def from_precomputed(
        cls,
        embeddings: np.ndarray,
        metadata: Sequence[dict[str, Any]],
        codes: np.ndarray | None = None,
        **kwargs: Any,
    ) -> VideoIndex:
        """Import precomputed embeddings (e.g. Searchium's WebVid files); see
        :func:`demo.index.build.from_precomputed` for the checks and keyword arguments."""
        from demo.index.build import from_precomputed

        return from_precomputed(embeddings, metadata, codes, **kwargs)

    # ---------------------------------------------------------------- searching

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries, dtype=np.float32)
        q = q[None] if q.ndim == 1 else q
        if q.ndim != 2 or q.shape[1] != self.fingerprint.dim:
            raise InputError(
                f"queries must be (D,) or (Q, D) with D={self.fingerprint.dim}, got {np.shape(queries)}"
            )
        if not np.isfinite(q).all():
            raise InputError("query embedding holds NaN/inf")
        return l2_normalize(q)

    @staticmethod
    def _exact(mat: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine top-k of (Q, D) queries over the rows of ``mat`` (N, D), block by block."""
        best_s = np.full((len(q), 0), -np.inf, np.float32)
        best_i = np.zeros((len(q), 0), np.int64)
        for s in range(0, len(mat), _SCAN_ROWS):
            block = np.asarray(mat[s : s + _SCAN_ROWS], dtype=np.float32) @ q.T  # (rows, Q)
            ids = np.broadcast_to(np.arange(s, s + len(block)), (len(q), len(block)))
            best_s, best_i = _top_k(np.concatenate([best_s, block.T], 1), np.concatenate([best_i, ids], 1), k)
        return best_s, best_i

    def _binary_index(self) -> Any:
        """The faiss IndexBinaryFlat over the codes, built on first use."""
        with self._lock:
            if self._binary is None:
                self._binary = build_binary_index(self.codes, self.fingerprint.dim)
                if isinstance(self.codes, np.memmap) and self.codes.filename:
                    # faiss holds its own copy now; reopening drops the code pages the build
                    # mapped into this process, so the codes are resident once, not twice.
                    self.codes = np.load(self.codes.filename, mmap_mode="r")
        return self._binary

    def hamming_candidates(self, queries: np.ndarray, r: int) -> list[np.ndarray]:
        """Per (Q, D) query, up to ``r`` row ids nearest in Hamming distance of the sign codes.

        faiss pads with id -1 when fewer than ``r`` rows exist; those are dropped.
        """
        ids = hamming_search(self._binary_index(), np.asarray(queries, dtype=np.float32), r)
        return [row[row >= 0] for row in ids]

    def search_rows(
        self, queries: np.ndarray, k: int = 10, exact: bool = False, rerank: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`search` but returns arrays: scores (Q, k) float32 and rows (Q, k) int64
        into ``metadata`` (row -1 / score -inf where fewer than k were found)."""
        rerank = default_rerank(len(self)) if rerank is None else rerank
        if k < 1 or rerank < 1:
            raise InputError(f"k and rerank must be >= 1, got k={k} rerank={rerank}")
        q = self._queries(queries)
        k = min(k, len(self))
        if k == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if exact:
            return self._exact(self.embeddings, q, k)
        cand = hamming_search(self._binary_index(), q, min(max(rerank, k), len(self)))
        return rerank_rows(self.embeddings, q, cand, k)

    def search(
        self, queries: np.ndarray, k: int = 10, exact: bool = False, rerank: int | None = None
    ) -> list[list[Hit]]:
        """Text->video search. queries: (D,) or (Q, D) float32 embeddings.

        exact=True: cosine over every float row. Otherwise Hamming search over the sign
        codes for the ``max(rerank, k)`` nearest rows (``rerank`` None: :func:`default_rerank`),
        reranked by cosine on just those rows, read in row order from the (memory-mapped)
        float embeddings. Returns per query a list of at most ``k`` hits (a (D,) query
        gives a list of one list).
        """
        scores, rows = self.search_rows(queries, k, exact, rerank)
        return [
            [self._hit(n, int(i), float(s)) for n, (s, i) in enumerate(zip(sr, ir, strict=True), 1) if i >= 0]
            for sr, ir in zip(scores, rows, strict=True)
        ]

    def caption_text(self, c: int) -> str:
        """Text of caption embedding ``c``."""
        return str(self.metadata[int(self.caption_video[c])]["captions"][self._caption_nth[c]])

    def _hit(self, rank: int, row: int, score: float) -> Hit:
        r = self.metadata[row]
        caption = r["captions"][0] if r.get("captions") else ""
        extra = {key: v for key, v in r.items() if key not in ("id", "path")}
        return Hit(rank, str(r["id"]), score, str(caption), str(r["path"]), extra)

    def describe(self, video_vec: np.ndarray, k: int = 5, dedupe: bool = True) -> list[CaptionHit]:
        """Video->text: the ``k`` captions closest to a (D,) video embedding.

        With ``dedupe`` a caption text shared by several videos is listed once (its best score).
        """
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        q = self._queries(video_vec)
        m = len(self.caption_video)
        if m == 0:
            log.warning("index %s holds no caption embeddings; nothing to describe with", self.root)
            return []
        want = min(m, 4 * k if dedupe else k)
        while True:  # widen the candidate list until k distinct captions are found
            scores, rows = self._exact(self.caption_embeddings, q, want)
            out: list[CaptionHit] = []
            for s, c in zip(scores[0], rows[0], strict=True):
                text = self.caption_text(int(c))
                if dedupe and any(h.caption == text for h in out):
                    continue
                video = str(self.metadata[self.caption_video[c]]["id"])
                out.append(CaptionHit(len(out) + 1, text, float(s), video))
                if len(out) == k:
                    return out
            if want == m:
                return out
            want = min(m, 4 * want)

    # ------------------------------------------------------------------ on disk

    def manifest(self) -> dict[str, Any]:
        fp = self.fingerprint
        return {
            "format_version": FORMAT_VERSION,
            "model": fp.model,
            "pooling": fp.pooling,
            "frames": fp.frames,
            "sample_fps": fp.sample_fps,
            "image_size": fp.image_size,
            "dim": fp.dim,
            "count": len(self),
            "created": self.created,
            "captions": len(self.caption_video),
            **self.info,
        }

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write the index folder atomically; returns its path.

        Everything goes into a hidden sibling temp folder (manifest last) that is then
        renamed into place, so ``directory`` never holds a half-written index. An existing
        index is replaced only with ``overwrite``; a non-empty folder that is not an index
        is never replaced.
        """
        target = Path(directory)
        if target.exists():
            if not target.is_dir() or (any(target.iterdir()) and not (target / MANIFEST).exists()):
                raise IndexFormatError(f"{target} exists and is not an index folder; refusing to replace it")
            if (target / MANIFEST).exists() and not overwrite:
                raise IndexFormatError(
                    f"{target} already holds an index; pass overwrite=True (--overwrite) to replace it"
                )
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            for name in ARRAY_FILES:
                with open(tmp / name, "wb") as f:
                    np.save(f, np.ascontiguousarray(getattr(self, name.removesuffix(".npy"))))
                    f.flush()
                    os.fsync(f.fileno())
            lines = [json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in self.metadata]
            _fsynced_write(tmp / METADATA, "".join(lines).encode())
            _fsynced_write(tmp / MANIFEST, json.dumps(self.manifest(), indent=2).encode())
            if target.exists():
                old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
                os.rename(target, old)
                os.rename(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("wrote index %s (%d videos, %d captions)", target, len(self), len(self.caption_video))
        return target

    @classmethod
    def load(cls, directory: str | Path, expect: ModelFingerprint | None = None) -> VideoIndex:
        """Open an index folder; float arrays are memory-mapped read-only.

        Refuses (IndexFormatError) a missing folder, a work or temp folder, a folder without
        its manifest or with missing files, arrays that disagree with the manifest, and, when
        ``expect`` is given, an index built with a model whose embeddings are incomparable.
        """
        root = Path(directory)
        if root.name.endswith(PARTIAL_SUFFIX) or ".tmp-" in root.name:
            raise IndexFormatError(
                f"{root} is the work folder of an unfinished build, not an index; "
                "rerun `python -m demo index build` with the same arguments to finish it"
            )
        if not root.is_dir():
            raise IndexFormatError(f"index folder {root} does not exist")
        if not (root / MANIFEST).is_file():
            partial = root.with_name(root.name + PARTIAL_SUFFIX)
            hint = f"; an unfinished build is in {partial}" if partial.exists() else ""
            raise IndexFormatError(f"{root} has no {MANIFEST}: it is half-written or not an index{hint}")
        missing = [f for f in (METADATA, *ARRAY_FILES) if not (root / f).is_file()]
        if missing:
            raise IndexFormatError(f"index {root} is incomplete: missing {', '.join(missing)}")
        try:
            manifest = json.loads((root / MANIFEST).read_text())
            version = manifest.get("format_version")
            if version != FORMAT_VERSION:
                raise IndexFormatError(
                    f"index {root} has format version {version!r}; this code reads {FORMAT_VERSION}"
                )
            fp = ModelFingerprint.from_dict(manifest)
            count, captions = int(manifest["count"]), int(manifest["captions"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise IndexFormatError(f"{root / MANIFEST} is unreadable or lacks a field: {e!r}") from e
        if expect is not None:
            clash = fp.conflicts(expect)
            where = f" ({manifest['model_path']})" if manifest.get("model_path") else ""
            if clash:
                raise IndexFormatError(
                    f"index {root} was built with {fp.describe()} but the loaded model is "
                    f"{expect.describe()} ({', '.join(clash)} differ); rebuild the index with this "
                    f"model (`python -m demo index build SOURCE --out DIR --model ...`) or load the "
                    f"model it was built with{where}"
                )
            if fp != expect:
                log.warning("index %s was built with %s, the loaded model uses %s", root, fp, expect)
        try:
            arrays = {n.removesuffix(".npy"): np.load(root / n, mmap_mode="r") for n in ARRAY_FILES}
            lines = (root / METADATA).read_text(encoding="utf-8").splitlines()
            rows = [json.loads(line) for line in lines if line.strip()]
        except (OSError, ValueError) as e:
            raise IndexFormatError(f"index {root} has an unreadable file: {e}") from e
        if len(rows) != count or len(arrays["caption_video"]) != captions:
            raise IndexFormatError(
                f"index {root}: manifest says {count} videos / {captions} captions, files hold "
                f"{len(rows)} metadata rows / {len(arrays['caption_video'])} caption ids"
            )
        return cls(
            fp,
            arrays["embeddings"],
            arrays["codes"],
            rows,
            arrays["caption_embeddings"],
            np.asarray(arrays["caption_video"]),
            created=manifest.get("created"),
            root=root,
            info={k: manifest[k] for k in INFO_FIELDS if k in manifest},
        )
