"""The resumable builder of long-video indexes: ``index build VIDEOS --segment S --stride T``.

Each video is cut into overlapping windows (:class:`demo.video.windows.SegmentSpec`) and
embedded from one streaming decode (:func:`demo.index.segments.embed_video_windows`); the index
holds one row per window (:mod:`demo.index.segments`). The work folder is the whole-clip
builder's (:mod:`demo.index.build`): shards of window embeddings by row id, ``failed.jsonl`` for
files that are not videos, plus

- ``videos.jsonl``  one line per finished video: ``{"id", "duration", "windows": [[s, e], ...],
                    "skipped": [[s, e, reason], ...]}``

so a restart skips finished videos, and a video cut off in the middle resumes at its first
window without an embedding (the decoder seeks there). A work folder started with other
segmenting, or without any, is refused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from demo.errors import IndexFormatError, VideoDecodeError
from demo.index.build import check_request, media_root_entry
from demo.index.captions import caption_embeddings
from demo.index.format import PARTIAL_SUFFIX
from demo.index.items import VideoItem
from demo.index.lock import writer_lock
from demo.index.segments import SEGMENTS, VideoPlan, WindowEncoder, embed_video_windows, plan_video, row_id, window_rows
from demo.index.store import disk_error, read_manifest
from demo.index.video_index import VideoIndex
from demo.index.workfolder import FAILED, WorkFolder, file_stamp
from demo.video.windows import SegmentSpec

log = logging.getLogger(__name__)

VIDEOS = "videos.jsonl"


class SegmentEncoder(WindowEncoder, Protocol):
    """An encoder that also embeds the captions (``Clip4ClipEncoder``)."""

    def encode_texts(self, texts: list[str], batch_size: int = 64) -> np.ndarray: ...


@dataclass(frozen=True)
class SkippedWindows:
    """Windows of one video whose frames could not be decoded."""

    path: str
    spans: list[tuple[float, float]]
    reason: str


@dataclass(frozen=True)
class SegmentReport:
    videos: int  # videos in the written index
    windows: int  # rows (windows) in the written index
    seconds: float  # total length of the indexed videos
    skipped: list[tuple[str, str]]  # (path, reason) of every file that could not be decoded at all
    skipped_windows: list[SkippedWindows] = field(default_factory=list)
    resumed_from: int = 0  # windows already embedded in the work folder at start
    not_retried: list[tuple[str, str]] = field(default_factory=list)  # failures of an earlier run, unchanged


def _read_videos(work: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    path = work / VIDEOS
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
                done[str(record["id"])] = record
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by an interrupt
    return done


def _append(path: Path, record: dict[str, Any]) -> None:
    # Appended and fsynced like failed.jsonl (see demo.index.build): one line per finished video.
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _check_out(out: Path, spec: SegmentSpec, overwrite: bool) -> None:
    """Refuse to segment over an index built without segmenting (or with other windows) unless
    told to replace it."""
    if not (out / "manifest.json").is_file() or overwrite:
        return
    old = read_manifest(out).get(SEGMENTS)
    if old is None:
        raise IndexFormatError(f"{out} holds an index built without --segment (one row per whole video); "
                               f"segmenting it means rebuilding it: pass --overwrite, or choose another --out")
    raise IndexFormatError(f"{out} already holds an index ({SegmentSpec.from_dict(old).describe()}); pass "
                           "--overwrite to replace it")


def build_segment_index(
    items: Iterable[VideoItem],
    out_dir: str | Path,
    encoder: SegmentEncoder,
    spec: SegmentSpec,
    batch_size: int = 32,
    progress: bool = True,
    overwrite: bool = False,
    model_path: str | None = None,
    media_root: str | Path | None = None,
    retry_failed: bool = False,
    threads: int | None = 1,
) -> SegmentReport:
    """Embed every video of ``items`` as windows of ``spec`` into an index at ``out_dir``, resumably.

    ``batch_size`` windows are pooled (and saved) at a time. ``threads``: torch threads for the model
    (None: torch's setting); the decoder runs in a thread of its own beside it. One model thread plus
    the decoder beats a two-thread torch team on two cores, and by far on a busy machine, where the
    team's threads wait on each other (docs/experiments.md, 2026-12-06: 42-73 against 17-22 minutes of
    video per minute at a load average near 9). Files that are not videos are
    recorded and skipped as in :func:`demo.index.build.build_index`; windows whose frames are
    damaged are skipped and reported, the rest of their video is kept. Raises IndexFormatError
    for a target that holds an index (without ``overwrite``), a work folder of another model or
    other segmenting, a full disk, or when no window at all could be embedded.
    """
    items, out = list(items), Path(out_dir)
    _check_out(out, spec, overwrite)
    check_request(items, out, batch_size, overwrite)
    with writer_lock(out):
        try:
            return _SegmentBuild(items, out, encoder, spec, batch_size, progress, threads).run(
                overwrite, model_path, media_root, retry_failed)
        except OSError as err:
            raise disk_error(err, f"the work folder {out.with_name(out.name + PARTIAL_SUFFIX)}") from err


class _SegmentBuild:
    """One run of the builder over its work folder."""

    def __init__(self, items: list[VideoItem], out: Path, encoder: SegmentEncoder, spec: SegmentSpec,
                 batch_size: int, progress: bool, threads: int | None) -> None:
        self.items, self.out, self.encoder, self.spec = items, out, encoder, spec
        self.batch_size, self.progress, self.threads = batch_size, progress, threads
        self.work = WorkFolder(out.with_name(out.name + PARTIAL_SUFFIX), encoder.fingerprint, spec.to_dict())
        self.videos = _read_videos(self.work.path)

    def run(self, overwrite: bool, model_path: str | None, media_root: str | Path | None,
            retry_failed: bool) -> SegmentReport:
        work = self.work
        resumed = len(work.done)
        earlier = {i: f for i, f in work.failed.items() if i not in self.videos}
        again = {i for i, f in earlier.items() if retry_failed or f.stamp != file_stamp(f.path)}
        todo = [it for it in self.items if it.id not in self.videos and (it.id not in earlier or it.id in again)]
        if resumed or len(todo) < len(self.items):
            log.info("resuming %s: %d videos finished, %d windows embedded, %d to go", work.path, len(self.videos),
                     resumed, len(todo))
        from demo.models.encoders import torch_threads  # the encoders are torch models; this loads torch

        with torch_threads(self.threads):  # the windows only: encode_texts sets its own threads
            self._embed(todo)
        skipped = [(work.failed[it.id].path, work.failed[it.id].reason) for it in self.items if it.id in work.failed]
        not_retried = [(f.path, f.reason) for i, f in earlier.items() if i not in again and i in work.failed]
        kept = [it for it in self.items if it.id in self.videos]
        rows = [row for it in kept for row in self._rows(it)]
        if not rows:
            reasons = "; ".join(f"{p}: {r}" for p, r in skipped[:3]) or "every window was damaged"
            raise IndexFormatError(f"no video could be decoded ({len(skipped)} failed, e.g. {reasons}); "
                                   f"the failures are listed in {work.path / FAILED}")
        fp = self.encoder.fingerprint
        cap_emb, cap_rows = caption_embeddings(self.encoder.encode_texts, rows, fp.dim, 64, self.progress)
        index = VideoIndex.from_arrays(fp, np.stack([work.done[r["id"]] for r in rows]), rows, cap_emb, cap_rows)
        index.info[SEGMENTS] = self.spec.to_dict()
        if model_path:
            index.info["model_path"] = model_path
        if media_root:
            index.info["media_root"] = media_root_entry(media_root, self.out)
        index.save(self.out, overwrite=overwrite)
        shutil.rmtree(work.path, ignore_errors=True)
        report = SegmentReport(len(kept), len(rows), sum(float(self.videos[it.id]["duration"]) for it in kept),
                               skipped, self._skipped_windows(kept), resumed, not_retried)
        log.info("indexed %d windows of %d videos into %s", report.windows, report.videos, self.out)
        return report

    def _embed(self, todo: list[VideoItem]) -> None:
        plans: list[tuple[VideoItem, VideoPlan]] = []
        for it in todo:
            try:
                plans.append((it, plan_video(it.path, self.spec, self.encoder)))
            except (VideoDecodeError, OSError) as err:
                self.work.add_failure(it, str(err) or type(err).__name__)
        total = round(sum(p.duration for _, p in plans))
        with tqdm(total=total, desc="indexing", unit="s", disable=not self.progress) as bar:
            for it, plan in plans:
                self._embed_video(it, plan, lambda seconds: bar.update(round(seconds)))

    def _embed_video(self, item: VideoItem, plan: VideoPlan, progress: Callable[[float], None]) -> None:
        """Embed the windows of ``item`` that the work folder lacks; record the video as finished.
        ``progress`` is told the seconds of video passed (whole seconds add up to the duration)."""
        todo = [w for w in plan.windows if row_id(item.id, w.start) not in self.work.done]
        shown = 0.0

        def reach(t: float) -> None:
            nonlocal shown
            if round(t) > round(shown):
                progress(round(t) - round(shown))
            shown = max(shown, t)

        reach(todo[0].start if todo else plan.duration)
        skipped: list[list[Any]] = []
        try:
            for batch in embed_video_windows(item.path, plan, self.encoder, todo, self.batch_size):
                if batch.embeddings is None:
                    skipped += [[w.start, w.end, batch.reason] for w in batch.windows]
                else:
                    self.work.add_shard([row_id(item.id, w.start) for w in batch.windows], batch.embeddings)
                reach(batch.windows[-1].end)
        except VideoDecodeError as err:
            self.work.add_failure(item, str(err))
            return
        reach(plan.duration)
        if len(skipped) == len(plan.windows):
            self.work.add_failure(item, f"no window could be decoded: {skipped[0][2]}")
            return
        record = {"id": item.id, "duration": plan.duration, "windows": [[w.start, w.end] for w in plan.windows],
                  "skipped": skipped}
        _append(self.work.path / VIDEOS, record)
        self.videos[item.id] = record
        self.work.failed.pop(item.id, None)  # failed in an earlier run, fixed since

    def _rows(self, item: VideoItem) -> list[dict[str, Any]]:
        record = self.videos[item.id]
        bounds = [(float(s), float(e)) for s, e in record["windows"]]
        kept = [(s, e) for s, e in bounds if row_id(item.id, s) in self.work.done]
        base = item.row()
        first = {k: v for k, v in base.items() if k not in ("id", "path")}
        return window_rows(item.id, str(base["path"]), kept, {**first, "duration": record["duration"]})

    def _skipped_windows(self, kept: list[VideoItem]) -> list[SkippedWindows]:
        out = []
        for it in kept:
            spans = [(float(s), float(e)) for s, e, _ in self.videos[it.id]["skipped"]]
            if spans:
                out.append(SkippedWindows(it.path, spans, str(self.videos[it.id]["skipped"][0][2])))
        return out
