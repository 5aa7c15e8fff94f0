"""The index folder on disk: its files, its manifest, the atomic save, and the checks on load.

Folder layout (``FORMAT_VERSION`` 3), ``N`` videos, ``M`` captions, ``D``-d embeddings, each
data file named with the id of the write that made it (``<W>``, 12 hex digits):

- ``manifest.json``               written LAST, by one atomic rename; names ``write_id`` ``<W>`` and,
                                  under ``files``, every data file of the write by role
- ``metadata.<W>.arrow``          N rows ``{"id", "path" (file or URL), "captions": [...], ...}``: an
                                  Arrow IPC table, memory-mapped, read a row at a time
                                  (:mod:`demo.index.table`)
- ``id_order.<W>.npy``            (N,) int64: the rows sorted by id (id lookups by binary search)
- ``embeddings.<W>.npy``          (N, D) float16, L2-normalised, memory-mapped on load
- ``codes.<W>.npy``               (N, D/8) uint8, ``np.packbits(embeddings > 0, axis=1)``
- ``caption_embeddings.<W>.npy``  (M, D) float16, L2-normalised, memory-mapped on load
- ``caption_video.<W>.npy``       (M,) int64: the metadata ROW (0..N-1) of each caption; the
                                  j-th caption embedding of row r is ``metadata[r]["captions"][j]``
- ``ivf.<W>.faiss``               only when the manifest's ``first_stage`` is "ivf-pq" (indexes of
                                  200k rows and more): the faiss IVF-PQ as ``faiss.write_index``
                                  writes it, memory-mapped on load; the flat first stage of smaller
                                  indexes is the codes file itself

The manifest's ``first_stage`` also records the search depth (``nprobe``, ``rerank``) chosen when
the IVF was written, and ``checksums`` the CRC-32 of each data file of at most
:data:`CHECKSUM_MAX_BYTES` (verified on load; larger files are checked by sampling).

Replacing an index writes the new files beside the old ones, then swaps ``manifest.json`` in
one rename, then deletes the old write's files: a reader gets the old index or the new one,
never a mix (the manifest it read names every file it opens), and a kill at any moment leaves
one of them whole. A reader that finds its write's files deleted under it (a swap in between)
reads the manifest again. Leftovers of killed writes are removed by the next writer, which
holds the folder's lock (:mod:`demo.index.lock`). Older folders still load: version 2 (metadata
as ``metadata.<W>.jsonl``, an IVF as ``ivf.<W>.npy``) and version 1 (unnamed files); a large one
is upgraded once on load (:mod:`demo.index.upgrade`). :class:`demo.index.video_index.VideoIndex`
saves and loads through :func:`write_index_folder` and :func:`read_index_folder`.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from demo.errors import IndexFormatError
from demo.index.table import MemoryRows, Rows
from demo.models.fingerprint import ModelFingerprint

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
MANIFEST = "manifest.json"
ARRAYS = ("embeddings", "codes", "caption_embeddings", "caption_video")
PARTIAL_SUFFIX = ".partial"
# Optional manifest fields kept through save/load: "video_to_text" says how captions are found for a
# video ("captions" or "nearest-videos"), "segments" how long videos were cut into windows, "first_stage"
# how the index finds its search candidates (demo.index.ivf.FirstStage: flat sign codes, or an IVF-PQ
# for large indexes).
INFO_FIELDS = ("model_path", "source", "media_root", "video_to_text", "segments", "first_stage")
OPTIONAL_ARRAYS = ("ivf",)  # data files only some writes have: the IVF-PQ of an "ivf-pq" first stage
ROLES = (*ARRAYS, "metadata", "id_order", *OPTIONAL_ARRAYS)  # the data files of a version-3 write
CHECKSUM_MAX_BYTES = 32 << 20  # data files up to this size get a CRC-32 in the manifest
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


def current_names(write_id: str, ivf: bool) -> dict[str, str]:
    """Data file names by role of a version-3 write (``ivf``: with the IVF-PQ file).

    >>> current_names("0123456789ab", ivf=True)["ivf"], current_names("0123456789ab", False)["metadata"]
    ('ivf.0123456789ab.faiss', 'metadata.0123456789ab.arrow')
    """
    ext = {"metadata": "arrow", "ivf": "faiss"}
    return {r: f"{r}.{write_id}.{ext.get(r, 'npy')}" for r in ROLES if ivf or r != "ivf"}


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
    if len(parts) == 3 and parts[0] in ROLES and len(parts[1]) == 12:
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


def check_arrays(where: str, dim: int, metadata: Rows, arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    """Check the four arrays (keyed by role) against the layout and the metadata. Returns the (M,)
    position of each caption in its row's ``captions`` list, or None when ``caption_video`` is
    in row order (every writer's order: the position is then found by a binary search, and no
    (M,) array is made at load)."""
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
    _check_ids(where, metadata)
    cv = np.asarray(arrays["caption_video"])
    if m and (cv.min() < 0 or cv.max() >= n):
        raise IndexFormatError(f"{where}: caption_video holds rows {cv.min()}..{cv.max()}, outside [0, {n})")
    short = np.flatnonzero(np.bincount(cv, minlength=n) > metadata.caption_counts()) if m else np.zeros(0, np.int64)
    if len(short):
        row = int(short[0])
        raise IndexFormatError(f"{where}: row {row} has {metadata.caption_counts()[row]} captions but more "
                               "caption embeddings")
    if m < 2 or bool(np.all(cv[1:] >= cv[:-1])):
        return None
    # nth[c]: how many earlier captions belong to the same row (one stable sort).
    order = np.argsort(cv, kind="stable")
    nth = np.empty(m, np.int64)
    nth[order] = np.arange(m) - np.searchsorted(cv[order], cv[order], side="left")
    return nth


def _check_ids(where: str, metadata: Rows) -> None:
    """Every row has an id, and (rows in memory) ids are unique; a table's were checked when written."""
    if isinstance(metadata, MemoryRows):
        missing = next((i for i, r in enumerate(metadata) if not isinstance(r, dict) or "id" not in r), None)
        if missing is not None:
            raise IndexFormatError(f"{where}: metadata row {missing} has no 'id'")
        ids = len({str(r["id"]) for r in metadata})
        if ids != len(metadata):
            raise IndexFormatError(f"{where}: metadata ids are not unique ({len(metadata)} rows, {ids} ids)")
    elif metadata.arrow.column("id").null_count:
        import pyarrow.compute as pc

        row = int(np.flatnonzero(pc.is_null(metadata.arrow.column("id")).to_numpy(zero_copy_only=False))[0])
        raise IndexFormatError(f"{where}: metadata row {row} has no 'id'")


def _sample(n: int, d: int) -> np.ndarray:
    return np.arange(n) if n * d <= CHECK_VALUES else np.unique(np.linspace(0, n - 1, CHECK_ROWS).astype(np.int64))


def check_contents(where: str, arrays: dict[str, np.ndarray], names: dict[str, str] | None = None) -> None:
    """Refuse embeddings or caption embeddings that hold NaN/inf or are not unit rows, and sign codes
    that do not match the embeddings (all rows of a small index, an even sample of :data:`CHECK_ROWS`
    of a large one). ``names``: the files by role, named in the message."""
    names = names or {}
    embeddings, codes = arrays["embeddings"], arrays["codes"]
    n, d = embeddings.shape
    rows = _sample(n, d)
    for start in range(0, len(rows), 8192):
        chunk = rows[start:start + 8192]
        emb = check_unit_rows(f"{where}: {names.get('embeddings', 'embedding')}", embeddings, chunk)
        agree = float(np.mean(np.unpackbits(np.asarray(codes[chunk]), axis=1)[:, :d] == (emb > 0)))
        if agree < 0.99:
            raise IndexFormatError(f"{where}: the sign codes disagree with the embeddings ({100 * agree:.1f}% of "
                                   f"bits agree in rows {int(chunk[0])}..{int(chunk[-1])}): the index is corrupt; "
                                   "rebuild it")
    captions = arrays["caption_embeddings"]
    rows = _sample(len(captions), d)
    for start in range(0, len(rows), 8192):
        check_unit_rows(f"{where}: {names.get('caption_embeddings', 'caption embedding')}", captions,
                        rows[start:start + 8192])


def check_unit_rows(what: str, matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``matrix[rows]`` as float32, refused (naming ``what`` and the row) unless every row is finite and
    of unit length (or all zeros)."""
    x = np.asarray(matrix[rows], dtype=np.float32)
    norms = np.linalg.norm(x, axis=1)
    bad = ~np.isfinite(norms) | ((np.abs(norms - 1) > 0.02) & (norms != 0))
    if bad.any():
        row, what_is = int(rows[np.argmax(bad)]), "holds NaN/inf" if not np.isfinite(norms[np.argmax(bad)]) else (
            f"has length {norms[np.argmax(bad)]:.3g}, not 1")
        raise IndexFormatError(f"{what} row {row} {what_is}: the index is corrupt; rebuild it")
    return x
