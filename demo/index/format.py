"""The index folder on disk: its files, its manifest, the atomic save, and the checks on load.

Folder layout (``FORMAT_VERSION`` 1), ``N`` videos, ``M`` captions, ``D``-d embeddings:

- ``manifest.json``           written LAST; its presence marks a complete index
- ``metadata.jsonl``          N rows ``{"id", "path" (file or URL), "captions": [...], ...}``
- ``embeddings.npy``          (N, D) float16, L2-normalised, memory-mapped on load
- ``codes.npy``               (N, D/8) uint8, ``np.packbits(embeddings > 0, axis=1)``
- ``caption_embeddings.npy``  (M, D) float16, L2-normalised, memory-mapped on load
- ``caption_video.npy``       (M,) int64: the metadata ROW (0..N-1) of each caption; the
                              j-th caption embedding of row r is ``metadata[r]["captions"][j]``

Folders are written atomically (sibling temp folder, manifest last, then rename), so a
reader sees either no index or a whole one. :class:`demo.index.video_index.VideoIndex`
saves and loads through :func:`write_index_folder` and :func:`read_index_folder`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import IndexFormatError
from demo.files import atomic_write
from demo.models.fingerprint import ModelFingerprint

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
METADATA = "metadata.jsonl"
ARRAY_FILES = ("embeddings.npy", "codes.npy", "caption_embeddings.npy", "caption_video.npy")
PARTIAL_SUFFIX = ".partial"
INFO_FIELDS = ("model_path", "source", "media_root")  # optional manifest fields kept through save/load


def make_manifest(
    fingerprint: ModelFingerprint, count: int, captions: int, created: str, info: dict[str, Any]
) -> dict[str, Any]:
    """The ``manifest.json`` of an index of ``count`` videos and ``captions`` caption embeddings."""
    fp = fingerprint
    return {
        "format_version": FORMAT_VERSION,
        "model": fp.model,
        "pooling": fp.pooling,
        "frames": fp.frames,
        "sample_fps": fp.sample_fps,
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


# ---------------------------------------------------------------------------- saving


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic | np.ndarray):
        return o.tolist()
    if isinstance(o, Path | tuple | set):
        return str(o) if isinstance(o, Path) else list(o)
    raise TypeError(f"metadata value {o!r} ({type(o).__name__}) is not JSON-serialisable")


def check_target(target: Path, overwrite: bool, refusal: str = "refusing to replace it") -> None:
    """Refuse to write an index over anything but an index, and over an index without ``overwrite``."""
    if not target.exists():
        return
    if not target.is_dir() or (any(target.iterdir()) and not (target / MANIFEST).exists()):
        raise IndexFormatError(f"{target} exists and is not an index folder; {refusal}")
    if (target / MANIFEST).exists() and not overwrite:
        raise IndexFormatError(f"{target} already holds an index; pass overwrite=True (--overwrite) to replace it")


def _write_files(
    folder: Path, arrays: dict[str, np.ndarray], metadata: list[dict[str, Any]], manifest: dict[str, Any]
) -> None:
    for name in ARRAY_FILES:
        # Streamed into the file (an index can be larger than memory), then fsynced; the
        # folder itself is the unit that is renamed into place.
        with open(folder / name, "wb") as f:
            np.save(f, np.ascontiguousarray(arrays[name.removesuffix(".npy")]))
            f.flush()
            os.fsync(f.fileno())
    lines = [json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in metadata]
    atomic_write(folder / METADATA, "".join(lines))
    atomic_write(folder / MANIFEST, json.dumps(manifest, indent=2))  # last: it marks the folder complete


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename the finished ``tmp`` folder to ``target``, moving an old index aside first."""
    if not target.exists():
        os.rename(tmp, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def write_index_folder(
    directory: str | Path,
    arrays: dict[str, np.ndarray],
    metadata: list[dict[str, Any]],
    manifest: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write an index folder atomically; returns its path.

    Everything goes into a hidden sibling temp folder (manifest last) that is then
    renamed into place, so ``directory`` never holds a half-written index. An existing
    index is replaced only with ``overwrite``; a non-empty folder that is not an index
    is never replaced. ``arrays`` are keyed by file name without ``.npy``.
    """
    target = Path(directory)
    check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write_files(tmp, arrays, metadata, manifest)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class IndexFiles:
    """What :func:`read_index_folder` found: the manifest, its fingerprint, arrays and rows."""

    root: Path
    manifest: dict[str, Any]
    fingerprint: ModelFingerprint
    arrays: dict[str, np.ndarray]  # keyed by file name without ``.npy``; read-only memmaps
    metadata: list[dict[str, Any]]

    @property
    def info(self) -> dict[str, Any]:
        """The optional manifest fields (:data:`INFO_FIELDS`) this index carries."""
        return {k: self.manifest[k] for k in INFO_FIELDS if k in self.manifest}


def _check_complete(root: Path) -> None:
    """Refuse a work or temp folder, a missing folder, and a folder without all its files."""
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


def _read_manifest(root: Path) -> tuple[dict[str, Any], ModelFingerprint, int, int]:
    """The manifest, the fingerprint it records, and its video and caption counts."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexFormatError(f"index {root} has format version {version!r}; this code reads {FORMAT_VERSION}")
        fp = ModelFingerprint.from_dict(manifest)
        count, captions = int(manifest["count"]), int(manifest["captions"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise IndexFormatError(f"{root / MANIFEST} is unreadable or lacks a field: {e!r}") from e
    return manifest, fp, count, captions


def _check_model(root: Path, manifest: dict[str, Any], built: ModelFingerprint, expect: ModelFingerprint) -> None:
    """Refuse an index whose embeddings the ``expect`` model cannot search; warn on lesser differences."""
    clash = built.conflicts(expect)
    where = f" ({manifest['model_path']})" if manifest.get("model_path") else ""
    if clash:
        raise IndexFormatError(
            f"index {root} was built with {built.describe()} but the loaded model is "
            f"{expect.describe()} ({', '.join(clash)} differ); rebuild the index with this "
            f"model (`python -m demo index build SOURCE --out DIR --model ...`) or load the "
            f"model it was built with{where}"
        )
    if built != expect:
        log.warning("index %s was built with %s, the loaded model uses %s", root, built, expect)


def _read_data(root: Path, count: int, captions: int) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
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
    arrays["caption_video"] = np.asarray(arrays["caption_video"])
    return arrays, rows


def read_index_folder(directory: str | Path, expect: ModelFingerprint | None = None) -> IndexFiles:
    """Open an index folder; float arrays are memory-mapped read-only.

    Refuses (IndexFormatError) a missing folder, a work or temp folder, a folder without
    its manifest or with missing files, arrays that disagree with the manifest, and, when
    ``expect`` is given, an index built with a model whose embeddings are incomparable.
    """
    root = Path(directory)
    _check_complete(root)
    manifest, fp, count, captions = _read_manifest(root)
    if expect is not None:
        _check_model(root, manifest, fp, expect)
    arrays, rows = _read_data(root, count, captions)
    return IndexFiles(root, manifest, fp, arrays, rows)
