"""CLIP2Video's temporal blocks as CLIP4Clip temporal heads: ``tdb`` and ``tdb+tab``.

CLIP2Video (Fang et al., 2021) keeps CLIP4Clip's towers and changes what happens between the
frame embeddings and the similarity:

* **Temporal Difference Block** (``tdb``, :class:`DifferenceHead`): the difference of every two
  adjacent frame embeddings becomes a token of its own, placed between the two frames it
  compares, so the temporal transformer is handed motion instead of having to infer it from
  positions. The differences first pass a one-layer transformer of their own, a LayerNorm and
  ``2 * sigmoid(x) - 1`` (differences of similar frames are tiny; this puts them on the
  frames' scale). A learned type embedding tells frame tokens from difference tokens. The
  outputs at the frame tokens, plus the frames (residual), are mean-pooled as in seqTransf.
* **Temporal Alignment Block** (``tdb+tab``, :class:`AlignmentHead`): both sides are also
  summarised against K shared learned centres. Each token (a frame, or a frame of a half-rate
  copy of the clip passed through the difference block and a one-layer transformer; on the
  text side each word token of the caption) is softly assigned to the centres; per centre the
  assignment-weighted residuals to it are summed, normalised, and averaged over the centres.
  The score of a caption and a clip is ``w`` times the cosine of the global embeddings plus
  ``1 - w`` times the cosine of the aligned ones.

Our own reading of the paper and of its public inference code, written for this project. How the
blocks compute is a recorded setting (:class:`TdbArithmetic`, from a checkpoint's ``clip4clip.json``).
This project's own heads (the defaults, which every checkpoint that names none of these fields keeps)
differ from CLIP2Video's code in five places:

* exact GELU and LayerNorm epsilon 1e-5 in the blocks, where CLIP2Video uses QuickGELU and 1e-12;
* the difference between frames t and t + 1 takes frame position t + 1 in the sequence; CLIP2Video
  gives it position t (inside the difference attention both use t + 1);
* a difference token is valid only when both of its frames are; CLIP2Video's takes the flag of its
  earlier frame, so the token after the last real frame (a real frame minus a padded one) takes part.
  In that mode, as there, padded frames are the embedding of an all-zero (mean-grey) image
  (:meth:`demo.models.clip4clip.Clip4Clip.pool` fills them in) and padded keys get -1e6 added to
  their scores (also where a clip has no valid key at all, e.g. the differences of a one-frame clip);
* tokens are L2-normalised before they meet the TAB centres; CLIP2Video uses raw embeddings (ours
  are small and unnormalised from scratch).

``TdbArithmetic(**CLIP2VIDEO)`` (:data:`demo.models.temporal.CLIP2VIDEO`) computes as CLIP2Video's
``get_inference_logits`` does clip by clip (checked in tests/test_convert_clip2video.py). Its batch
code differs from that in one place: its temporal blocks tile the (B, N, N) attention mask head by
head with ``repeat``, so in a batch whose clips have different lengths, head h of clip b is masked
with the mask of clip (b * heads + h) mod B, a function of the batch it happens to share. We give
every clip its own mask, which is what CLIP2Video computes for a batch of one, and for any batch whose
clips fill all frame slots (every MSR-VTT test clip at 12 frames: its 2.5-fps rule needs 4.8 s).
CLIP4Clip fixed the same tiling in its code (``repeat_interleave``) in July 2021; CLIP2Video did not.

Both heads start out as meanP (their residual branches are zero at first), and the transformer that
a seqTransf head has is named as in :class:`demo.models.temporal.SeqTransfHead`, so a trained
seqTransf head can seed them.

One addition is ours and off unless a checkpoint's ``tdb_turn_planes`` asks for it: **turn planes**.
A difference is linear in the two frames, and which way an object turned is not: the angle of a
shape with k-fold symmetry sits in the frame embedding as a point (cos, sin of k x angle) on a
circle (what the layout probe reads, :func:`demo.world.frame_layout`); the difference of two such
points is tangent to the circle, and which way round it points depends on where on the circle the
frames are. The sign of the turn is the 2-D cross product of the two points, a product of the two
frames, which the transformer can only approximate. With P planes, each frame is read onto P planes
by one linear map, and the cross product of frames t and t + 1 in each plane (P numbers, negated
when the clip plays backwards) is written into their difference token by a second, zero-initialised
map, so a fresh head is still CLIP2Video's. On our world the frames' linear angle readout named
89.2% of the test turning directions where the plain head named 82.8%; with 8 planes the heads name
94% and 93% of the clockwise and anticlockwise ones (run (x), docs/experiments.md).

The alignment head's embedding is ``[sqrt(w) * global, sqrt(1 - w) * aligned]`` (2D wide, unit
length) on both sides, so a dot product of two of them is exactly the weighted score: an index,
binary codes and cosine search need nothing new.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

TDB = "tdb"
TDB_TAB = "tdb+tab"


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """CLIP's GELU approximation, ``x * sigmoid(1.702 x)`` (CLIP4Clip's and CLIP2Video's blocks use it)."""
    return x * torch.sigmoid(1.702 * x)


@dataclass(frozen=True)
class TdbArithmetic:
    """How the tdb / tdb+tab blocks compute (the module docstring): this project's own by default."""

    activation: str = "gelu"  # the blocks' MLP: "gelu" (exact) or "quick_gelu"
    eps: float = 1e-5  # the blocks' LayerNorm epsilon (not the difference LayerNorm's: 1e-5 in both)
    step_position: str = "later"  # a difference token's frame position: "later" (t + 1) or "earlier" (t)
    step_mask: str = "both"  # "both": valid when both frames are; "earlier": CLIP2Video's (module docstring)
    token_norm: bool = True  # TAB: tokens normalised before the centres

    @property
    def additive_mask(self) -> bool:
        """CLIP2Video's masking: padded keys get -1e6 added, padded frames are blank-image embeddings."""
        return self.step_mask == "earlier"


def transformer(dim: int, heads: int, layers: int, activation: str = "gelu", eps: float = 1e-5
                ) -> nn.TransformerEncoder:
    """The temporal transformer CLIP4Clip's heads use, its residual branches zeroed so that a fresh
    stack passes its input through unchanged."""
    if dim % heads:
        raise ValueError(f"embedding size {dim} is not divisible by {heads} heads")
    act: Any = quick_gelu if activation == "quick_gelu" else "gelu"
    block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.0, activation=act,
                                       batch_first=True, norm_first=True, layer_norm_eps=eps)
    stack = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
    for layer in stack.layers:
        nn.init.zeros_(layer.self_attn.out_proj.weight)
        nn.init.zeros_(layer.linear2.weight)
        nn.init.zeros_(layer.linear2.bias)
    return stack


def _run(stack: nn.TransformerEncoder, tokens: torch.Tensor, valid: torch.Tensor, additive: bool = False
         ) -> torch.Tensor:
    """``stack`` over (B, N, D) tokens with (B, N) valid flags; a row with no valid token is run
    unmasked (its outputs are ignored by the caller) instead of giving NaN. ``additive``: CLIP2Video's
    mask instead, -1e6 added to the scores of invalid keys (a row with none valid attends evenly)."""
    if additive:
        return stack(tokens, src_key_padding_mask=(1.0 - valid.to(tokens.dtype)) * -1000000.0)
    empty = ~valid.any(1, keepdim=True)
    return stack(tokens, src_key_padding_mask=~(valid | empty))


def _pooled(tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """meanP of (B, N, D) tokens: normalise, masked mean, normalise."""
    tokens = nn.functional.normalize(tokens, dim=-1)
    weights = valid.to(tokens.dtype).unsqueeze(-1)
    return nn.functional.normalize((tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0), dim=-1)


class DifferenceHead(nn.Module):
    """``tdb``: frames and their adjacent differences, interleaved, through the temporal transformer.

    (B, T, D) frame embeddings and a (B, T) mask of real frames (real first) -> (B, D), unit length.
    """

    def __init__(self, dim: int, max_frames: int, layers: int = 4, heads: int = 8, turn_planes: int = 0,
                 arithmetic: TdbArithmetic | None = None) -> None:
        super().__init__()
        self.arithmetic = arithmetic or TdbArithmetic()
        blocks = (self.arithmetic.activation, self.arithmetic.eps)
        self.frame_position = nn.Embedding(max_frames, dim)
        self.transformer = transformer(dim, heads, layers, *blocks)
        self.token_type = nn.Embedding(2, dim)  # 0: a frame, 1: the difference of two frames
        self.difference = transformer(dim, heads, 1, *blocks)  # attention among the differences alone
        self.difference_norm = nn.LayerNorm(dim)
        for table in (self.frame_position, self.token_type):
            nn.init.normal_(table.weight, std=0.01)
        if turn_planes < 0:
            raise ValueError(f"turn_planes must be >= 0, got {turn_planes}")
        # the module docstring's turn planes (none: CLIP2Video's TDB, with its parameters only)
        self.turn_read: nn.Linear | None = None
        self.turn_write: nn.Linear | None = None
        if turn_planes:
            self.turn_read = nn.Linear(dim, 2 * turn_planes, bias=False)
            nn.init.normal_(self.turn_read.weight, std=dim ** -0.5)
            self.turn_write = nn.Linear(turn_planes, dim, bias=False)
            nn.init.zeros_(self.turn_write.weight)

    def turns(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, D) frames -> (B, T - 1, P): the signed turn from each frame to the next in each plane,
        the cross product of the two frames' points (unit frames scaled by sqrt(D), read linearly)."""
        if self.turn_read is None:
            raise ValueError("this head has no turn planes (turn_planes=0)")
        unit = nn.functional.normalize(frames.float(), dim=-1) * math.sqrt(frames.shape[-1])
        points = self.turn_read(unit).unflatten(-1, (-1, 2))  # (B, T, P, 2)
        here, there = points[:, :-1], points[:, 1:]
        return (here[..., 0] * there[..., 1] - here[..., 1] * there[..., 0]).to(frames.dtype)

    @property
    def out_dim(self) -> int:
        return int(self.frame_position.embedding_dim)

    def tokens(self, frames: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 2T - 1, D) tokens f0, d01, f1, d12, ..., f(T-1) with positions and types added, and
        their (B, 2T - 1) valid flags. The difference between frames t and t + 1 enters the difference
        attention at position t + 1 and the sequence at t + 1 (or t: ``step_position="earlier"``)."""
        b, t, d = frames.shape
        if t > self.frame_position.num_embeddings:
            raise ValueError(f"head supports {self.frame_position.num_embeddings} frames, got {t}")
        positions = self.frame_position.weight[:t].unsqueeze(0)
        kinds = self.token_type.weight
        if t == 1:
            return frames + positions + kinds[0], mask
        how = self.arithmetic
        pairs = mask[:, 1:] & mask[:, :-1]
        if how.step_mask == "earlier":  # CLIP2Video: attend as the later frame, count as the earlier one
            attend, pairs = mask[:, 1:], mask[:, :-1]
        else:
            attend = pairs
        steps = _run(self.difference, frames[:, 1:] - frames[:, :-1] + positions[:, 1:], attend, how.additive_mask)
        placed = positions[:, :-1] if how.step_position == "earlier" else positions[:, 1:]
        steps = 2 * torch.sigmoid(self.difference_norm(steps)) - 1 + placed + kinds[1]
        if self.turn_write is not None:
            steps = steps + self.turn_write(self.turns(frames))
        shown = frames + positions + kinds[0]
        # interleave: frame t, then the step from t to t + 1, ..., then the last frame
        tokens = torch.stack([shown[:, :-1], steps], 2).reshape(b, 2 * (t - 1), d)
        valid = torch.stack([mask[:, :-1], pairs], 2).reshape(b, 2 * (t - 1))
        return torch.cat([tokens, shown[:, -1:]], 1), torch.cat([valid, mask[:, -1:]], 1)

    def frame_outputs(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D): the transformer's output at each frame token plus the frame (residual)."""
        tokens, valid = self.tokens(frames, mask)
        return _run(self.transformer, tokens, valid, self.arithmetic.additive_mask)[:, 0::2] + frames

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _pooled(self.frame_outputs(frames, mask), mask)


class AlignmentHead(DifferenceHead):
    """``tdb+tab``: the difference head's global embedding beside a centre-aligned one, weighted
    ``weight`` and ``1 - weight``; (B, T, D) frames -> (B, 2D) and, through :meth:`text`, (B, L, D)
    caption tokens -> (B, 2D), both unit length (see the module docstring)."""

    def __init__(self, dim: int, max_frames: int, layers: int = 4, heads: int = 8, centres: int = 5,
                 weight: float = 0.5, turn_planes: int = 0, arithmetic: TdbArithmetic | None = None) -> None:
        super().__init__(dim, max_frames, layers, heads, turn_planes, arithmetic)
        if centres < 1 or not 0.0 < weight < 1.0:
            raise ValueError(f"need centres >= 1 and 0 < weight < 1, got {centres}, {weight}")
        self.weight = weight
        self.assign = nn.Parameter(torch.randn(centres, dim) * dim ** -0.5)  # soft assignment to centres
        self.centres = nn.Parameter(torch.randn(centres, dim) * dim ** -0.5)  # what residuals are taken to
        # over the half-rate clip and its differences
        self.local = transformer(dim, heads, 1, self.arithmetic.activation, self.arithmetic.eps)

    @property
    def out_dim(self) -> int:
        return 2 * super().out_dim

    def aligned(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, N, D) tokens and (B, N) valid flags -> (B, D), unit: the centre-aligned summary."""
        if self.arithmetic.token_norm:
            tokens = nn.functional.normalize(tokens, dim=-1)
        share = torch.softmax(tokens @ self.assign.t(), -1) * valid.to(tokens.dtype).unsqueeze(-1)  # (B, N, K)
        residuals = torch.einsum("bnk,bnd->bkd", share, tokens) - share.sum(1).unsqueeze(-1) * self.centres
        return nn.functional.normalize(nn.functional.normalize(residuals, dim=-1).mean(1), dim=-1)

    def combine(self, global_: torch.Tensor, aligned: torch.Tensor) -> torch.Tensor:
        """Unit (B, D) global and aligned embeddings -> (B, 2D) unit: dot products give the weighted score."""
        return torch.cat([math.sqrt(self.weight) * global_, math.sqrt(1 - self.weight) * aligned], -1)

    def aligned_video(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D) frames, (B, T) mask -> (B, D) unit: the clip's tokens aligned to the centres."""
        # Half-rate copy (every second frame) through the difference block and the local transformer.
        half, half_mask = frames[:, 0::2], mask[:, 0::2]
        tokens, valid = self.tokens(half, half_mask)
        local = _run(self.local, tokens, valid, self.arithmetic.additive_mask)[:, 0::2] + half
        every = torch.cat([frames, local], 1)
        return self.aligned(every, torch.cat([mask, half_mask], 1))

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        global_ = _pooled(self.frame_outputs(frames, mask), mask)
        return self.combine(global_, self.aligned_video(frames, mask))

    def image(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D) projected image embeddings (a photo, a video frame) -> (B, 2D), unit: the image tower's
        own embedding as the global half, as a caption's pooled embedding is on the text side, and the
        image as a one-frame clip aligned to the centres. (Through the whole head as a one-frame video,
        image queries found the right moment at rank 1 for 54.5% of the validation queries, this way
        for 87.7%; docs/experiments.md.)"""
        frames = features.unsqueeze(1)
        mask = torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)
        return self.combine(nn.functional.normalize(features, dim=-1), self.aligned_video(frames, mask))

    def text(self, pooled: torch.Tensor, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, D) unit caption embeddings, (B, L, D) projected token states and the (B, L) attention
        mask -> (B, 2D), unit. Every token but the start token is aligned."""
        words = attention_mask.bool().clone()
        words[:, 0] = False
        return self.combine(pooled, self.aligned(tokens, words))


def text_side(head: nn.Module | None, pooled: torch.Tensor, hidden: torch.Tensor, projection: nn.Module,
              attention_mask: torch.Tensor) -> torch.Tensor:
    """A caption's embedding as ``head`` compares it: ``pooled`` (B, D, unit) itself, or for an
    alignment head the combined (B, 2D) of it and its token states ``hidden`` (B, L, H), projected."""
    if not isinstance(head, AlignmentHead):
        return pooled
    return head.text(pooled, projection(hidden), attention_mask)
