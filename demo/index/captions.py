"""Caption embeddings for video -> text search, shared by the builder and the importer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm


def caption_embeddings(
    encode_texts: Callable[[list[str]], np.ndarray],
    rows: Sequence[dict[str, Any]],
    dim: int,
    batch_size: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(M, D) caption embeddings and (M,) row of each, captions in row order.

    ``rows`` are metadata rows with ``captions`` lists; ``encode_texts`` is called on batches
    of ``batch_size`` captions and must return (B, ``dim``) floats.
    """
    pairs = [(i, str(c)) for i, r in enumerate(rows) for c in r.get("captions") or []]
    parts = []
    for s in tqdm(range(0, len(pairs), batch_size), desc="captions", unit="batch", disable=not progress):
        texts = [c for _, c in pairs[s : s + batch_size]]
        out = np.asarray(encode_texts(texts), dtype=np.float32)
        if out.shape != (len(texts), dim):
            raise ValueError(
                f"encode_texts returned {out.shape} for {len(texts)} captions, expected (B, {dim})"
            )
        parts.append(out)
    emb = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
    return emb, np.array([i for i, _ in pairs], dtype=np.int64)
