"""The resumable index builder: video files in, an index folder out.

:func:`build_index` decodes and embeds :class:`~demo.index.items.VideoItem` rows batch by
batch, and can pick up where an interrupted run stopped: its work folder
(:mod:`demo.index.workfolder`) keeps every finished batch and every failure.

A restart skips every id already in a shard, and a failure unless its file changed. At the end the captions
are encoded, the index is written atomically to ``out_dir`` and the work folder removed.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from demo.errors import IndexFormatError, InputError, VideoDecodeError
from demo.index.captions import caption_embeddings
from demo.index.format import PARTIAL_SUFFIX
from demo.index.items import VideoItem
from demo.index.lock import writer_lock
from demo.index.remote import local_copy
from demo.index.store import check_target, disk_error
from demo.index.video_index import VideoIndex
from demo.index.workfolder import FAILED, Failure, WorkFolder, file_stamp
from demo.models.fingerprint import ModelFingerprint

log = logging.getLogger(__name__)



class FrameEncoder(Protocol):
    """What :func:`build_index` needs from an encoder (``Clip4ClipEncoder`` provides it)."""

    @property
    def fingerprint(self) -> ModelFingerprint: ...

    def load_video(self, path: str | Path) -> tuple[Any, Any]: ...  # -> frames (T,3,S,S), mask (T,)

    def encode_frames(self, frames: Any, mask: Any) -> np.ndarray: ...  # (B,T,3,S,S), (B,T) -> (B, D)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...  # -> (N, D)


@dataclass(frozen=True)
class BuildReport:
    indexed: int  # videos in the written index
    skipped: list[tuple[str, str]]  # (path, reason) of every file that could not be decoded
    resumed_from: int  # videos whose embeddings were already in the work folder at start
    # (path, reason) of the skipped files that failed in an earlier run and were not tried again
    # (unchanged since; ``retry_failed`` tries them anyway)
    not_retried: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------- the work folder




# ----------------------------------------------------------------- decode and embed


def _stack(frames: list[Any], masks: list[Any]) -> tuple[Any, Any]:
    """One batch of clips, padded to the longest with masked slots (clips sampled every second have
    as many frames as seconds); numpy for numpy encoders, torch otherwise."""
    if isinstance(frames[0], np.ndarray):
        t = max(len(m) for m in masks)
        x = np.zeros((len(frames), t, *frames[0].shape[1:]), frames[0].dtype)
        m = np.zeros((len(masks), t), bool)
        for i, (f, k) in enumerate(zip(frames, masks, strict=True)):
            x[i, : len(f)], m[i, : len(k)] = f, k
        return x, m
    from demo.video.preprocess import stack_clips  # torch: only when the encoder hands out tensors

    return stack_clips(list(zip(frames, masks, strict=True)))


def _decoded(
    batches: list[list[VideoItem]], load: Callable[[VideoItem], Any], pool: ThreadPoolExecutor | None
) -> Iterator[tuple[list[VideoItem], list[Any]]]:
    """Yield (batch, load results). With a pool, the next batch decodes while the caller
    encodes the current one (decoders and torch both release the GIL)."""
    if pool is None:
        for batch in batches:
            yield batch, [load(it) for it in batch]
        return
    pending: tuple[list[VideoItem], list[Future[Any]]] | None = None
    for batch in batches:
        futures = [pool.submit(load, it) for it in batch]  # queued before the last batch is handed out
        if pending is not None:
            yield pending[0], [f.result() for f in pending[1]]
        pending = (batch, futures)
    if pending is not None:
        yield pending[0], [f.result() for f in pending[1]]


def _load(encoder: FrameEncoder, item: VideoItem) -> tuple[Any, Any] | str:
    """Frames and mask of one item (a URL is fetched first), or why it could not be decoded."""
    try:
        with local_copy(item.path) as path:
            return encoder.load_video(path)
    except (VideoDecodeError, OSError) as e:
        return str(e) or type(e).__name__


def _embed_batch(
    encoder: FrameEncoder, dim: int, work: WorkFolder, batch: list[VideoItem], results: list[Any]
) -> None:
    """Record the batch's failures and write the rest's embeddings as one shard."""
    ok, frames, masks = [], [], []
    for it, res in zip(batch, results, strict=True):
        if isinstance(res, str):
            work.add_failure(it, res)
        else:
            ok.append(it.id)
            frames.append(res[0])
            masks.append(res[1])
    if not ok:
        return
    emb = np.asarray(encoder.encode_frames(*_stack(frames, masks)), dtype=np.float32)
    if emb.shape != (len(ok), dim) or not np.isfinite(emb).all():
        raise ValueError(
            f"encode_frames gave {emb.shape} (finite: {np.isfinite(emb).all()}), "
            f"expected finite ({len(ok)}, {dim})"
        )
    work.add_shard(ok, emb)


def _embed_all(
    todo: list[VideoItem],
    total: int,
    encoder: FrameEncoder,
    work: WorkFolder,
    batch_size: int,
    num_workers: int,
    progress: bool,
) -> None:
    """Decode and embed ``todo`` (of ``total`` items) into the work folder, batch by batch."""
    dim = encoder.fingerprint.dim
    batches = [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]
    pool = ThreadPoolExecutor(num_workers) if num_workers > 0 else None
    bar = tqdm(total=total, initial=total - len(todo), desc="indexing", unit="video", disable=not progress)
    try:
        for batch, results in _decoded(batches, partial(_load, encoder), pool):
            _embed_batch(encoder, dim, work, batch, results)
            bar.update(len(batch))
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)


# ------------------------------------------------------------------------- build


@dataclass(frozen=True)
class WorkPlan:
    """What a (re)started build still has to do."""

    todo: list[VideoItem]  # items to decode and embed now, in input order
    resumed_from: int  # items already embedded in the work folder
    earlier: dict[str, Failure]  # failures of earlier runs (not embedded since), by id
    again: set[str]  # the ids of those tried again (changed since, or retry_failed)


def plan_work(items: list[VideoItem], done: Collection[str], failed: dict[str, Failure], retry_failed: bool,
              where: Path) -> WorkPlan:
    """Skip what is embedded, and what failed before unless its file changed (or ``retry_failed``)."""
    resumed_from = len({it.id for it in items} & set(done))
    earlier = {i: f for i, f in failed.items() if i not in done}
    again = {i for i, f in earlier.items() if retry_failed or f.stamp != file_stamp(f.path)}
    todo = [it for it in items if it.id not in done and (it.id not in earlier or it.id in again)]
    if resumed_from or len(todo) < len(items):
        log.info("resuming %s: %d embedded, %d failed before (%d tried again), %d to go", where, resumed_from,
                 len(earlier), len(again), len(todo))
    return WorkPlan(todo, resumed_from, earlier, again)


def check_request(items: list[VideoItem], out: Path, batch_size: int, overwrite: bool) -> None:
    if not items:
        raise InputError("no videos to index")
    dupes = sorted(i for i, n in Counter(it.id for it in items).items() if n > 1)
    if dupes:
        raise InputError(f"video ids must be unique; repeated: {dupes[:5]}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    check_target(out, overwrite, refusal="refusing to write there")


def build_index(
    items: Iterable[VideoItem],
    out_dir: str | Path,
    encoder: FrameEncoder,
    batch_size: int = 8,
    progress: bool = True,
    overwrite: bool = False,
    text_batch_size: int = 64,
    num_workers: int = 0,
    model_path: str | None = None,
    media_root: str | Path | None = None,
    retry_failed: bool = False,
) -> BuildReport:
    """Encode ``items`` with ``encoder`` into an index at ``out_dir``, resumably.

    Files that fail to decode (VideoDecodeError/OSError from ``encoder.load_video``) are
    recorded and skipped; a rerun tries them again when the file changed since, or every one
    with ``retry_failed``. ``num_workers`` > 0 decodes each batch's files in that many threads.
    One build at a time per ``out_dir`` (:mod:`demo.index.lock`). Raises IndexFormatError if
    ``out_dir`` holds an index (without ``overwrite``), if another build is writing it, if the
    work folder belongs to another model or is damaged, if the disk fills up (what was embedded
    is kept), or if no file at all could be decoded (the work folder is then kept).
    """
    items, out = list(items), Path(out_dir)
    check_request(items, out, batch_size, overwrite)
    with writer_lock(out):
        try:
            return _build(items, out, encoder, batch_size, progress, overwrite, text_batch_size, num_workers,
                          model_path, media_root, retry_failed)
        except OSError as err:
            raise disk_error(err, f"the work folder {out.with_name(out.name + PARTIAL_SUFFIX)}") from err


def _build(items: list[VideoItem], out: Path, encoder: FrameEncoder, batch_size: int, progress: bool,
           overwrite: bool, text_batch_size: int, num_workers: int, model_path: str | None,
           media_root: str | Path | None, retry_failed: bool) -> BuildReport:
    fp = encoder.fingerprint
    work = WorkFolder(out.with_name(out.name + PARTIAL_SUFFIX), fp)
    plan = plan_work(items, work.done.keys(), work.failed, retry_failed, work.path)
    resumed_from, earlier, again = plan.resumed_from, plan.earlier, plan.again
    _embed_all(plan.todo, len(items), encoder, work, batch_size, num_workers, progress)

    skipped = [(work.failed[it.id].path, work.failed[it.id].reason) for it in items if it.id in work.failed]
    not_retried = [(f.path, f.reason) for i, f in earlier.items() if i not in again and i in work.failed]
    kept = [it for it in items if it.id in work.done]
    if not kept:
        reasons = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
        raise IndexFormatError(
            f"no video could be decoded ({len(skipped)} tried, e.g. {reasons}); "
            f"the failures are listed in {work.path / FAILED}"
        )
    rows = [it.row() for it in kept]
    cap_emb, cap_rows = caption_embeddings(encoder.encode_texts, rows, fp.dim, text_batch_size, progress)
    index = VideoIndex.from_arrays(fp, np.stack([work.done[it.id] for it in kept]), rows, cap_emb, cap_rows)
    if model_path:
        index.info["model_path"] = model_path
    if media_root:
        index.info["media_root"] = media_root_entry(media_root, out)
    index.save(out, overwrite=overwrite)
    shutil.rmtree(work.path, ignore_errors=True)
    log.info("indexed %d videos into %s (%d skipped, %d resumed)", len(kept), out, len(skipped), resumed_from)
    return BuildReport(indexed=len(kept), skipped=skipped, resumed_from=resumed_from, not_retried=not_retried)


def media_root_entry(media_root: str | Path, out: Path) -> str:
    """How the manifest records the media folder: relative to the index folder when the two share a
    parent somewhere (an index and its clips can move together), else absolute.

    >>> media_root_entry("/data/world", Path("/data/indexes/world"))
    '../../world'
    """
    root = os.path.abspath(media_root)
    relative = os.path.relpath(root, os.path.abspath(out))
    return relative if Path(relative).parts.count("..") <= 3 else root
