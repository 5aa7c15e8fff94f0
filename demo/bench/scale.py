"""Search at ten million rows (``python -m demo bench scale``): what the index does past 1M.

On the search section's generators (clustered, and realistic near-duplicates), at N = 10M x 512:

- numpy brute force over float32 rows, timed on one 1M-row block held in RAM and scaled by
  N / 1M (10M float32 rows are 20 GB: they do not fit beside the rest on a 24 GB machine; a
  scan is linear in the rows, so the block's time x 10 is what the full scan would take);
- the flat binary scan + rerank100 (today's first stage) over all N sign codes;
- the index's default at this size (:func:`demo.index.ivf.choose`): IVF-PQ + rerank, with its
  build time, its memory besides the memory-mapped float16 rows, latency and recall, and a sweep
  of lists scanned x rerank depth.

``--quick`` runs N = 50k with the IVF forced (CI); the full run writes ``bench:scale`` of
BENCHMARKS.md.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from demo.bench.common import rss_mb, time_calls
from demo.bench.data import SearchSet, clustered_sets, real_base, realistic_sets
from demo.bench.search import SearchScale, _chunked, _method, _timings, ivf_method, numpy_top_k, recall
from demo.index.binary import build_binary_index, exact_top_k, hamming_search, rerank_rows
from demo.index.ivf import IVF_MIN_ROWS, choose, ivf_search

log = logging.getLogger(__name__)
# The targets at N = 10M on a 2-core CPU.
SCALE_LIMITS = {"p50_ms": 15.0, "speedup": 20.0, "recall": 0.99, "resident_mb": 1536.0, "build_s": 900.0}


@dataclass(frozen=True)
class ScaleScale:
    n: int = 10_000_000
    queries: int = 500  # recall queries per set (the timed calls cycle through them)
    clusters: int = 1000
    numpy_block: int = 1_000_000  # rows of the float32 block numpy scans (see the module docstring)
    min_rows: int = IVF_MIN_ROWS  # the quick run forces the IVF at its small N
    nprobes: tuple[int, ...] = (8, 16, 32, 64)  # swept
    reranks: tuple[int, ...] = (100, 200, 500, 1000, 2000)  # swept
    search: SearchScale = SearchScale(reps=200, batch_reps=20, budget_s=20.0)


def _numpy_method(ss: SearchSet, scale: ScaleScale) -> dict[str, Any]:
    """numpy brute force on the first ``numpy_block`` rows, its times scaled to all N."""
    rows = min(ss.n, scale.numpy_block)
    before = rss_mb()
    block = np.asarray(np.load(ss.emb_path, mmap_mode="r")[:rows], dtype=np.float32)
    grown = rss_mb() - before
    q, k, factor = ss.queries, scale.search.k, ss.n / rows
    times = _timings(lambda qq: numpy_top_k(block, qq, k), q, scale.search)
    scaled = {name: {"p50_ms": t.p50_ms * factor, "p95_ms": t.p95_ms * factor, "reps": t.reps}
              for name, t in times.items()}
    return {"label": f"numpy brute force ({rows:,}-row block x {factor:g})", "one": scaled["one"],
            "batch": scaled["batch"], "rss_delta_mb": grown * factor, "kept_mb": ss.n * ss.dim * 4 / 2**20,
            "block_rows": rows, "block_one_p50_ms": times["one"].p50_ms}


def _flat_method(ss: SearchSet, scale: ScaleScale, exact: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    emb = np.load(ss.emb_path, mmap_mode="r")
    before = rss_mb()
    binary = build_binary_index(np.load(ss.codes_path), ss.dim)

    def flat(qq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return rerank_rows(emb, qq, hamming_search(binary, qq, 100), scale.search.k)

    return _method("binary + rerank100 (flat scan)", _timings(flat, ss.queries, scale.search), rss_mb() - before,
                   binary.ntotal * binary.code_size / 2**20, rerank=100, **recall(_chunked(flat, ss.queries), exact))


def _sweep(ivf: Any, q: np.ndarray, exact_top1: np.ndarray, scale: ScaleScale) -> list[dict[str, Any]]:
    """recall@1 for every (nprobe, rerank): the rerank is exact on its candidates, so the top-1 is
    found iff it is among them. Also the one-query p50 of the IVF search alone per nprobe."""
    out = []
    for nprobe in scale.nprobes:
        cand = np.concatenate([ivf_search(ivf, q[s : s + 256], nprobe, max(scale.reranks))
                               for s in range(0, len(q), 256)])

        def one(i: int, nprobe: int = nprobe) -> object:
            return ivf_search(ivf, q[i % len(q)][None], nprobe, 500)

        t = time_calls(one, 50)
        out.append({"nprobe": nprobe, "ivf_one_p50_ms": t.p50_ms,
                    "recall@1": {r: float(np.mean([e in c[:r] for e, c in zip(exact_top1, cand, strict=True)]))
                                 for r in scale.reranks}})
    return out


def bench_scale_set(ss: SearchSet, scale: ScaleScale) -> dict[str, Any]:
    log.info("scale: %s N=%d", ss.name, ss.n)
    exact = exact_top_k(np.load(ss.emb_path, mmap_mode="r"), ss.queries, scale.search.k)
    methods = {"numpy": _numpy_method(ss, scale)}
    gc.collect()
    methods["flat"] = _flat_method(ss, scale, exact)
    gc.collect()
    stage = choose(ss.n, ss.dim, scale.min_rows)
    methods["default"], ivf = ivf_method(ss, scale.search, exact, stage, tuned=True)  # as an index is written
    stage = replace(stage, nprobe=methods["default"]["nprobe"], rerank=methods["default"]["rerank"])
    sweep = _sweep(ivf, ss.queries, exact[1][:, 0], scale)
    del ivf
    gc.collect()
    return {"data": ss.name, "n": ss.n, "dim": ss.dim, "queries": len(ss.queries), "note": ss.note,
            "first_stage": stage.to_dict(), "methods": methods, "sweep": sweep}


def bench_scale(workdir: Path, scale: ScaleScale, index: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Both sets at ``scale.n``, one after the other (each set's files are deleted after it)."""
    results = []
    for make in ("clustered", "realistic"):
        if make == "clustered":
            (ss,) = clustered_sets(workdir, (scale.n,), clusters=scale.clusters, queries=scale.queries, seed=seed)
        else:
            base = real_base(workdir, index, seed=seed)
            (ss,) = realistic_sets(workdir, base, (scale.n,), scale.queries, seed=seed)
        results.append(bench_scale_set(ss, scale))
        ss.emb_path.unlink(missing_ok=True)
        ss.codes_path.unlink(missing_ok=True)
    return {"results": results, "limits": SCALE_LIMITS}


def scale_targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    lim = out["limits"]
    for r in out["results"]:
        m, where = r["methods"], f"{r['data']} N={r['n']:,}"
        d, numpy = m["default"], m["numpy"]["one"]["p50_ms"]
        anon = d["rss_delta_mb"] - d.get("mapped_mb", 0.0)
        checks = [
            ("default search (IVF-PQ + rerank), one query p50", f"<= {lim['p50_ms']:g} ms",
             f"{d['one']['p50_ms']:.2f} ms", d["one"]["p50_ms"] <= lim["p50_ms"]),
            ("speed-up over numpy brute force (one query, p50)", f">= {lim['speedup']:g}x",
             f"{numpy / d['one']['p50_ms']:.1f}x (numpy {numpy:.0f} ms)", numpy / d["one"]["p50_ms"] >= lim["speedup"]),
            ("recall@1 vs exact", f">= {lim['recall']:g}", f"{d['recall@1']:.3f}", d["recall@1"] >= lim["recall"]),
            ("resident memory besides the mapped float16 rows", f"<= {lim['resident_mb']:g} MiB",
             f"{anon:.0f} MiB", anon <= lim["resident_mb"]),
            ("index build (IVF-PQ train + fill)", f"<= {lim['build_s'] / 60:g} min", f"{d['build_s'] / 60:.1f} min",
             d["build_s"] <= lim["build_s"]),
        ]
        rows += [{"target": t, "goal": g, "measured": f"{v} ({where})", "holds": bool(h)} for t, g, v, h in checks]
    return rows


def format_scale_markdown(out: dict[str, Any]) -> str:
    lines = ["| data | N | method | 1 query p50 / p95 ms | 16 queries p50 / p95 ms | RSS growth MiB | kept in RAM MiB "
             "| recall@1 | recall@10 |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in out["results"]:
        for m in r["methods"].values():
            rec = f"{m['recall@1']:.3f} | {m['recall@10']:.3f}" if "recall@1" in m else "exact | exact"
            mapped = f" ({m['mapped_mb']:.0f} mapped float16)" if "mapped_mb" in m else ""
            lines.append(f"| {r['data']} | {r['n']:,} | {m['label']} | {m['one']['p50_ms']:.2f} / "
                         f"{m['one']['p95_ms']:.2f} | {m['batch']['p50_ms']:.2f} / {m['batch']['p95_ms']:.2f} "
                         f"| {m['rss_delta_mb']:.0f}{mapped} | {m['kept_mb']:.0f} | {rec} |")
    reranks = list(out["results"][0]["sweep"][0]["recall@1"]) if out["results"] else []
    lines += ["", "IVF-PQ sweep: recall@1 vs exact for nprobe lists scanned x R candidates reranked, and the "
              "IVF search alone (R=500, one query, p50):", "",
              "| data | nprobe | IVF search ms | " + " | ".join(f"R={r}" for r in reranks) + " |",
              "|---|---:|---:|" + "---:|" * len(reranks)]
    for r in out["results"]:
        for s in r["sweep"]:
            cells = " | ".join(f"{v:.3f}" for v in s["recall@1"].values())
            lines.append(f"| {r['data']} | {s['nprobe']} | {s['ivf_one_p50_ms']:.2f} | {cells} |")
    lines.append("")
    for r in out["results"]:
        d, st = r["methods"]["default"], r["first_stage"]
        lines.append(f"- **{r['data']}**: IVF-PQ with {st['nlist']} lists, {st['m']} bytes a row, built in "
                     f"{d['build_s'] / 60:.1f} min (RSS +{d['build_rss_mb']:.0f} MiB after the build). {r['note']}")
    return "\n".join(lines) + "\n"
