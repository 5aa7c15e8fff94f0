"""Does the default search keep the top 10? Its recall against exact search, and faiss's HNSW beside it.

:func:`bench_search_set` runs every method of :mod:`demo.bench.search` on one set, then the
default search as an index of that size runs it (from 200,000 rows the IVF-PQ first stage, built and
its ``nprobe`` and rerank depth tuned on held-out rows as the index writer does:
:func:`demo.index.tuning.build_first_stage`), then what a user would pick instead: faiss's
``IndexHNSWFlat`` (M = 32, inner product) over the same rows, its ``efSearch`` swept up to the
smallest that reaches the default's recall@10, and timed there (latency at equal recall@10), with
its build time and the memory it holds.

``python -m demo bench recall`` (:func:`bench_recall`) runs numpy brute force, the default and HNSW
on the three sets the default must keep the top 10 on: clustered rows with a shared mean (1M x 512),
near-duplicates (the realistic set, 1M) and the Searchium layout (1.5M), and checks recall@10 >= 0.95,
recall@1 >= 0.99 and >= 10x numpy (:func:`recall_targets`). ``--rows N`` runs every set at N rows.
"""

from __future__ import annotations

import gc
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from demo.bench.common import rss_mb
from demo.bench.data import SearchSet, clustered_sets, member_queries, real_base, realistic_sets, write_set
from demo.bench.search import (
    SearchScale,
    _chunked,
    _method,
    _timings,
    binary_methods,
    float_methods,
    ivf_method,
    recall,
)
from demo.index.binary import default_rerank
from demo.index.ivf import IVF_PQ, choose

log = logging.getLogger(__name__)

HNSW_M = 32  # neighbours per node: what faiss's docs and most users start from
EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)  # swept, smallest first
RECALL_LIMITS = {"recall@10": 0.95, "recall@1": 0.99, "speedup": 10.0}  # the targets
FULL_SIZES = {"clustered-mean": 1_000_000, "realistic": 1_000_000, "searchium": 1_500_000}
_BLOCK = 65536


@dataclass(frozen=True)
class RecallScale:
    """How big the recall section runs."""

    rows: int | None = None  # every set at this many rows (None: :data:`FULL_SIZES`)
    queries: int = 500
    clusters: int = 1000  # of the clustered set (the Searchium layout keeps the space section's)
    min_rows: int | None = None  # first stage as :func:`demo.index.ivf.choose` (0: the IVF at any size)
    search: SearchScale = SearchScale()


def default_row(methods: dict[str, dict[str, Any]], n: int) -> dict[str, Any]:
    """The method row of the index's default search (IVF-PQ, else binary + the default rerank)."""
    return methods.get("default") or methods[f"binary_rerank{default_rerank(n)}"]


def _hnsw_search(index: Any, ef: int, k: int) -> Any:
    import faiss

    params = faiss.SearchParametersHNSW(efSearch=int(ef))  # type: ignore[attr-defined]  # (stubs lag)

    def run(qq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = index.search(np.ascontiguousarray(qq, dtype=np.float32), k, params=params)
        return scores, rows.astype(np.int64)

    return run


def hnsw_method(ss: SearchSet, scale: SearchScale, exact: tuple[np.ndarray, np.ndarray], target: float
                ) -> dict[str, Any]:
    """faiss ``IndexHNSWFlat(d, 32)`` (inner product) over the float16 rows as float32: build time and
    the memory it holds (its float32 rows + graph), then the smallest ``efSearch`` of :data:`EF_SEARCH`
    whose recall@10 reaches ``target`` (else the largest), timed."""
    import faiss

    emb = np.load(ss.emb_path, mmap_mode="r")
    before, started = rss_mb(), time.perf_counter()
    index = faiss.IndexHNSWFlat(ss.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    for s in range(0, ss.n, _BLOCK):
        index.add(np.asarray(emb[s : s + _BLOCK], dtype=np.float32))
    build_s, grown = time.perf_counter() - started, rss_mb() - before
    log.info("  HNSW M=%d over %d rows built in %.0f s (+%.0f MiB)", HNSW_M, ss.n, build_s, grown)
    sweep: list[dict[str, float]] = []
    for ef in EF_SEARCH:
        found = recall(_chunked(_hnsw_search(index, ef, scale.k), ss.queries), exact)
        sweep.append({"ef_search": ef, "recall@1": found["recall@1"], "recall@10": found["recall@10"]})
        if found["recall@10"] >= target:
            break
    ef = int(sweep[-1]["ef_search"])
    search = _hnsw_search(index, ef, scale.k)
    times = _timings(search, ss.queries, scale)
    graph = index.hnsw.neighbors.size() + index.hnsw.levels.size()  # type: ignore[attr-defined]  # int32s
    kept = (index.ntotal * ss.dim * 4 + graph * 4) / 2**20
    row = _method(f"faiss HNSW M={HNSW_M} efSearch {ef}", times, rss_mb() - before, kept, ef_search=ef,
                  build_s=build_s, build_rss_mb=grown, target_recall10=target,
                  reached=bool(sweep[-1]["recall@10"] >= target), ef_sweep=sweep,
                  **recall(_chunked(search, ss.queries), exact))
    del index
    gc.collect()
    return row


def bench_search_set(ss: SearchSet, scale: SearchScale = SearchScale()) -> dict[str, Any]:  # noqa: B008
    """Time, size and score every method of :mod:`demo.bench.search` on one set, the default search
    (tuned as the index writer tunes it) and HNSW at the default's recall@10."""
    log.info("search: %s N=%d", ss.name, ss.n)
    methods, exact = float_methods(ss, scale)
    gc.collect()
    ours, sweep, best = binary_methods(ss, scale, exact)
    gc.collect()
    stage = choose(ss.n, ss.dim)
    if stage.kind == IVF_PQ:  # what VideoIndex.search runs at this size
        ours["default"] = ivf_method(ss, scale, exact, stage, tuned=True)[0]
        gc.collect()
    default = default_row(ours, ss.n)
    ours["hnsw"] = hnsw_method(ss, scale, exact, default["recall@10"])
    if stage.kind == IVF_PQ:
        stage = replace(stage, nprobe=default["nprobe"], rerank=default["rerank"])
    return {"data": ss.name, "n": ss.n, "dim": ss.dim, "queries": len(ss.queries), "note": ss.note,
            "fallback": ss.fallback, "first_stage": stage.to_dict(),
            "methods": {**methods, **ours}, "sweep": sweep, "recall_target": scale.recall_target,
            "smallest_rerank": best}


def bench_recall_set(ss: SearchSet, scale: RecallScale) -> dict[str, Any]:
    """numpy brute force (the exact top 10), the default search and HNSW on one set."""
    log.info("recall: %s N=%d", ss.name, ss.n)
    methods, exact = float_methods(ss, scale.search, with_flat=False)
    gc.collect()
    stage = choose(ss.n, ss.dim, scale.min_rows)
    if stage.kind == IVF_PQ:
        methods["default"] = ivf_method(ss, scale.search, exact, stage, tuned=True)[0]
    else:  # the flat stage: binary + the default rerank depth
        flat, _, _ = binary_methods(ss, replace(scale.search, reranks=(), sweep=(default_rerank(ss.n),)), exact)
        methods["default"] = flat[f"binary_rerank{default_rerank(ss.n)}"]
    gc.collect()
    methods["hnsw"] = hnsw_method(ss, scale.search, exact, methods["default"]["recall@10"])
    return {"data": ss.name, "n": ss.n, "dim": ss.dim, "queries": len(ss.queries), "note": ss.note,
            "fallback": ss.fallback, "first_stage": stage.kind, "methods": methods}


def searchium_set(workdir: Path, n: int, queries: int, seed: int = 0) -> SearchSet:
    """Rows written by :func:`demo.bench.importing.write_searchium_layout` (CLIP-like: a shared mean,
    the space section's clusters), kept as an index keeps them (float16 + sign codes); queries near one
    member each. The layout's float32 files are deleted once converted."""
    from demo.bench.importing import write_searchium_layout
    from demo.bench.space import CLUSTERS

    folder = workdir / "searchium-layout"
    files = write_searchium_layout(folder, n, clusters=CLUSTERS, seed=seed)

    def rows() -> Iterator[np.ndarray]:
        vectors = np.load(files["embeddings"], mmap_mode="r")
        for s in range(0, n, _BLOCK):
            yield np.asarray(vectors[s : s + _BLOCK])

    dim = np.load(files["embeddings"], mmap_mode="r").shape[1]
    emb_path, codes_path = write_set(workdir / f"searchium_{n}", n, dim, rows())
    shutil.rmtree(folder)
    q = member_queries(emb_path, n, queries, 0.75, np.random.default_rng(seed + 5))
    note = (f"rows in the Searchium Space's layout as `bench space` writes them ({CLUSTERS} clusters around a "
            "shared mean direction, cosine ~0.8 to their cluster's mean), stored as float16; queries: members + "
            "noise (cosine ~0.80 to their member)")
    return SearchSet("searchium", n, q.shape[1], emb_path, codes_path, q, note)


def _recall_sets(workdir: Path, scale: RecallScale, index: Path | None, seed: int) -> Iterator[SearchSet]:
    """The three sets, one at a time (each is deleted by the caller before the next is written)."""
    size = {name: scale.rows or n for name, n in FULL_SIZES.items()}
    (ss,) = clustered_sets(workdir, (size["clustered-mean"],), clusters=scale.clusters, queries=scale.queries,
                           seed=seed, mean=1.0, name="clustered-mean")
    yield ss
    base = real_base(workdir, index, seed=seed)
    (ss,) = realistic_sets(workdir, base, (size["realistic"],), scale.queries, seed=seed)
    del base
    yield ss
    yield searchium_set(workdir, size["searchium"], scale.queries, seed)


def bench_recall(workdir: Path, scale: RecallScale, index: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """:func:`bench_recall_set` on each set of :func:`_recall_sets`."""
    results = []
    for ss in _recall_sets(workdir, scale, index, seed):
        results.append(bench_recall_set(ss, scale))
        ss.emb_path.unlink(missing_ok=True)
        ss.codes_path.unlink(missing_ok=True)
        gc.collect()
    return {"results": results, "limits": RECALL_LIMITS}


_NAMES = {"clustered-mean": "clustered, shared mean", "realistic": "near-duplicates", "searchium": "Searchium layout"}


def recall_targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    """Per set: the default search's recall@10 and recall@1 against exact search, and its speed-up over
    numpy brute force in the same run (one query, p50)."""
    lim, rows = out["limits"], []
    for r in out["results"]:
        d, numpy = r["methods"]["default"], r["methods"]["numpy"]["one"]["p50_ms"]
        name, where = d["label"].removesuffix(" (default, tuned)"), f"{_NAMES.get(r['data'], r['data'])} N={r['n']:,}"
        speedup = numpy / d["one"]["p50_ms"]
        checks = [("recall@10 vs exact", f">= {lim['recall@10']:g}", f"{d['recall@10']:.3f}",
                   None if r["fallback"] else d["recall@10"] >= lim["recall@10"]),
                  ("recall@1 vs exact", f">= {lim['recall@1']:g}", f"{d['recall@1']:.3f}",
                   None if r["fallback"] else d["recall@1"] >= lim["recall@1"]),
                  ("speed-up over numpy brute force (one query, p50)", f">= {lim['speedup']:g}x",
                   f"{speedup:.1f}x: {d['one']['p50_ms']:.2f} ms vs numpy {numpy:.0f} ms", speedup >= lim["speedup"])]
        rows += [{"target": f"default search ({name}), {t}", "goal": g, "measured": f"{v} ({where})", "holds": h}
                 for t, g, v, h in checks]
    return rows


def _resident(m: dict[str, Any]) -> str:
    anon = m["rss_delta_mb"] - m.get("mapped_mb", 0.0)
    return f"{anon:.0f}" + (f" (+{m['mapped_mb']:.0f} mapped float16)" if "mapped_mb" in m else "")


def format_recall_markdown(out: dict[str, Any]) -> str:
    """The methods per set, the default beside HNSW at equal recall@10, HNSW's efSearch sweep, the data."""
    lines = ["| data | N | method | 1 query p50 / p95 ms | 16 queries p50 / p95 ms | build s | resident MiB "
             "| recall@1 | recall@10 |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in out["results"]:
        for m in r["methods"].values():
            one, batch = m["one"], m["batch"]
            build = f"{m['build_s']:.0f}" if "build_s" in m else "-"
            rec = f"{m['recall@1']:.3f} | {m['recall@10']:.3f}" if "recall@1" in m else "exact | exact"
            lines.append(f"| {_NAMES.get(r['data'], r['data'])} | {r['n']:,} | {m['label']} | {one['p50_ms']:.2f} / "
                         f"{one['p95_ms']:.2f} | {batch['p50_ms']:.2f} / {batch['p95_ms']:.2f} | {build} "
                         f"| {_resident(m)} | {rec} |")
    lines += ["", "At equal recall@10: HNSW's efSearch is the smallest swept whose recall@10 reaches the default's "
              "(\\* none swept does: the largest).", "",
              "| data | default: 1 query p50 ms | recall@10 | HNSW efSearch | HNSW 1 query p50 ms | recall@10 "
              "| default / HNSW build s | default / HNSW resident MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in out["results"]:
        d, h = r["methods"]["default"], r["methods"]["hnsw"]
        lines.append(f"| {_NAMES.get(r['data'], r['data'])} | {d['one']['p50_ms']:.2f} | {d['recall@10']:.3f} "
                     f"| {h['ef_search']}{'' if h['reached'] else '*'} | {h['one']['p50_ms']:.2f} "
                     f"| {h['recall@10']:.3f} | {d.get('build_s', 0):.0f} / {h['build_s']:.0f} "
                     f"| {_resident(d)} / {_resident(h)} |")
    lines += ["", "HNSW efSearch sweep (recall@1 / recall@10):", ""]
    for r in out["results"]:
        cells = ", ".join(f"{s['ef_search']}: {s['recall@1']:.3f} / {s['recall@10']:.3f}"
                          for s in r["methods"]["hnsw"]["ef_sweep"])
        lines.append(f"- {_NAMES.get(r['data'], r['data'])}: {cells}")
    lines += ["", "Resident: RSS growth of building and searching the structure besides the memory-mapped float16 "
              "rows (the default's IVF and rerank map those; HNSW holds its own float32 copy). The default's depth "
              "was tuned when its IVF was written, on held-out rows of the index, not on these queries.", ""]
    lines += [f"- **{_NAMES.get(r['data'], r['data'])}**: {r['note']}" for r in out["results"]]
    return "\n".join(lines) + "\n"
