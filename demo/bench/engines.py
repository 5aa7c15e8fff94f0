"""Index engines compared (``python -m demo bench engines``): local and Ray, same inputs, same run.

- **throughput**: the same clips indexed by :func:`demo.index.build.build_index` (this process,
  decoding in threads ahead of the model) and by the Ray engine on a local Ray with this
  machine's CPUs (decode tasks + one encoder actor), for the embedded model on world clips and a
  ViT-B/32-sized vision tower on 224p clips. Ray's start-up is timed apart from the build.
- **merge memory**: the Ray engine's driver merging a work folder of ``merge_rows`` embeddings
  (512-d, written as shards first) into an index, sampled every 20 ms: the peak resident memory
  over what the driver held before (its item list), anonymous and file-backed apart.

Without Ray installed the throughput rows say so and only the local engine is timed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from demo.bench.common import TINY_TEXT, TINY_VISION, VITB32_VISION, random_encoder
from demo.bench.indexing import bench_encoder, hd_clips, world_clips
from demo.index.build import build_index
from demo.index.engines.ray_engine import LOOPBACK_ENV, RayOptions, build_index_ray
from demo.index.items import VideoItem
from demo.index.merge import ShardLedger, merge_index
from demo.index.workfolder import write_shard
from demo.models.fingerprint import ModelFingerprint
from demo.presets import EMBEDDED, resolve_preset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnginesScale:
    model: str = "both"  # "embedded", "vitb32", "both", or "tiny" (quick)
    videos: int = 32  # world clips for the embedded / tiny model
    hd_videos: int = 16  # 224p clips for the ViT-B/32 tower (4 shards at batch_size 4)
    batch_size: int = 4  # videos per encoder call and per shard (several shards: a steady rate)
    merge_rows: int = 1_000_000
    merge_shard_rows: int = 4096


def _model_dir(name: str, workdir: Path) -> tuple[Path, str]:
    """A checkpoint folder every engine can load (Ray's actors load their own copy)."""
    if name == "embedded":
        return Path(EMBEDDED.model), "the shipped embedded model (64 px frames, 128-d)"
    if name == "vitb32":
        text, vision, note = {**TINY_TEXT, "projection_dim": 512}, VITB32_VISION, \
            "random-init ViT-B/32 vision tower (224 px, 512-d)"
    else:
        text, vision, note = TINY_TEXT, TINY_VISION, "the tests' tiny towers"
    folder = workdir / f"model-{name}"
    if not folder.is_dir():
        encoder = random_encoder(text, vision, workdir, name=name, sample_fps=1.0 if name == "vitb32" else 4.0,
                                 max_frames=12 if name == "vitb32" else 6)
        encoder.model.save_pretrained(folder)
        shutil.copytree(workdir / "tokenizer", folder, dirs_exist_ok=True)
    return folder, note


class ShardWatch:
    """Watches a build's work folder: when its first and last shards appeared, and how many videos
    they held, so the steady rate (between them) is told apart from start-up and merge."""

    def __init__(self, work: Path, period: float = 0.05) -> None:
        self.work, self.period = work, period
        self.seen: dict[str, int] = {}  # shard file -> videos
        self.first = self.last = 0.0
        self.first_videos = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.period):
            for f in self.work.glob("shard-*.json") if self.work.is_dir() else ():
                if f.name not in self.seen:
                    try:
                        self.seen[f.name] = len(json.loads(f.read_text()))
                    except (OSError, ValueError):
                        continue
                    now = time.perf_counter()
                    if not self.first:
                        self.first, self.first_videos = now, self.seen[f.name]
                    self.last = now

    def __enter__(self) -> ShardWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def steady_rate(self) -> float | None:
        """Videos per second from the first shard to the last; None with fewer than three shards
        or under a second between them (results that arrive together say nothing about a rate)."""
        after = sum(self.seen.values()) - self.first_videos
        return after / (self.last - self.first) if len(self.seen) >= 3 and self.last - self.first >= 1 else None


def _timed(build: Any, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    with ShardWatch(out.with_name(out.name + ".partial")) as watch:
        build(out)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "first_shard_s": watch.first - start if watch.first else None,
            "steady_videos_per_s": watch.steady_rate()}


def _time_local(model: Path, items: list[VideoItem], out: Path, batch_size: int) -> dict[str, Any]:
    from demo.models.encoders import Clip4ClipEncoder

    start = time.perf_counter()
    encoder = Clip4ClipEncoder.from_pretrained(model, device="cpu")  # timed: the Ray engine loads it too
    load_s = time.perf_counter() - start
    timing = _timed(lambda o: build_index(items, o, encoder, batch_size=batch_size, progress=False, num_workers=2),
                    out)
    return {**timing, "wall_s": timing["wall_s"] + load_s}


def _time_engines(name: str, items: list[VideoItem], workdir: Path, scale: EnginesScale) -> dict[str, Any]:
    model, note = _model_dir(name, workdir)
    local = _time_local(model, items, workdir / f"local-{name}", scale.batch_size)
    row: dict[str, Any] = {"model": name, "note": note, "videos": len(items), "batch_size": scale.batch_size,
                           "local_s": local["wall_s"], "local": local}
    os.environ.setdefault(LOOPBACK_ENV, "0")  # the local Ray on 127.0.0.1 (see demo.index.engines.ray_engine)
    try:
        import ray
    except ImportError:
        return {**row, "ray": "not installed (pip install -r requirements-scale.txt)"}

    start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    row["ray_start_s"] = time.perf_counter() - start
    try:
        options = RayOptions(workers=1, batch_size=scale.batch_size)
        preset = resolve_preset(model=str(model))
        row["ray"] = _timed(lambda out: build_index_ray(items, out, preset, options, progress=False),
                            workdir / f"ray-{name}")
        row["ray_s"] = row["ray"]["wall_s"]
        row["ray_cpus"] = int(ray.cluster_resources().get("CPU", 0))
    finally:
        ray.shutdown()
    return row


class PeakMemory:
    """Samples this process's RSS (and its file-backed part) every ``period`` s while open."""

    def __init__(self, period: float = 0.02) -> None:
        import psutil

        self._proc, self.period = psutil.Process(), period
        self.base = self._proc.memory_info()
        self.peak_rss = self.peak_anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.period):
            m = self._proc.memory_info()
            self.peak_rss, self.peak_anon = max(self.peak_rss, m.rss), max(self.peak_anon, m.rss - m.shared)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def bench_merge(workdir: Path, rows: int, shard_rows: int, dim: int = 512, seed: int = 0) -> dict[str, Any]:
    """Peak driver memory while :func:`merge_index` merges ``rows`` embeddings (see the module docstring)."""
    fp = ModelFingerprint("merge-bench", "meanP", dim, 224, 12, 1.0)
    work = workdir / "merge-index.partial"
    ledger = ShardLedger(work, fp)
    rng = np.random.default_rng(seed)
    for s in range(0, rows, shard_rows):
        n = min(shard_rows, rows - s)
        write_shard(work, s // shard_rows, [f"v{i}" for i in range(s, s + n)],
                    rng.standard_normal((n, dim), dtype=np.float32))
    items = [VideoItem(f"v{i}", f"https://videos.example/{i}.mp4", (f"caption of video {i}",)) for i in range(rows)]
    ledger = ShardLedger(work, fp)  # reopened: what a resumed driver reads (ids only)

    def captions(texts: list[str]) -> Any:  # text encoding is not what is measured here
        for s in range(0, len(texts), 65536):
            yield np.arange(s, min(len(texts), s + 65536)), np.ones((min(65536, len(texts) - s), dim), np.float32)

    start = time.perf_counter()
    with PeakMemory() as peak:
        merge_index(ledger, items, workdir / "merge-index", fp, captions, {})
    seconds = time.perf_counter() - start
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(workdir / "merge-index", ignore_errors=True)
    base_anon = peak.base.rss - peak.base.shared
    mib = 2**20
    return {"rows": rows, "dim": dim, "seconds": seconds, "base_rss_mb": peak.base.rss / mib,
            "peak_rss_growth_mb": (peak.peak_rss - peak.base.rss) / mib,
            "peak_anon_growth_mb": (peak.peak_anon - base_anon) / mib,
            "held_float32_mb": rows * dim * 4 / mib}


def bench_engines(workdir: Path, scale: EnginesScale = EnginesScale()) -> dict[str, Any]:  # noqa: B008
    from demo.models.encoders import Clip4ClipEncoder

    models = ("embedded", "vitb32") if scale.model == "both" else (scale.model,)
    rows, costs = [], None
    for name in models:
        paths = hd_clips(workdir / "hd_clips", scale.hd_videos, 10.0) if name == "vitb32" \
            else world_clips(workdir / "world_clips", scale.videos)
        items = [VideoItem(p.stem, str(p), (p.stem,)) for p in paths]
        rows.append(_time_engines(name, items, workdir, scale))
        log.info("engines: %s", rows[-1])
        if name == models[-1]:  # per-video costs for the projection: the ViT-B/32 tower in a full run
            encoder = Clip4ClipEncoder.from_pretrained(_model_dir(name, workdir)[0], device="cpu")
            costs = {"model": name, **bench_encoder(encoder, paths, scale.batch_size)}
    return {"rows": rows, "costs": costs, "merge": bench_merge(workdir, scale.merge_rows, scale.merge_shard_rows)}


# Published throughput, for the GPU rows of the projection (no GPU was measured here): clip-retrieval's
# README, "clip inference ... (1500 sample/s on a 3080)" for CLIP ViT-B/32.
GPU_FRAMES_PER_S = 1500.0
# Assumed on-demand prices (not quotes): one vCPU-hour, one RTX 3080/A10-class GPU-hour.
CPU_CORE_HOUR_USD, GPU_HOUR_USD = 0.05, 0.60


def projection(costs: dict[str, Any], sizes: tuple[int, ...] = (1_000_000, 10_000_000)) -> list[str]:
    """Markdown rows: time and cost to embed ``sizes`` videos, CPU from the measured per-video
    costs, GPU from :data:`GPU_FRAMES_PER_S` (marked as published) with decoding on CPU cores."""
    frames, decode_s = costs["frames_per_clip"], costs["decode_ms_per_video"] / 1e3
    cpu_core_s = decode_s + costs["encode_ms_per_video"] / 1e3 * costs["torch_threads"]  # core-seconds a video
    gpu_videos_s = GPU_FRAMES_PER_S / frames
    cores_per_gpu = gpu_videos_s * decode_s  # cores decoding to keep one GPU busy
    lines = ["| where | videos/s | " + " | ".join(f"{n / 1e6:g}M videos: hours, cost" for n in sizes) + " |",
             "|---|---:|" + "---:|" * len(sizes)]
    setups = [
        ("this 2-core CPU (measured)", costs["pipelined_videos_per_s"], 2 * CPU_CORE_HOUR_USD),
        ("100 CPU cores (measured per-video cost, scaled)", 100 / cpu_core_s, 100 * CPU_CORE_HOUR_USD),
        (f"1 GPU + {cores_per_gpu:.0f} decode cores (published GPU rate)", gpu_videos_s,
         GPU_HOUR_USD + cores_per_gpu * CPU_CORE_HOUR_USD),
        (f"8 GPUs + {8 * cores_per_gpu:.0f} decode cores (published GPU rate)", 8 * gpu_videos_s,
         8 * (GPU_HOUR_USD + cores_per_gpu * CPU_CORE_HOUR_USD)),
    ]
    for name, rate, usd_per_hour in setups:
        cells = " | ".join(f"{n / rate / 3600:,.1f} h, ${n / rate / 3600 * usd_per_hour:,.0f}" for n in sizes)
        lines.append(f"| {name} | {rate:,.1f} | {cells} |")
    return lines


def format_engines_markdown(result: dict[str, Any]) -> str:
    lines = ["| model | videos | engine | build s | videos/s (whole build) | first shard after s "
             "| steady videos/s (first to last shard) |", "|---|---:|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        for engine, t in (("local", r["local"]), ("Ray", r.get("ray"))):
            if not isinstance(t, dict):
                lines.append(f"| {r['model']} | {r['videos']} | {engine} | {t} | | | |")
                continue
            first = f"{t['first_shard_s']:.1f}" if t["first_shard_s"] is not None else "n/a"
            steady = f"{t['steady_videos_per_s']:.2f}" if t["steady_videos_per_s"] else "n/a"
            lines.append(f"| {r['model']} | {r['videos']} | {engine} | {t['wall_s']:.1f} "
                         f"| {r['videos'] / t['wall_s']:.2f} | {first} | {steady} |")
    starts = [f"{r['model']} {r['ray_start_s']:.1f} s" for r in result["rows"] if "ray_start_s" in r]
    if starts:
        lines += ["", f"Starting the local Ray (not in the build times): {', '.join(starts)}."]
    c = result.get("costs")
    if c:
        lines += ["", f"**Projected time and cost** from the measured per-video costs of the {c['model']} model "
                  f"({c['frames_per_clip']:.0f} frames of {c['image_size']} px a video: decode "
                  f"{c['decode_ms_per_video']:.0f} ms on one core, encode {c['encode_ms_per_video']:.0f} ms on "
                  f"{c['torch_threads']} torch threads). GPU rows: CLIP ViT-B/32 at {GPU_FRAMES_PER_S:,.0f} "
                  "frames/s on an RTX 3080, **published** (clip-retrieval's README), not measured here; decoding "
                  f"stays on CPU cores. Prices are **assumptions**: ${CPU_CORE_HOUR_USD} a core-hour, "
                  f"${GPU_HOUR_USD} a GPU-hour.", "", *projection(c)]
    m = result["merge"]
    lines += ["", f"Batch size {result['rows'][0]['batch_size'] if result['rows'] else '?'}; the local engine "
              "decodes in 2 threads ahead of the model (2 torch threads); the Ray engine runs decode tasks and "
              "one encoder actor (1 torch thread) on a local Ray with this machine's CPUs. Build times include "
              "loading the model (the Ray engine loads it on the driver for the fingerprint, then once per "
              "actor) and the caption pass.", ""]
    lines += [f"- {r['model']}: {r['note']}" for r in result["rows"]]
    lines += ["", f"**Merge** ({m['rows']:,} rows x {m['dim']}, written as shards first): "
              f"{m['seconds']:.0f} s; the driver's peak resident memory grew by {m['peak_rss_growth_mb']:.0f} MiB "
              f"over the {m['base_rss_mb']:.0f} MiB it held before (its item list), of which "
              f"{m['peak_anon_growth_mb']:.0f} MiB anonymous (the rest: mapped staging files, page cache the "
              f"kernel can drop); holding the embeddings would take {m['held_float32_mb']:.0f} MiB of float32."]
    return "\n".join(lines) + "\n"
