"""``index import``: turn precomputed embedding files into an index folder.

Made for files such as the ones published with the WebVid CLIP4Clip model: a float
N x 512 ``.npy`` of video embeddings, an optional N x 64 ``.npy`` of packed sign
bits, and a CSV with a caption and a video URL per row, in the same order.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import DemoError, IndexFormatError, InputError
from demo.index.video_index import VideoIndex
from demo.models.fingerprint import ModelFingerprint

log = logging.getLogger(__name__)
CAPTION_COLUMNS = ("caption", "name", "text", "title", "sentence")
URL_COLUMNS = ("path", "url", "contentUrl", "content_url", "video_url", "video_path", "video")
ID_COLUMNS = ("id", "videoid", "video_id")


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
    import pandas as pd

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
            from demo.models.encoders import Clip4ClipEncoder

            encode_texts = Clip4ClipEncoder.from_pretrained(model, pooling=pooling).encode_texts
        except DemoError as err:
            log.warning("captions not embedded (video -> text disabled for this index): %s", err)
    index = VideoIndex.from_precomputed(np.asarray(emb, dtype=np.float32), rows, codes,
                                        model=fingerprint, encode_texts=encode_texts)
    index.info.update({"model_path": model, "source": str(Path(embeddings).name)})
    index.save(out, overwrite=overwrite)
    return index
