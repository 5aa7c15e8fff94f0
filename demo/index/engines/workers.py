"""What the Ray engine's tasks and actors run: decode a row, encode a batch of frames or texts.

Plain functions and classes over ``dict`` rows and ``dict[str, np.ndarray]`` batches (Ray Data's
numpy batch format), so they run, and are tested, without Ray. Decoding is the local builder's
(:func:`demo.video.preprocess.load_clip4clip_clip` with the model's sampling settings, URLs
fetched by :func:`demo.index.remote.local_copy`); encoding is :class:`Clip4ClipEncoder`'s.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import VideoDecodeError
from demo.index.remote import local_copy
from demo.models.fingerprint import ModelFingerprint
from demo.presets import Preset

# Test hook: while this names a file that does not exist yet, the first encoder batch creates it
# and kills its own process (a worker lost mid-batch); Ray restarts the actor and retries.
FAIL_ONCE_ENV = "DEMO_RAY_FAIL_ONCE"


@dataclass(frozen=True)
class Sampling:
    """The model's frame sampling and resizing, all a decode task needs (no model is loaded there):
    the same settings the local engine's encoder applies (:meth:`Clip4ClipEncoder.load_video`)."""

    image_size: int
    sample_fps: float
    max_frames: int  # 0: no cap ("every-second": as many frames as the clip has seconds)
    rule: str = "float-fps"  # demo.models.temporal.SAMPLINGS
    resize: str = "decoder"  # demo.models.temporal.RESIZES

    @classmethod
    def of(cls, fp: ModelFingerprint) -> Sampling:
        return cls(fp.image_size, fp.sample_fps, fp.frames, fp.sampling, fp.resize)


def decode_group(row: dict[str, Any], sampling: Sampling, slots: int) -> dict[str, Any]:
    """One batch of videos, decoded: {"ids": JSON list, "paths": JSON list} -> {"ids", "errors" (JSON
    lists), "frames" (slots, T, 3, S, S) float32, "mask" (slots, T) bool}.

    A video that cannot be decoded (file or URL) gets zero frames and its reason in ``errors``,
    as the local builder records it; nothing raises for a bad file. Slots past the group's
    videos are zero. T is the model's frame cap, or without one (every-second sampling) the
    group's longest clip, shorter clips padded with masked slots as the local builder pads them.
    """
    from demo.video.preprocess import load_clip4clip_clip  # torch and the decoders: in the worker only

    s = sampling
    ids, paths = json.loads(row["ids"]), json.loads(row["paths"])
    clips: list[tuple[np.ndarray, np.ndarray] | None] = []
    errors = []
    for path in paths:
        try:
            with local_copy(path) as local:
                x, m = load_clip4clip_clip(local, image_size=s.image_size, sample_fps=s.sample_fps,
                                           max_frames=s.max_frames, sampling=s.rule, resize=s.resize)
            clips.append((x.numpy(), m.numpy()))
            errors.append("")
        except (VideoDecodeError, OSError) as err:
            clips.append(None)
            errors.append(str(err) or type(err).__name__)
    t = max([s.max_frames, *(len(c[1]) for c in clips if c is not None)])
    frames = np.zeros((slots, t, 3, s.image_size, s.image_size), np.float32)
    mask = np.zeros((slots, t), bool)
    for j, clip in enumerate(clips):
        if clip is not None:
            frames[j, : len(clip[0])], mask[j, : len(clip[1])] = clip
    return {"ids": json.dumps(ids), "errors": json.dumps(errors), "frames": frames, "mask": mask}


def _load_encoder(preset: Preset, device: str | None, threads: int | None) -> Any:
    import torch

    if threads:
        torch.set_num_threads(threads)
    return preset.open_encoder(device)


class FrameEncoderActor:
    """One model per actor: decoded groups -> {"ids", "errors", "embedding" (rows, slots, D)}.

    Each group's decodable videos are encoded as one batch, exactly the batch the local builder
    encodes for the same videos (so both engines give the same numbers); other slots stay zero.
    """

    def __init__(self, preset: Preset, device: str | None = None, threads: int | None = None) -> None:
        self.encoder = _load_encoder(preset, device, threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        _maybe_fail_once()
        frames, mask = np.asarray(batch["frames"]), np.asarray(batch["mask"])
        emb = np.zeros((*frames.shape[:2], self.encoder.dim), np.float32)
        for r, errors in enumerate(batch["errors"]):
            ok = [j for j, e in enumerate(json.loads(str(errors))) if not e]
            if ok:
                emb[r, ok] = self.encoder.encode_frames(torch.from_numpy(frames[r, ok]), torch.from_numpy(mask[r, ok]))
        return {"ids": batch["ids"], "errors": batch["errors"], "embedding": emb}


class TextEncoderActor:
    """One model per actor: {"start", "texts" (JSON list)} -> {"start", "count", "embedding"
    (rows, slots, D)}: each group of captions encoded as one batch, as the local builder does."""

    def __init__(self, preset: Preset, device: str | None = None, threads: int | None = None,
                 slots: int = 64) -> None:
        self.encoder = _load_encoder(preset, device, threads)
        self.slots = slots

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        emb = np.zeros((len(batch["texts"]), self.slots, self.encoder.dim), np.float32)
        counts = []
        for r, texts in enumerate(batch["texts"]):
            group = [str(t) for t in json.loads(str(texts))]
            emb[r, : len(group)] = self.encoder.encode_texts(group, batch_size=self.slots)
            counts.append(len(group))
        return {"start": batch["start"], "count": np.array(counts), "embedding": emb}


def _maybe_fail_once() -> None:
    marker = os.environ.get(FAIL_ONCE_ENV)
    if marker and not Path(marker).exists():
        Path(marker).write_text(f"encoder process {os.getpid()} killed itself\n")
        os._exit(1)
