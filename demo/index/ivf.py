"""The first stage of a large index: an inverted file with product-quantised residuals (IVF-PQ).

The flat Hamming scan of :mod:`demo.index.binary` reads every sign code once per query: about
4 ms at 1M rows, 40 ms at 10M. And on data full of near-duplicates its candidates are poor: a
sign bit cannot tell apart copies that differ by a few degrees, so the rerank depth that keeps
recall@1 >= 0.99 grows with N (5,000 at 1M). An IVF-PQ answers both (BENCHMARKS.md,
"bench:scale"):

- **sublinear**: k-means puts the rows in ``nlist`` lists (``nlist`` ~ sqrt(N)); a query scans
  only the ``nprobe`` lists whose centroids it is nearest, ~``nprobe / nlist`` of the rows.
- **asymmetric and finer**: each row keeps ``m`` bytes (``dim / 8``, as many as its sign code)
  encoding its *residual* from its list's centroid with a product quantiser; the float query is
  scored against those codes (asymmetric distance), so near-duplicate copies, which share a
  centroid and differ only in their residuals, are told apart. The best ``rerank`` rows are
  then scored exactly on the memory-mapped float16 embeddings (:func:`~demo.index.binary.rerank_rows`).

Binary IVF over the same sign codes was measured too (``IndexBinaryIVF``): as fast, but its
Hamming ranking inside the probed lists cannot rank near-duplicates, so the rerank depth it
needs still grows with N. :func:`choose` keeps indexes below :data:`IVF_MIN_ROWS` on the flat
binary path, unchanged; the choice is recorded in the manifest's ``first_stage``.
faiss is imported inside the functions that use it.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from demo.errors import IndexFormatError
from demo.index.binary import faiss_threads

log = logging.getLogger(__name__)

FLAT, IVF_PQ = "binary-flat", "ivf-pq"
IVF_MIN_ROWS = 200_000  # from here on an index gets an IVF-PQ first stage (see choose)
DEFAULT_NPROBE = 32  # lists scanned per query
IVF_RERANK = 500  # candidates reranked exactly on the float16 rows
TRAIN_PER_LIST = 40  # k-means sample: this many rows per list (faiss warns below 39)
_ADD_ROWS = 65536  # rows decoded, assigned and encoded at a time while filling the lists
EXACT_ASSIGN_LISTS = 1024  # up to this many lists every row goes to its nearest (see _assigner)


@dataclass(frozen=True)
class FirstStage:
    """How an index finds its candidates: the manifest's ``first_stage`` field."""

    kind: str = FLAT  # FLAT: Hamming scan of every sign code; IVF_PQ: see the module docstring
    nlist: int = 0  # IVF lists
    m: int = 0  # PQ bytes per row (8 bits per sub-quantiser)
    nprobe: int = 0  # lists scanned per query by default
    rerank: int = 0  # candidates reranked on the float rows by default

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v or k == "kind"}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> FirstStage:
        """The stage a manifest records; an index saved before the field existed is flat."""
        if not d:
            return cls()
        if d.get("kind") not in (FLAT, IVF_PQ):
            raise ValueError(f"unknown first stage {d.get('kind')!r}; expected {FLAT!r} or {IVF_PQ!r}")
        return cls(str(d["kind"]), *(int(d.get(k) or 0) for k in ("nlist", "m", "nprobe", "rerank")))


def choose(n: int, dim: int, min_rows: int | None = None) -> FirstStage:
    """Flat below ``min_rows`` rows (exactly today's search), else IVF-PQ with ~sqrt(n) lists.

    >>> choose(2500, 128).kind, choose(1_000_000, 512)
    ('binary-flat', FirstStage(kind='ivf-pq', nlist=1024, m=64, nprobe=32, rerank=500))
    >>> choose(10_000_000, 512).nlist
    4096
    """
    if n < (IVF_MIN_ROWS if min_rows is None else min_rows):
        return FirstStage()
    nlist = 2 ** round(math.log2(math.sqrt(n)))
    return FirstStage(IVF_PQ, nlist=nlist, m=dim // 8, nprobe=min(DEFAULT_NPROBE, nlist), rerank=IVF_RERANK)


def _f32(block: np.ndarray) -> np.ndarray:
    """Rows as float32 (float16 through faiss's vectorised decoder: numpy's cast is scalar, 10 s
    for the 5e9 values of 10M x 512)."""
    import faiss

    block = np.ascontiguousarray(block)
    if block.dtype != np.float16 or not len(block):
        return np.ascontiguousarray(block, dtype=np.float32)
    decoder = faiss.ScalarQuantizer(block.shape[1], faiss.ScalarQuantizer.QT_fp16)
    return np.asarray(decoder.decode(block.view(np.uint8)), dtype=np.float32).reshape(block.shape)


def _sample(embeddings: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` distinct rows, read in ascending order (front to back through a memmap)."""
    n = len(embeddings)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, count), replace=False))
    return np.concatenate([_f32(embeddings[rows[s : s + _ADD_ROWS]]) for s in range(0, len(rows), _ADD_ROWS)])


def _assigner(centroids: np.ndarray) -> Any:
    """What fills the lists: the centroids themselves (exact nearest list) up to
    :data:`EXACT_ASSIGN_LISTS` lists; beyond, a two-level search over them, ``sqrt(2 nlist)``
    groups of centroids of which 16 are scanned: at 4096 lists 1.5x faster than scanning all,
    and the same list for 99.6% (clustered data) to 100% (near-duplicates) of rows (measured on
    the bench's sets). A row in a neighbouring list is still found: a query probes many lists."""
    import faiss

    nlist, dim = centroids.shape
    if nlist <= EXACT_ASSIGN_LISTS:
        flat = faiss.IndexFlatIP(dim)
        flat.add(centroids)
        return flat
    groups = int(math.sqrt(2 * nlist))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, groups, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.min_points_per_centroid = 1  # the centroids are few: no warning for a small sample
    ivf.train(centroids)
    ivf.add(centroids)
    ivf.nprobe = 16
    return ivf


def train_ivf(embeddings: np.ndarray, stage: FirstStage, seed: int = 0, niter: int = 10, progress: bool = False
              ) -> Any:
    """A faiss ``IndexIVFPQ`` (inner product) over the (N, D) unit rows of ``embeddings`` (a float16
    memmap is fine: it is read in blocks of 65,536 rows), ids = row numbers.

    Spherical k-means on ``TRAIN_PER_LIST * nlist`` sampled rows, the PQ on their residuals,
    then every row assigned to a list (:func:`_assigner`) and encoded, block by block.
    """
    import faiss

    n, dim = embeddings.shape
    started = time.perf_counter()
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, stage.nlist, stage.m, 8, faiss.METRIC_INNER_PRODUCT)
    index.cp.spherical, index.cp.niter, index.cp.seed = True, niter, seed
    index.cp.max_points_per_centroid = TRAIN_PER_LIST
    index.pq.cp.seed, index.pq.cp.niter = seed, niter
    # k-means wants >= 39 rows per centroid, for the lists and for the PQ's 256 codewords alike
    index.train(_sample(embeddings, TRAIN_PER_LIST * max(stage.nlist, 256), seed))
    trained = time.perf_counter()
    assigner = _assigner(quantizer.reconstruct_n(0, stage.nlist))
    for s in tqdm(range(0, n, _ADD_ROWS), desc="IVF-PQ lists", unit="block", disable=not progress):
        x = _f32(embeddings[s : s + _ADD_ROWS])
        lists = np.ascontiguousarray(assigner.search(x, 1)[1][:, 0])
        index.add_core(len(x), faiss.swig_ptr(x), None, faiss.swig_ptr(lists))
    index.nprobe = stage.nprobe
    log.info("IVF-PQ over %d rows: %d lists, %d bytes a row; trained in %.0f s, filled in %.0f s", n,
             stage.nlist, stage.m, trained - started, time.perf_counter() - trained)
    return index


def ivf_to_array(index: Any) -> np.ndarray:
    """The index serialised by faiss, as a uint8 array (how version-2 folders kept it: ``ivf.<W>.npy``)."""
    import faiss

    return np.asarray(faiss.serialize_index(index), dtype=np.uint8)


def ivf_from_array(data: np.ndarray) -> Any:
    """An index back from :func:`ivf_to_array`'s bytes (copied into faiss's own memory)."""
    import faiss

    return faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))


def write_ivf(index: Any, path: Path) -> None:
    """Write the IVF-PQ to ``path`` as ``faiss.write_index`` does, fsynced. faiss reports a failed
    write as a RuntimeError naming the C error; one for a full disk becomes OSError(ENOSPC)."""
    import faiss

    try:
        faiss.write_index(index, str(path))
    except RuntimeError as err:
        full = "No space left" in str(err) or "Disk quota" in str(err)
        raise OSError(errno.ENOSPC if full else errno.EIO, f"writing {path.name}: {str(err)[-160:]}") from err
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def read_ivf(path: Path) -> Any:
    """The IVF-PQ at ``path``, its inverted lists memory-mapped (``IO_FLAG_MMAP``: the codes stay in
    the page cache, shared and never counted as this process's own memory); the coarse centroids
    and the PQ codebooks (a few MB) are read. Read-only: searching never writes to it."""
    import faiss

    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError as err:
        raise IndexFormatError(f"{path} is not a readable faiss index ({str(err)[-120:]}): the index is "
                               "corrupt; rebuild it") from err
    if not isinstance(index, faiss.IndexIVFPQ):
        index = faiss.downcast_index(index)
    return index


def ivf_search(index: Any, queries: np.ndarray, nprobe: int, r: int) -> np.ndarray:
    """(Q, D) unit float queries -> (Q, r) int64 rows, best asymmetric (PQ) score first;
    -1 pads where the ``nprobe`` lists hold fewer than ``r`` rows."""
    import faiss

    q = np.ascontiguousarray(queries, dtype=np.float32)
    with faiss_threads(len(q)):
        params = faiss.SearchParametersIVF(nprobe=int(nprobe))  # type: ignore[call-arg]  # (stubs lag)
        return np.asarray(index.search(q, r, params=params)[1], dtype=np.int64)
