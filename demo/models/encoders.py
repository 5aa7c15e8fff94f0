"""Numpy-in, numpy-out embedding API over a CLIP4Clip checkpoint.

``encode_texts(list[str]) -> (N, D)`` and ``encode_videos(paths) -> (N, D)``, float32,
L2-normalised, batched, under ``torch.inference_mode()``. This is what the index
builder, the search service and the evaluation code call; training uses
:class:`demo.models.clip4clip.Clip4Clip` directly.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from demo.errors import ModelLoadError
from demo.models.clip2video import AlignmentHead
from demo.models.clip4clip import Clip4Clip, first_line
from demo.models.device import resolve_device
from demo.models.fingerprint import ModelFingerprint, model_name
from demo.video.preprocess import (
    CLIP_MEAN,
    CLIP_STD,
    load_clip4clip_clip,
    preprocess,
    preprocess_reference,
    stack_clips,
)

log = logging.getLogger(__name__)

_THREADS_LOCK = threading.Lock()


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``None``: leave the setting alone).

    The setting is process-wide, so callers hold a lock while it is changed; a concurrent
    batch elsewhere runs with ``n`` threads for that long, which only costs it time.
    """
    if not n or n == torch.get_num_threads():
        yield
        return
    with _THREADS_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)


class Clip4ClipEncoder:
    """Embeds texts and videos with one CLIP4Clip checkpoint.

    ``query_threads``: torch threads for a CPU call with at most ``SMALL_QUERY`` texts (a
    search query). One thread is faster there: a single short sequence gives a thread team
    little to share, and on a busy machine the team's threads wait on each other (measured
    by ``python -m demo bench``: 29 ms with 1 thread, 870 ms with 2 under load). ``None``
    keeps torch's setting.
    """

    SMALL_QUERY = 4

    def __init__(self, model: Clip4Clip, tokenizer: Any, name: str, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        settings = model.settings
        self.settings = settings
        self.pooling = settings.pooling
        self.sample_fps, self.max_frames = settings.sample_fps, settings.max_frames
        self.max_words = min(settings.max_words, int(model.text.config.max_position_embeddings))
        self.dim, self.image_size = model.embedding_dim(), model.image_size  # tdb+tab: 2x the towers'
        self.query_threads: int | None = 1

    @classmethod
    def from_pretrained(cls, id_or_dir: str | Path, pooling: str | None = None,
                        device: str | None = None, **changes: Any) -> Clip4ClipEncoder:
        """Load a CLIP/CLIP4Clip checkpoint (hub id or folder) and its tokenizer; ``changes``
        override the checkpoint's :class:`~demo.models.temporal.Clip4ClipSettings` (a preset's
        ``frame_sampling``, say)."""
        from transformers import AutoTokenizer  # here: seconds to import, and not needed until a load

        source = str(id_or_dir)
        device = resolve_device(device)  # before seconds of loading
        if source.startswith((".", "/", "~")) and not Path(source).expanduser().is_dir():
            raise ModelLoadError(f"model folder {source!r} does not exist")
        model = Clip4Clip.from_pretrained(Path(source).expanduser() if Path(source).expanduser().is_dir()
                                          else source, pooling=pooling, **changes)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"cannot load the tokenizer of {source!r}: {first_line(err)}") from err
        return cls(model, tokenizer, model_name(source), device)

    @property
    def fingerprint(self) -> ModelFingerprint:
        s = self.settings
        return ModelFingerprint(model=self.name, pooling=self.pooling, dim=self.dim,
                                image_size=self.image_size, frames=s.frame_cap or 0,
                                sample_fps=self.sample_fps, sampling=s.frame_sampling, resize=s.frame_resize)

    def _autocast(self) -> AbstractContextManager[Any]:
        # Mixed precision only where it is fast: on CPUs without AMX bf16 is slower than fp32.
        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask, truncated to the model's context (end token kept)."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.max_words, return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 64, pooling: str | None = None) -> np.ndarray:
        """list of N strings -> (N, D) float32, unit length, as the head of ``pooling`` (default: the
        encoder's) compares them."""
        out = np.zeros((len(texts), self.model.embedding_dim(pooling)), dtype=np.float32)
        small = self.device == "cpu" and len(texts) <= self.SMALL_QUERY
        with torch_threads(self.query_threads if small else None):
            for start in range(0, len(texts), batch_size):
                batch = {k: v.to(self.device) for k, v in self.tokenize(texts[start:start + batch_size]).items()}
                with self._autocast():
                    emb = self.model.encode_text(batch["input_ids"], batch["attention_mask"], pooling)
                out[start:start + len(emb)] = emb.float().cpu().numpy()
        return out

    def load_video(self, path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode + sample + preprocess one clip with this model's settings.

        Returns frames (T, 3, S, S) float32 and mask (T,) bool, T = max_frames (or, with
        "every-second" sampling, the clip's sample count).
        Raises :class:`demo.errors.VideoDecodeError` for a file that is not a video.
        """
        s = self.settings
        return load_clip4clip_clip(path, image_size=self.image_size, sample_fps=s.sample_fps,
                                   max_frames=s.max_frames, sampling=s.frame_sampling, resize=s.frame_resize)

    @torch.inference_mode()
    def encode_frames(self, frames: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        """(B, T, 3, S, S) frames, (B, T) bool mask -> (B, D) float32, unit length."""
        with self._autocast():
            emb = self.model.encode_video(frames.to(self.device), mask.to(self.device))
        return emb.float().cpu().numpy()

    @torch.inference_mode()
    def frame_features(self, pixels: torch.Tensor) -> np.ndarray:
        """(N, 3, S, S) preprocessed frames -> (N, D) float32 projected image embeddings, NOT
        normalised: what the temporal head takes (:meth:`pool_frames`). Frames shared by
        overlapping windows go through the vision tower once this way."""
        with self._autocast():
            emb = self.model.vision(pixel_values=pixels.to(self.device)).image_embeds
        return emb.float().cpu().numpy()

    @torch.inference_mode()
    def pool_frames(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B, T, D) :meth:`frame_features` (zeros where ``mask`` is False) and (B, T) bool mask ->
        (B, D) float32 unit-length video embeddings; ``pool_frames(frame_features(x))`` is
        :meth:`encode_frames` (x)."""
        with self._autocast():
            emb = self.model.pool(torch.from_numpy(np.ascontiguousarray(features, np.float32)).to(self.device),
                                  torch.from_numpy(np.asarray(mask, bool)).to(self.device))
        return emb.float().cpu().numpy()

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 images (photos, video frames) -> (N, D) float32 unit-length embeddings
        from CLIP's image tower, preprocessed like a video frame (CLIP mean/std); (N, 2D) with a tdb+tab
        head (:meth:`AlignmentHead.image`). Resized as the model's frames are (``frame_resize``: hub
        models use PIL's bicubic on the whole image, as their reference code does)."""
        if self.settings.frame_resize == "pil-bicubic":
            pixels = preprocess_reference(images, self.image_size, CLIP_MEAN, CLIP_STD)
        else:
            pixels = preprocess(images, self.image_size, CLIP_MEAN, CLIP_STD)
        feats = self.frame_features(pixels)
        head = self.model.head
        if isinstance(head, AlignmentHead):  # its index rows are 2D wide: see AlignmentHead.image
            with torch.inference_mode():
                return head.image(torch.from_numpy(feats).to(self.device)).float().cpu().numpy()
        return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)

    def encode_videos(self, paths: Sequence[str | Path], batch_size: int = 8,
                      workers: int = 2) -> np.ndarray:
        """N video files -> (N, D) float32, unit length. Decoding runs in threads
        ahead of the model, so the model rarely waits for the decoder.
        Raises VideoDecodeError on the first file that cannot be decoded."""
        out = np.zeros((len(paths), self.dim), dtype=np.float32)
        for start, (frames, mask) in self.iter_batches(paths, batch_size, workers):
            out[start:start + len(frames)] = self.encode_frames(frames, mask)
        return out

    def iter_batches(self, paths: Sequence[str | Path], batch_size: int = 8,
                     workers: int = 2) -> Iterator[tuple[int, tuple[torch.Tensor, torch.Tensor]]]:
        """Yield (start, (frames (B,T,3,S,S), mask (B,T))), decoding up to two batches
        ahead in threads (bounded, so a long list never sits decoded in memory)."""
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending: deque[Future[tuple[torch.Tensor, torch.Tensor]]] = deque()
            queued = 0
            for start in range(0, len(paths), batch_size):
                while queued < min(len(paths), start + 2 * batch_size):
                    pending.append(pool.submit(self.load_video, paths[queued]))
                    queued += 1
                batch = [pending.popleft().result() for _ in range(min(batch_size, len(paths) - start))]
                yield start, stack_clips(batch)
