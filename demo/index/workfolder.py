"""A build's work folder, ``<out_dir>.partial/``: what is embedded and what failed, kept on disk so an
interrupted build (Ctrl-C, a crash, a killed Ray driver) continues where it stopped.

- ``fingerprint.json``   the encoder's :class:`~demo.models.fingerprint.ModelFingerprint` (and a long-video
                         build's segmenting): a restart with another model is refused, its embeddings would not mix
- ``shard-NNNNN.npy``    (B, D) float32 embeddings of one finished batch, and
  ``shard-NNNNN.json``   their ids, written after the array; both atomically (demo.files.atomic_write)
- ``failed.jsonl``       ``{"id", "path", "reason", "stamp"}`` per file that could not be decoded

The local builder (:mod:`demo.index.build`), the segment builder and the Ray engine share it.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demo.errors import IndexFormatError
from demo.files import atomic_write
from demo.index.items import VideoItem
from demo.models.fingerprint import ModelFingerprint

log = logging.getLogger(__name__)

FAILED = "failed.jsonl"


def open_work_folder(work: Path, fp: ModelFingerprint, segments: dict[str, float] | None = None) -> None:
    """Create ``work`` for encoder ``fp``, or check that the build it holds used ``fp`` and the same
    segmenting (``segments``: the windows of a long-video build, None for whole clips)."""
    fp_file = work / "fingerprint.json"
    if work.exists() and not work.is_dir():
        raise IndexFormatError(f"{work} is a file, not a build's work folder; move it away and run this again")
    if fp_file.exists():
        try:
            saved = json.loads(fp_file.read_text())
            old = ModelFingerprint.from_dict(saved)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise IndexFormatError(f"the work folder {work} of an earlier build is damaged ({fp_file.name} is "
                                   f"unreadable: {type(err).__name__}); delete {work} to start over") from err
        if old != fp:
            raise IndexFormatError(
                f"work folder {work} was started with {old} but the encoder is {fp}; "
                f"finish it with the original model or delete {work} to start over"
            )
        if saved.get("segments") != segments:
            raise IndexFormatError(
                f"work folder {work} was started {_segmenting(saved.get('segments'))}, this build runs "
                f"{_segmenting(segments)}; finish it as it was started or delete {work} to start over"
            )
        return
    work.mkdir(parents=True, exist_ok=True)
    atomic_write(fp_file, json.dumps({**fp.to_dict(), **({"segments": segments} if segments else {})}, indent=2))


def _read_shards(work: Path) -> tuple[dict[str, np.ndarray], int]:
    """Embeddings by id from finished shards, and the next free shard number."""
    done: dict[str, np.ndarray] = {}
    last = -1
    for ids_file in sorted(work.glob("shard-*.json")):
        number = ids_file.stem.split("-")[1]
        if not number.isdigit():
            continue  # not one of ours
        last = max(last, int(number))
        try:
            ids = json.loads(ids_file.read_text())
            emb = np.load(ids_file.with_suffix(".npy"))
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable shard %s: %s", ids_file, e)
            continue
        if not isinstance(ids, list) or emb.ndim != 2 or len(ids) != len(emb):
            log.warning("ignoring shard %s: its ids and embeddings do not match", ids_file)
            continue
        done.update(zip(ids, emb, strict=True))
    return done, last + 1


def file_stamp(path: str) -> list[int] | None:
    """(mtime in ns, size) of a local file, None for a URL or a missing file: a failure is tried
    again when its file's stamp has changed since (it was replaced or fixed)."""
    if "://" in path:
        return None
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str
    stamp: list[int] | None  # the file's stamp when it failed (see file_stamp)


def read_failed(work: Path) -> dict[str, Failure]:
    """The failures recorded in ``work``'s failed.jsonl, by id (lines cut short are skipped)."""
    failed: dict[str, Failure] = {}
    path = work / FAILED
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
                failed[str(rec["id"])] = Failure(str(rec["path"]), str(rec["reason"]), rec.get("stamp"))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a line cut short by an interrupt
    return failed


def _segmenting(segments: dict[str, float] | None) -> str:
    """How a build's segmenting reads in a message.

    >>> _segmenting(None), _segmenting({"segment": 8.0, "stride": 4.0})
    ('without --segment', 'with --segment 8 --stride 4')
    """
    if not segments:
        return "without --segment"
    return f"with --segment {segments.get('segment', 0):g} --stride {segments.get('stride', 0):g}"


def append_failure(work: Path, item: VideoItem, reason: str) -> Failure:
    """Record in ``work``'s failed.jsonl that ``item`` could not be decoded, and why."""
    log.warning("skipping %s: %s", item.path, reason)
    failure = Failure(item.path, reason, file_stamp(item.path))
    # Appended, not rewritten through atomic_write: the list grows with each failure (with
    # every item when a CSV lists URLs), and rewriting it per failure would be quadratic. A
    # line cut short by an interrupt is skipped on resume.
    with open(work / FAILED, "a", encoding="utf-8") as f:
        f.write(json.dumps({"id": item.id, "path": item.path, "reason": reason, "stamp": failure.stamp}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return failure


def write_shard(work: Path, number: int, ids: list[str], embeddings: np.ndarray) -> None:
    """``shard-NNNNN.npy`` (the (B, D) float32 embeddings), then ``shard-NNNNN.json`` (their ids):
    a shard whose .json exists is finished."""
    name = f"shard-{number:05d}"
    buf = io.BytesIO()
    np.save(buf, embeddings)
    atomic_write(work / f"{name}.npy", buf.getvalue())
    atomic_write(work / f"{name}.json", json.dumps(ids))  # written last: shard done


class WorkFolder:
    """``<out_dir>.partial/`` of one build: what is embedded (``done``) and what failed so far."""

    def __init__(self, path: Path, fingerprint: ModelFingerprint, segments: dict[str, float] | None = None) -> None:
        open_work_folder(path, fingerprint, segments)
        self.path = path
        self.done, self._next_shard = _read_shards(path)  # embeddings by id
        self.failed = read_failed(path)  # by id

    def add_failure(self, item: VideoItem, reason: str) -> None:
        self.failed[item.id] = append_failure(self.path, item, reason)

    def add_shard(self, ids: list[str], embeddings: np.ndarray) -> None:
        write_shard(self.path, self._next_shard, ids, embeddings)
        self.done.update(zip(ids, embeddings, strict=True))
        for i in ids:  # a file that failed before and decodes now (fixed since, or retried)
            self.failed.pop(i, None)
        self._next_shard += 1
