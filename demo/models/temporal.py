"""CLIP4Clip's parameter-free and sequential temporal heads.

Both heads turn per-frame embeddings (B, T, D) plus a frame mask (B, T) into one
L2-normalised video embedding (B, D):

* ``meanP``: normalise each frame, take the masked mean, normalise again. It is
  blind to frame order, so a clip and its time reversal get the same vector.
* ``seqTransf``: add learned frame-position embeddings, run a small transformer
  over the frames, add the input back (residual), then ``meanP``. The position
  embeddings let it tell "moving left" from "moving right".
* ``tdb`` and ``tdb+tab``: CLIP2Video's temporal blocks (:mod:`demo.models.clip2video`);
  ``tdb+tab`` embeds both sides 2D wide.

The head's settings live in ``clip4clip.json`` and its weights in
``temporal_head.safetensors``, next to the Hugging Face CLIP files, so one
checkpoint folder carries everything needed to embed a video.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from demo.models.clip2video import TDB, TDB_TAB, AlignmentHead, DifferenceHead

SETTINGS_FILE = "clip4clip.json"
HEAD_FILE = "temporal_head.safetensors"  # the head of the checkpoint's own pooling
POOLINGS = ("meanP", "seqTransf", TDB, TDB_TAB)
# Other heads trained on the same towers (Clip4Clip.heads), one file each.
HEAD_FILES = {p: f"temporal_head-{p}.safetensors" for p in POOLINGS[1:]}


@dataclass(frozen=True)
class Clip4ClipSettings:
    """What a CLIP4Clip checkpoint needs beyond the CLIP weights.

    A plain CLIP checkpoint (no ``clip4clip.json``) gets these defaults, which are
    CLIP4Clip's own inference settings with mean pooling.
    """

    pooling: str = "meanP"
    sample_fps: float = 1.0  # frames per second sampled from the clip before capping
    max_frames: int = 12  # cap on sampled frames; longer clips are sampled uniformly
    max_words: int = 77  # text tokens incl. start/end; CLIP4Clip trains with 32
    head_layers: int = 4  # seqTransf transformer depth (CLIP4Clip uses 4)
    head_heads: int = 8  # attention heads; must divide the embedding size
    tab_centres: int = 5  # tdb+tab: shared centres video and text tokens are aligned to (CLIP2Video: 5)
    tab_weight: float = 0.5  # tdb+tab: weight of the global cosine; 1 - it goes to the aligned one

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.max_frames < 1 or self.sample_fps <= 0:
            raise ValueError(
                f"need max_frames >= 1 and sample_fps > 0, got {self.max_frames}, {self.sample_fps}"
            )

    @classmethod
    def load(cls, folder: str | Path) -> Clip4ClipSettings:
        path = Path(folder) / SETTINGS_FILE
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def save(self, folder: str | Path) -> None:
        (Path(folder) / SETTINGS_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")


def masked_mean(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """meanP: (B, T, D) frame embeddings, (B, T) bool mask -> (B, D), unit length."""
    frames = nn.functional.normalize(frames, dim=-1)
    weights = mask.to(frames.dtype).unsqueeze(-1)
    pooled = (frames * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    return nn.functional.normalize(pooled, dim=-1)


def reverse_frames(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each clip's valid frames in reverse order, padding left in place: (B, T, ...) -> (B, T, ...).

    Frames are valid first, padding after (as :func:`demo.video.sampling.clip4clip_indices` samples them).

    >>> reverse_frames(torch.arange(4.0).view(1, 4), torch.tensor([[True, True, True, False]]))
    tensor([[2., 1., 0., 3.]])
    """
    t = frames.shape[1]
    steps = torch.arange(t, device=frames.device).unsqueeze(0)
    counts = mask.sum(1, keepdim=True)
    index = torch.where(steps < counts, counts - 1 - steps, steps)
    index = index.view(*index.shape, *([1] * (frames.ndim - 2))).expand_as(frames)
    return frames.gather(1, index)


class SeqTransfHead(nn.Module):
    """Frame positions + transformer + residual, then meanP (CLIP4Clip's seqTransf)."""

    def __init__(self, dim: int, max_frames: int, layers: int = 4, heads: int = 8) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding size {dim} is not divisible by {heads} heads")
        self.frame_position = nn.Embedding(max_frames, dim)
        block = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=4 * dim, dropout=0.0, activation="gelu",
            batch_first=True, norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        nn.init.normal_(self.frame_position.weight, std=0.01)
        # Zero the residual branches so a fresh head starts out as meanP and
        # fine-tuning only has to learn what order adds.
        for layer in self.transformer.layers:
            nn.init.zeros_(layer.self_attn.out_proj.weight)
            nn.init.zeros_(layer.linear2.weight)
            nn.init.zeros_(layer.linear2.bias)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = frames.shape[1]
        if t > self.frame_position.num_embeddings:
            raise ValueError(f"head supports {self.frame_position.num_embeddings} frames, got {t}")
        positions = self.frame_position.weight[:t].unsqueeze(0)
        hidden = self.transformer(frames + positions, src_key_padding_mask=~mask)
        return masked_mean(hidden + frames, mask)


def build_head(settings: Clip4ClipSettings, dim: int, pooling: str | None = None) -> nn.Module | None:
    """The head for ``pooling`` (default: the settings' own) with the settings' sizes; ``None`` for meanP."""
    pooling = pooling or settings.pooling
    shape = (dim, settings.max_frames, settings.head_layers, settings.head_heads)
    if pooling == TDB:
        return DifferenceHead(*shape)
    if pooling == TDB_TAB:
        return AlignmentHead(*shape, settings.tab_centres, settings.tab_weight)
    if pooling == "seqTransf":
        return SeqTransfHead(*shape)
    if pooling == "meanP":
        return None
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def pool(head: nn.Module | None, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Apply ``head`` (or meanP when it is ``None``) to (B, T, D) frame embeddings."""
    return masked_mean(frames, mask) if head is None else head(frames, mask)
