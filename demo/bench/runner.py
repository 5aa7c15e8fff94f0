"""``python -m demo bench``: every measurement in one run, one table, one JSON file.

Sections: ``search`` (latency/memory/recall at 100k and 1M), ``query`` (text -> top-10
with a ViT-B/32-sized text tower, fp32 and int8), ``indexing`` (videos/s and the decode
share), ``app`` (start-up time and memory of ``python app.py``) and ``decode``. Three more run
only when named: ``scale`` (search at 10M rows, :mod:`demo.bench.scale`), ``engines`` (the
local and Ray index engines, :mod:`demo.bench.engines`) and ``recall`` (the default search's
recall against exact search and faiss HNSW beside it on 1M-1.5M sets, :mod:`demo.bench.recall`;
``--rows N`` runs it at N rows and writes no BENCHMARKS.md section).
``--quick`` runs small sizes and tiny models (what CI runs through the tests).

The Markdown goes between ``<!-- bench:main -->`` and ``<!-- /bench:main -->`` of
BENCHMARKS.md (after a full run, or into ``--markdown FILE``), and a full-size ``scale``,
``engines`` or ``recall`` run into its own ``bench:scale`` / ``bench:engines`` / ``bench:recall``;
nothing else in that file is touched. The JSON and the Markdown also land in ``--out``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from demo.bench.app import bench_app
from demo.bench.common import cpu_seconds, load_average, machine_info, recorded_path
from demo.bench.data import clustered_sets, real_base, realistic_sets
from demo.bench.decode import bench_decode
from demo.bench.engines import EnginesScale, bench_engines
from demo.bench.indexing import IndexingScale, bench_indexing
from demo.bench.markdown import format_markdown
from demo.bench.query import QueryScale, bench_query
from demo.bench.recall import RecallScale, bench_recall, bench_search_set, recall_targets
from demo.bench.scale import ScaleScale, bench_scale, scale_targets
from demo.bench.search import SearchScale, search_targets
from demo.errors import InputError
from demo.files import atomic_write_json, write_section
from demo.presets import ROOT

log = logging.getLogger(__name__)

SECTIONS = ("search", "query", "indexing", "app", "decode")  # a full run: the bench:main section
SECTION = "bench:main"  # the marked section of BENCHMARKS.md this command owns (demo.files)
# Run only when named (each takes long): 10M-row search, and the local vs Ray index engines. They run
# inside the main run's bookkeeping; each writes its own section of BENCHMARKS.md (bench:scale,
# bench:engines) after a full-size run.
IN_RUN_SECTIONS = ("scale", "engines", "recall")
# Run only when named, on their own (minutes and gigabytes each): :func:`run_extra`, bench:<name>.
SEPARATE_SECTIONS = ("import", "resize", "space")
EXTRA_SECTIONS = (*IN_RUN_SECTIONS, *SEPARATE_SECTIONS)
# The targets on a 2-core CPU.
LIMITS = {"p50_ms": 15.0, "speedup": 10.0, "codes_mb": 100.0, "end_to_end_ms": 80.0, "recall@10": 0.95}


@dataclass(frozen=True)
class Plan:
    """How big each section runs; :func:`plan` gives the full and the quick one."""

    sizes: tuple[int, ...]
    clusters: int
    queries: int  # recall queries per data set (also the pool the timed queries cycle through)
    fallback_videos: int  # world clips the fallback model embeds when there is no embedded index
    search: SearchScale
    query: QueryScale
    indexing: IndexingScale
    decode: dict[str, Any] = field(default_factory=dict)  # bench_decode keyword arguments
    app: bool = True
    scale: ScaleScale = ScaleScale()
    engines: EnginesScale = EnginesScale()
    recall: RecallScale = RecallScale()


def plan(quick: bool) -> Plan:
    if quick:
        return Plan(sizes=(20_000,), clusters=100, queries=64, fallback_videos=24,
                    search=SearchScale(reps=5, batch_reps=3, sweep=(100, 500, 1000), budget_s=2.0,
                                       min_reps=3),
                    query=QueryScale(tower="tiny", reps=3, agreement_queries=5),
                    indexing=IndexingScale(models=("tiny",), world_videos=4, batch_size=2),
                    decode=dict(seconds=2.0, height=112, fps=10.0, image_size=56, repeats=1), app=False,
                    scale=ScaleScale(n=50_000, queries=64, numpy_block=50_000, min_rows=0, nprobes=(4, 16),
                                     reranks=(100, 500), search=SearchScale(reps=5, batch_reps=3, budget_s=2.0,
                                                                            min_reps=3)),
                    engines=EnginesScale(model="tiny", videos=4, batch_size=2, merge_rows=5_000),
                    recall=RecallScale(rows=20_000, queries=64, clusters=100, min_rows=0,
                                       search=SearchScale(reps=5, batch_reps=3, budget_s=2.0, min_reps=3)))
    return Plan(sizes=(100_000, 1_000_000), clusters=1000, queries=500, fallback_videos=500,
                search=SearchScale(), query=QueryScale(), indexing=IndexingScale())


@dataclass(frozen=True)
class BenchConfig:
    sections: tuple[str, ...] = SECTIONS
    quick: bool = False
    out: Path = Path("work/bench")  # bench.json and bench.md go here
    # The file whose bench:main section is replaced (None: BENCHMARKS.md, after a full run only).
    markdown: Path | None = None
    index: Path | None = None  # index replicated for the realistic set (None: the embedded preset's)
    seed: int = 0
    rows: tuple[int, ...] | None = None  # sizes of the space section (None: its full run); recall: the first

    def __post_init__(self) -> None:
        unknown = [s for s in self.sections if s not in (*SECTIONS, *EXTRA_SECTIONS)]
        if unknown or not self.sections:
            raise InputError(f"unknown bench section(s) {unknown or '(none)'}; "
                             f"choose from {' '.join((*SECTIONS, *EXTRA_SECTIONS))}")

    @property
    def command(self) -> str:
        parts = ["python -m demo bench"]
        if self.quick:
            parts.append("--quick")
        if tuple(self.sections) != SECTIONS:
            parts.append("--only " + " ".join(self.sections))
        if self.index is not None:
            parts.append(f"--index {recorded_path(self.index)}")
        if self.rows:
            parts.append("--rows " + " ".join(map(str, self.rows)))
        return " ".join(parts)

    def markdown_target(self) -> Path | None:
        if self.markdown is not None:
            return self.markdown
        if self.quick or set(self.sections) - set(EXTRA_SECTIONS) != set(SECTIONS):
            return None  # partial or quick numbers do not replace the full table

        return ROOT / "BENCHMARKS.md"


class StallWatch:
    """Notices when this process was stopped or starved (say, SIGSTOP from another program):
    a thread that asks to wake every ``period`` seconds adds up every gap over ``threshold``."""

    def __init__(self, period: float = 0.25, threshold: float = 1.5) -> None:
        self.period, self.threshold = period, threshold
        self.stalled_s, self.count = 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="bench-stall-watch", daemon=True)

    def __enter__(self) -> StallWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.period):
            now = time.monotonic()
            if now - last > self.threshold:
                self.stalled_s += now - last - self.period
                self.count += 1
            last = now


def run_extra(name: str, config: BenchConfig) -> str:
    """Run separate section ``name`` (:data:`SEPARATE_SECTIONS`) and write its own section of BENCHMARKS.md
    (or of ``--markdown``); returns its Markdown."""
    from demo.bench.importing import bench_import, format_import_markdown
    from demo.bench.resizing import bench_resize, format_resize_markdown
    from demo.bench.space import FULL_ROWS, bench_space, format_space_markdown

    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), **machine_info(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)}
    config.out.mkdir(parents=True, exist_ok=True)
    started, cpu_before = time.perf_counter(), cpu_seconds()
    # The space section's gigabytes go to the system's temp folder, never into the project.
    where = None if name == "space" else config.out
    with tempfile.TemporaryDirectory(prefix=f".bench-{name}-", dir=where) as tmp:
        if name == "import":
            result = bench_import(Path(tmp), rows=20_000 if config.quick else 1_500_000)
            markdown = format_import_markdown(result, meta)
        elif name == "space":
            rows = config.rows or ((20_000,) if config.quick else FULL_ROWS)
            result = bench_space(Path(tmp), rows)
            meta.update(_cpu_share(started, cpu_before, meta.get("cores")))
            meta["command"] = "python -m demo bench space" + (
                f" --rows {' '.join(map(str, rows))}" if config.rows else "")
            markdown = format_space_markdown(result, meta)
        else:
            result = bench_resize(Path(tmp), repeats=1 if config.quick else 3, seconds=2.0 if config.quick else 10.0)
            markdown = format_resize_markdown(result, meta)
    atomic_write_json(config.out / f"bench-{name}.json", {"meta": meta, "result": result, "markdown": markdown})
    full = not config.quick and (name != "space" or not config.rows)
    target = config.markdown if config.markdown is not None else (ROOT / "BENCHMARKS.md" if full else None)
    if target is not None:
        write_section(target, f"bench:{name}", markdown)
    return markdown


def _cpu_share(started: float, before: tuple[float, float] | None, cores: int | None) -> dict[str, Any]:
    """Load average now and the share of the machine's CPU time other processes took since ``started``."""
    seconds, after = time.perf_counter() - started, cpu_seconds()
    out: dict[str, Any] = {"load_average_after": load_average(), "seconds": round(seconds)}
    if before and after:
        others = (after[0] - before[0]) - (after[1] - before[1])
        out["other_cpu_share"] = round(max(0.0, others) / (seconds * (cores or 1)), 3)
    return out


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Run the chosen sections; write bench.json / bench.md to ``config.out`` and, where
    :meth:`BenchConfig.markdown_target` says so, the section of BENCHMARKS.md."""
    extras = [run_extra(name, config) for name in config.sections if name in SEPARATE_SECTIONS]
    if not set(config.sections) - set(SEPARATE_SECTIONS):
        return {"markdown": "\n".join(extras)}
    p = plan(config.quick)
    started = time.perf_counter()
    meta = {"command": config.command, "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": config.quick, "sections": list(config.sections), **machine_info()}
    out: dict[str, Any] = {"meta": meta}
    config.out.mkdir(parents=True, exist_ok=True)
    cpu_before = cpu_seconds()
    with tempfile.TemporaryDirectory(prefix=".bench-data-", dir=config.out) as tmp, StallWatch() as stalls:
        out.update(_run_sections(config, p, Path(tmp)))
    meta["load_average_after"] = load_average()
    meta["seconds"] = time.perf_counter() - started
    cpu_after = cpu_seconds()
    if cpu_before and cpu_after:  # share of the machine's CPU time that other processes took
        others = (cpu_after[0] - cpu_before[0]) - (cpu_after[1] - cpu_before[1])
        meta["other_cpu_share"] = round(max(0.0, others) / (meta["seconds"] * (meta["cores"] or 1)), 3)
    meta["stalled_s"], meta["stalls"] = stalls.stalled_s, stalls.count
    out["targets"] = collect_targets(out)

    markdown = format_markdown(out)
    out["markdown"] = markdown
    (config.out / "bench.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    (config.out / "bench.md").write_text(markdown)
    target = config.markdown_target()
    if target is not None:
        write_section(target, SECTION, markdown)
        log.info("wrote the bench section of %s", target)
    for name in IN_RUN_SECTIONS:  # full-size runs of these replace their own sections
        if name in out and not config.quick and config.markdown is None and not config.rows:
            write_section(ROOT / "BENCHMARKS.md", f"bench:{name}", format_markdown(out, only=name))
    log.info("bench finished in %.0f s; results in %s", meta["seconds"], config.out / "bench.json")
    return out


def _run_sections(config: BenchConfig, p: Plan, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    chosen = set(config.sections)
    base = realistic = None
    if chosen & {"search", "query"}:
        base = real_base(tmp, config.index, p.fallback_videos, seed=config.seed)
        realistic = realistic_sets(tmp, base, p.sizes, p.queries, seed=config.seed)
    if "search" in chosen and realistic is not None:
        clustered = clustered_sets(tmp, p.sizes, clusters=p.clusters, queries=p.queries, seed=config.seed)
        results = [bench_search_set(s, p.search) for s in [*clustered, *realistic]]
        out["search"] = {"results": results, "limits": LIMITS}
        for s in clustered:  # free the disk early; the realistic set serves the query section
            s.emb_path.unlink(missing_ok=True)
    if "query" in chosen:
        out["query"] = bench_query(tmp, realistic[-1] if realistic else None, base, p.query)
    base = None  # the fallback model is not needed any more
    if "indexing" in chosen:
        out["indexing"] = bench_indexing(tmp, p.indexing)
    if "app" in chosen:
        args: tuple[str, ...] = ("--index", str(config.index)) if config.index else ()
        # An empty clip cache: the first search's clips are rendered as a new machine would.
        args += ("--cache", str(tmp / "app-cache"))
        out["app"] = bench_app(ROOT, args) if p.app else {"skipped": "not run with --quick"}
    if "decode" in chosen:
        out["decode"] = bench_decode(workdir=tmp, **p.decode)
    if "scale" in chosen:
        out["scale"] = bench_scale(tmp, p.scale, config.index, seed=config.seed)
    if "engines" in chosen:
        out["engines"] = bench_engines(tmp, p.engines)
    if "recall" in chosen:
        scale = replace(p.recall, rows=config.rows[0]) if config.rows else p.recall
        out["recall"] = bench_recall(tmp, scale, config.index, seed=config.seed)
    return out


def collect_targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target with its goal, what was measured and whether it holds."""
    rows: list[dict[str, Any]] = []
    search = out.get("search", {}).get("results", [])
    for name in ("clustered", "realistic"):
        sets = [r for r in search if r["data"] == name]
        if sets:
            rows += search_targets(max(sets, key=lambda r: r["n"]), name == "realistic", LIMITS)
    if any(r["data"] == "realistic" and r.get("fallback") for r in search):
        rows.append({"target": "recall@1 of binary + rerank100 vs exact (realistic)", "goal": ">= 0.99",
                     "measured": "not measurable: no embedded index, and a random-init model's embeddings "
                                 "are all nearly the same vector", "holds": None})
    query = out.get("query")
    if query and query.get("search"):
        for row in query["rows"]:
            p50 = row["end_to_end"]["p50_ms"]
            default = ", the encoders' default" if row.get("default_threads") else ""
            rows.append({"target": f"text -> top-10, {row['precision']} text tower ({row.get('threads')} torch "
                                   f"thread(s){default}) + binary search, p50",
                         "goal": f"<= {LIMITS['end_to_end_ms']:g} ms",
                         "measured": f"{p50:.1f} ms (N={query['search']['n']:,})",
                         "holds": p50 <= LIMITS["end_to_end_ms"]})
    if "scale" in out:
        rows += scale_targets(out["scale"])
    if "recall" in out:
        rows += recall_targets(out["recall"])
    indexing = out.get("indexing")
    if indexing:
        for row in indexing["rows"]:
            rows.append({"target": f"decoding share of index building, {row['model']} model (pipelined)",
                         "goal": f"<= {indexing['share_target']:.0%}",
                         "measured": f"{row['decode_share_pipelined']:.0%} "
                                     f"(serial split {row['decode_share_serial']:.0%})",
                         "holds": bool(row["holds"])})
    return rows
