"""The Markdown of one ``python -m demo bench`` run (header, targets, one part per section)."""

from __future__ import annotations

from typing import Any

from demo.bench.app import format_app_markdown
from demo.bench.decode import format_decode_markdown
from demo.bench.engines import format_engines_markdown
from demo.bench.indexing import format_indexing_markdown
from demo.bench.query import format_query_markdown
from demo.bench.recall import format_recall_markdown, recall_targets
from demo.bench.scale import format_scale_markdown, scale_targets
from demo.bench.search import format_search_markdown


def busy_note(meta: dict[str, Any]) -> str | None:
    """A warning when other processes took a real share of the CPU during the run.

    Measured from /proc/stat minus this process's own CPU time; runs without that figure
    fall back to the 1-minute load average at the start (the one at the end counts the
    benchmark's own threads, so it cannot show competition)."""
    cores = meta.get("cores") or 1
    share = meta.get("other_cpu_share")
    if share is not None:
        if share <= 0.1:
            return None
        seen = f"other processes used {100 * share:.0f}% of the {cores} cores' time during the run"
    else:
        start = meta.get("load_average", [])[:1]
        if not start or start[0] <= 0.5 * cores:
            return None
        seen = f"1-minute load average {start[0]:.1f} on {cores} cores at the start"
    return (f"**The machine was busy** ({seen}), so latencies are inflated and noisier than on a "
            "quiet machine; rerun the command when nothing else is running.")


def _header(meta: dict[str, Any]) -> list[str]:
    m = meta
    load = " -> ".join(f"{x[0]:.2f}" for x in (m.get("load_average"), m.get("load_average_after")) if x)
    others = (f"; other processes' share of the CPU during the run {100 * m['other_cpu_share']:.1f}%"
              if m.get("other_cpu_share") is not None else "")
    lines = [
        f"`{m['command']}` on {m['date']}, {m.get('seconds', 0):.0f} s. CPU: {m['cpu']}, "
        f"{m['cores']} cores (load average {load or 'n/a'}, this run's own threads included{others}; "
        f"niceness {m.get('nice', 'n/a')}). "
        f"Python {m['python']}, "
        f"torch {m['torch']} ({m['torch_threads']} threads), faiss {m['faiss']} "
        f"({m['faiss_threads']} OpenMP threads), numpy {m['numpy']}, "
        f"transformers {m['transformers']}. Latencies are p50 / p95 over the repetitions "
        "shown; every method ran on the same data, in one process, one after another.",
        "",
    ]
    notes = [n for n in (busy_note(meta), stall_note(meta)) if n]
    for note in notes:
        lines += [note, ""]
    return lines


def stall_note(meta: dict[str, Any]) -> str | None:
    """A warning when the run was stopped or starved for seconds at a time."""
    stalled = float(meta.get("stalled_s") or 0.0)
    if stalled < 5.0:
        return None
    return (f"**The run was stopped or starved for {stalled:.0f} s in {meta.get('stalls')} stretch(es)** "
            "(another program paused it): the total time above is not the benchmark's own, and any "
            "repetition caught in a stall is an outlier (medians are robust to a few).")


def _targets(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["### Targets", "", "| target | goal | measured | holds |", "|---|---|---|---|"]
    verdict = {True: "yes", False: "**no**", None: "n/a"}
    lines += [f"| {r['target']} | {r['goal']} | {r['measured']} | {verdict[r['holds']]} |" for r in rows]
    return [*lines, ""]


def format_markdown(out: dict[str, Any], only: str | None = None) -> str:
    """All sections present in ``out`` (a :func:`demo.bench.runner.run_bench` result), or with
    ``only`` that one section (and its targets) under the run's header."""
    targets = out.get("targets", [])
    if only == "scale":
        targets = scale_targets(out["scale"])
    elif only == "recall":
        targets = recall_targets(out["recall"])
    elif only is not None:
        targets = []
    lines = _header(out["meta"]) + _targets(targets)
    parts = [
        ("search", "Search (d = 512, top-10)", lambda r: format_search_markdown(r["results"])),
        ("query", "Query path: text -> top-10", format_query_markdown),
        ("indexing", "Indexing throughput (decode + sample + encode)", format_indexing_markdown),
        ("app", "App start-up", format_app_markdown),
        ("decode", "Decoding one clip", format_decode_markdown),
        ("scale", "Search at ten million (d = 512, top-10)", format_scale_markdown),
        ("engines", "Index engines: local and Ray on this machine", format_engines_markdown),
        ("recall", "Recall of the default search against exact search, faiss HNSW beside it (d = 512, top-10)",
         format_recall_markdown),
    ]
    for key, title, fmt in parts:
        if key in out and only in (None, key):
            lines += [f"### {title}", "", fmt(out[key]).rstrip(), ""]
    return "\n".join(lines)
