"""Search latency, memory and recall: numpy, faiss IndexFlatIP and our binary + rerank.

For one :class:`demo.bench.data.SearchSet` the methods run one after another on the same
data and queries, in one process:

(a) numpy brute force: float32 matrix in RAM, ``q @ X.T`` + argpartition;
(b) faiss ``IndexFlatIP`` (its own float32 copy, default OpenMP threads);
(c, d) :func:`demo.index.hamming_search` over the sign codes (faiss ``IndexBinaryFlat``)
       + :func:`demo.index.rerank_rows` on rows of the float16 ``.npy``, memory-mapped
       (what :meth:`demo.index.VideoIndex.search` runs).

Memory is the RSS growth from building each structure (and, for (c, d), after the timed
runs, which map the reranked float16 pages), next to the bytes the structure keeps in RAM.
Recall@1 / @10 compare with the exact top-10 of (a).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from demo.bench.common import Timing, file_backed_mb, rss_mb, time_calls
from demo.bench.data import SearchSet
from demo.index import build_binary_index, hamming_search, rerank_rows

log = logging.getLogger(__name__)
Searcher = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # (Q, D) -> scores, rows (Q, k)


@dataclass(frozen=True)
class SearchScale:
    """How much to time: repetitions, batch size, rerank depths."""

    reps: int = 100  # one-query calls timed per method
    batch_reps: int = 50  # batch calls timed per method
    batch: int = 16
    k: int = 10
    reranks: tuple[int, ...] = (100, 500)  # the binary + rerank methods timed
    sweep: tuple[int, ...] = (100, 200, 500, 1000, 2000, 5000, 10000)  # depths whose recall is swept
    budget_s: float = 8.0  # a slow method stops after this many seconds per measurement ...
    min_reps: int = 10  # ... once it has this many calls
    recall_target: float = 0.99  # recall@1 vs exact that the default rerank depth must reach


def numpy_top_k(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain brute force: (Q, D) @ (N, D).T, argpartition, sort the k. Scores/rows (Q, k)."""
    scores = q @ x.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(scores, part, 1)
    order = np.argsort(-top, axis=1)
    return np.take_along_axis(top, order, 1), np.take_along_axis(part, order, 1)


def _chunked(fn: Searcher, q: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Rows (Q, k) of ``fn`` over all queries, ``chunk`` at a time."""
    return np.concatenate([fn(q[s : s + chunk])[1] for s in range(0, len(q), chunk)])


def recall(rows: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """recall@1: same top-1 as exact; recall@10: share of the exact top-10 found in the top-10."""
    r1 = float(np.mean(rows[:, 0] == exact[:, 0]))
    k = min(10, rows.shape[1], exact.shape[1])
    r10 = float(np.mean([len(np.intersect1d(a[:k], b[:k])) / k for a, b in zip(rows, exact, strict=True)]))
    return {"recall@1": r1, "recall@10": r10}


def _timings(fn: Searcher, q: np.ndarray, scale: SearchScale) -> dict[str, Timing]:
    nq, b = len(q), scale.batch

    def one(i: int) -> object:
        return fn(q[i % nq][None])

    def batch(i: int) -> object:
        return fn(q[(i * b + np.arange(b)) % nq])

    kw: dict[str, Any] = dict(budget_s=scale.budget_s, min_reps=scale.min_reps)
    return {"one": time_calls(one, scale.reps, **kw), "batch": time_calls(batch, scale.batch_reps, **kw)}


def _method(label: str, times: dict[str, Timing], rss_delta: float, kept_mb: float, **extra: Any
            ) -> dict[str, Any]:
    log.info("  %-22s one p50 %8.2f ms, batch p50 %8.2f ms, +%.0f MiB RSS", label, times["one"].p50_ms,
             times["batch"].p50_ms, rss_delta)
    return {"label": label, "one": times["one"].to_dict(), "batch": times["batch"].to_dict(),
            "rss_delta_mb": rss_delta, "kept_mb": kept_mb, **extra}


def bench_search_set(ss: SearchSet, scale: SearchScale = SearchScale()) -> dict[str, Any]:  # noqa: B008
    """Time, size and score every method on one set; see the module docstring."""
    log.info("search: %s N=%d", ss.name, ss.n)
    methods, exact = _float_methods(ss, scale)
    gc.collect()
    ours, sweep, best = _binary_methods(ss, scale, exact)
    gc.collect()
    return {"data": ss.name, "n": ss.n, "dim": ss.dim, "queries": len(ss.queries), "note": ss.note,
            "methods": {**methods, **ours}, "sweep": sweep, "recall_target": scale.recall_target,
            "default_rerank": best}


def _float_methods(ss: SearchSet, scale: SearchScale) -> tuple[dict[str, dict[str, Any]], np.ndarray]:
    """(a) numpy and (b) faiss IndexFlatIP; also the exact top-k rows (Q, k) of every query."""
    import faiss

    q, k = ss.queries, scale.k
    before = rss_mb()
    x = np.load(ss.emb_path).astype(np.float32)  # the same float16-rounded values every method sees
    grown = rss_mb() - before

    def brute(qq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return numpy_top_k(x, qq, k)

    methods = {"numpy": _method("numpy brute force", _timings(brute, q, scale), grown, x.nbytes / 2**20)}
    exact = _chunked(brute, q)

    before = rss_mb()
    flat = faiss.IndexFlatIP(ss.dim)
    flat.add(x)
    grown = rss_mb() - before

    def faiss_flat(qq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return flat.search(qq, k)

    methods["faiss_flat"] = _method("faiss IndexFlatIP", _timings(faiss_flat, q, scale), grown,
                                    flat.ntotal * ss.dim * 4 / 2**20,
                                    **recall(_chunked(faiss_flat, q), exact))
    return methods, exact


def _binary_methods(ss: SearchSet, scale: SearchScale, exact: np.ndarray
                    ) -> tuple[dict[str, dict[str, Any]], list[dict[str, float]], int | None]:
    """(c, d) binary + rerankR for the configured depths and the smallest depth that
    reaches the recall target; also the depth sweep."""
    before, mapped = rss_mb(), file_backed_mb()
    binary = build_binary_index(np.load(ss.codes_path), ss.dim)  # the loaded codes are freed at once
    codes_mb = binary.ntotal * binary.code_size / 2**20
    emb = np.load(ss.emb_path, mmap_mode="r")  # float16 rows stay on disk / in the page cache
    sweep = _sweep(binary, ss.queries, exact, scale)
    best = _default_depth(sweep, scale.recall_target)
    depths = list(scale.reranks) + ([best] if best is not None and best not in scale.reranks else [])
    methods = {}
    for r in depths:
        def ours(qq: np.ndarray, r: int = r) -> tuple[np.ndarray, np.ndarray]:
            return rerank_rows(emb, qq, hamming_search(binary, qq, min(r, ss.n)), scale.k)

        times = _timings(ours, ss.queries, scale)
        methods[f"binary_rerank{r}"] = _method(f"binary + rerank{r}", times, rss_mb() - before, codes_mb,
                                               rerank=r, mapped_mb=file_backed_mb() - mapped,
                                               **recall(_chunked(ours, ss.queries), exact))
    return methods, sweep, best


def _sweep(binary: Any, q: np.ndarray, exact: np.ndarray, scale: SearchScale) -> list[dict[str, float]]:
    """Recall of binary + rerankR for every R in the sweep, from one Hamming search at the
    largest R: reranking is exact on the candidates, so the top-1 is found iff it is among
    the first R candidates (up to Hamming ties at the R-th place)."""
    n = binary.ntotal
    depths = sorted({min(r, n) for r in scale.sweep})
    cand = np.concatenate([hamming_search(binary, q[s : s + 256], depths[-1]) for s in range(0, len(q), 256)])
    out = []
    for r in depths:
        top = cand[:, :r]
        r1 = float(np.mean([e in c for e, c in zip(exact[:, 0], top, strict=True)]))
        r10 = float(np.mean([np.isin(e, c).mean() for e, c in zip(exact[:, :10], top, strict=True)]))
        out.append({"rerank": r, "recall@1": r1, "recall@10": r10})
    return out


def _default_depth(sweep: list[dict[str, float]], target: float) -> int | None:
    """Smallest swept depth whose recall@1 reaches ``target`` (None: none does)."""
    ok = [int(s["rerank"]) for s in sweep if s["recall@1"] >= target]
    return min(ok) if ok else None


def search_targets(result: dict[str, Any], realistic: bool, limits: dict[str, float]) -> list[dict[str, Any]]:
    """The issue's targets, checked on one (largest-N) result."""
    m = result["methods"]
    ours = m.get("binary_rerank100")
    if ours is None:
        return []
    speedup = m["numpy"]["one"]["p50_ms"] / ours["one"]["p50_ms"]
    anon = ours["rss_delta_mb"] - ours.get("mapped_mb", 0.0)
    where = f"{result['data']} N={result['n']:,}"
    rows = [
        ("binary + rerank100, one query p50", f"<= {limits['p50_ms']:g} ms",
         f"{ours['one']['p50_ms']:.2f} ms", ours["one"]["p50_ms"] <= limits["p50_ms"]),
        ("speed-up over numpy brute force (one query, p50)", f">= {limits['speedup']:g}x",
         f"{speedup:.0f}x", speedup >= limits["speedup"]),
        ("codes resident", f"<= {limits['codes_mb']:g} MB",
         f"{ours['kept_mb']:.0f} MiB codes; RSS +{anon:.0f} MiB besides mapped float16 pages",
         ours["kept_mb"] <= limits["codes_mb"] and anon <= limits["codes_mb"]),
    ]
    if realistic:
        rows.append(("recall@1 of binary + rerank100 vs exact", f">= {result['recall_target']:g}",
                     f"{ours['recall@1']:.3f}", ours["recall@1"] >= result["recall_target"]))
    return [{"target": t, "goal": g, "measured": f"{v} ({where})", "holds": bool(h)} for t, g, v, h in rows]


def _rss_cell(m: dict[str, Any]) -> str:
    if "mapped_mb" not in m:
        return f"{m['rss_delta_mb']:.0f}"
    return f"{m['rss_delta_mb']:.0f} ({m['mapped_mb']:.0f} mapped float16)"


def format_search_markdown(results: list[dict[str, Any]]) -> str:
    """Latency/memory/recall table, the rerank-depth sweep and the data notes."""
    lines = ["| data | N | method | 1 query p50 / p95 ms | 16 queries p50 / p95 ms | reps (1 / 16) "
             "| RSS growth MiB | kept in RAM MiB | recall@1 | recall@10 |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for m in r["methods"].values():
            one, batch = m["one"], m["batch"]
            rec = f"{m['recall@1']:.3f} | {m['recall@10']:.3f}" if "recall@1" in m else "exact | exact"
            lines.append(
                f"| {r['data']} | {r['n']:,} | {m['label']} | {one['p50_ms']:.2f} / {one['p95_ms']:.2f} "
                f"| {batch['p50_ms']:.2f} / {batch['p95_ms']:.2f} | {one['reps']} / {batch['reps']} "
                f"| {_rss_cell(m)} | {m['kept_mb']:.0f} | {rec} |"
            )
    sweep = results[0]["sweep"]
    lines += ["", "Rerank depth sweep: recall@1 / recall@10 of binary + rerankR vs exact "
              "(R = Hamming candidates reranked by cosine):", "",
              "| data | N | " + " | ".join(f"R={s['rerank']}" for s in sweep)
              + f" | smallest R with recall@1 >= {results[0]['recall_target']:g} |",
              "|---|---:|" + "---:|" * (len(sweep) + 1)]
    for r in results:
        cells = " | ".join(f"{s['recall@1']:.3f} / {s['recall@10']:.3f}" for s in r["sweep"])
        lines.append(f"| {r['data']} | {r['n']:,} | {cells} | {r['default_rerank'] or 'none swept'} |")
    lines.append("")
    notes = {r["data"]: r["note"] for r in results}
    lines += [f"- **{name}**: {note}" for name, note in notes.items()]
    return "\n".join(lines) + "\n"
