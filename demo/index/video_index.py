"""The :class:`VideoIndex`: N video embeddings with their metadata and caption embeddings,
searchable text -> video (:meth:`VideoIndex.search`) and video -> text (:meth:`VideoIndex.describe`).

The folder it saves to and loads from is described in :mod:`demo.index.format`; the search
arithmetic (sign codes, Hamming search, cosine rerank) lives in :mod:`demo.index.binary`.
Indexes are filled from video files by :func:`demo.index.build.build_index` and from
precomputed embeddings by :func:`demo.index.precomputed.from_precomputed`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import IndexFormatError, InputError
from demo.index.binary import (
    binarize,
    build_binary_index,
    default_rerank,
    exact_top_k,
    hamming_search,
    l2_normalize,
    rerank_rows,
)
from demo.index.format import ARRAYS, check_arrays, check_contents, make_manifest
from demo.index.ivf import IVF_PQ, FirstStage, choose, ivf_from_array, ivf_search
from demo.index.store import read_index_folder, write_index_folder
from demo.index.table import IdView, MemoryRows, Rows
from demo.index.tuning import build_first_stage
from demo.index.upgrade import upgrade
from demo.models.fingerprint import ModelFingerprint

log = logging.getLogger(__name__)


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


class VideoIndex:
    """N video embeddings + metadata + caption embeddings, searchable both ways.

    Make one with :meth:`from_arrays` or open a folder with :meth:`load`; persist with :meth:`save`.
    """

    def __init__(
        self,
        fingerprint: ModelFingerprint,
        embeddings: np.ndarray,
        codes: np.ndarray,
        metadata: Rows | Sequence[dict[str, Any]],
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
        # Rows as a sequence of dicts: a memory-mapped table read a row at a time when loaded
        # (demo.index.table.MetadataTable), rows in memory otherwise.
        self.metadata: Rows = metadata if isinstance(metadata, Rows) else MemoryRows(metadata)
        self.caption_embeddings = caption_embeddings  # (M, D) float16
        self.caption_video = caption_video  # (M,) int64 rows into metadata
        self.created = created or datetime.now(UTC).isoformat(timespec="seconds")
        self.root = root
        self._binary: Any = None  # faiss.IndexBinaryFlat, built on first binary search
        self._ivf: Any = None  # faiss.IndexIVFPQ of an "ivf-pq" first stage, read or trained on first use
        self._ivf_data: np.ndarray | None = None  # its serialised bytes as a version-2 folder kept them
        self._ivf_file: Path | None = None  # the file it was read from (copied as it is by save())
        self._files: dict[str, str] = {}  # the data files by role, when loaded
        self._lock = threading.Lock()
        self._caption_nth = check_arrays(str(root) if root else "index", fingerprint.dim, self.metadata,
                                         self._arrays())

    def _arrays(self) -> dict[str, np.ndarray]:
        """The arrays of the folder format, keyed by role (``embeddings``, ``codes``, ...)."""
        return {name: getattr(self, name) for name in ARRAYS}

    def __len__(self) -> int:
        return len(self.metadata)

    @property
    def ids(self) -> IdView:
        """The row ids, read on demand (``id in index.ids`` is a lookup, not a scan)."""
        return IdView(self.metadata)

    def row_of(self, video_id: str) -> int | None:
        """The row of ``video_id`` (None: no such id)."""
        return self.metadata.row_of(str(video_id))

    def vector(self, video_id: str) -> np.ndarray:
        """(D,) float32 embedding of a corpus video (to describe a clip that is already indexed)."""
        row = self.row_of(video_id)
        if row is None:
            raise InputError(f"no video with id {video_id!r} in the index ({len(self)} videos)")
        return np.asarray(self.embeddings[row], dtype=np.float32)

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

    @property
    def first_stage(self) -> FirstStage:
        """How searches find candidates: as the manifest records, else chosen by size (:func:`choose`)."""
        if "first_stage" in self.info:
            return FirstStage.from_dict(self.info["first_stage"])
        return choose(len(self), self.fingerprint.dim)

    def _ivf_index(self) -> Any:
        """The IVF-PQ of an "ivf-pq" first stage: as loaded (memory-mapped), from a version-2 folder's
        bytes, else (an index made in memory) trained and its depth tuned here, once."""
        with self._lock:
            if self._ivf is None:
                if self._ivf_data is not None:
                    self._ivf, self._ivf_data = ivf_from_array(self._ivf_data), None  # unmaps the bytes
                else:
                    entry, self._ivf = build_first_stage(self.embeddings, self.first_stage)
                    self.info["first_stage"] = entry
        return self._ivf

    def ivf(self) -> Any:
        """The faiss IVF-PQ of an "ivf-pq" first stage (see :meth:`_ivf_index`)."""
        if self.first_stage.kind != IVF_PQ:
            raise InputError(f"index {self.root or ''} has a {self.first_stage.kind} first stage, not an IVF-PQ")
        return self._ivf_index()

    def hamming_candidates(self, queries: np.ndarray, r: int) -> list[np.ndarray]:
        """Per (Q, D) query, up to ``r`` row ids nearest in Hamming distance of the sign codes.

        faiss pads with id -1 when fewer than ``r`` rows exist; those are dropped.
        """
        ids = hamming_search(self._binary_index(), np.asarray(queries, dtype=np.float32), r)
        return [row[row >= 0] for row in ids]

    def search_rows(
        self, queries: np.ndarray, k: int = 10, exact: bool = False, rerank: int | None = None,
        nprobe: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`search` but returns arrays: scores (Q, k) float32 and rows (Q, k) int64
        into ``metadata`` (row -1 / score -inf where fewer than k were found)."""
        stage = self.first_stage
        if rerank is None:
            rerank = stage.rerank if stage.kind == IVF_PQ else default_rerank(len(self))
        if k < 1 or rerank < 1:
            raise InputError(f"k and rerank must be >= 1, got k={k} rerank={rerank}")
        q = self._queries(queries)
        k = min(k, len(self))
        if k == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if exact:
            return exact_top_k(self.embeddings, q, k, self._what("embeddings"))
        depth = min(max(rerank, k), len(self))
        if stage.kind == IVF_PQ:
            cand = ivf_search(self._ivf_index(), q, nprobe or stage.nprobe, depth)
        else:
            cand = hamming_search(self._binary_index(), q, depth)
        return rerank_rows(self.embeddings, q, cand, k, self._what("embeddings"))

    def _what(self, role: str) -> str:
        """How an error names the file of array ``role``."""
        name = self._files.get(role)
        return str(self.root / name) if self.root is not None and name else role.replace("_", " ")

    def search(
        self, queries: np.ndarray, k: int = 10, exact: bool = False, rerank: int | None = None
    ) -> list[list[Hit]]:
        """Text->video search. queries: (D,) or (Q, D) float32 embeddings.

        exact=True: cosine over every float row. Otherwise the first stage finds the
        ``max(rerank, k)`` most likely rows, reranked by cosine on just those rows, read in row
        order from the (memory-mapped) float embeddings. The first stage (:attr:`first_stage`)
        is a Hamming search over the sign codes (``rerank`` None: :func:`default_rerank`), or
        for a large index an IVF-PQ scanning ``nprobe`` lists (``rerank`` None: its own depth;
        see :mod:`demo.index.ivf`). Returns per query a list of at most ``k`` hits (a (D,) query
        gives a list of one list).
        """
        scores, rows = self.search_rows(queries, k, exact, rerank)
        return [
            [self._hit(n, int(i), float(s)) for n, (s, i) in enumerate(zip(sr, ir, strict=True), 1) if i >= 0]
            for sr, ir in zip(scores, rows, strict=True)
        ]

    def caption_text(self, c: int) -> str:
        """Text of caption embedding ``c``."""
        row = int(self.caption_video[c])
        nth = (int(self._caption_nth[c]) if self._caption_nth is not None
               else int(c) - int(np.searchsorted(self.caption_video, row, side="left")))
        return str(self.metadata[row]["captions"][nth])

    def _hit(self, rank: int, row: int, score: float) -> Hit:
        r = self.metadata[row]
        caption = r["captions"][0] if r.get("captions") else ""
        extra = {key: v for key, v in r.items() if key not in ("id", "path", "media")}  # media: filecheck's record
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
            scores, rows = exact_top_k(self.caption_embeddings, q, want, self._what("caption_embeddings"))
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
        """The ``manifest.json`` this index is saved with (see :mod:`demo.index.format`)."""
        return make_manifest(self.fingerprint, len(self), len(self.caption_video), self.created, self.info)

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write the index folder atomically (a reader never sees half of it), its first stage with
        it (an IVF-PQ is trained and tuned now if this index has none yet); returns its path.

        An existing index is replaced only with ``overwrite``; see
        :func:`demo.index.store.write_index_folder`.
        """
        stage = self.first_stage  # recorded, so a reload searches the same way
        ivf: Any = None
        if stage.kind == IVF_PQ:
            ivf = self._ivf_file if self._ivf_file is not None and self._ivf is not None else self._ivf_index()
        self.info.setdefault("first_stage", stage.to_dict())
        target = write_index_folder(directory, self._arrays(), self.metadata, self.manifest(), overwrite, ivf)
        log.info("wrote index %s (%d videos, %d captions)", target, len(self), len(self.caption_video))
        return target

    @classmethod
    def load(cls, directory: str | Path, expect: ModelFingerprint | None = None) -> VideoIndex:
        """Open an index folder, arrays and metadata memory-mapped read-only, the IVF-PQ (if any) read
        with its lists mapped; with ``expect``, refuse an index built with an incomparable model, and
        refuse one whose files are corrupt. The checks: :func:`demo.index.store.read_index_folder`,
        the layout's, then the contents'. A large index saved before its first stage and metadata
        table were written with it is upgraded once (:func:`demo.index.upgrade.upgrade`).
        """
        upgrade(Path(directory), expect)
        files = read_index_folder(directory, expect)
        a = files.arrays
        index = cls(files.fingerprint, a["embeddings"], a["codes"], files.metadata, a["caption_embeddings"],
                    a["caption_video"], created=files.manifest.get("created"), root=files.root, info=files.info)
        check_contents(str(files.root), a, files.files)
        index._files = files.files
        index._ivf, index._ivf_data = files.first_stage, a.get("ivf")
        if files.first_stage is not None:
            index._ivf_file = files.root / files.files["ivf"]
        return index
