"""Embedding a test corpus for evaluation, once per backbone, with an on-disk cache.

Each clip is decoded and run through a model's vision tower once; every pooling asked
for (meanP, seqTransf) is applied to the same per-frame features, so the two heads of a
CLIP4Clip checkpoint are compared on identical inputs. Per-frame features are cached
per video, keyed by the model (name + weights hash, image size, frames, sample fps) and
the file (resolved path, mtime, size), so a rerun only decodes and encodes what changed.
Files that are missing or cannot be decoded are reported, not fatal.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from demo.errors import DemoError
from demo.files import atomic_write, atomic_write_json
from demo.models.encoders import Clip4ClipEncoder
from demo.video.preprocess import stack_clips

if TYPE_CHECKING:
    import torch

    from demo.models.fingerprint import ModelFingerprint

log = logging.getLogger(__name__)
ProgressFn = Callable[[float, str], None]  # (fraction done in [0, 1], message)


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _save_atomic(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write(path, buffer.getvalue(), fsync=False)  # a cache: a lost entry is recomputed


class EmbeddingCache:
    """Frame features and caption embeddings of ONE model under ``root/<model key>/``.

    ``frames/<k[:2]>/<k>.npy``: (n, D) float32 features of a clip's n real frames, where
    ``k`` hashes the resolved path, mtime and size; ``texts-<hash of the captions>.npy``:
    (C, D) caption embeddings. Writes are atomic, so an interrupted run leaves no torn file.
    """

    def __init__(self, root: str | Path, fingerprint: ModelFingerprint) -> None:
        fp = fingerprint
        # Pooling is not part of the key: frame features do not depend on it.
        described: dict[str, Any] = {"model": fp.model, "image_size": fp.image_size, "frames": fp.frames,
                                     "sample_fps": fp.sample_fps, "dim": fp.dim}
        # Named only when they differ from this project's own pipeline, so older cache entries still match.
        described.update({k: v for k, v in (("sampling", fp.sampling), ("resize", fp.resize))
                          if v not in ("float-fps", "decoder")})
        self.folder = Path(root) / _sha1(json.dumps(described, sort_keys=True))[:16]
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder / "model.json", described)

    def _frames_file(self, path: str | Path) -> Path | None:
        try:
            st = Path(path).stat()
        except OSError:
            return None
        key = _sha1(f"{Path(path).resolve()}|{st.st_mtime_ns}|{st.st_size}")
        return self.folder / "frames" / key[:2] / f"{key}.npy"

    def get_frames(self, path: str | Path) -> np.ndarray | None:
        file = self._frames_file(path)
        if file is None or not file.is_file():
            return None
        try:
            return np.load(file)
        except (OSError, ValueError):  # a torn file from another tool: recompute it
            return None

    def put_frames(self, path: str | Path, features: np.ndarray) -> None:
        file = self._frames_file(path)
        if file is not None:
            _save_atomic(file, np.asarray(features, dtype=np.float32))

    def _texts_file(self, texts: Sequence[str], side: str) -> Path:
        prefix = "texts" if side == "meanP" else f"texts-{side}"
        return self.folder / f"{prefix}-{_sha1(chr(0).join(texts))[:20]}.npy"

    def get_texts(self, texts: Sequence[str], side: str = "meanP") -> np.ndarray | None:
        """Cached caption embeddings; ``side``: the pooling whose head has its own text side (tdb+tab)."""
        file = self._texts_file(texts, side)
        return np.load(file) if file.is_file() else None

    def put_texts(self, texts: Sequence[str], embeddings: np.ndarray, side: str = "meanP") -> None:
        _save_atomic(self._texts_file(texts, side), np.asarray(embeddings, dtype=np.float32))


@dataclass(frozen=True)
class Encoded:
    """One model's embeddings of a corpus of N videos and C captions."""

    videos: dict[str, np.ndarray]  # pooling -> (N, E) float32, unit rows; failed videos are zeros
    texts: np.ndarray  # (C, D) float32, unit rows: the caption embeddings every head but tdb+tab compares
    failed: dict[int, str]  # video row -> why it was skipped
    fingerprint: ModelFingerprint
    encoded: int  # clips run through the vision tower in this call (0: all from the cache)
    aligned: dict[str, np.ndarray] = field(default_factory=dict)  # pooling -> (C, E): heads with a text side

    def texts_for(self, pooling: str) -> np.ndarray:
        """(C, E) caption embeddings as ``pooling``'s head compares them."""
        return self.aligned.get(pooling, self.texts)


def _autocast(device: str) -> AbstractContextManager[Any]:
    import torch

    return torch.autocast("cuda", dtype=torch.float16) if device.startswith("cuda") else nullcontext()


def _decoded(encoder: Clip4ClipEncoder, paths: Sequence[str], rows: Sequence[int], workers: int,
             ahead: int) -> Iterator[tuple[int, tuple[torch.Tensor, torch.Tensor] | str]]:
    """(row, (frames, mask)) or (row, reason) in order, decoding up to ``ahead`` files ahead in threads."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque[tuple[int, Future[tuple[torch.Tensor, torch.Tensor]]]] = deque()
        todo = iter(rows)
        for row in todo:
            pending.append((row, pool.submit(encoder.load_video, paths[row])))
            if len(pending) >= ahead:
                break
        while pending:
            row, future = pending.popleft()
            try:
                yield row, future.result()
            except (DemoError, OSError, ValueError, RuntimeError) as err:
                yield row, str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(encoder.load_video, paths[nxt])))


def encode_corpus(model: str, poolings: Sequence[str], paths: Sequence[str], texts: Sequence[str], *,
                  device: str | None = None, cache: str | Path | None = None, batch_size: int = 16,
                  workers: int = 2, progress: ProgressFn | None = None, **changes: Any) -> Encoded:
    """Embed ``paths`` (N videos) with every pooling in ``poolings`` and ``texts`` (C captions);
    ``changes`` set the model's frame settings as the preset that serves it does (``frame_sampling``).

    The checkpoint is loaded once, with every head it holds; frame features come from the cache
    where present, else from decoding + the vision tower in batches.
    """
    report = progress or (lambda fraction, message: None)
    head_pooling = next((p for p in poolings if p != "meanP"), "meanP")  # one head per checkpoint
    encoder = Clip4ClipEncoder.from_pretrained(model, pooling=head_pooling, device=device, **changes)
    store = EmbeddingCache(cache, encoder.fingerprint) if cache is not None else None
    features: list[np.ndarray | None] = [None] * len(paths)
    failed = {i: "missing file" for i, p in enumerate(paths) if not Path(p).is_file()}
    for i, p in enumerate(paths):
        if store is not None and i not in failed:
            features[i] = store.get_frames(p)
    todo = [i for i in range(len(paths)) if features[i] is None and i not in failed]
    log.info("%s: %d clips cached, %d to encode, %d missing", encoder.name,
             len(paths) - len(todo) - len(failed), len(todo), len(failed))
    _encode_frames(encoder, paths, todo, features, failed, store, batch_size, workers,
                   lambda done: report(0.9 * done / max(1, len(todo)),
                                       f"encoding clips ({Path(model).name}): {done}/{len(todo)}"))
    ok = [i for i in range(len(paths)) if i not in failed]
    videos = _pool(encoder, poolings, [features[i] for i in ok], ok, len(paths))
    report(0.92, f"encoding {len(texts)} captions with {Path(model).name}")
    sides = ["meanP", *(p for p in poolings if encoder.model.embedding_dim(p) != encoder.model.dim)]
    by_side = {side: _encode_texts(encoder, texts, side, store) for side in sides}
    report(1.0, f"{Path(model).name} done")
    return Encoded(videos, by_side.pop("meanP"), failed, encoder.fingerprint, encoded=len(todo) - sum(
        1 for i in todo if i in failed), aligned=by_side)


def _encode_texts(encoder: Clip4ClipEncoder, texts: Sequence[str], side: str,
                  store: EmbeddingCache | None) -> np.ndarray:
    """(C, E) caption embeddings as the head of pooling ``side`` compares them (meanP: the plain ones)."""
    text_emb = store.get_texts(texts, side) if store is not None else None
    if text_emb is None:
        text_emb = encoder.encode_texts(list(texts), pooling=side)
        if store is not None:
            store.put_texts(texts, text_emb, side)
    return text_emb


def _encode_frames(encoder: Clip4ClipEncoder, paths: Sequence[str], todo: list[int],
                   features: list[np.ndarray | None], failed: dict[int, str], store: EmbeddingCache | None,
                   batch_size: int, workers: int, step: Callable[[int], None]) -> None:
    """Decode and run the vision tower over the ``todo`` rows in batches, filling ``features``
    (each clip's (n, D) real-frame features) and ``failed``; ``step(done)`` after each clip."""
    import torch

    def run(batch: list[tuple[int, tuple[torch.Tensor, torch.Tensor]]]) -> None:
        frames, mask = stack_clips([item for _, item in batch])
        frames, mask = frames.to(encoder.device), mask.to(encoder.device)
        with torch.inference_mode(), _autocast(encoder.device):
            out = encoder.model.frame_embeddings(frames, mask).float().cpu().numpy()
        for j, (row, (_, m)) in enumerate(batch):
            features[row] = out[j, : int(m.sum())]
            if store is not None:
                store.put_frames(paths[row], out[j, : int(m.sum())])

    batch: list[tuple[int, tuple[torch.Tensor, torch.Tensor]]] = []
    with tqdm(total=len(todo), desc=f"encode clips ({encoder.name})", disable=not todo) as bar:
        for done, (row, item) in enumerate(_decoded(encoder, paths, todo, workers, ahead=2 * batch_size), 1):
            if isinstance(item, str):
                failed[row] = item
                log.warning("skipping %s: %s", paths[row], item)
            else:
                batch.append((row, item))
            if len(batch) == batch_size:
                run(batch)
                batch = []
            bar.update()
            step(done)
        if batch:
            run(batch)


def _pool(encoder: Clip4ClipEncoder, poolings: Sequence[str], features: list[np.ndarray | None],
          rows: list[int], n: int) -> dict[str, np.ndarray]:
    """pooling -> (n, D) video embeddings from each clip's frame ``features`` (placed at ``rows``;
    the other rows stay zero), 256 clips at a time."""
    import torch

    model = encoder.model
    videos = {p: np.zeros((n, model.embedding_dim(p)), np.float32) for p in poolings}
    for s in range(0, len(rows), 256):
        chunk = features[s:s + 256]
        t = max([encoder.max_frames, *(len(f) for f in chunk if f is not None)])
        x = torch.zeros(len(chunk), t, model.dim)
        mask = torch.zeros(len(chunk), t, dtype=torch.bool)
        for j, f in enumerate(chunk):
            assert f is not None
            x[j, : len(f)] = torch.from_numpy(f)
            mask[j, : len(f)] = True
        x, mask = x.to(encoder.device), mask.to(encoder.device)
        with torch.inference_mode():
            for p in poolings:
                videos[p][rows[s:s + 256]] = model.pool(x, mask, p).float().cpu().numpy()
    return videos
