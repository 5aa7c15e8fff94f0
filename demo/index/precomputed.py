"""Indexes from precomputed embeddings: :func:`from_precomputed` (arrays) and
:func:`import_precomputed` (``index import``: files to an index folder).

Made for files such as the ones published with the WebVid CLIP4Clip model: a float
N x 512 ``.npy`` of video embeddings, an optional N x 64 ``.npy`` of packed sign
bits, and a CSV with a caption and a video URL per row, in the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import DemoError, IndexFormatError, InputError
from demo.index.captions import caption_embeddings
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


def _load_npy(path: str | Path, what: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {what} file {path}: {err}") from err


def import_precomputed(embeddings: str | Path, metadata: str | Path, out: str | Path, model: str,
                       binary: str | Path | None = None, pooling: str = "meanP", frames: int = 12,
                       image_size: int = 224, sample_fps: float = 1.0, caption_column: str | None = None,
                       url_column: str | None = None, encode_captions: bool = True,
                       overwrite: bool = False) -> VideoIndex:
    """Check shapes, build the index (caption embeddings too when ``model`` loads), save it."""
    import pandas as pd  # here: a quarter second to import, and only this command needs it

    emb = _load_npy(embeddings, "embeddings")
    codes = None if binary is None else np.asarray(_load_npy(binary, "binary codes"))
    try:
        table = pd.read_csv(metadata, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read metadata CSV {metadata}: {err}") from err
    if emb.ndim != 2:
        raise IndexFormatError(f"embeddings must be (N, D), got shape {emb.shape}")
    if len(table) != len(emb):
        raise IndexFormatError(f"{len(emb)} embeddings but {len(table)} metadata rows in {metadata}")
    columns = list(table.columns)
    cap_col = _pick(columns, caption_column, CAPTION_COLUMNS, "caption")
    url_col = _pick(columns, url_column, URL_COLUMNS, "url")
    id_col = next((c for c in columns if c.lower() in ID_COLUMNS), None)
    rows: list[dict[str, Any]] = []
    for i, rec in enumerate(table.to_dict("records")):
        row = {"id": str(rec[id_col]) if id_col else str(i), "path": rec[url_col],
               "captions": [rec[cap_col]] if rec[cap_col] else []}
        row.update({k: v for k, v in rec.items() if k not in (id_col, url_col, cap_col)})
        rows.append(row)
    fingerprint = ModelFingerprint(model=model, pooling=pooling, dim=int(emb.shape[1]),
                                   image_size=image_size, frames=frames, sample_fps=sample_fps)
    encode_texts = None
    if encode_captions:
        try:
            from demo.models.encoders import Clip4ClipEncoder  # here, not on top: it loads torch

            encode_texts = Clip4ClipEncoder.from_pretrained(model, pooling=pooling).encode_texts
        except DemoError as err:
            log.warning("captions not embedded (video -> text disabled for this index): %s", err)
    index = from_precomputed(np.asarray(emb, dtype=np.float32), rows, codes,
                             model=fingerprint, encode_texts=encode_texts)
    index.info.update({"model_path": model, "source": str(Path(embeddings).name)})
    index.save(out, overwrite=overwrite)
    return index
