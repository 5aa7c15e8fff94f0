"""Writing the world to disk as a corpus folder: mp4 clips plus CSV and JSONL tables, resumable."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import multiprocessing
from dataclasses import replace
from multiprocessing.pool import Pool
from pathlib import Path

from tqdm import tqdm

from demo.files import atomic_write
from demo.world.render import render_to
from demo.world.sampling import clip_specs
from demo.world.specs import SPLITS, ClipSpec, WorldConfig

log = logging.getLogger(__name__)


def _render_job(job: tuple[ClipSpec, str]) -> str:
    spec, path = job
    # One single-threaded encoder per worker: on 2 cores, x264's own threads on top of two
    # workers made rendering the world about 20% slower (600 clips: 24 s against 19.6 s).
    render_to(spec, path)
    return spec.id


def synth(
    out_dir: str | Path,
    config: WorldConfig = WorldConfig(),  # noqa: B008 - frozen, so a shared default is safe
    splits: tuple[str, ...] = SPLITS,
    limit: int | None = None,
    workers: int = 2,
    progress: bool = True,
) -> dict[str, Path]:
    """Render the world to ``out_dir``; returns {split: path of its CSV}.

    Writes ``clips/<split>/<id>.mp4`` (existing files are kept, so an interrupted run
    resumes), ``<split>.csv`` (path relative to ``out_dir``, caption, id, split,
    attributes as JSON; one row per caption, canonical first) and ``<split>.jsonl`` (one
    object per clip: id, path, captions, still_captions, frames, fps, attributes). ``limit`` keeps
    the first N clips of each split.
    """
    out = Path(out_dir)
    written: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        pool = _render_pool(stack, workers)
        for split in splits:
            written[split] = _synth_split(out, config, split, limit, pool, progress)
    return written


TURNING = ("turning clockwise", "turning anticlockwise")


def turning_specs(seeds: tuple[int, ...], base: WorldConfig = WorldConfig(),  # noqa: B008 - frozen
                  limit: int | None = None) -> list[ClipSpec]:
    """The single-object turning clips of the training splits of the worlds ``base`` with each of
    ``seeds`` (about 8% of a split's clips), renamed ``turning-<seed>-<id>``; the first ``limit``.

    Turning is the one event whose frames must show how an object is turned, and a world holds few
    turning clips (about 700 of its 8,000 training clips); the frames stage can read more of them here
    (``EmbeddedRecipe.turning_worlds``, docs/experiments.md). Other seeds' training splits never show
    the held-out colour-shape pairs either.
    """
    specs = []
    for seed in seeds:
        for spec in clip_specs(replace(base, seed=seed), "train"):
            objects = spec.attributes.objects
            if len(objects) == 1 and objects[0].event in TURNING:
                specs.append(replace(spec, id=f"turning-{seed}-{spec.id}", split="turning"))
    return specs[:limit]


def synth_turning(out_dir: str | Path, seeds: tuple[int, ...], base: WorldConfig = WorldConfig(),  # noqa: B008
                  limit: int | None = None, workers: int = 2, progress: bool = True) -> Path:
    """Render :func:`turning_specs` into ``out_dir`` as one more split, ``turning`` (``clips/turning/``,
    ``turning.csv``, ``turning.jsonl``; resumable like :func:`synth`); the JSONL's path."""
    specs = turning_specs(seeds, base, limit)
    with contextlib.ExitStack() as stack:
        _write_split(Path(out_dir), "turning", specs, _render_pool(stack, workers), progress)
    return Path(out_dir) / "turning.jsonl"


def _render_pool(stack: contextlib.ExitStack, workers: int) -> Pool | None:
    """A pool of ``workers`` render processes closed with ``stack`` (None: render in this process)."""
    if workers <= 1:
        return None
    if multiprocessing.current_process().daemon:
        # A daemonic process (the app's benchmark rerun runs in one) may not start children.
        log.info("rendering in this process: a daemonic process cannot start %d render workers", workers)
        return None
    # spawn: safe even when the caller runs torch's thread pools
    return stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))


def _synth_split(
    out: Path, config: WorldConfig, split: str, limit: int | None, pool: Pool | None, progress: bool
) -> Path:
    """Render the missing clips of one split and (re)write its CSV and JSONL."""
    return _write_split(out, split, clip_specs(config, split)[:limit], pool, progress)


def _write_split(out: Path, split: str, specs: list[ClipSpec], pool: Pool | None, progress: bool) -> Path:
    """Render the missing clips of ``specs`` into ``clips/<split>/`` and (re)write ``<split>``'s CSV and JSONL."""
    (out / "clips" / split).mkdir(parents=True, exist_ok=True)
    rel = {s.id: f"clips/{split}/{s.id}.mp4" for s in specs}
    jobs = [(s, str(out / rel[s.id])) for s in specs if not (out / rel[s.id]).exists()]
    log.info("%s: %d clips, %d to render", split, len(specs), len(jobs))
    with tqdm(total=len(jobs), desc=f"synth {split}", disable=not progress or not jobs) as bar:
        results = pool.imap_unordered(_render_job, jobs, chunksize=4) if pool else map(_render_job, jobs)
        for _ in results:
            bar.update()
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["path", "caption", "id", "split", "attributes"])
    lines = []
    for s in specs:
        attributes = s.attributes.to_dict()
        writer.writerows([rel[s.id], c, s.id, split, json.dumps(attributes)] for c in s.captions)
        row = {"id": s.id, "path": rel[s.id], "captions": s.captions, "still_captions": s.still_captions,
               "frames": s.num_frames, "fps": s.fps, "attributes": attributes}  # fmt: skip
        lines.append(json.dumps(row))
    atomic_write(out / f"{split}.csv", table.getvalue())
    atomic_write(out / f"{split}.jsonl", "\n".join(lines) + "\n")
    return out / f"{split}.csv"
