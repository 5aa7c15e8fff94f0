"""Index folders too large to hold in memory: ``.npy`` files read and written a block of rows at a time.

:class:`NpyRows` reads rows of a (possibly multi-GB) ``.npy`` with plain file reads, so nothing
stays resident once a block is processed (a memory map would keep every page it touched counted
as resident). :class:`IndexStreamWriter` writes an index folder in the layout of
:mod:`demo.index.format` one block at a time, with the same guarantees as
:func:`demo.index.store.write_index_folder`: the folder's writer lock, a new folder written as a
hidden sibling and renamed into place, an existing index replaced by the manifest swap, the
manifest written last.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from demo.errors import IndexFormatError, InputError
from demo.files import atomic_write
from demo.index.format import FORMAT_VERSION, MANIFEST, current_names, new_write_id
from demo.index.ivf import write_ivf
from demo.index.lock import writer_lock
from demo.index.store import check_target, checksums, clear_leftovers, current_write_id, disk_error, save_npy
from demo.index.table import TableWriter, id_order, json_default


class NpyRows:
    """Row blocks of a 2-D (or 1-D) C-order ``.npy`` file, read on demand: ``rows(start, stop)``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                         else np.lib.format.read_array_header_2_0(f))
                self.offset = f.tell()
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read {self.path} as a .npy array: {err}") from err
        if fortran or dtype.hasobject:
            raise InputError(f"{self.path}: a Fortran-order or object array cannot be streamed")
        self.shape: tuple[int, ...] = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        expected = self.offset + self.shape[0] * self.row_bytes
        if self.path.stat().st_size < expected:
            raise InputError(f"{self.path} is truncated: {self.path.stat().st_size} bytes, the header promises "
                             f"{expected}")

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a fresh array (one read)."""
        start, stop = max(0, start), min(stop, self.shape[0])
        out = np.empty((max(0, stop - start), *self.shape[1:]), self.dtype)
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.row_bytes)
            if f.readinto(out.data.cast("B")) != out.nbytes:
                raise InputError(f"{self.path}: short read at row {start}")
        return out

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Rows at sorted ``indices`` (a sample), one read each."""
        return np.stack([self.rows(int(i), int(i) + 1)[0] for i in indices]) if len(indices) else \
            np.empty((0, *self.shape[1:]), self.dtype)


class NpyWriter:
    """A ``.npy`` of a known shape, filled a block of rows at a time."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: Any) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.file: IO[bytes] = open(path, "wb")  # noqa: SIM115 (closed by close())
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self.file, header)
        self.written = 0

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:] or self.written + len(block) > self.shape[0]:
            raise ValueError(f"{self.path.name}: block {block.shape} does not fit {self.shape} after "
                             f"{self.written} rows")
        self.file.write(block.tobytes())
        self.written += len(block)

    def close(self) -> None:
        if self.file.closed:
            return
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        if self.written != self.shape[0]:
            raise ValueError(f"{self.path.name}: wrote {self.written} of {self.shape[0]} rows")


class IndexStreamWriter:
    """An index folder written piece by piece; nothing is visible at ``directory`` until :meth:`commit`.

    ``open_array(role, shape, dtype)`` gives an :class:`NpyWriter` for one of the four arrays,
    ``metadata`` is the metadata table being written (``metadata.add(rows)``), and
    ``commit(manifest)`` closes everything, builds the first stage from the written embeddings
    (:func:`demo.index.tuning.build_first_stage`), writes the manifest and puts the folder in
    place. Leaving the ``with`` block without a commit removes what was written.
    """

    def __init__(self, directory: str | Path, overwrite: bool = False) -> None:
        self.target = Path(directory)
        self.overwrite = overwrite
        self.write_id = new_write_id()
        self.names = current_names(self.write_id, ivf=True)
        self.arrays: dict[str, NpyWriter] = {}
        self._lock = writer_lock(self.target)
        self.folder = self.target
        self.metadata: TableWriter

    def __enter__(self) -> IndexStreamWriter:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._lock.__enter__()
        try:
            check_target(self.target, self.overwrite)
            clear_leftovers(self.target, keep=current_write_id(self.target))
            if not self.target.exists():  # a new index is written beside it, then renamed into place
                self.folder = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=self.target.parent))
            self.metadata = TableWriter(self.folder / self.names["metadata"])
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def open_array(self, role: str, shape: tuple[int, ...], dtype: Any) -> NpyWriter:
        self.arrays[role] = NpyWriter(self.folder / self.names[role], shape, dtype)
        return self.arrays[role]

    def commit(self, manifest: dict[str, Any], progress: bool = False) -> Path:
        """Close the files, write the first stage, the manifest (with this write's id and files) and
        put the index in place."""
        from demo.index.tuning import build_first_stage

        try:
            for writer in self.arrays.values():
                writer.close()
            self.metadata.close()
            save_npy(self.folder / self.names["id_order"], id_order(self.folder / self.names["metadata"]))
            embeddings = np.load(self.folder / self.names["embeddings"], mmap_mode="r")
            stage, ivf = build_first_stage(embeddings, progress=progress)
            names = dict(self.names)
            if ivf is None:
                del names["ivf"]
            else:
                write_ivf(ivf, self.folder / names["ivf"])
            manifest = {**manifest, "format_version": FORMAT_VERSION, "first_stage": stage,
                        "write_id": self.write_id, "files": names, "checksums": checksums(self.folder, names)}
            atomic_write(self.folder / MANIFEST, json.dumps(manifest, indent=2, default=json_default))
            if self.folder != self.target:
                os.rename(self.folder, self.target)
                self.folder = self.target
            clear_leftovers(self.target, keep=self.write_id)
        except OSError as err:
            raise disk_error(err, f"the index {self.target}") from err
        self.committed = True
        return self.target

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if not getattr(self, "committed", False):
                for writer in self.arrays.values():
                    writer.file.close()
                self.metadata.discard()
                if self.folder != self.target:
                    shutil.rmtree(self.folder, ignore_errors=True)
                else:
                    for name in self.names.values():
                        (self.folder / name).unlink(missing_ok=True)
        finally:
            self._lock.__exit__(exc_type, exc, tb)


def check_rows(where: str, block: np.ndarray, start: int) -> np.ndarray:
    """``block`` (B, D) floats as float32 unit rows; refuses NaN/inf and all-zero rows, naming the row."""
    x = np.asarray(block, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
    if len(bad):
        raise IndexFormatError(f"{where}: embedding row {start + int(bad[0])} is "
                               f"{'all zeros' if norms[bad[0]] == 0 else 'NaN/inf'}; cannot index it")
    return x / norms[:, None]
