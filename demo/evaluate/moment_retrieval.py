"""Moment retrieval on the embedded world: long videos composed from test clips, indexed as
overlapping windows through the real builder, searched with each part's caption.

Scored as on Charades-STA and QVHighlights: R@1 and R@5 at temporal IoU >= 0.5 and >= 0.7, and
the mean IoU of the first hit (:func:`demo.evaluate.metrics.moment_metrics`), next to the whole-video
ones (is the right long video first, in the top 5). Rows:

- corpus search: the moments :class:`demo.search.moments.MomentSearch` returns over every video (a hit
  must be in the right video), up to 5 per video;
- within the right video: the same moments ranked inside the true video only (the Charades-STA
  task, where the video is given);
- single windows: the corpus search without merging adjacent windows (``margin`` 0 would still
  merge ties; this row takes the best window alone);
- the best any run of adjacent windows could do (an upper bound set by the window grid);
- image queries: the middle frame of each part through CLIP's image tower.

The build is timed: minutes of video indexed per minute of wall time on this machine.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from demo.evaluate.longvideos import LongVideo, LongVideoConfig, compose, part_frame, write_long_videos
from demo.evaluate.metrics import MOMENT_IOU, moment_metrics, temporal_iou
from demo.evaluate.results import device_name
from demo.evaluate.suites import CLIP4CLIP_WORLD
from demo.files import atomic_write, atomic_write_json, write_section
from demo.index.items import items_from_csv
from demo.index.segment_build import build_segment_index
from demo.index.video_index import VideoIndex
from demo.models.encoders import Clip4ClipEncoder
from demo.presets import ROOT
from demo.search.moments import MERGE_MARGIN, MomentSearch
from demo.video.windows import SegmentSpec

log = logging.getLogger(__name__)

SECTION = "evaluate:moments"
RESULT_FILE = "moments.json"  # beside the model's eval.json; the app's Benchmark tab reads it
Span = tuple[str, float, float]  # (video id, start, end)
MOMENT_KEYS = tuple(f"R@{k} IoU>={t:g}" for k in (1, 5) for t in MOMENT_IOU) + ("mIoU",)


@dataclass(frozen=True)
class MomentRequest:
    """One moment evaluation: which model, which long videos, which windows."""

    model: str | Path = CLIP4CLIP_WORLD
    work: str | Path = ROOT / "work" / "moments"  # rendered videos and the built indexes
    videos: LongVideoConfig = LongVideoConfig()
    # The first is scored in full (and timed); the others get the corpus-search row and their speed.
    specs: tuple[SegmentSpec, ...] = (SegmentSpec(4.0, 2.0), SegmentSpec(8.0, 4.0))
    margins: tuple[float, ...] = (MERGE_MARGIN,)  # merge margins to score (one row each)
    images: bool = True  # also score image queries
    hour: bool = False  # also index one 60-minute video and record its speed and peak memory
    device: str | None = None
    command: str = "python -m demo evaluate --suite moments"


@dataclass(frozen=True)
class MomentResult:
    rows: list[dict[str, Any]]  # {"name", "segments", "queries", "metrics": {MOMENT_KEYS or video R@k}}
    speed: list[dict[str, Any]]  # per segmenting: seconds of video, build seconds, minutes per minute
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "speed": self.speed, "info": self.info}

    def to_markdown(self) -> str:
        return moments_markdown(self)


@dataclass(frozen=True)
class _Queries:
    texts: np.ndarray  # (Q, D) caption embeddings
    truth: list[Span]  # per query


def run_moments(request: MomentRequest) -> MomentResult:
    """Compose and render the long videos, build their segment indexes (timed), score every query."""
    videos = compose(request.videos)
    work = Path(request.work) / f"{request.videos.split}-{request.videos.seed}"
    csv = write_long_videos(work / "videos", videos)
    encoder = Clip4ClipEncoder.from_pretrained(request.model, device=request.device)
    queries = _Queries(encoder.encode_texts([p.caption for v in videos for p in v.parts]),
                       [(v.id, p.start, p.end) for v in videos for p in v.parts])
    rows, speed = [], []
    for n, spec in enumerate(request.specs):
        out = work / f"index-{spec.segment:g}-{spec.stride:g}"
        speed.append(_timed_build(csv, out, encoder, spec, request.model))
        index = VideoIndex.load(out)
        if n == 0:
            new = _text_rows(index, queries, request.margins)
            if request.images:
                images = encoder.encode_images(np.stack([part_frame(p) for v in videos for p in v.parts]))
                new.append(_row("image query (a part's middle frame), corpus search",
                                _found(MomentSearch(index), images, 5), queries.truth))
        else:
            search = MomentSearch(index)
            new = [_row("corpus search", _found(search, queries.texts, 5), queries.truth), _video_row(search, queries)]
        rows += [{**r, "segments": spec.describe()} for r in new]
    if request.hour:
        speed.append(_hour_check(work, encoder, request.specs[0], request.model))
    info = {"command": request.command, "device": device_name(encoder.device), "model": Path(request.model).name,
            "videos": len(videos), "parts": len(queries.truth), "composition": _composition(videos, request.videos),
            "merge_margin": request.margins[0], "created": datetime.now(UTC).isoformat(timespec="seconds")}
    return MomentResult(rows, speed, info)


def _timed_build(csv: Path, out: Path, encoder: Clip4ClipEncoder, spec: SegmentSpec,
                 model: str | Path) -> dict[str, Any]:
    load = os.getloadavg()[0]
    started = time.perf_counter()
    report = build_segment_index(items_from_csv(csv), out, encoder, spec, overwrite=True, progress=False,
                                 model_path=str(model))
    seconds = time.perf_counter() - started
    return {"segments": spec.describe(), "video_s": round(report.seconds, 1), "build_s": round(seconds, 2),
            "windows": report.windows, "minutes_per_minute": round(report.seconds / seconds, 1),
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}


def _hour_check(work: Path, encoder: Clip4ClipEncoder, spec: SegmentSpec, model: str | Path) -> dict[str, Any]:
    """Index one 60-minute video (world clips back to back, rendered a part at a time) and record the
    speed and how far the process's memory rose above what it held before (sampled every 50 ms)."""
    import psutil

    video = compose(LongVideoConfig(videos=1, parts=(480, 480), part_seconds=(7.0, 8.0), seed=60))[0]
    csv = write_long_videos(work / "hour", [video])
    process = psutil.Process()
    before, peak, done = process.memory_info().rss, [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        row = _timed_build(csv, work / "index-hour", encoder, spec, model)
    finally:
        done.set()
        sampler.join()
    frames = int(video.duration * video.fps)
    return {**row, "segments": f"{spec.describe()}, one {video.duration / 60:.0f}-minute video",
            "peak_mb": round(max(0, peak[0] - before) / 2**20, 1),
            "frames_mb": round(frames * 128 * 128 * 3 / 2**20)}


def _found(search: MomentSearch, queries: np.ndarray, per_video: int) -> list[list[Span]]:
    return [[(m.id, m.start, m.end) for m in search.search(q, k=5, per_video=per_video, exact=True)]
            for q in queries]


def _row(name: str, found: list[list[Span]], truth: list[Span]) -> dict[str, Any]:
    return {"name": name, "queries": len(truth), "metrics": moment_metrics(found, truth)}


def _text_rows(index: VideoIndex, queries: _Queries, margins: tuple[float, ...]) -> list[dict[str, Any]]:
    rows, truth = [], queries.truth
    for margin in margins:
        name = "corpus search" if len(margins) == 1 else f"corpus search, merge margin {margin:g}"
        rows.append(_row(name, _found(MomentSearch(index, margin=margin), queries.texts, 5), truth))
    search = MomentSearch(index, margin=margins[0])
    inside = [[(m.id, m.start, m.end) for m in search.in_video(q, video, k=5)]
              for q, (video, _, _) in zip(queries.texts, truth, strict=True)]
    rows.append(_row("within the right video (the video is given)", inside, truth))
    single = MomentSearch(index, margin=-1.0)  # nothing joins the best window
    rows.append(_row("corpus search, single windows (no merging)", _found(single, queries.texts, 5), truth))
    rows.append(_row("best run of adjacent windows (upper bound of the window grid)",
                     [[_best_run(search, video, start, end)] for video, start, end in truth], truth))
    rows.append(_video_row(search, queries))
    return rows


def _video_row(search: MomentSearch, queries: _Queries) -> dict[str, Any]:
    """Whole-video retrieval: is the query's long video first, in the top 5 (one moment per video)."""
    by_video = [[m.id for m in search.search(q, k=5, per_video=1, exact=True)] for q in queries.texts]
    hits = np.array([[v == video for v in found] + [False] * (5 - len(found))
                     for found, (video, _, _) in zip(by_video, queries.truth, strict=True)])
    return {"name": "whole-video retrieval: the right long video", "queries": len(hits),
            "metrics": {"R@1": float(100 * hits[:, 0].mean()), "R@5": float(100 * hits.any(axis=1).mean())}}


def _best_run(search: MomentSearch, video: str, start: float, end: float) -> tuple[str, float, float]:
    rows = search.table.rows[video]
    s, e = search.table.starts[rows], search.table.ends[rows]
    runs = [(float(s[i]), float(e[j])) for i in range(len(rows)) for j in range(i, len(rows))]
    best = max(runs, key=lambda r: temporal_iou(r, (start, end)))
    return video, best[0], best[1]


def _composition(videos: list[LongVideo], config: LongVideoConfig) -> str:
    durations = [v.duration for v in videos]
    return (f"{len(videos)} videos of {config.parts[0]}-{config.parts[1]} {config.split} clips (seed {config.seed}), "
            f"each clip slowed to {config.part_seconds[0]:g}-{config.part_seconds[1]:g} s; videos "
            f"{min(durations):.0f}-{max(durations):.0f} s, {sum(durations) / 60:.1f} min in all")


def moments_markdown(result: MomentResult) -> str:
    """The result as Markdown: the moment table, the whole-video rows, the indexing speed."""
    info = result.info
    lines = [f"**Moments in long videos**: {info.get('composition', '')}; one query per part, its canonical "
             f"caption ({info.get('parts', 0)} queries); a hit must be in the right video.", "",
             "| Windows | Search | R@1 IoU≥0.5 | R@1 IoU≥0.7 | R@5 IoU≥0.5 | R@5 IoU≥0.7 | mIoU |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in result.rows:
        if "mIoU" in r["metrics"]:
            cells = " | ".join(f"{r['metrics'][k]:.1f}" for k in MOMENT_KEYS)
            lines.append(f"| `{r.get('segments', '')}` | {r['name']} | {cells} |")
    lines += ["", "**Whole-video retrieval** (the right long video at rank 1 / in the top 5, one moment per video): "
              + "; ".join(f"`{r.get('segments', '')}` {r['metrics']['R@1']:.1f} / {r['metrics']['R@5']:.1f}"
                          for r in result.rows if "mIoU" not in r["metrics"]), "",
              "**Indexing speed** (`build_segment_index`: decode, embed, captions and the atomic write, in one "
              "process: the model on one torch thread, the decoder in a thread beside it; this 2-core machine is "
              "shared with other jobs, so the load average is given):", "",
              "| Windows | video | windows | build | minutes of video per minute | load average |",
              "|---|---:|---:|---:|---:|---|"]
    lines += [f"| `{s['segments']}` | {s['video_s'] / 60:.1f} min | {s['windows']} | {s['build_s']:.1f} s | "
              f"**{s['minutes_per_minute']:g}** | {s['load_before']:g} -> {s['load_after']:g} |" for s in result.speed]
    lines += [f"\nThe {s['video_s'] / 60:.0f}-minute video streamed through memory: the process grew by at most "
              f"**{s['peak_mb']:g} MB** while indexing it (its frames alone, decoded, would take "
              f"{s['frames_mb']:,} MB)." for s in result.speed if "peak_mb" in s]
    lines += ["", f"Moments merge adjacent windows scoring within {100 * float(info.get('merge_margin', 0)):g}% of the "
                  "best one's score; R@5 takes up to 5 moments per video.", "",
              f"- command: `{info.get('command')}`", f"- device: {info.get('device')}", f"- model: {info.get('model')}",
              f"- created: {info.get('created')}"]
    return "\n".join(lines)


def read_moments(path: str | Path) -> str:
    """A stored ``moments.json`` as Markdown ("" when there is none or it is unreadable)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return moments_markdown(MomentResult(list(data["rows"]), list(data["speed"]), dict(data["info"])))
    except (OSError, ValueError, KeyError, TypeError) as err:
        if Path(path).exists():
            log.warning("cannot read %s: %s", path, err)
        return ""


def save_moments(result: MomentResult, out: str | Path) -> list[Path]:
    """``moments.json`` and ``moments.md`` into the folder ``out``."""
    folder = Path(out)
    return [atomic_write_json(folder / RESULT_FILE, result.to_json()),
            atomic_write(folder / "moments.md", result.to_markdown() + "\n")]


def publish_moments(result: MomentResult, model: str | Path, benchmarks: str | Path | None = None) -> list[Path]:
    """The result into BENCHMARKS.md's ``evaluate:moments`` section and ``<model>/moments.json``."""
    target = Path(benchmarks) if benchmarks is not None else ROOT / "BENCHMARKS.md"
    write_section(target, SECTION, result.to_markdown())
    return [target, atomic_write_json(Path(model) / RESULT_FILE, result.to_json())]
