"""Evaluation results and how they are written: Markdown, JSON, a recall-at-K plot.

An :class:`EvalResult` holds one :class:`EvalRow` per (model, task); ``task`` names the
table a row belongs to (see ``TASKS``). The main table (``t2v``) follows the model card
of ``Searchium-ai/clip4clip-webvid150k`` (Model | R@1 | R@5 | R@10 | MdR | MnR), with the
card's published WebVid-10k rows alongside. Those rows come from different data; a row
is compared with one (``published``) only where it really is the same model and test
set family (the WebVid suite, WebVid feature files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from demo.evaluate.compositional import compositional_markdown
from demo.evaluate.metrics import metrics_from_ranks
from demo.files import atomic_write, atomic_write_json, has_section, write_section
from demo.models.device import default_device

METRIC_KEYS = ("R@1", "R@5", "R@10", "MdR", "MnR")
CURVE_K = 50  # the plot shows R@K for K = 1..CURVE_K
PUBLISHED_SOURCE = "model card of Searchium-ai/clip4clip-webvid150k, WebVid-10k test set"
# The card's table, text -> video on WebVid's 10k test clips: R@1, R@5, R@10 (%), MdR, MnR.
PUBLISHED_WEBVID10K: dict[str, dict[str, float]] = {
    "zero-shot CLIP": {"R@1": 37.16, "R@5": 62.10, "R@10": 71.16, "MdR": 3.0, "MnR": 42.2},
    "CLIP4Clip (MSR-VTT)": {"R@1": 38.38, "R@5": 62.89, "R@10": 72.01, "MdR": 3.0, "MnR": 39.3},
    "CLIP4Clip (150k WebVid)": {"R@1": 50.74, "R@5": 77.30, "R@10": 85.05, "MdR": 1.0, "MnR": 14.95},
    "binarised + rerank100": {"R@1": 50.56, "R@5": 76.39, "R@10": 83.51, "MdR": 1.0, "MnR": 43.3},
}
TASKS = {
    "t2v": "Text -> video, one canonical caption per video",
    "v2t": "Video -> text, one canonical caption per video",
    "t2v-all": "Text -> video, every caption is a query",
    "v2t-all": "Video -> text, a hit is any caption of the video, ranked against every caption of every "
               "other video (ours; stricter than CLIP4Clip's)",
    "v2t-groups": "Video -> text as CLIP4Clip scores several captions a video: the video's best caption "
                  "against each other video's best caption (comparable with CLIP4Clip's papers)",
    "t2v-pairs": "Direction-sensitive subset: text -> video for clips with a time-reversed twin "
                 "(queries restricted, search over the whole corpus)",
    "t2v-heldout": "Held-out subset: text -> video for clips showing a (colour, shape) never seen "
                   "in training (queries restricted, search over the whole corpus)",
}  # fmt: skip


@dataclass(frozen=True)
class EvalRow:
    """One line of a results table: model ``name`` on ``task`` (a key of ``TASKS``)."""

    name: str
    task: str
    metrics: dict[str, float]  # METRIC_KEYS, plus extras such as "Twin" for the pairs subset
    recall_curve: list[float]  # R@1 .. R@CURVE_K in percent
    queries: int
    notes: str = ""
    published: str | None = None  # key of PUBLISHED_WEBVID10K this row reproduces

    @classmethod
    def from_ranks(cls, name: str, task: str, ranks: np.ndarray, notes: str = "",
                   published: str | None = None, extra: dict[str, float] | None = None) -> EvalRow:
        """Metrics (plus ``extra`` ones) and the recall curve from (Q,) ranks (1 = best)."""
        ranks = np.asarray(ranks)
        curve = [float(100.0 * np.mean(ranks <= k)) for k in range(1, CURVE_K + 1)]
        metrics = {**metrics_from_ranks(ranks), **(extra or {})}
        return cls(name, task, metrics, curve, int(ranks.size), notes, published)

    def delta(self) -> dict[str, float] | None:
        """This row minus its published counterpart, or None without one."""
        if self.published is None:
            return None
        ref = PUBLISHED_WEBVID10K[self.published]
        return {k: round(self.metrics[k] - ref[k], 4) for k in METRIC_KEYS}


def _cells(metrics: dict[str, float], signed: bool = False) -> str:
    sign = "+" if signed else ""
    recalls = [f"{metrics[k]:{sign}.2f}" for k in METRIC_KEYS[:3]]
    return " | ".join([*recalls, f"{metrics['MdR']:{sign}g}", f"{metrics['MnR']:{sign}.2f}"])


HEADER = "| Model | R@1 | R@5 | R@10 | MdR | MnR |\n|---|---:|---:|---:|---:|---:|"


def _freeform_diagnostics(f: dict[str, Any], k: str) -> list[str]:
    """Where the free-form misses come from: attribute agreement of the top k, the shape-blind
    rate, and the event-recognition table (demo.evaluate.queries)."""
    out = []
    if f.get("agreement"):
        a = f["agreement"]
        out += [f"Where the misses come from: of the clips in the top {k}, the share holding an object with "
                "the asked " + ", ".join(f"{name} {v:.1f}%" for name, v in a.items())
                + (" (size over the queries that name one)." if "size" in a else ".")
                + (f" A ranking right on colour, event and size but blind to shape would answer "
                   f"{f['shape_blind']:.1f}% of these queries in its top {k}." if "shape_blind" in f else ""), ""]
    if f.get("events"):
        e = f["events"]
        out += [f"**Event recognition** ({e['clips']} lone-object test clips in the index, each scored against "
                "\"a {size} {colour} {shape} {event}\" for every event, its own object's words otherwise): "
                f"the right event first for {e['accuracy']:.1f}%.", "",
                "| event | clips | right (%) | most often taken for |", "|---|---:|---:|---|"]
        out += [f"| {name} | {row['clips']} | {row['accuracy']:.1f} | {row['confused_with'] or '-'} |"
                for name, row in e["events"].items()]
        out.append("")
    if f.get("compositional"):
        out += compositional_markdown(f["compositional"], int(k))
    return out


@dataclass(frozen=True)
class EvalResult:
    """All rows of one evaluation run plus what it ran on (``info``: device, models, frames,
    sample fps, test-set size, skipped files, the exact command)."""

    suite: str  # "embedded", "webvid" or "features"
    rows: list[EvalRow]
    info: dict[str, Any] = field(default_factory=dict)
    freeform: dict[str, Any] | None = None  # demo.evaluate.freeform.evaluate_freeform over an index

    def table(self, task: str) -> list[EvalRow]:
        return [r for r in self.rows if r.task == task]

    def row(self, name: str, task: str = "t2v") -> EvalRow:
        for r in self.rows:
            if r.name == name and r.task == task:
                return r
        raise KeyError(f"no row {name!r} in task {task!r}; rows: {[r.name for r in self.table(task)]}")

    def to_markdown(self) -> str:
        """Every task as a Markdown table in the model card's format, then the run's details."""
        out = [f"### Retrieval, `{self.suite}` suite", ""]
        for task, title in TASKS.items():
            rows = self.table(task)
            if not rows:
                continue
            out += [f"**{title}** ({rows[0].queries} queries)", "", HEADER]
            out += [f"| {r.name} | {_cells(r.metrics)} |" for r in rows]
            if task == "t2v":
                out += [f"| *published, WebVid-10k:* {n} | {_cells(m)} |"
                        for n, m in PUBLISHED_WEBVID10K.items()]
            out.append("")
            notes = [f"- {r.name}: {r.notes}" for r in rows if r.notes]
            out += [*notes, ""] if notes else []
            paired = [r for r in rows if r.published]
            if paired:
                out += ["Difference to the published row (this run minus published):", "",
                        "| Model | published row | R@1 | R@5 | R@10 | MdR | MnR |",
                        "|---|---|---:|---:|---:|---:|---:|"]
                out += [f"| {r.name} | {r.published} | {_cells(r.delta() or {}, signed=True)} |"
                        for r in paired]
                out.append("")
        out += [f"Published rows: {PUBLISHED_SOURCE}"
                + ("" if any(r.published for r in self.rows) else " (different data: for scale only)") + ".",
                "Ranks count ties against the query; R@K in percent, MdR/MnR median/mean rank."]
        if any("binarised + rerank" in r.name for r in self.rows):
            out.append("Binarised rows: sign codes of both sides, the R nearest videos by Hamming distance "
                       "reranked by cosine; a ground truth outside those R keeps its Hamming rank (> R, "
                       "ties against it).")
        out.append("")
        if self.freeform:
            f = self.freeform
            k = next(key for key in f if key.startswith("hit@") and key != "hit@1")
            out += [f"**Free-form queries** ({f['queries']} queries in phrasings no training caption uses, "
                    f"over the index of {f['index_size']} clips): a matching clip at rank 1 for "
                    f"{f['hit@1']:.1f}% of queries, in the top {k[4:]} for {f[k]:.1f}%."
                    + (f" The same queries with each event in the captions' own words (\"moving left\" for "
                       f"\"drifting to the left\"): {f['caption_words']['hit@1']:.1f}% at rank 1, "
                       f"{f['caption_words'][k]:.1f}% in the top {k[4:]}." if f.get("caption_words") else "")
                    + " Examples:", ""]
            out += [f"- \"{e['query']}\": first match at rank {e['first_match_rank'] or '> ' + k[4:]}"
                    for e in f["examples"][:8]]
            out.append("")
            out += _freeform_diagnostics(f, k[4:])
        for key, value in self.info.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                out.append(f"- {key}:")
                out += ["  - " + ", ".join(f"{a}: {b}" for a, b in v.items()) for v in value]
            else:
                out.append(f"- {key}: {_info_text(value)}")
        return "\n".join(out).rstrip() + "\n"

    def to_json(self) -> dict[str, Any]:
        rows = [{"name": r.name, "task": r.task, "metrics": r.metrics, "queries": r.queries,
                 "notes": r.notes, "published": r.published, "delta": r.delta(),
                 "recall_curve": [round(x, 4) for x in r.recall_curve]} for r in self.rows]
        return {"suite": self.suite, "info": self.info, "rows": rows, "tasks": TASKS, "freeform": self.freeform,
                "published": {"source": PUBLISHED_SOURCE, "rows": PUBLISHED_WEBVID10K}}

    def plot(self, path: str | Path) -> Path:
        """R@K for K = 1..50 of every text -> video and video -> text row, one panel each (PNG)."""
        import logging

        import matplotlib

        logging.getLogger("matplotlib").setLevel(logging.WARNING)  # font-cache chatter
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        tasks = [t for t in ("t2v", "v2t") if self.table(t)]
        fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.5), squeeze=False)
        ks = np.arange(1, CURVE_K + 1)
        for ax, task in zip(axes[0], tasks, strict=True):
            for r in self.table(task):
                ax.plot(ks, r.recall_curve, label=r.name)
            if task == "t2v":
                for name, m in PUBLISHED_WEBVID10K.items():
                    ax.plot([1, 5, 10], [m["R@1"], m["R@5"], m["R@10"]], ":", marker="x", alpha=0.6,
                            label=f"published WebVid-10k: {name}")
            ax.set(title=TASKS[task].split(",")[0], xlabel="K", ylabel="R@K (%)", ylim=(0, 100.5))
            ax.set_xlim(1, CURVE_K)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        fig.suptitle(f"evaluate: {self.suite} suite", fontsize=10)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``results.md``, ``results.json`` and ``recall_at_k.png`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md, js = out / "results.md", out / "results.json"
        atomic_write(md, self.to_markdown())
        atomic_write_json(js, self.to_json())
        return {"markdown": md, "json": js, "plot": self.plot(out / "recall_at_k.png")}


def run_info(test_set: str, skipped: list[tuple[str, str]], models: list[dict[str, Any]], device: str,
             seconds: float, command: str | None) -> dict[str, Any]:
    """What a result was computed on, recorded next to it."""
    from datetime import UTC, datetime

    out: dict[str, Any] = {"command": command or "(library call)", "device": device, "test_set": test_set,
                           "models": models}
    if skipped:
        out["skipped"] = {"count": len(skipped), "first": skipped[:20]}
    out["seconds"] = round(seconds, 1)
    out["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    return out


def command_line(options: dict[str, Any]) -> str:
    """``python -m demo evaluate --flag value ...`` from parsed options (None/False left out).

    >>> command_line({"suite": "webvid", "limit": 8, "no_hub": True, "models": ["a", "b c"], "out": None})
    "python -m demo evaluate --suite webvid --limit 8 --no-hub --models a 'b c'"
    """
    import shlex

    parts = ["python", "-m", "demo", "evaluate"]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, list | tuple):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def device_name(device: str | None) -> str:
    """``cuda (NVIDIA H100 ..., AMP fp16)`` or ``cpu (x86_64, 2 threads, fp32)``."""
    import platform

    import torch


    device = device or default_device()
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))}, AMP fp16)"
    return f"{device} ({platform.machine()}, {torch.get_num_threads()} threads, fp32)"


def _info_text(value: Any) -> str:
    if isinstance(value, str):
        return f"`{value}`" if value.startswith("python") else value
    return json.dumps(value, default=str)


def section_name(suite: str) -> str:
    """The marked section of BENCHMARKS.md a suite's tables live in (see :mod:`demo.files`)."""
    return f"evaluate:{suite}"


README_SECTION = "results:embedded"  # the README's summary table (the main text -> video rows)


def readme_table(result: EvalResult | dict[str, Any]) -> str:
    """The README's results summary: every text -> video row of a run (an :class:`EvalResult`, or its
    JSON as ``eval.json`` keeps it), then one line naming the command, the date and the test set.

    >>> row = {"name": "m", "task": "t2v", "queries": 1000,
    ...        "metrics": {"R@1": 86.4, "R@5": 99.4, "R@10": 99.8, "MdR": 1.0, "MnR": 1.226}}
    >>> info = {"command": "python -m demo evaluate", "created": "2026-12-07T03:30:34+00:00",
    ...         "test_set": "the test split", "device": "cpu"}
    >>> print(readme_table({"rows": [row], "info": info}))
    | Model | R@1 | R@5 | R@10 | MdR | MnR |
    |---|---:|---:|---:|---:|---:|
    | m | 86.4 | 99.4 | 99.8 | 1 | 1.23 |
    <BLANKLINE>
    Text -> video on the test split, one canonical caption per clip (1000 queries), written by `python -m demo evaluate` on 2026-12-07, cpu.
    """  # noqa: E501 - the doctest's expected line
    data = result.to_json() if isinstance(result, EvalResult) else result
    rows = [r for r in data.get("rows", []) if r.get("task") == "t2v"]
    if not rows:
        tasks = sorted({str(r.get("task")) for r in data.get("rows", [])})
        raise ValueError(f"no text -> video rows to summarise; the run's tasks: {tasks}")
    out = [HEADER]
    for r in rows:
        m = r["metrics"]
        recalls = " | ".join(f"{m[k]:.1f}" for k in METRIC_KEYS[:3])
        out.append(f"| {r['name']} | {recalls} | {m['MdR']:g} | {m['MnR']:.2f} |")
    info = data.get("info") or {}
    date = str(info.get("created", ""))[:10] or "an unrecorded date"
    out += ["", f"Text -> video on {info.get('test_set', 'the test set')}, one canonical caption per clip "
            f"({rows[0]['queries']} queries), written by `{info.get('command', 'python -m demo evaluate')}` "
            f"on {date}, {info.get('device', 'device not recorded')}."]
    return "\n".join(out)


def write_readme_results(readme: str | Path, result: EvalResult | dict[str, Any]) -> bool:
    """Replace the README's results section with :func:`readme_table`; everything else stays byte for
    byte. Returns False (and writes nothing) when ``readme`` is missing or has no such section, so a
    results file elsewhere never grows a README."""
    path = Path(readme)
    if not path.is_file() or not has_section(path.read_text(encoding="utf-8"), README_SECTION):
        return False
    write_section(path, README_SECTION, readme_table(result))
    return True


def write_benchmarks(result: EvalResult, benchmarks_md: str | Path, eval_json: str | Path | None,
                     readme: str | Path | None = None) -> list[Path]:
    """Replace the suite's marked section of ``benchmarks_md`` (created if missing) with the result's
    Markdown, write the result's JSON (plus its Markdown) to ``eval_json``, and the summary table into
    ``readme``'s results section when it has one. Returns the files written."""
    written = [write_section(benchmarks_md, section_name(result.suite), result.to_markdown())]
    if eval_json is not None:
        written.append(atomic_write_json(eval_json, {**result.to_json(), "markdown": result.to_markdown()}))
    if readme is not None and write_readme_results(readme, result):
        written.append(Path(readme))
    return written
