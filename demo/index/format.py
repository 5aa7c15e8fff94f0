"""The index folder on disk: its files, its manifest, the atomic save, and the checks on load.

Folder layout (``FORMAT_VERSION`` 2), ``N`` videos, ``M`` captions, ``D``-d embeddings, each
data file named with the id of the write that made it (``<W>``, 12 hex digits):

- ``manifest.json``               written LAST, by one atomic rename; names ``write_id`` ``<W>``
- ``metadata.<W>.jsonl``          N rows ``{"id", "path" (file or URL), "captions": [...], ...}``
- ``embeddings.<W>.npy``          (N, D) float16, L2-normalised, memory-mapped on load
- ``codes.<W>.npy``               (N, D/8) uint8, ``np.packbits(embeddings > 0, axis=1)``
- ``caption_embeddings.<W>.npy``  (M, D) float16, L2-normalised, memory-mapped on load
- ``caption_video.<W>.npy``       (M,) int64: the metadata ROW (0..N-1) of each caption; the
                                  j-th caption embedding of row r is ``metadata[r]["captions"][j]``
- ``ivf.<W>.npy``                 only when the manifest's ``first_stage`` is "ivf-pq" (indexes of
                                  200k rows and more): the faiss IVF-PQ, serialised (uint8)

Replacing an index writes the new files beside the old ones, then swaps ``manifest.json`` in
one rename, then deletes the old write's files: a reader gets the old index or the new one,
never a mix (the manifest it read names every file it opens), and a kill at any moment leaves
one of them whole. A reader that finds its write's files deleted under it (a swap in between)
reads the manifest again. Leftovers of killed writes are removed by the next writer, which
holds the folder's lock (:mod:`demo.index.lock`). Version 1 folders (unnamed files, as shipped
before) still load. :class:`demo.index.video_index.VideoIndex` saves and loads through
:func:`write_index_folder` and :func:`read_index_folder`.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from demo.errors import IndexFormatError
from demo.models.fingerprint import ModelFingerprint

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
ARRAYS = ("embeddings", "codes", "caption_embeddings", "caption_video")
PARTIAL_SUFFIX = ".partial"
# Optional manifest fields kept through save/load: "video_to_text" says how captions are found for a
# video ("captions" or "nearest-videos"), "segments" how long videos were cut into windows, "first_stage"
# how the index finds its search candidates (demo.index.ivf.FirstStage: flat sign codes, or an IVF-PQ
# for large indexes).
INFO_FIELDS = ("model_path", "source", "media_root", "video_to_text", "segments", "first_stage")
OPTIONAL_ARRAYS = ("ivf",)  # data files only some writes have: the IVF-PQ of an "ivf-pq" first stage
# Rows whose finiteness and sign codes are checked on load: all of them up to this many values,
# else an even sample of this many rows (a full scan of a 10M-row index would take seconds).
CHECK_VALUES = 1 << 26
CHECK_ROWS = 1 << 16


def new_write_id() -> str:
    return secrets.token_hex(6)


def file_names(write_id: str | None) -> dict[str, str]:
    """Data file names by role (the four arrays and ``metadata``) for one write (None: version 1).

    >>> file_names("0123456789ab")["embeddings"], file_names(None)["metadata"]
    ('embeddings.0123456789ab.npy', 'metadata.jsonl')
    """
    tag = f".{write_id}" if write_id else ""
    return {**{a: f"{a}{tag}.npy" for a in (*ARRAYS, *OPTIONAL_ARRAYS)}, "metadata": f"metadata{tag}.jsonl"}


def optional_arrays(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The :data:`OPTIONAL_ARRAYS` a manifest's write has (an index with an IVF first stage has "ivf").

    >>> optional_arrays({"first_stage": {"kind": "ivf-pq"}}), optional_arrays({})
    (('ivf',), ())
    """
    stage = manifest.get("first_stage")
    return ("ivf",) if isinstance(stage, dict) and stage.get("kind") == "ivf-pq" else ()


def write_id_of(name: str) -> str | None:
    """The write id in a data file's name (None for other files).

    >>> write_id_of("codes.0123456789ab.npy"), write_id_of("manifest.json")
    ('0123456789ab', None)
    """
    parts = name.split(".")
    if len(parts) == 3 and parts[0] in (*ARRAYS, *OPTIONAL_ARRAYS, "metadata") and len(parts[1]) == 12:
        return parts[1]
    return None


def make_manifest(
    fingerprint: ModelFingerprint, count: int, captions: int, created: str, info: dict[str, Any]
) -> dict[str, Any]:
    """The ``manifest.json`` of an index of ``count`` videos and ``captions`` caption embeddings
    (the writer adds its ``write_id``)."""
    fp = fingerprint
    return {
        "format_version": FORMAT_VERSION,
        "model": fp.model,
        "pooling": fp.pooling,
        "frames": fp.frames,
        "sample_fps": fp.sample_fps,
        "sampling": fp.sampling,
        "resize": fp.resize,
        "image_size": fp.image_size,
        "dim": fp.dim,
        "count": count,
        "created": created,
        "captions": captions,
        **info,
    }


def check_arrays(where: str, dim: int, metadata: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Check the four arrays (keyed by file name without ``.npy``) against the layout and the
    metadata; return the (M,) position of each caption in its row's ``captions`` list."""
    n, m = len(metadata), len(arrays["caption_video"])
    if dim % 8:
        raise IndexFormatError(f"{where}: dim {dim} is not a multiple of 8 (needed for packed codes)")
    expected = {
        "embeddings": ((n, dim), np.float16),
        "codes": ((n, dim // 8), np.uint8),
        "caption_embeddings": ((m, dim), np.float16),
        "caption_video": ((m,), np.int64),
    }
    for name, (shape, dtype) in expected.items():
        arr = arrays[name]
        if arr.shape != shape or arr.dtype != dtype:
            raise IndexFormatError(f"{where}: {name} is {arr.shape} {arr.dtype}, expected {shape} {np.dtype(dtype)}")
    missing = next((i for i, r in enumerate(metadata) if not isinstance(r, dict) or "id" not in r), None)
    if missing is not None:
        raise IndexFormatError(f"{where}: metadata row {missing} has no 'id'")
    ids = len({str(r["id"]) for r in metadata})
    if ids != n:
        raise IndexFormatError(f"{where}: metadata ids are not unique ({n} rows, {ids} ids)")
    cv = np.asarray(arrays["caption_video"])
    if m and (cv.min() < 0 or cv.max() >= n):
        raise IndexFormatError(f"{where}: caption_video holds rows {cv.min()}..{cv.max()}, outside [0, {n})")
    # nth[c]: how many earlier captions belong to the same row, i.e. the index of
    # caption c in its row's "captions" list (computed with one stable sort).
    order = np.argsort(cv, kind="stable")
    starts = np.searchsorted(cv[order], cv[order], side="left")
    nth = np.empty(m, np.int64)
    nth[order] = np.arange(m) - starts
    have = np.array([len(r.get("captions") or []) for r in metadata], np.int64)
    short = np.flatnonzero(nth >= have[cv])
    if len(short):
        row = int(cv[short[0]])
        raise IndexFormatError(f"{where}: row {row} has {have[row]} captions but more caption embeddings")
    return nth


def check_contents(where: str, embeddings: np.ndarray, codes: np.ndarray) -> None:
    """Refuse embeddings that hold NaN/inf and sign codes that do not match them (all rows of a
    small index, an even sample of :data:`CHECK_ROWS` of a large one)."""
    n, d = embeddings.shape
    rows = np.arange(n) if n * d <= CHECK_VALUES else np.unique(np.linspace(0, n - 1, CHECK_ROWS).astype(np.int64))
    for start in range(0, len(rows), 8192):
        chunk = rows[start:start + 8192]
        emb = np.asarray(embeddings[chunk], dtype=np.float32)
        bad = ~np.isfinite(emb).all(axis=1)
        if bad.any():
            raise IndexFormatError(f"{where}: embedding row {int(chunk[np.argmax(bad)])} holds NaN/inf: the index "
                                   "is corrupt; rebuild it")
        agree = float(np.mean(np.unpackbits(np.asarray(codes[chunk]), axis=1)[:, :d] == (emb > 0)))
        if agree < 0.99:
            raise IndexFormatError(f"{where}: the sign codes disagree with the embeddings ({100 * agree:.1f}% of "
                                   f"bits agree in rows {int(chunk[0])}..{int(chunk[-1])}): the index is corrupt; "
                                   "rebuild it")
