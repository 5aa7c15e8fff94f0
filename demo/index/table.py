"""The metadata table of an index: one row per video, columnar, memory-mapped, read row by row.

``metadata.<W>.arrow`` is an Arrow IPC file (the format clip-retrieval and LAION ship metadata in)
with four columns: ``id`` and ``path`` (strings), ``captions`` (a list of strings) and ``extra``
(the row's other keys as one JSON object, or null): any key a writer adds round-trips, typed as
JSON types it. Opening it maps the file and reads the batch directory only: no Python object is
made per row until a row is read (:class:`MetadataTable`), so a 10M-row index opens in
milliseconds and a hit costs one row. ``id_order.<W>.npy`` holds the rows sorted by id, so an id
is found by binary search over the mapped table (:meth:`MetadataTable.row_of`) without a
dictionary of every id.

:class:`MemoryRows` offers the same interface over rows held in memory (an index made in this
process, or an index saved before the table existed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from demo.errors import IndexFormatError

COLUMNS = ("id", "path", "captions")  # the columns every row has; the other keys live in "extra"
BATCH_ROWS = 16384  # rows per record batch


def json_default(o: Any) -> Any:
    """How metadata values that JSON lacks are stored (numpy numbers and arrays, paths, tuples, sets)."""
    if isinstance(o, np.generic | np.ndarray):
        return o.tolist()
    if isinstance(o, Path | tuple | set):
        return str(o) if isinstance(o, Path) else list(o)
    raise TypeError(f"metadata value {o!r} ({type(o).__name__}) is not JSON-serialisable")


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("path", pa.string()), ("captions", pa.list_(pa.string())),
                      ("extra", pa.string())])


def _batch(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    extra = [{k: v for k, v in r.items() if k not in COLUMNS} for r in rows]
    columns = [pa.array([str(r["id"]) for r in rows], pa.string()),
               pa.array([str(r.get("path", "")) for r in rows], pa.string()),
               pa.array([[str(c) for c in r.get("captions") or []] for r in rows], pa.list_(pa.string())),
               pa.array([json.dumps(e, ensure_ascii=False, default=json_default) if e else None for e in extra],
                        pa.string())]
    return pa.record_batch(columns, schema=_schema())


class TableWriter:
    """An Arrow IPC table file written a batch of rows at a time: ``add(rows)``, then ``close()``.
    OSError (a full disk) passes through with its errno."""

    def __init__(self, path: Path) -> None:
        import pyarrow as pa

        self.path, self.count = path, 0
        self._file = open(path, "wb")  # noqa: SIM115 (closed by close())
        self._writer = pa.ipc.new_file(self._file, _schema())
        self._block: list[dict[str, Any]] = []

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._block.append(row)
            if len(self._block) == BATCH_ROWS:
                self._flush()

    def add_batch(self, batch: Any) -> None:
        """A record batch of this schema, as it is (copying another table)."""
        self._flush()
        self._writer.write_batch(batch)
        self.count += batch.num_rows

    def _flush(self) -> None:
        if self._block:
            self._writer.write_batch(_batch(self._block))
            self.count, self._block = self.count + len(self._block), []

    def close(self) -> int:
        """Finish the file (fsynced); returns the row count."""
        if not self._file.closed:
            self._flush()
            self._writer.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        return self.count

    def discard(self) -> None:
        """Close without finishing (the caller deletes the file)."""
        self._file.close()


def write_table(path: Path, rows: Iterable[dict[str, Any]] | MetadataTable) -> int:
    """Stream ``rows`` (dicts with ``id``; or another table, copied batch by batch) into an Arrow IPC
    file at ``path``, fsynced; returns the row count. OSError (a full disk) passes through."""
    writer = TableWriter(path)
    try:
        if isinstance(rows, MetadataTable):
            for batch in rows.batches:
                writer.add_batch(batch)
        else:
            writer.add(rows)
        return writer.close()
    except BaseException:
        writer.discard()
        raise


def id_order(path: Path) -> np.ndarray:
    """(N,) int64: the rows of the table at ``path`` sorted by id (byte order). Refuses repeated ids."""
    import pyarrow.compute as pc

    table = MetadataTable(path)
    ids = table.arrow.column("id")
    order = pc.sort_indices(ids)
    ordered = pc.take(ids, order)
    if len(ordered) > 1:
        same = pc.equal(ordered.slice(1), ordered.slice(0, len(ordered) - 1))
        if pc.any(same).as_py():
            where = int(np.flatnonzero(same.to_numpy(zero_copy_only=False))[0])
            raise IndexFormatError(f"metadata ids are not unique: {ordered[where].as_py()!r} is repeated")
    return np.asarray(order.to_numpy(zero_copy_only=False), dtype=np.int64)


def row_dict(id_: Any, path: Any, captions: Any, extra: Any) -> dict[str, Any]:
    """One table row as the dict callers see (the extra keys merged in)."""
    row: dict[str, Any] = {"id": id_, "path": path, "captions": list(captions or [])}
    if extra:
        row.update(json.loads(extra))
    return row


class IdView(Sequence[str]):
    """The ids of a row collection, read on demand (``in`` uses the collection's id lookup)."""

    def __init__(self, rows: MetadataTable | MemoryRows) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self._rows.id_at(j) for j in range(*i.indices(len(self)))]
        return self._rows.id_at(i)

    def __iter__(self) -> Iterator[str]:
        return self._rows.iter_ids()

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self._rows.row_of(value) is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<ids of {len(self)} rows>"


class _RowSequence(Sequence[dict[str, Any]]):
    """Equality and repr as a list of the row dicts."""

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like a list

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {len(self)} rows>"


class MetadataTable(_RowSequence):
    """The rows of ``metadata.<W>.arrow``, memory-mapped; ``table[i]`` is row ``i`` as a fresh dict.

    ``order`` (the ``id_order`` array, or None to sort the ids on the first lookup) makes
    :meth:`row_of` a binary search.
    """

    def __init__(self, path: Path, order: np.ndarray | None = None) -> None:
        import pyarrow as pa

        self.path = Path(path)
        try:
            reader = pa.ipc.open_file(pa.memory_map(str(self.path), "r"))
            self.batches = [reader.get_batch(b) for b in range(reader.num_record_batches)]
        except FileNotFoundError:
            raise  # a writer swapped the index in between: the reader reads the manifest again
        except (OSError, pa.ArrowException) as err:
            raise IndexFormatError(f"{self.path} is not a readable metadata table ({str(err)[:100]}): the index "
                                   "is corrupt; rebuild it") from err
        if reader.schema.names[:3] != list(COLUMNS):
            raise IndexFormatError(f"{self.path} has columns {reader.schema.names}, expected {list(COLUMNS)}"
                                   " + extra: the index is corrupt; rebuild it")
        self.arrow = pa.Table.from_batches(self.batches, reader.schema)
        self._starts = np.cumsum([0, *(b.num_rows for b in self.batches)])
        self._order = order

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, i: int) -> tuple[Any, int]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} of a {n}-row table")
        i %= n
        b = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self.batches[b], i - int(self._starts[b])

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        batch, j = self._locate(int(i))
        return row_dict(*(batch.column(c)[j].as_py() for c in range(4)))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.batches:  # a batch's columns converted at once: ~1 us a row, not ~20
            yield from (row_dict(*r) for r in zip(*(batch.column(c).to_pylist() for c in range(4)), strict=True))

    def id_at(self, i: int) -> str:
        batch, j = self._locate(int(i))
        return str(batch.column(0)[j].as_py())

    def iter_ids(self) -> Iterator[str]:
        for batch in self.batches:
            yield from batch.column(0).to_pylist()

    def row_of(self, video_id: str) -> int | None:
        """The row holding ``video_id`` (None: none), by binary search over the sorted ids."""
        if self._order is None:
            self._order = id_order(self.path)
        order, lo, hi = self._order, 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.id_at(int(order[mid])).encode() < video_id.encode():
                lo = mid + 1
            else:
                hi = mid
        return int(order[lo]) if lo < len(self) and self.id_at(int(order[lo])) == video_id else None

    def caption_counts(self) -> np.ndarray:
        """(N,) int64: how many captions each row has."""
        import pyarrow.compute as pc

        lengths = pc.fill_null(pc.list_value_length(self.arrow.column("captions")), 0)
        return np.asarray(lengths.to_numpy(), dtype=np.int64)


class MemoryRows(_RowSequence):
    """Rows held in memory, with :class:`MetadataTable`'s interface (ids looked up in a dict
    made on the first lookup). Rows are the caller's dicts, as given."""

    def __init__(self, rows: Iterable[dict[str, Any]]) -> None:
        self.rows = list(rows)
        self._row_of: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self.rows[i]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def id_at(self, i: int) -> str:
        return str(self.rows[i]["id"])

    def iter_ids(self) -> Iterator[str]:
        return (str(r["id"]) for r in self.rows)

    def row_of(self, video_id: str) -> int | None:
        if self._row_of is None:
            self._row_of = {str(r["id"]): i for i, r in enumerate(self.rows)}
        return self._row_of.get(video_id)

    def caption_counts(self) -> np.ndarray:
        return np.array([len(r.get("captions") or []) for r in self.rows], np.int64)


Rows = MetadataTable | MemoryRows
