"""Writing and reading index folders (the layout is in :mod:`demo.index.format`).

Writes: a new folder is written as a hidden sibling and renamed into place; an existing index
gets the new write's files beside its own, then the manifest swap, then the old files go (see
the layout's docstring). Every write holds the folder's lock and first clears what killed
writes left behind. A full disk, or any other failed write, leaves the old index as it was.

Reads: the manifest first, then exactly the files it names, checked against it and against
each other (shapes, ids, finite embeddings, sign codes that match them).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import IndexFormatError
from demo.files import atomic_write
from demo.index.format import (
    CHECKSUM_MAX_BYTES,
    FORMAT_VERSION,
    INFO_FIELDS,
    MANIFEST,
    OPTIONAL_ARRAYS,
    PARTIAL_SUFFIX,
    READABLE_VERSIONS,
    ROLES,
    current_names,
    file_names,
    new_write_id,
    optional_arrays,
    write_id_of,
)
from demo.index.lock import writer_lock
from demo.index.table import MemoryRows, MetadataTable, Rows, id_order, json_default, write_table
from demo.models.fingerprint import ModelFingerprint

log = logging.getLogger(__name__)
_READ_PATIENCE_S = 5.0  # how long a reader keeps re-reading the manifest while writers swap the index
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def check_target(target: Path, overwrite: bool, refusal: str = "refusing to replace it") -> None:
    """Refuse to write an index over anything but an index, and over an index without ``overwrite``."""
    if not target.exists():
        return
    if not target.is_dir() or (any(target.iterdir()) and not (target / MANIFEST).exists()):
        raise IndexFormatError(f"{target} exists and is not an index folder; {refusal}")
    if (target / MANIFEST).exists() and not overwrite:
        raise IndexFormatError(f"{target} already holds an index; pass overwrite=True (--overwrite) to replace it")


def disk_error(err: OSError, what: str) -> IndexFormatError:
    """One clear line for a failed write (a full disk says so)."""
    if err.errno in DISK_FULL:
        return IndexFormatError(f"the disk is full while writing {what}: free some space and run the same "
                                "command again (nothing finished so far is lost)")
    return IndexFormatError(f"cannot write {what}: {err.strerror or err}")


_WRITE_BYTES = 8 << 20  # an array is written in pieces of this size


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` written piece by piece through Python's file writes (numpy's own writer reports a
    short write on a full disk without its errno), then fsynced."""
    array = np.asarray(array)
    with open(path, "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
                  "shape": array.shape}
        np.lib.format.write_array_header_1_0(f, header)
        flat = array.reshape(array.shape[0] if array.ndim else 1, -1) if array.size else array[:0].reshape(0, 1)
        step = max(1, _WRITE_BYTES // max(1, flat[:1].nbytes))
        for s in range(0, len(flat), step):  # a memmap is read a piece at a time, never copied whole
            f.write(np.ascontiguousarray(flat[s:s + step]).tobytes())
        f.flush()
        os.fsync(f.fileno())


def write_metadata(folder: Path, names: dict[str, str], metadata: Iterable[dict[str, Any]] | Rows) -> None:
    """The metadata table and its id order (refuses repeated ids)."""
    source = metadata if isinstance(metadata, MetadataTable) else (
        metadata.rows if isinstance(metadata, MemoryRows) else metadata)
    write_table(folder / names["metadata"], source)
    save_npy(folder / names["id_order"], id_order(folder / names["metadata"]))


def checksums(folder: Path, names: dict[str, str]) -> dict[str, str]:
    """CRC-32 (hex) of each data file of at most :data:`CHECKSUM_MAX_BYTES`, by file name."""
    out = {}
    for name in names.values():
        if (folder / name).stat().st_size <= CHECKSUM_MAX_BYTES:
            out[name] = f"{zlib.crc32((folder / name).read_bytes()):08x}"
    return out


def _write_data(folder: Path, write_id: str, arrays: dict[str, np.ndarray],
                metadata: Iterable[dict[str, Any]] | Rows, first_stage: Any) -> dict[str, Any]:
    """Every data file of one write; returns the manifest fields that name them."""
    from demo.index.ivf import write_ivf

    names = current_names(write_id, ivf=first_stage is not None)
    for role in ("embeddings", "codes", "caption_embeddings", "caption_video"):
        # Streamed into the file (an index can be larger than memory), then fsynced; nothing
        # reads it before the manifest that names it is in place.
        save_npy(folder / names[role], arrays[role])
    write_metadata(folder, names, metadata)
    if isinstance(first_stage, Path):  # the IVF file of the index this one was loaded from: as it is
        shutil.copyfile(first_stage, folder / names["ivf"])
    elif first_stage is not None:
        write_ivf(first_stage, folder / names["ivf"])
    return {"files": names, "checksums": checksums(folder, names)}


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clear_leftovers(target: Path, keep: str | None) -> None:
    """Delete what killed writes left: data files of other writes than ``keep`` (and version-1
    files once the folder is version 2), and the hidden temp/old siblings of earlier saves."""
    if target.is_dir():
        for path in target.iterdir():
            wid = write_id_of(path.name)
            old_style = keep and path.name in file_names(None).values()
            if (wid is not None and wid != keep) or old_style or path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
    for sibling in target.parent.glob(f".{target.name}.*"):
        if sibling.is_dir() and (".tmp-" in sibling.name or ".old-" in sibling.name):
            shutil.rmtree(sibling, ignore_errors=True)


def write_index_folder(directory: str | Path, arrays: dict[str, np.ndarray], metadata: Iterable[dict[str, Any]] | Rows,
                       manifest: dict[str, Any], overwrite: bool = False, first_stage: Any = None) -> Path:
    """Write an index folder; returns its path. ``arrays`` are keyed by role (``embeddings``, ...);
    ``first_stage`` is the faiss IVF-PQ of an "ivf-pq" first stage (or the path of its file), None
    for the flat one.

    A reader sees no index, the old one or the new one, never a mix (module docstring). An
    existing index is replaced only with ``overwrite``; a folder that is not an index never is.
    """
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(target):
        check_target(target, overwrite)
        clear_leftovers(target, keep=current_write_id(target))
        write_id = new_write_id()
        manifest = {**manifest, "format_version": FORMAT_VERSION, "write_id": write_id}
        try:
            if target.exists():
                _replace(target, write_id, arrays, metadata, manifest, first_stage)
            else:
                _create(target, write_id, arrays, metadata, manifest, first_stage)
        except OSError as err:
            raise disk_error(err, f"the index {target}") from err
    return target


def _create(target: Path, write_id: str, arrays: dict[str, np.ndarray], metadata: Iterable[dict[str, Any]] | Rows,
            manifest: dict[str, Any], first_stage: Any) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        manifest.update(_write_data(tmp, write_id, arrays, metadata, first_stage))
        atomic_write(tmp / MANIFEST, json.dumps(manifest, indent=2, default=json_default))
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace(target: Path, write_id: str, arrays: dict[str, np.ndarray], metadata: Iterable[dict[str, Any]] | Rows,
             manifest: dict[str, Any], first_stage: Any) -> None:
    try:
        manifest.update(_write_data(target, write_id, arrays, metadata, first_stage))
        _fsync_dir(target)
        atomic_write(target / MANIFEST, json.dumps(manifest, indent=2, default=json_default))  # the swap
    except BaseException:
        for path in current_names(write_id, ivf=True).values():
            (target / path).unlink(missing_ok=True)
        raise
    clear_leftovers(target, keep=write_id)


def current_write_id(target: Path) -> str | None:
    """The write id the index at ``target`` names in its manifest (None: no readable manifest)."""
    try:
        value = json.loads((target / MANIFEST).read_text()).get("write_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class IndexFiles:
    """What :func:`read_index_folder` found: the manifest, its fingerprint, arrays, rows, files."""

    root: Path
    manifest: dict[str, Any]
    fingerprint: ModelFingerprint
    arrays: dict[str, np.ndarray]  # keyed by role; read-only memmaps
    metadata: Rows
    files: dict[str, str]  # the data files by role
    first_stage: Any = None  # the IVF-PQ, its lists memory-mapped (version 3); None: flat or older

    @property
    def info(self) -> dict[str, Any]:
        """The optional manifest fields (:data:`INFO_FIELDS`) this index carries."""
        return {k: self.manifest[k] for k in INFO_FIELDS if k in self.manifest}


def check_folder(root: Path) -> None:
    """Refuse a work or temp folder, a missing folder, and a folder without a manifest."""
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


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest as a dict, or one line saying why it cannot be read."""
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise IndexFormatError(f"{path} is unreadable ({type(err).__name__}: {str(err)[:80]}); the index is "
                               "corrupt: rebuild it") from err
    if not isinstance(manifest, dict):
        raise IndexFormatError(f"{path} holds a JSON {type(manifest).__name__}, not an object: the index is "
                               "corrupt; rebuild it")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise IndexFormatError(f"index {root} has format version {version!r}; this code reads {READABLE_VERSIONS}")
    return manifest


def _fingerprint(root: Path, manifest: dict[str, Any]) -> tuple[ModelFingerprint, int, int]:
    try:
        return ModelFingerprint.from_dict(manifest), int(manifest["count"]), int(manifest["captions"])
    except (ValueError, KeyError, TypeError) as err:
        raise IndexFormatError(f"{root / MANIFEST} lacks a field or holds a bad value: {err!r}") from err


def _names(manifest: dict[str, Any]) -> dict[str, str]:
    """The data file names a manifest's write uses (version 3: as it names them; 2: by the write id;
    1: the unnamed ones)."""
    version = manifest.get("format_version")
    write_id = manifest.get("write_id") if version != 1 else None
    if version != 1 and not isinstance(write_id, str):
        raise IndexFormatError(f"the manifest names no write_id ({write_id!r}): the index is corrupt; rebuild it")
    if version == 3:
        files = manifest.get("files")
        if (not isinstance(files, dict) or any(r not in files for r in ROLES if r != "ivf")
                or any(not isinstance(v, str) or write_id_of(v) != write_id for v in files.values())):
            raise IndexFormatError(f"the manifest's files ({files!r}) are not this write's: the index is corrupt; "
                                   "rebuild it")
        return {r: str(files[r]) for r in ROLES if r in files}
    wanted = optional_arrays(manifest)
    return {role: name for role, name in file_names(write_id).items() if role not in OPTIONAL_ARRAYS or role in wanted}


def data_files(directory: str | Path) -> dict[str, Path]:
    """The data files of the index at ``directory`` by role, as its manifest names them."""
    root = Path(directory)
    return {role: root / name for role, name in _names(read_manifest(root)).items()}


def _verify(root: Path, manifest: dict[str, Any]) -> None:
    """The files whose CRC-32 the manifest records must still have it."""
    for name, crc in (manifest.get("checksums") or {}).items():
        try:
            found = f"{zlib.crc32((root / name).read_bytes()):08x}"
        except FileNotFoundError:
            raise
        except OSError as err:
            raise IndexFormatError(f"{root / name} is unreadable ({err}): the index is corrupt; rebuild it") from err
        if found != crc:
            raise IndexFormatError(f"{root / name} does not match the checksum written with it ({found} != {crc}): "
                                   "the file is corrupt; rebuild the index")


def _read_rows(root: Path, names: dict[str, str]) -> Rows:
    if names["metadata"].endswith(".arrow"):
        return MetadataTable(root / names["metadata"], np.load(root / names["id_order"], mmap_mode="r"))
    with open(root / names["metadata"], encoding="utf-8") as f:  # line by line: 1.5M rows are 400 MB of text
        return MemoryRows(json.loads(line) for line in f if line.strip())


def _read_data(root: Path, manifest: dict[str, Any]) -> tuple[dict[str, np.ndarray], Rows, Any]:
    """The arrays, rows and IVF the manifest names (FileNotFoundError passes through: see the caller)."""
    from demo.index.ivf import read_ivf

    names = _names(manifest)
    missing = [n for n in names.values() if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"index {root} is incomplete: missing {', '.join(missing)}")
    _verify(root, manifest)
    try:
        arrays = {role: np.load(root / names[role], mmap_mode="r") for role in names
                  if names[role].endswith(".npy") and role not in ("metadata", "id_order")}
        rows = _read_rows(root, names)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise IndexFormatError(f"index {root} has an unreadable file ({str(err)[:120]}): the index is corrupt; "
                               "rebuild it") from err
    arrays["caption_video"] = np.asarray(arrays["caption_video"])
    ivf = read_ivf(root / names["ivf"]) if names.get("ivf", "").endswith(".faiss") else None
    return arrays, rows, ivf


def check_model(root: Path, manifest: dict[str, Any], built: ModelFingerprint, expect: ModelFingerprint) -> None:
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


def _read_consistent(root: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], Rows, Any]:
    """The manifest and the files it names, read again when a writer swapped them in between."""
    deadline = time.monotonic() + _READ_PATIENCE_S
    while True:
        manifest = read_manifest(root)
        try:
            return (manifest, *_read_data(root, manifest))
        except FileNotFoundError as err:
            swapped = read_manifest(root).get("write_id") != manifest.get("write_id")
            if not swapped or time.monotonic() > deadline:  # no swap: the files are really missing
                raise IndexFormatError(str(err)) from err


def read_index_folder(directory: str | Path, expect: ModelFingerprint | None = None) -> IndexFiles:
    """Open an index folder; arrays and the metadata table are memory-mapped read-only. Refuses
    (IndexFormatError) a missing, unfinished or corrupt folder, and with ``expect`` an index built
    with an incomparable model. The caller checks the arrays against the layout
    (:func:`demo.index.format.check_arrays`), then their contents (``check_contents``)."""
    root = Path(directory)
    check_folder(root)
    manifest = read_manifest(root)
    fingerprint, _, _ = _fingerprint(root, manifest)
    if expect is not None:
        check_model(root, manifest, fingerprint, expect)
    manifest, arrays, rows, ivf = _read_consistent(root)
    fingerprint, count, captions = _fingerprint(root, manifest)
    if len(rows) != count or len(arrays["caption_video"]) != captions:
        raise IndexFormatError(f"index {root}: manifest says {count} videos / {captions} captions, files hold "
                               f"{len(rows)} metadata rows / {len(arrays['caption_video'])} caption ids")
    return IndexFiles(root, manifest, fingerprint, arrays, rows, _names(manifest), ivf)
