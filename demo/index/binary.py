"""Binary search and cosine rerank: the arithmetic behind :meth:`VideoIndex.search`.

As in the Searchium WebVid Space: embeddings are sign-binarised and packed to bits
(:func:`binarize`), a faiss binary index finds the ``R`` codes nearest a query in Hamming
distance (:func:`hamming_search`), and only those ``R`` rows are scored by cosine on the
float embeddings (:func:`rerank_rows`). :func:`exact_top_k` scores every row instead.
faiss is imported inside the functions that use it, so reading an index folder does not
load it.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from demo.errors import IndexFormatError

# When search() is not told how deep to rerank: RERANK_FRACTION of the index, within
# [DEFAULT_RERANK, MAX_DEFAULT_RERANK]. On near-duplicate-heavy data the depth that keeps
# recall@1 vs exact search >= 0.99 grows with N (see BENCHMARKS.md, "python -m demo bench").
DEFAULT_RERANK = 100
RERANK_FRACTION = 0.02
MAX_DEFAULT_RERANK = 10000
# Binary scans of at most this many queries run on ONE OpenMP thread: one 1M-code scan is
# memory-bound (~2 ms), and a second thread only adds OpenMP's barrier, which collapses to
# 100+ ms when another process holds the other core (measured on a 2-core machine).
_SINGLE_THREAD_QUERIES = 32
SHARD_MIN_ROWS = 200_000  # binary indexes this large scan their codes on parallel threads
_RERANK_PAIRS = 16384  # (query, candidate) pairs scored at once in rerank_rows (~32 MB at D=512)
_SCAN_ROWS = 65536  # float rows scored per block in exact search (bounds memory on a memmap)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """(..., D) -> float32 rows of unit length (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def binarize(x: np.ndarray) -> np.ndarray:
    """(N, D) floats -> (N, D/8) uint8 sign codes: ``np.packbits(x > 0)``, big-endian bit order."""
    return np.packbits(np.asarray(x) > 0, axis=-1)


def _top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` of (Q, n) scores with their ids, sorted by score desc, then id asc."""
    if scores.shape[1] > k:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        scores, ids = np.take_along_axis(scores, part, 1), np.take_along_axis(ids, part, 1)
    # Two stable sorts instead of a per-row lexsort: by id, then by score.
    by_id = np.argsort(ids, axis=1, kind="stable")
    scores, ids = np.take_along_axis(scores, by_id, 1), np.take_along_axis(ids, by_id, 1)
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def check_scores(scores: np.ndarray, rows: np.ndarray, what: str) -> None:
    """Refuse NaN/inf scores: the rows they came from are corrupt (``what`` names their file)."""
    bad = ~np.isfinite(scores)
    if bad.any():
        raise IndexFormatError(f"{what} row {int(rows[np.nonzero(bad)][0])} holds NaN/inf: the index is corrupt; "
                               "rebuild it")


def exact_top_k(mat: np.ndarray, q: np.ndarray, k: int, what: str = "embedding") -> tuple[np.ndarray, np.ndarray]:
    """Cosine top-k of (Q, D) unit queries over the rows of ``mat`` (N, D), block by block.

    Returns scores (Q, min(k, N)) float32 and rows (Q, min(k, N)) int64, sorted by score desc, then row asc.
    A row that scores NaN/inf is refused (IndexFormatError naming ``what``).
    """
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for s in range(0, len(mat), _SCAN_ROWS):
        block = np.asarray(mat[s : s + _SCAN_ROWS], dtype=np.float32) @ q.T  # (rows, Q)
        check_scores(block, np.broadcast_to(np.arange(s, s + len(block))[:, None], block.shape), what)
        ids = np.broadcast_to(np.arange(s, s + len(block)), (len(q), len(block)))
        best_s, best_i = _top_k(np.concatenate([best_s, block.T], 1), np.concatenate([best_i, ids], 1), k)
    return best_s, best_i


def default_rerank(n: int) -> int:
    """Hamming candidates reranked by cosine in an index of ``n`` rows when not told."""
    return int(min(max(DEFAULT_RERANK, math.ceil(RERANK_FRACTION * n)), MAX_DEFAULT_RERANK))


def build_binary_index(codes: np.ndarray, dim: int, shards: int | None = None) -> Any:
    """A faiss binary index over (N, dim/8) uint8 sign codes (faiss keeps its own copy).

    faiss splits a search's work by query, so one query scans every code on one core. From
    :data:`SHARD_MIN_ROWS` codes on (or with ``shards`` > 1), the codes are split into one
    ``IndexBinaryFlat`` per core (at most 4) under an ``IndexBinaryShards`` that scans them on
    parallel threads and merges the results: the same nearest codes, about 2x sooner on 2
    cores (BENCHMARKS.md). Shard threads are plain threads, not OpenMP, so a busy core slows
    its shard but does not stall the others at a barrier.
    """
    import faiss

    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if shards is None:
        shards = min(os.cpu_count() or 1, 4) if len(codes) >= SHARD_MIN_ROWS else 1
    if shards <= 1:
        return _flat_binary_index(codes, dim)
    # threaded; shard i's ids follow shard i-1's (the stubs know only the 1-argument form)
    index = faiss.IndexBinaryShards(dim, True, True)  # type: ignore[call-arg]
    parts = [_flat_binary_index(part, dim) for part in np.array_split(codes, shards)]
    for part in parts:
        index.add_shard(part)
    index.referenced_objects = parts  # type: ignore[attr-defined]  # faiss keeps raw pointers: hold the shards
    return index


def _flat_binary_index(codes: np.ndarray, dim: int) -> Any:
    import faiss

    index = faiss.IndexBinaryFlat(dim)
    # Counting by distance instead of a heap: the same results, as fast at k=100 and 2-3x
    # faster at the k of a deep rerank (1000-10000).
    index.use_heap = False  # type: ignore[attr-defined]  # (missing from faiss's stubs)
    index.add(codes)
    return index


@contextlib.contextmanager
def faiss_threads(queries: int) -> Iterator[None]:
    """Run faiss on ONE OpenMP thread for small batches (see ``_SINGLE_THREAD_QUERIES``).
    The OpenMP thread count is per calling thread, so this does not leak into other threads."""
    import faiss

    if queries > _SINGLE_THREAD_QUERIES:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def hamming_search(binary_index: Any, queries: np.ndarray, r: int) -> np.ndarray:
    """(Q, D) float queries -> (Q, r) int64 rows nearest in Hamming distance of the sign
    codes, nearest first; faiss pads with -1 when the index holds fewer than ``r`` rows."""
    codes = binarize(queries)
    with faiss_threads(len(codes)):
        return np.asarray(binary_index.search(codes, r)[1], dtype=np.int64)


@functools.cache
def _fp16_decoder(dim: int) -> Any:
    import faiss

    return faiss.ScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16)


def _float32_rows(embeddings: np.ndarray, rows: np.ndarray, queries: int) -> np.ndarray:
    """embeddings[rows] as float32. float16 goes through faiss's vectorised decoder: numpy's
    float16 cast is scalar (~2 ns a value; 10 ms for the 10,000 rows of a deep rerank)."""
    block = np.asarray(embeddings[rows])
    if block.dtype != np.float16 or block.ndim != 2 or not len(block):
        return np.asarray(block, dtype=np.float32)
    with faiss_threads(queries):
        out = _fp16_decoder(block.shape[1]).decode(np.ascontiguousarray(block).view(np.uint8))
    return np.asarray(out, dtype=np.float32).reshape(block.shape)


def rerank_rows(
    embeddings: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int, what: str = "embedding"
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine top-``k`` of each query among its own candidate rows.

    embeddings: (N, D) float rows (a float16 memmap is fine); queries: (Q, D) float32,
    unit length; candidates: (Q, R) int64 rows, -1 for none. Per chunk of queries the union
    of their candidates is read once, in ascending row order (front to back through a
    memmap). Scores come from numpy's own loops, not BLAS: these products are small, and
    BLAS threads stall when another process holds the other cores. Returns scores
    (Q, min(k, R)) float32 and rows (Q, min(k, R)) int64 sorted by score desc then row asc;
    missing slots are -inf / -1. A candidate that scores NaN/inf is refused (IndexFormatError
    naming ``what``).
    """
    q = np.asarray(queries, dtype=np.float32)
    cand = np.asarray(candidates, dtype=np.int64)
    k = min(k, cand.shape[1])
    out_s = np.full((len(q), k), -np.inf, np.float32)
    out_i = np.full((len(q), k), -1, np.int64)
    step = max(1, _RERANK_PAIRS // max(1, cand.shape[1]))
    for s in range(0, len(q), step):
        c, qc = cand[s : s + step], q[s : s + step]
        valid = c >= 0
        rows, where = np.unique(np.where(valid, c, 0), return_inverse=True)
        vecs = _float32_rows(embeddings, rows, len(q))  # (U, D)
        if len(c) == 1:  # one query: score the unique rows, no (R, D) gather
            scores = np.einsum("ud,d->u", vecs, qc[0])[where.reshape(c.shape)]
        else:
            scores = np.einsum("qrd,qd->qr", vecs[where.reshape(c.shape)], qc)
        check_scores(scores[valid], c[valid], what)
        scores[~valid] = -np.inf
        out_s[s : s + len(c)], out_i[s : s + len(c)] = _top_k(scores, c, k)
    return out_s, out_i
