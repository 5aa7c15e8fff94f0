"""Indexing throughput: videos per second through decode + sample + encode.

For each model the same clips go through :class:`demo.models.encoders.Clip4ClipEncoder` twice:

- serial: every clip decoded (``load_video``) one after another, then the batches encoded
  (``encode_frames``); the split says how much of the work decoding is;
- pipelined: what ``encode_videos`` runs, ``iter_batches`` decoding in threads ahead of
  ``encode_frames``; the decode share here is the time the loop spent waiting for decoded
  batches, ``(wall - time inside encode_frames) / wall``, both measured in that same run.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demo.bench.common import TINY_TEXT, TINY_VISION, VITB32_VISION, embedded_encoder, random_encoder
from demo.bench.decode import synthetic_frames
from demo.video.mp4 import write_mp4
from demo.world import WorldConfig, clip_specs, render_to

if TYPE_CHECKING:
    from demo.models.encoders import Clip4ClipEncoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexingScale:
    models: tuple[str, ...] = ("embedded", "vitb32")  # also "tiny" (the tests' towers)
    world_videos: int = 32  # rendered world clips for the embedded / tiny model
    hd_videos: int = 8  # 224p synthetic clips for the ViT-B/32 tower
    hd_seconds: float = 10.0
    batch_size: int = 8
    workers: int = 2
    share_target: float = 0.20  # decoding should be at most this share of index-building time


def world_clips(folder: Path, count: int) -> list[Path]:
    """The first ``count`` world test clips (128x128, 12 fps, a few seconds), rendered to mp4."""
    folder.mkdir(parents=True, exist_ok=True)
    return [render_to(spec, folder / f"{spec.id}.mp4") for spec in clip_specs(WorldConfig(), "test")[:count]]


def hd_clips(folder: Path, count: int, seconds: float, height: int = 224, fps: float = 30.0) -> list[Path]:
    """``count`` synthetic ``height``p 16:9 clips (two distinct encodes, then copies of them:
    decoding cost depends on the stream, not on which file it sits in)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for i in range(count):
        path = folder / f"hd_{i:03d}.mp4"
        if i < 2:
            write_mp4(path, synthetic_frames(seconds, height, fps, seed=i), fps)
        else:
            shutil.copyfile(paths[i % 2], path)
        paths.append(path)
    return paths


def model_for(name: str, workdir: Path) -> tuple[Clip4ClipEncoder, str]:
    """(encoder, note) for "embedded", "vitb32" or "tiny"."""
    if name == "embedded":
        return embedded_encoder(workdir)
    text = {**TINY_TEXT, "projection_dim": 512}
    if name == "vitb32":
        return random_encoder(text, VITB32_VISION, workdir, name="vision-vitb32", sample_fps=1.0,
                              max_frames=12), "random-init CLIP ViT-B/32 vision tower, CLIP4Clip sampling"
    if name == "tiny":
        return random_encoder(TINY_TEXT, TINY_VISION, workdir, name="tiny", sample_fps=4.0,
                              max_frames=6), "the tests' tiny towers"
    raise ValueError(f"unknown indexing model {name!r}; expected embedded, vitb32 or tiny")


def bench_encoder(encoder: Clip4ClipEncoder, paths: list[Path], batch_size: int = 8,
                  workers: int = 2) -> dict[str, Any]:
    """Serial split and pipelined wall time of embedding ``paths``; see the module docstring."""
    import torch

    encoder.encode_videos(paths[:batch_size], batch_size=batch_size, workers=1)  # warm-up: first calls
    start = time.perf_counter()
    clips = [encoder.load_video(p) for p in paths]
    decode_s = time.perf_counter() - start
    frames_per_clip = float(sum(int(m.sum()) for _, m in clips)) / len(clips)
    encode_s = 0.0
    for s in range(0, len(clips), batch_size):
        batch = clips[s : s + batch_size]
        frames, mask = torch.stack([f for f, _ in batch]), torch.stack([m for _, m in batch])
        t0 = time.perf_counter()
        encoder.encode_frames(frames, mask)
        encode_s += time.perf_counter() - t0
    del clips
    start, inside = time.perf_counter(), 0.0
    for _, (frames, mask) in encoder.iter_batches(paths, batch_size, workers):
        t0 = time.perf_counter()
        encoder.encode_frames(frames, mask)
        inside += time.perf_counter() - t0
    wall = time.perf_counter() - start
    n = len(paths)
    return {
        "videos": n, "frames_per_clip": frames_per_clip, "image_size": encoder.image_size,
        "batch_size": batch_size, "workers": workers, "torch_threads": torch.get_num_threads(),
        "decode_ms_per_video": 1e3 * decode_s / n, "encode_ms_per_video": 1e3 * encode_s / n,
        "serial_videos_per_s": n / (decode_s + encode_s), "pipelined_videos_per_s": n / wall,
        "decode_share_serial": decode_s / (decode_s + encode_s),
        "encode_ms_per_video_pipelined": 1e3 * inside / n,
        "decode_share_pipelined": max(0.0, wall - inside) / wall,
    }


def bench_indexing(workdir: Path, scale: IndexingScale = IndexingScale()) -> dict[str, Any]:  # noqa: B008
    """Throughput rows for every model in ``scale.models``."""
    rows = []
    for name in scale.models:
        encoder, note = model_for(name, workdir)
        if name == "vitb32":
            paths = hd_clips(workdir / "hd_clips", scale.hd_videos, scale.hd_seconds)
            clip = f"{scale.hd_seconds:g} s 398x224 30 fps synthetic"
        else:
            paths = world_clips(workdir / "world_clips", scale.world_videos)
            clip = "world test clips, 128x128 12 fps"
        row = {"model": name, "note": note, "clips": clip,
               **bench_encoder(encoder, paths, scale.batch_size, scale.workers)}
        row["holds"] = row["decode_share_pipelined"] <= scale.share_target
        log.info("indexing: %s %.2f videos/s pipelined, decode share %.0f%% serial / %.0f%% pipelined", name,
                 row["pipelined_videos_per_s"], 100 * row["decode_share_serial"],
                 100 * row["decode_share_pipelined"])
        rows.append(row)
    return {"rows": rows, "share_target": scale.share_target}


def format_indexing_markdown(result: dict[str, Any]) -> str:
    lines = ["| model | clips | frames x size | decode ms/video | encode ms/video | serial videos/s "
             "| pipelined videos/s | decode share serial | decode share pipelined |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['videos']} x {r['clips']} | {r['frames_per_clip']:.1f} x {r['image_size']}² "
            f"| {r['decode_ms_per_video']:.1f} | {r['encode_ms_per_video']:.1f} "
            f"| {r['serial_videos_per_s']:.2f} | {r['pipelined_videos_per_s']:.2f} "
            f"| {r['decode_share_serial']:.0%} | {r['decode_share_pipelined']:.0%} |"
        )
    first = result["rows"][0] if result["rows"] else {}
    lines += ["", f"Batch size {first.get('batch_size')}, {first.get('workers')} decode threads ahead of "
              f"the model, {first.get('torch_threads')} torch threads. Serial: all clips decoded, then "
              "encoded. Pipelined share: time the model loop waited for decoded batches / wall time, "
              "in the same run."]
    lines += [f"- {r['model']}: {r['note']}" for r in result["rows"] if r["note"]]
    return "\n".join(lines) + "\n"
