"""CLIP4Clip's temporal heads (meanP, seqLSTM, seqTransf) and the settings a checkpoint carries.

Every head turns per-frame embeddings (B, T, D) plus a frame mask (B, T) into one
L2-normalised video embedding (B, D):

* ``meanP``: normalise each frame, take the masked mean, normalise again. It is
  blind to frame order, so a clip and its time reversal get the same vector.
* ``seqLSTM``: a one-layer LSTM over the valid frames, added back to its input
  (residual), then ``meanP``.
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
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from demo.files import atomic_write
from demo.models.clip2video import TDB, TDB_TAB, AlignmentHead, DifferenceHead, TdbArithmetic, quick_gelu

SETTINGS_FILE = "clip4clip.json"
HEAD_FILE = "temporal_head.safetensors"  # the head of the checkpoint's own pooling
POOLINGS = ("meanP", "seqLSTM", "seqTransf", TDB, TDB_TAB)
# Other heads trained on the same towers (Clip4Clip.heads), one file each.
HEAD_FILES = {p: f"temporal_head-{p}.safetensors" for p in POOLINGS[1:]}
# Which frames of a clip are embedded (demo.video.sampling):
#   "float-fps": one frame per 1/sample_fps s from the real (float) frame rate, rounded down to
#                max_frames (this project's own checkpoints were trained and indexed with it);
#   "clip4clip": CLIP4Clip's dataloader: whole-number fps, then linspace(..., dtype=int) down to max_frames;
#   "every-second": the Searchium WebVid notebook: every 1-fps frame (whole-number fps), no cap;
#   "clip2video": CLIP2Video's: a 5-fps frame sequence, every (5 / sample_fps)-th of it, then max_frames (floor);
#   "mmaction2": MMAction2's UniformSample (test mode): max_frames frames, one per equal segment, always all.
SAMPLINGS = ("float-fps", "clip4clip", "every-second", "clip2video", "mmaction2")
# How a frame reaches the model's size (demo.video.preprocess):
#   "decoder": scaled inside the decoder (decord / PyAV), then crop; fast, this project's own;
#   "pil-bicubic": decoded at full resolution, PIL bicubic resize of the RGB frame, centre crop (CLIP's);
#   "mmaction2": full resolution, short side to 8/7 S bilinear, centre crop S, MMAction2's 0-255 mean/std.
RESIZES = ("decoder", "pil-bicubic", "mmaction2")
ACTIVATIONS = ("gelu", "quick_gelu")  # exact GELU (ours), CLIP's x * sigmoid(1.702 x) (CLIP4Clip's)
# CLIP4Clip's own arithmetic, for checkpoints that come without a clip4clip.json (hub CLIP folders)
# and for checkpoints converted from the CLIP4Clip code (demo.models.convert).
REFERENCE: dict[str, Any] = {"frame_sampling": "clip4clip", "frame_resize": "pil-bicubic",
                             "head_activation": "quick_gelu", "head_layer_norm_eps": 1e-12}
STEP_POSITIONS = ("later", "earlier")  # a difference token's frame position: t + 1 (ours) or t (CLIP2Video's)
STEP_MASKS = ("both", "earlier")  # a difference token is valid when both its frames are, or as its earlier one
FRAME_MEANS = ("unit", "raw")  # meanP over unit frame embeddings (CLIP4Clip's), or raw ones (MMAction2's)
# CLIP2Video's arithmetic for its TDB / TAB heads (demo.models.clip2video; checkpoints converted from its code).
CLIP2VIDEO: dict[str, Any] = {"frame_sampling": "clip2video", "frame_resize": "pil-bicubic",
                              "tdb_activation": "quick_gelu", "tdb_layer_norm_eps": 1e-12,
                              "tdb_step_position": "earlier", "tdb_step_mask": "earlier", "tab_token_norm": False}


@dataclass(frozen=True)
class Clip4ClipSettings:
    """What a CLIP4Clip checkpoint needs beyond the CLIP weights.

    The field defaults are this project's own pipeline (what the shipped checkpoints were trained
    and indexed with), so a ``clip4clip.json`` that does not name a field keeps behaving as
    before. A checkpoint without ``clip4clip.json`` (a hub CLIP folder) gets :meth:`reference`:
    CLIP4Clip's sampling, resizing and block arithmetic with mean pooling.
    """

    pooling: str = "meanP"
    sample_fps: float = 1.0  # frames per second sampled from the clip before capping
    max_frames: int = 12  # cap on sampled frames; longer clips are thinned uniformly ("every-second": none)
    max_words: int = 77  # text tokens incl. start/end; CLIP4Clip trains with 32
    head_layers: int = 4  # seqTransf transformer depth (CLIP4Clip uses 4)
    head_heads: int = 8  # attention heads; must divide the embedding size
    frame_sampling: str = "float-fps"  # one of SAMPLINGS
    frame_resize: str = "decoder"  # one of RESIZES
    head_activation: str = "gelu"  # seqTransf MLP activation, one of ACTIVATIONS
    head_layer_norm_eps: float = 1e-5  # seqTransf LayerNorm epsilon (CLIP4Clip: 1e-12)
    tab_centres: int = 5  # tdb+tab: shared centres video and text tokens are aligned to (CLIP2Video: 5)
    tab_weight: float = 0.5  # tdb+tab: weight of the global cosine; 1 - it goes to the aligned one
    tdb_turn_planes: int = 0  # tdb, tdb+tab: planes of the signed turn between adjacent frames (0: CLIP2Video's)
    # tdb, tdb+tab block arithmetic; the defaults are this project's own heads, CLIP2VIDEO holds CLIP2Video's.
    tdb_activation: str = "gelu"  # MLP activation of the heads' transformers, one of ACTIVATIONS
    tdb_layer_norm_eps: float = 1e-5  # their LayerNorm epsilon (CLIP2Video: 1e-12)
    tdb_step_position: str = "later"  # frame position a difference token gets, one of STEP_POSITIONS
    tdb_step_mask: str = "both"  # which difference tokens count, one of STEP_MASKS ("earlier": see clip2video.py)
    tab_token_norm: bool = True  # tdb+tab: tokens L2-normalised before they meet the centres (CLIP2Video: raw)
    frame_mean: str = "unit"  # meanP: one of FRAME_MEANS

    def __post_init__(self) -> None:
        choices = {"pooling": POOLINGS, "frame_sampling": SAMPLINGS, "frame_resize": RESIZES,
                   "head_activation": ACTIVATIONS, "tdb_activation": ACTIVATIONS,
                   "tdb_step_position": STEP_POSITIONS, "tdb_step_mask": STEP_MASKS, "frame_mean": FRAME_MEANS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.tdb_turn_planes < 0:
            raise ValueError(f"tdb_turn_planes must be >= 0, got {self.tdb_turn_planes}")
        if self.max_frames < 1 or self.sample_fps <= 0:
            raise ValueError(
                f"need max_frames >= 1 and sample_fps > 0, got {self.max_frames}, {self.sample_fps}"
            )
        if self.frame_sampling == "every-second" and self.pooling != "meanP":
            raise ValueError(f"'every-second' sampling has no frame cap, so it needs meanP pooling, "
                             f"not {self.pooling!r}")

    @classmethod
    def reference(cls, **changes: Any) -> Clip4ClipSettings:
        """CLIP4Clip's own inference settings (meanP unless ``changes`` say otherwise)."""
        return cls(**{**REFERENCE, **changes})

    @property
    def frame_cap(self) -> int | None:
        """The most frames a clip is sampled to; None when every sampled frame is kept."""
        return None if self.frame_sampling == "every-second" else self.max_frames

    def with_changes(self, **changes: Any) -> Clip4ClipSettings:
        """A copy with ``changes`` (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def load(cls, folder: str | Path) -> Clip4ClipSettings:
        """The settings in ``folder/clip4clip.json``, or :meth:`reference` when there is none."""
        path = Path(folder) / SETTINGS_FILE
        if not path.is_file():
            return cls.reference()
        return cls.from_json(path.read_text())

    @classmethod
    def from_json(cls, text: str) -> Clip4ClipSettings:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def save(self, folder: str | Path) -> None:
        atomic_write(Path(folder) / SETTINGS_FILE, json.dumps(asdict(self), indent=2) + "\n")


def masked_mean(frames: torch.Tensor, mask: torch.Tensor, unit: bool = True) -> torch.Tensor:
    """meanP: (B, T, D) frame embeddings, (B, T) bool mask -> (B, D), unit length. The frames are
    normalised before the mean (CLIP4Clip's meanP) unless ``unit`` is False (MMAction2's mean adapter)."""
    if unit:
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
    """Frame positions + transformer + residual, then meanP (CLIP4Clip's seqTransf).

    Each block is pre-norm: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))`` with a 4x MLP, no
    final norm. ``activation`` and ``eps`` pick the MLP's GELU and the LayerNorm epsilon: exact GELU
    and 1e-5 for this project's checkpoints, QuickGELU and 1e-12 for CLIP4Clip's (there the
    attention mask is added as -1e6, here padded keys get -inf: the same softmax in float32).
    """

    def __init__(self, dim: int, max_frames: int, layers: int = 4, heads: int = 8,
                 activation: str = "gelu", eps: float = 1e-5) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding size {dim} is not divisible by {heads} heads")
        self.frame_position = nn.Embedding(max_frames, dim)
        act: Any = quick_gelu if activation == "quick_gelu" else "gelu"
        block = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=4 * dim, dropout=0.0, activation=act,
            batch_first=True, norm_first=True, layer_norm_eps=eps,
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


class SeqLSTMHead(nn.Module):
    """A one-layer LSTM over each clip's valid frames + residual, then meanP (CLIP4Clip's seqLSTM).

    Padded slots keep their input (the LSTM never sees them); meanP ignores them anyway.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=dim, hidden_size=dim, num_layers=1, batch_first=True)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(frames, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        hidden, _ = pad_packed_sequence(out, batch_first=True, total_length=frames.shape[1])
        hidden = torch.where(mask.unsqueeze(-1), hidden, torch.zeros_like(hidden))
        return masked_mean(hidden + frames, mask)


def build_head(settings: Clip4ClipSettings, dim: int, pooling: str | None = None) -> nn.Module | None:
    """The head for ``pooling`` (default: the settings' own) with the settings' sizes; ``None`` for meanP."""
    pooling = pooling or settings.pooling
    shape = (dim, settings.max_frames, settings.head_layers, settings.head_heads)
    if pooling in (TDB, TDB_TAB):
        blocks = TdbArithmetic(settings.tdb_activation, settings.tdb_layer_norm_eps, settings.tdb_step_position,
                               settings.tdb_step_mask, settings.tab_token_norm)
        if pooling == TDB:
            return DifferenceHead(*shape, turn_planes=settings.tdb_turn_planes, arithmetic=blocks)
        return AlignmentHead(*shape, settings.tab_centres, settings.tab_weight, settings.tdb_turn_planes, blocks)
    if pooling == "seqTransf":
        return SeqTransfHead(*shape, settings.head_activation, settings.head_layer_norm_eps)
    if pooling == "seqLSTM":
        return SeqLSTMHead(dim)
    if pooling == "meanP":
        return None
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def pool(head: nn.Module | None, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Apply ``head`` (or meanP when it is ``None``) to (B, T, D) frame embeddings."""
    return masked_mean(frames, mask) if head is None else head(frames, mask)
