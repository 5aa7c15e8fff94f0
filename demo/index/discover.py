"""Finding precomputed files in a hub repo by what they hold, not by their names.

A repo is listed (:func:`demo.index.hub.list_files`), each ``.npy`` is told apart by its header
and each ``.csv`` by its header row, both read with one small ranged request (nothing is
downloaded): float (N, D) arrays are video vectors, uint8 (N, D/8) arrays are packed sign codes,
CSVs with a URL and a caption column are metadata. :func:`choose_index_files` then groups them
into one index (vectors + codes of the same N + the metadata table that belongs with them) and
:func:`choose_feature_pairs` pairs text and video vectors of the same N for the retrieval table.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from demo.index.hub import HubError, HubRepo, RemoteFile, list_files, read_head
from demo.index.precomputed import CAPTION_COLUMNS, URL_COLUMNS

log = logging.getLogger(__name__)
NPY_HEAD = 4096  # bytes read to parse a .npy header (headers are 128 bytes, rarely more)
CSV_HEAD = 65536  # bytes read to find a CSV's header row


@dataclass(frozen=True)
class Candidate:
    """One file of the repo and what its first bytes say it holds."""

    path: str
    size: int
    kind: str  # "vectors" (float N x D), "codes" (uint8 N x B), "table" (CSV with URLs + captions), "other"
    rows: int = 0
    width: int = 0  # D for vectors, B bytes per row for codes
    columns: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        if self.kind in ("vectors", "codes"):
            return f"{self.path} ({self.kind}, {self.rows} x {self.width})"
        return f"{self.path} ({self.kind}{', columns ' + ', '.join(self.columns) if self.columns else ''})"


def parse_npy_header(head: bytes) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) from the first bytes of a ``.npy`` file; None when it is not one."""
    f = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(f)
    except (ValueError, EOFError, SyntaxError):
        return None
    return (None if fortran else (tuple(int(s) for s in shape), np.dtype(dtype)))


def csv_columns(head: bytes) -> tuple[str, ...]:
    """The header row of a CSV from its first bytes."""
    text = head.decode("utf-8", errors="replace").splitlines()
    return tuple(next(csv.reader(io.StringIO(text[0])), [])) if text else ()


def is_metadata_table(columns: Sequence[str]) -> bool:
    """A CSV with a URL/path column and a caption column (an id column is optional)."""
    lower = {c.lower() for c in columns}
    return any(c.lower() in lower for c in URL_COLUMNS) and any(c.lower() in lower for c in CAPTION_COLUMNS)


def inspect(repo: HubRepo, file: RemoteFile, revision: str | None = None) -> Candidate:
    """What ``file`` holds, from its first bytes (``.npy`` and ``.csv`` only; others are "other")."""
    suffix = PurePosixPath(file.path).suffix.lower()
    if suffix == ".npy":
        parsed = parse_npy_header(read_head(repo, file.path, NPY_HEAD, revision))
        if parsed is not None and len(parsed[0]) == 2:
            (rows, width), dtype = parsed
            if dtype.kind == "f":
                return Candidate(file.path, file.size, "vectors", rows, width)
            if dtype == np.uint8:
                return Candidate(file.path, file.size, "codes", rows, width)
    elif suffix == ".csv":
        columns = csv_columns(read_head(repo, file.path, CSV_HEAD, revision))
        return Candidate(file.path, file.size, "table" if is_metadata_table(columns) else "other", columns=columns)
    return Candidate(file.path, file.size, "other")


def inspect_repo(repo: HubRepo, revision: str | None = None, only: Sequence[str] | None = None,
                 prefix: str | None = None) -> list[Candidate]:
    """Every ``.npy`` and ``.csv`` of the repo at ``revision`` (or just the paths in ``only``, or
    those starting with ``prefix``), inspected."""
    files = list_files(repo, revision)
    at = f"{repo}" + (f" at {revision}" if revision else "")
    if only:
        by_path = {f.path: f for f in files}
        missing = [p for p in only if p not in by_path]
        if missing:
            raise HubError(f"{at} has no {', '.join(missing)}; it holds e.g. {[f.path for f in files][:8]}")
        files = [by_path[p] for p in only]
    if prefix:
        files = [f for f in files if f.path.startswith(prefix)]
    found = [inspect(repo, f, revision) for f in files if PurePosixPath(f.path).suffix.lower() in (".npy", ".csv")]
    log.info("%s: %s", at, "; ".join(c.describe() for c in found) or
             f"no .npy or .csv files{' under ' + prefix if prefix else ''}")
    return found


def _tokens(path: str) -> set[str]:
    return {t for t in re.split(r"[^a-z0-9]+", PurePosixPath(path).stem.lower()) if t}


def _affinity(table: str, vectors: str) -> tuple[int, int, int]:
    """How much a table looks like it belongs with a vectors file: same folder, shared name tokens,
    common name prefix (bigger is closer)."""
    a, b = PurePosixPath(table), PurePosixPath(vectors)
    prefix = len(next((a.stem[:i] for i in range(min(len(a.stem), len(b.stem)), 0, -1)
                       if a.stem[:i] == b.stem[:i]), ""))
    return int(a.parent == b.parent), len(_tokens(table) & _tokens(vectors)), prefix


@dataclass(frozen=True)
class IndexFiles:
    """The repo files that make one index: vectors, packed codes (optional), metadata table."""

    embeddings: Candidate
    codes: Candidate | None
    metadata: Candidate

    def paths(self) -> list[str]:
        return [c.path for c in (self.embeddings, self.codes, self.metadata) if c is not None]


def choose_index_files(candidates: Sequence[Candidate], dim: int | None = None) -> IndexFiles:
    """The index among ``candidates``: each float (N, D) file (D = ``dim`` when given) with the uint8
    (N, D/8) file of the same N (if any) and the metadata table closest to it by folder and name.
    Several complete sets: the smallest N (the least to download; pass the files to pick another).
    """
    vectors = [c for c in candidates if c.kind == "vectors" and (dim is None or c.width == dim) and c.width % 8 == 0]
    tables = [c for c in candidates if c.kind == "table"]
    if not vectors or not tables:
        seen = "; ".join(c.describe() for c in candidates) or "nothing"
        raise HubError(f"no float (N, {dim or 'D'}) vectors with a CSV of URLs and captions among: {seen}")
    sets = []
    for v in sorted(vectors, key=lambda c: (c.rows, c.path)):
        codes = [c for c in candidates if c.kind == "codes" and (c.rows, c.width) == (v.rows, v.width // 8)]
        codes.sort(key=lambda c: tuple(-x for x in _affinity(c.path, v.path)))
        table = max(tables, key=lambda t: (_affinity(t.path, v.path), t.path))
        sets.append(IndexFiles(v, codes[0] if codes else None, table))
    if len(sets) > 1:
        log.info("several indexes in the repo; taking the smallest (%s); the others: %s", sets[0].paths(),
                 [s.paths() for s in sets[1:]])
    return sets[0]


TEXT_WORDS = ("textual", "text", "sentence", "caption", "query")
VIDEO_WORDS = ("visual", "video", "vision")


def _side(path: str) -> tuple[str, str] | None:
    """("text" or "video", the name with that word taken out) for a features file name."""
    stem = PurePosixPath(path).stem.lower()
    for side, words in (("text", TEXT_WORDS), ("video", VIDEO_WORDS)):
        for word in words:
            key, n = re.subn(rf"(^|_){word}(_|$)", r"\1#\2", stem, count=1)
            if n:
                return side, key
    return None


@dataclass(frozen=True)
class FeaturePair:
    """Text and video vectors of the same N whose names differ only in the text/video word."""

    name: str  # the shared part of the two names
    text: Candidate
    video: Candidate


def choose_feature_pairs(candidates: Sequence[Candidate], prefer: str = "webvid") -> list[FeaturePair]:
    """Every (text, video) pair of float vectors of the same shape; when some pairs' names contain
    ``prefer`` (the test set the table is about), only those."""
    sides: dict[str, dict[str, Candidate]] = {}
    for c in candidates:
        side = _side(c.path) if c.kind == "vectors" else None
        if side is not None:
            sides.setdefault(side[1], {})[side[0]] = c
    pairs = [FeaturePair(key.replace("#", "").replace("__", "_").strip("_"), s["text"], s["video"])
             for key, s in sorted(sides.items()) if len(s) == 2 and
             (s["text"].rows, s["text"].width) == (s["video"].rows, s["video"].width)]
    chosen = [p for p in pairs if prefer.lower() in p.name] or pairs
    if not chosen:
        raise HubError("no pair of text and video feature files of the same shape among: "
                       + ("; ".join(c.describe() for c in candidates) or "nothing"))
    return chosen
