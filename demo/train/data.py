"""Training data: (video, captions) samples and a decoded-frame cache.

Two sources share one sample type:

* a CSV with ``path,caption`` columns (WebVid / MSR-VTT style; several rows with
  the same path are several captions of one clip), and
* the embedded world's ``<split>.jsonl`` (which adds still-frame captions for
  image-text pretraining and the time-reversal pair ids).

Clips are decoded once, through the same path as any user video
(:func:`demo.video.decode.load_clip4clip_clip`), and kept in memory as float16, so an
epoch costs only the model's forward and backward passes; :class:`FrameCaches` lets a caller
that runs several stages keep them from one stage to the next.
"""

from __future__ import annotations

import csv
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from demo.errors import DemoError, InputError
from demo.video.preprocess import load_clip4clip_clip
from demo.world import ClipAttributes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One clip with its captions (the first is the canonical one used for validation)."""

    path: Path
    captions: tuple[str, ...]
    still_captions: tuple[str, ...] = ()
    pair: str | None = None  # clips sharing a pair id differ only in the direction of time
    frames: int = 0  # world clips: rendered frame count and rate (for per-frame captions)
    fps: float = 0.0
    attributes: ClipAttributes | None = field(default=None, compare=False, hash=False)  # world clips


def read_samples(source: str | Path, limit: int | None = None) -> list[Sample]:
    """Read a ``.csv`` (path, caption) or world ``.jsonl`` file into samples."""
    source = Path(source)
    if not source.is_file():
        raise InputError(f"training data {source} does not exist")
    samples = _read_jsonl(source) if source.suffix == ".jsonl" else _read_csv(source)
    if not samples:
        raise InputError(f"no (video, caption) pairs in {source}")
    return samples[:limit] if limit else samples


def _read_csv(path: Path) -> list[Sample]:
    captions: dict[Path, list[str]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "caption"} - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{path} needs columns path,caption; missing {sorted(missing)}")
        for row in reader:
            video = (path.parent / row["path"]).resolve()
            if row["caption"].strip():
                captions.setdefault(video, []).append(row["caption"].strip())
    return [Sample(p, tuple(c)) for p, c in captions.items()]


def _read_jsonl(path: Path) -> list[Sample]:
    samples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        attributes = ClipAttributes.from_dict(row["attributes"]) if row.get("attributes") else None
        samples.append(Sample((path.parent / row["path"]).resolve(), tuple(row["captions"]),
                              tuple(row.get("still_captions") or ()), attributes.pair if attributes else None,
                              int(row.get("frames") or 0), float(row.get("fps") or 0.0), attributes))
    return samples


class FrameCache:
    """Every sample's sampled, preprocessed frames: (N, T, 3, S, S) float16 and (N, T) masks.

    Samples whose file cannot be decoded are dropped (and logged), never fatal.
    """

    def __init__(self, samples: list[Sample], image_size: int, sample_fps: float, max_frames: int,
                 workers: int = 2, progress: bool = True, sampling: str = "float-fps",
                 resize: str = "decoder") -> None:
        # Frames come out as the checkpoint will see them at inference (its clip4clip.json's
        # frame_sampling / frame_resize); training needs a frame cap, so not "every-second".
        if sampling == "every-second":
            raise InputError("training needs a cap on frames per clip: every-second sampling (the WebVid "
                             "preset's, for inference) cannot be trained with; use --max-frames and the "
                             "clip4clip sampling")

        def load(sample: Sample) -> tuple[torch.Tensor, torch.Tensor] | str:
            try:
                return load_clip4clip_clip(sample.path, image_size=image_size, sample_fps=sample_fps,
                                           max_frames=max_frames, sampling=sampling, resize=resize)
            except DemoError as err:
                return str(err)

        frames = torch.zeros(len(samples), max_frames, 3, image_size, image_size, dtype=torch.float16)
        masks = torch.zeros(len(samples), max_frames, dtype=torch.bool)
        keep = np.zeros(len(samples), dtype=bool)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            results = pool.map(load, samples)
            for i, result in enumerate(tqdm(results, total=len(samples), desc="decoding clips",
                                            disable=not progress, unit="clip")):
                if isinstance(result, str):
                    log.warning("skipping %s", result)
                    continue
                frames[i], masks[i] = result[0].to(torch.float16), result[1]
                keep[i] = True
        self._hold(samples, torch.from_numpy(np.flatnonzero(keep)), samples, frames, masks)

    def _hold(self, asked: list[Sample], index: torch.Tensor, rows: list[Sample], frames: torch.Tensor,
              masks: torch.Tensor) -> None:
        """Keep the ``index`` rows of ``rows`` / ``frames`` / ``masks``: the ones of the ``asked`` samples
        that could be decoded (an error when none could)."""
        if not len(index):
            raise InputError(f"none of the {len(asked)} training clips could be decoded")
        self.samples = [rows[i] for i in index.tolist()]
        self.frames, self.masks = frames[index], masks[index]
        self.skipped = len(asked) - len(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, samples: list[Sample]) -> FrameCache:
        """The rows of ``samples``, in that order, without decoding again: each was asked of this cache
        (those it could not decode stay skipped)."""
        row = {sample: i for i, sample in enumerate(self.samples)}
        index = torch.tensor([row[s] for s in samples if s in row], dtype=torch.long)
        part = object.__new__(FrameCache)
        part._hold(samples, index, self.samples, self.frames, self.masks)
        return part


class FrameCaches:
    """The last few :class:`FrameCache` objects, for a caller that trains several stages on the same
    data (a recipe): each split is decoded once instead of once per stage.

    A cache is reused when the same files (same size and mtime) were decoded with the same
    settings, and its rows are served when they were among a kept cache's (a stage that reads the
    training split after one that read it and more); the ``keep`` most recent (train and validation)
    are kept.
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        # (each sample with its file's size and mtime, the decoding settings) -> the decoded cache
        self.recent: dict[tuple[tuple[tuple[Sample, tuple[int, int]], ...], tuple[object, ...]], FrameCache] = {}

    def get(self, samples: list[Sample], image_size: int, sample_fps: float, max_frames: int,
            workers: int = 2, progress: bool = True, sampling: str = "float-fps",
            resize: str = "decoder") -> FrameCache:
        """A :class:`FrameCache` of ``samples``: a kept one when it matches, else decoded now."""
        files = tuple((s, _stamp(s.path)) for s in samples)
        key = (files, (image_size, sample_fps, max_frames, sampling, resize))
        if key in self.recent:
            self.recent[key] = self.recent.pop(key)  # most recent last
            return self.recent[key]
        wanted = set(files)
        for (old_files, old_settings), kept in reversed(self.recent.items()):
            if old_settings == key[1] and wanted <= set(old_files):
                return kept.subset(samples)
        cache = FrameCache(samples, image_size, sample_fps, max_frames, workers=workers, progress=progress,
                           sampling=sampling, resize=resize)
        self.recent[key] = cache
        while len(self.recent) > self.keep:
            del self.recent[next(iter(self.recent))]
        return cache


def _stamp(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()
    except OSError:
        return (-1, -1)
    return (info.st_size, info.st_mtime_ns)


def group_key(sample: Sample) -> str | None:
    """The colour of a world clip's first object, which one-colour batches group by (None: not a
    world clip)."""
    if sample.attributes is None or not sample.attributes.objects:
        return None
    return sample.attributes.objects[0].colour


def epoch_order(samples: list[Sample], seed: int, epoch: int, batch_size: int = 0,
                grouped: float = 0.0) -> np.ndarray:
    """A shuffled order of sample indices in which time-reversal pairs stay adjacent.

    Keeping a clip and its reversal in one batch makes each the other's hardest
    negative: the only way to tell them apart is the order of the frames.

    ``grouped`` (world clips, with ``batch_size``): about that share of the batches hold
    clips whose first object has one colour (:func:`group_key`). Colour alone tells most
    clips of a random batch apart, so the loss rewards little else; within one colour only
    shape, size, background and what happens over time do.
    """
    groups: dict[str, list[int]] = {}
    singles: list[list[int]] = []
    for i, sample in enumerate(samples):
        if sample.pair:
            groups.setdefault(sample.pair, []).append(i)
        else:
            singles.append([i])
    units = singles + list(groups.values())
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(units))
    if grouped <= 0 or batch_size <= 1:
        return np.array([i for u in order for i in units[u]], dtype=np.int64)
    # Batches of whole units: grouped ones filled from one colour's units, the rest from the others.
    pick = rng.random(len(units)) < grouped
    by_group: dict[str | None, list[int]] = {}
    for u in order[pick[order]]:
        by_group.setdefault(group_key(samples[units[u][0]]), []).append(int(u))
    batches: list[list[int]] = []
    for unit_list in [*by_group.values(), [int(u) for u in order[~pick[order]]]]:
        batch: list[int] = []
        for u in unit_list:
            batch += units[u]
            if len(batch) >= batch_size:
                batches.append(batch[:batch_size])
                batch = batch[batch_size:]  # a pair split at the edge keeps its second clip
        if batch:
            batches.append(batch)
    # Full batches in a random order; the partial ones (dropped by the trainer) at the end.
    full = [b for b in batches if len(b) == batch_size]
    rest = [b for b in batches if len(b) < batch_size]
    return np.array([i for b in [full[j] for j in rng.permutation(len(full))] + rest for i in b],
                    dtype=np.int64)
