"""Choosing an IVF-PQ's search depth when the index is written: measured recall on held-out rows.

A fixed ``nprobe`` and rerank depth cannot suit every corpus: on CLIP-like vectors that share a
mean direction, 32 lists and 500 candidates kept recall@1 at 0.99 but recall@10 at 0.79 (two of
every ten results shown were not the true neighbours). So, as autofaiss does, the depth is
measured on the data: :data:`TUNE_QUERIES` rows of the index, each moved away from itself by
noise (half of them to cosine ~0.8, half to ~0.5: a query near one member, and one farther from
everything), are searched exactly and through the IVF at every ``nprobe`` of :data:`NPROBES`;
the rerank is exact on its candidates, so a (nprobe, R) pair finds exactly those of the true
top-10 that are among its first R candidates. The cheapest pair (by :func:`cost`) that keeps
recall@10 >= :data:`TARGET_R10` and recall@1 >= :data:`TARGET_R1` on these queries is found, and
its ``nprobe`` doubled (:data:`NPROBE_MARGIN`) before it is recorded in the manifest's
``first_stage`` as the search default.

Why the margin: a query made from a row stays near that row's list, but a caption sits off the
rows' distribution (another modality), and its true neighbours can lie in lists a row's copy never
needs. On 1M near-duplicate rows searched with 500 caption embeddings, the cheapest pair on copies
of rows, nprobe 8 + rerank 200, found the true top-1 for 0.988 of the captions at every rerank depth;
nprobe 16 found it for 0.996 (BENCHMARKS.md bench:recall; docs/scale.md). Probing more lists is
the cheap half of a search: doubling 8 lists of ~1,000 rows adds ~10 us of PQ scoring to a rerank of
~120 us. Queries at cosine ~0.3 (as far as a caption from its video in CLIP) were tried instead: they
fixed the captions too but sent the clustered set with a shared mean to nprobe 256 + rerank 2000.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np

from demo.index.binary import l2_normalize
from demo.index.ivf import IVF_PQ, FirstStage, _f32, choose, ivf_search, train_ivf

log = logging.getLogger(__name__)

TUNE_QUERIES = 256
NPROBES = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
RERANKS = (100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000)
TARGET_R10 = 0.97  # above the 0.95 the search promises: the tuning queries are a sample
TARGET_R1 = 0.995
NPROBE_MARGIN = 2  # the chosen nprobe times this (the next of NPROBES at or above it): see the docstring
NOISE = (0.75, 1.7)  # noise norms: cosine ~0.8 and ~0.5 to the row a query was made from
# Cost of a search, in ns on one core (measured on the bench's 1M x 512 sets): scoring one PQ code
# in a probed list, and reading + scoring one candidate row of the float16 memmap.
NS_PER_CODE = 1.2
NS_PER_ROW = 600.0
_BLOCK = 65536


def cost(stage: FirstStage, n: int, nprobe: int, rerank: int) -> float:
    """Estimated ns of one query at (nprobe, rerank) in an index of ``n`` rows."""
    return nprobe / max(1, stage.nlist) * n * NS_PER_CODE + rerank * NS_PER_ROW


def tuning_queries(embeddings: np.ndarray, count: int = TUNE_QUERIES, seed: int = 0) -> np.ndarray:
    """(Q, D) unit queries: sampled rows moved by noise (see the module docstring)."""
    n, d = embeddings.shape
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, count), replace=False))
    x = _f32(np.asarray(embeddings[rows]))
    norms = np.resize(np.array(NOISE, np.float32), len(rows))[:, None]
    return l2_normalize(x + rng.standard_normal(x.shape).astype(np.float32) * norms / np.sqrt(d))


def exact_neighbours(embeddings: np.ndarray, q: np.ndarray, k: int = 10) -> np.ndarray:
    """(Q, k) rows of the exact top-k by cosine (one pass over the rows, a block at a time)."""
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for s in range(0, len(embeddings), _BLOCK):
        scores = q @ _f32(np.asarray(embeddings[s:s + _BLOCK])).T
        cand_s = np.concatenate([best_s, scores], 1)
        cand_i = np.concatenate([best_i, np.broadcast_to(np.arange(s, s + scores.shape[1]), scores.shape)], 1)
        part = np.argpartition(-cand_s, min(k, cand_s.shape[1]) - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, part, 1), np.take_along_axis(cand_i, part, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1)


def _recalls(cand: np.ndarray, exact: np.ndarray, reranks: tuple[int, ...]) -> dict[int, tuple[float, float]]:
    """(recall@1, recall@10) per rerank depth R, from (Q, max R) candidates and the (Q, 10) truth."""
    out = {}
    for r in reranks:
        found = [np.isin(e, c[:r]) for c, e in zip(cand, exact, strict=True)]
        out[r] = (float(np.mean([f[0] for f in found])), float(np.mean([f.mean() for f in found])))
    return out


def tune(ivf: Any, embeddings: np.ndarray, stage: FirstStage, seed: int = 0) -> tuple[FirstStage, dict[str, Any]]:
    """``stage`` with the cheapest (nprobe, rerank) that meets the targets, and what was measured."""
    started = time.perf_counter()
    n = len(embeddings)
    q = tuning_queries(embeddings, seed=seed)
    exact = exact_neighbours(embeddings, q, min(10, n))
    reranks = tuple(r for r in RERANKS if r <= n) or (n,)
    table = {}
    for nprobe in (p for p in NPROBES if p <= stage.nlist):
        cand = np.concatenate([ivf_search(ivf, q[s:s + 64], nprobe, max(reranks)) for s in range(0, len(q), 64)])
        for r, rec in _recalls(cand, exact, reranks).items():
            table[(nprobe, r)] = rec
    good = [pr for pr, (r1, r10) in table.items() if r1 >= TARGET_R1 and r10 >= TARGET_R10]
    if good:
        nprobe, rerank = min(good, key=lambda pr: cost(stage, n, *pr))
    else:  # nothing meets the targets: the cheapest pair within 0.02 of the best recall@10 found
        best = max(r10 for _, r10 in table.values())
        nprobe, rerank = min((pr for pr, (_, r10) in table.items() if r10 >= best - 0.02),
                             key=lambda pr: cost(stage, n, *pr))
        log.warning("no search depth tried keeps recall@10 >= %.2f on %d held-out rows; using nprobe %d, rerank "
                    "%d (recall@10 %.3f)", TARGET_R10, len(q), nprobe, rerank, table[(nprobe, rerank)][1])
    cheapest = nprobe
    wider = [p for p in NPROBES if NPROBE_MARGIN * cheapest <= p <= stage.nlist]
    nprobe = wider[0] if wider else min(stage.nlist, NPROBE_MARGIN * cheapest)
    r1, r10 = table.get((nprobe, rerank), table[(cheapest, rerank)])
    report = {"queries": len(q), "recall@1": round(r1, 4), "recall@10": round(r10, 4), "cheapest_nprobe": cheapest,
              "seconds": round(time.perf_counter() - started, 1)}
    log.info("search depth: nprobe %d (x%d margin over %d), rerank %d (recall@1 %.3f, recall@10 %.3f on %d held-out "
             "rows; tuned in %.0f s)", nprobe, NPROBE_MARGIN, cheapest, rerank, r1, r10, len(q), report["seconds"])
    return replace(stage, nprobe=nprobe, rerank=rerank), report


def build_first_stage(embeddings: np.ndarray, stage: FirstStage | None = None, progress: bool = False
                      ) -> tuple[dict[str, Any], Any]:
    """The first stage of an index over ``embeddings`` (N, D): the manifest's ``first_stage`` entry and
    the faiss IVF-PQ (None for the flat stage, whose data is the sign codes). ``stage`` None: chosen
    by size (:func:`demo.index.ivf.choose`); an IVF is trained, filled, then its depth tuned."""
    n, d = embeddings.shape
    stage = stage or choose(n, d)
    if stage.kind != IVF_PQ:
        return stage.to_dict(), None
    ivf = train_ivf(embeddings, stage, progress=progress)
    stage, report = tune(ivf, embeddings, stage)
    return {**stage.to_dict(), "tuned": report}, ivf
