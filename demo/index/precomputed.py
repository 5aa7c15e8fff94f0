"""Indexes from precomputed embeddings: :func:`from_precomputed` (arrays in memory) and
:func:`import_precomputed` (``index import`` / ``index fetch``: files to an index folder, streamed).

Made for files such as the Searchium WebVid Space's: a float N x 512 ``.npy`` of video
embeddings (1.5M rows, 3 GB), an optional N x 64 ``.npy`` of packed sign bits, and a CSV with
a caption and a video URL per row, in the same order. The import reads and writes a block of
rows at a time, so its memory does not grow with N (BENCHMARKS.md, "Importing 1.5M rows").
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from demo.errors import IndexFormatError, InputError
from demo.index.binary import l2_normalize
from demo.index.captions import caption_embeddings
from demo.index.format import make_manifest
from demo.index.stream import IndexStreamWriter, NpyRows, check_rows
from demo.index.video_index import VideoIndex
from demo.models.fingerprint import ModelFingerprint

log = logging.getLogger(__name__)
CAPTION_COLUMNS = ("caption", "name", "text", "title", "sentence")
URL_COLUMNS = ("path", "url", "contentUrl", "content_url", "video_url", "video_path", "video")
ID_COLUMNS = ("id", "videoid", "video_id")


def from_precomputed(
    embeddings: np.ndarray,
    metadata: Sequence[dict[str, Any]],
    codes: np.ndarray | None = None,
    *,
    model: str | ModelFingerprint = "Searchium-ai/clip4clip-webvid150k",
    encode_texts: Callable[[list[str]], np.ndarray] | None = None,
    text_batch_size: int = 256,
) -> VideoIndex:
    """An index from precomputed video embeddings (e.g. Searchium's WebVid files).

    embeddings: (N, D) floats (normalised here); metadata: N rows with ``id``, ``path`` and
    ``captions``; codes: optional (N, D/8) uint8 packed sign bits (must match the width, and
    are checked against sign(embeddings) on a sample: codes that disagree are replaced, with a
    warning, because queries are binarised as ``packbits(q > 0)``); model: a fingerprint, or a
    model name taken as meanP / 224 px / 12 frames / 1 fps of width D; encode_texts: text
    encoder for the captions (None: an index without video->text).
    """
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or not np.issubdtype(emb.dtype, np.floating):
        raise IndexFormatError(f"embeddings must be a float (N, D) array, got {emb.shape} {emb.dtype}")
    n, d = emb.shape
    fp = model if isinstance(model, ModelFingerprint) else ModelFingerprint(model, "meanP", d, 224, 12, 1.0)
    if fp.dim != d:
        raise IndexFormatError(f"embeddings are {d}-d but {fp.describe()} is {fp.dim}-d")
    if len(metadata) != n:
        raise IndexFormatError(f"{n} embeddings but {len(metadata)} metadata rows")
    if not np.isfinite(emb).all():
        bad = int((~np.isfinite(emb)).any(axis=1).sum())
        raise IndexFormatError(f"{bad} embedding row(s) hold NaN/inf")
    codes = None if codes is None else _checked_codes(np.asarray(codes), emb)
    rows = [dict(r) for r in metadata]
    cap_emb = cap_rows = None
    if encode_texts is not None:
        cap_emb, cap_rows = caption_embeddings(encode_texts, rows, d, text_batch_size, progress=False)
    return VideoIndex.from_arrays(fp, emb, rows, cap_emb, cap_rows, codes)


def _checked_codes(codes: np.ndarray, emb: np.ndarray) -> np.ndarray | None:
    """``codes`` if they are the packed signs of ``emb`` (checked on a sample), None if they disagree."""
    n, d = emb.shape
    if codes.shape != (n, d // 8) or codes.dtype != np.uint8:
        raise IndexFormatError(
            f"packed codes are {codes.shape} {codes.dtype}, expected ({n}, {d // 8}) uint8 "
            f"(one bit per dimension of the {d}-d embeddings)"
        )
    sample = np.random.default_rng(0).choice(n, size=min(n, 1000), replace=False)
    agree = float(np.mean(np.unpackbits(codes[sample], axis=1) == (emb[sample] > 0))) if n else 1.0
    if agree < 0.99:
        log.warning(
            "packed codes agree with sign(embeddings) on only %.1f%% of sampled bits; "
            "using codes recomputed from the embeddings",
            100 * agree,
        )
        return None
    return codes


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str) -> str:
    if wanted:
        if wanted not in columns:
            raise InputError(f"metadata has no column {wanted!r}; columns are {columns}")
        return wanted
    lower = {c.lower(): c for c in columns}
    for name in candidates:
        if name.lower() in lower:
            return lower[name.lower()]
    raise InputError(f"cannot tell which metadata column holds the {what}; columns are {columns}; "
                     f"pass --{what}-column")


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_precomputed` wrote."""

    path: Path
    videos: int
    captions: int  # caption embeddings written (0: video -> text uses the nearest videos' captions)
    codes: str  # "given" (the file's packed codes) or "computed" (from the embeddings)
    renamed: int  # rows whose id repeated an earlier one and got a "#n" suffix
    seconds: float

    def summary(self) -> str:
        how = (f"{self.captions:,} caption embeddings" if self.captions else
               "no caption embeddings (video -> text ranks the captions of the nearest videos)")
        renamed = f"; {self.renamed} repeated ids renamed" if self.renamed else ""
        return (f"imported {self.videos:,} videos into {self.path} in {self.seconds:.0f} s: {how}; sign codes "
                f"{self.codes}{renamed}")


@dataclass
class _Columns:
    caption: str
    url: str
    id: str | None
    names: list[str]


def read_columns(metadata: str | Path, caption_column: str | None = None,
                 url_column: str | None = None) -> _Columns:
    """The CSV's header and which columns hold the caption, the URL and the id."""
    try:
        with open(metadata, newline="", encoding="utf-8") as f:
            names = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read metadata CSV {metadata}: {err}") from err
    if not names:
        raise InputError(f"metadata CSV {metadata} is empty")
    return _Columns(_pick(names, caption_column, CAPTION_COLUMNS, "caption"),
                    _pick(names, url_column, URL_COLUMNS, "url"),
                    next((c for c in names if c.lower() in ID_COLUMNS), None), names)


def _metadata_rows(metadata: str | Path, cols: _Columns) -> Iterator[dict[str, Any]]:
    """One index row per CSV line, streamed: id (else the line number), path (the URL), captions."""
    with open(metadata, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader, None)
        where = {c: i for i, c in enumerate(cols.names)}
        ci, ui, ii = where[cols.caption], where[cols.url], where.get(cols.id or "")
        extra = [(c, i) for c, i in where.items() if c not in (cols.caption, cols.url, cols.id)]
        for n, rec in enumerate(reader):
            if len(rec) < len(cols.names):
                rec += [""] * (len(cols.names) - len(rec))
            caption = rec[ci].strip()
            row = {"id": rec[ii].strip() if ii is not None and rec[ii].strip() else str(n), "path": rec[ui].strip(),
                   "captions": [caption] if caption else []}
            row.update({c: rec[i] for c, i in extra if rec[i] != ""})
            yield row


def _write_metadata(writer: IndexStreamWriter, rows: Iterator[dict[str, Any]], keep_captions: bool
                    ) -> tuple[int, int, list[tuple[int, str]]]:
    """Stream rows into the metadata table; returns (rows, renamed ids, (row, caption) pairs when kept)."""
    seen: set[str] = set()
    renamed, n, captions = 0, 0, []
    for n, row in enumerate(rows, 1):  # noqa: B007 (n is the count after the loop)
        if row["id"] in seen:  # the loader refuses repeated ids: keep the row under a unique one
            k = 2
            while f"{row['id']}#{k}" in seen:
                k += 1
            row["id"], renamed = f"{row['id']}#{k}", renamed + 1
        seen.add(row["id"])
        if keep_captions and row["captions"]:
            captions.append((n - 1, row["captions"][0]))
        writer.metadata.add((row,))
    return n, renamed, captions


def _codes_agree(emb: NpyRows, codes: NpyRows) -> bool:
    """Whether the packed codes are ``packbits(embeddings > 0)`` on an even sample of rows."""
    n, d = emb.shape
    if codes.shape != (n, d // 8) or codes.dtype != np.uint8:
        raise IndexFormatError(f"packed codes are {codes.shape} {codes.dtype}, expected ({n}, {d // 8}) uint8 "
                               f"(one bit per dimension of the {d}-d embeddings)")
    sample = np.unique(np.linspace(0, n - 1, min(n, 1000)).astype(np.int64))
    signs = emb.take(sample).astype(np.float32).astype(np.float16) > 0
    agree = float(np.mean(np.unpackbits(codes.take(sample), axis=1)[:, :d] == signs)) if n else 1.0
    if agree < 0.99:
        log.warning("packed codes agree with sign(embeddings) on only %.1f%% of sampled bits; "
                    "computing them from the embeddings", 100 * agree)
    return agree >= 0.99


def _write_vectors(writer: IndexStreamWriter, emb: NpyRows, codes: NpyRows | None, block: int,
                   progress: bool) -> None:
    """Embeddings normalised to float16 and their sign codes (the given ones when they agree)."""
    n, d = emb.shape
    out_emb = writer.open_array("embeddings", (n, d), np.float16)
    out_codes = writer.open_array("codes", (n, d // 8), np.uint8)
    for s in tqdm(range(0, n, block), desc="embeddings", unit="block", disable=not progress):
        x = check_rows(str(emb.path), emb.rows(s, s + block), s).astype(np.float16)
        out_emb.write(x)
        out_codes.write(codes.rows(s, s + block) if codes is not None else np.packbits(x > 0, axis=1))


def _write_captions(writer: IndexStreamWriter, pairs: list[tuple[int, str]], d: int,
                    encode_texts: Callable[[list[str]], np.ndarray] | None, batch: int, progress: bool) -> int:
    m = len(pairs) if encode_texts is not None else 0
    out_emb = writer.open_array("caption_embeddings", (m, d), np.float16)
    out_rows = writer.open_array("caption_video", (m,), np.int64)
    if encode_texts is None:
        return 0
    for s in tqdm(range(0, m, batch), desc="captions", unit="batch", disable=not progress):
        texts = [t for _, t in pairs[s:s + batch]]
        vectors = np.asarray(encode_texts(texts), dtype=np.float32)
        if vectors.shape != (len(texts), d):
            raise ValueError(f"encode_texts returned {vectors.shape} for {len(texts)} captions, expected (B, {d})")
        out_emb.write(l2_normalize(vectors).astype(np.float16))
        out_rows.write(np.array([r for r, _ in pairs[s:s + batch]], np.int64))
    return m


def import_precomputed(embeddings: str | Path, metadata: str | Path, out: str | Path,
                       fingerprint: ModelFingerprint, binary: str | Path | None = None, *,
                       caption_column: str | None = None, url_column: str | None = None,
                       encode_texts: Callable[[list[str]], np.ndarray] | None = None, overwrite: bool = False,
                       info: dict[str, Any] | None = None, block_rows: int = 65536, text_batch: int = 256,
                       progress: bool = True) -> ImportReport:
    """Stream precomputed embeddings (N, D) + optional packed codes (N, D/8) + a CSV of N rows into
    an index folder at ``out``, a block of rows at a time (memory stays at a few blocks whatever N is).

    ``fingerprint`` names the model that made the embeddings. With ``encode_texts`` every caption is
    embedded (video -> text over all captions); without, none are, and video -> text ranks the
    captions of the videos nearest a clip (``video_to_text: nearest-videos`` in the manifest).
    """
    started = time.perf_counter()
    emb = NpyRows(embeddings)
    if len(emb.shape) != 2 or emb.dtype.kind != "f":
        raise IndexFormatError(f"embeddings must be a float (N, D) array, got {emb.shape} {emb.dtype}")
    n, d = emb.shape
    if d != fingerprint.dim or d % 8:
        raise IndexFormatError(f"embeddings are {d}-d but {fingerprint.describe()} is {fingerprint.dim}-d")
    codes = NpyRows(binary) if binary is not None else None
    if codes is not None and not _codes_agree(emb, codes):
        codes = None
    cols = read_columns(metadata, caption_column, url_column)
    with IndexStreamWriter(out, overwrite=overwrite) as writer:
        rows, renamed, pairs = _write_metadata(writer, _metadata_rows(metadata, cols), encode_texts is not None)
        if rows != n:
            raise IndexFormatError(f"{n} embeddings but {rows} metadata rows in {metadata}")
        _write_vectors(writer, emb, codes, block_rows, progress)
        m = _write_captions(writer, pairs, d, encode_texts, text_batch, progress)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        extra = {"source": Path(embeddings).name, "video_to_text": "captions" if m else "nearest-videos",
                 **(info or {})}
        path = writer.commit(make_manifest(fingerprint, n, m, created, extra), progress=progress)
    report = ImportReport(path, n, m, "given" if codes is not None else "computed", renamed,
                          time.perf_counter() - started)
    log.info("imported %d videos (%d caption embeddings, %s codes) into %s in %.0f s", n, m, report.codes, path,
             report.seconds)
    return report
