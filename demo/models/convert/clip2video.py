"""Checkpoints released with CLIP2Video (CryhanFang/CLIP2Video) to this project's folder format.

``python -m demo convert clip2video CHECKPOINT --out DIR`` reads the ``pytorch_model.bin.N`` that its
``infer_retrieval.py`` loads: a state dict with the OpenAI CLIP weights under ``clip.``, the temporal
transformer (``frame_position_embeddings``, ``transformerClip.resblocks.*``), the Temporal Difference
Block (``type_position_embeddings``, ``frame2t_attention.resblocks.0.*``, ``trans_layernorm``) and the
Temporal Alignment Block (``weight_center``, ``emb_center``, ``actionClip.resblocks.0.*``). It writes a
Hugging Face CLIP folder with a ``tdb+tab`` head (``tdb`` without TAB's weights) and a ``clip4clip.json``
that records CLIP2Video's arithmetic (:data:`demo.models.temporal.CLIP2VIDEO`: QuickGELU, LayerNorm
epsilon 1e-12, difference tokens at position t and flagged as their earlier frame, raw tokens into TAB)
and its inputs: 12 frames by its 5-fps rule with ``feature_framerate`` 2
(:func:`demo.video.sampling.clip2video_indices`), PIL bicubic resize and centre crop with CLIP's
mean/std, 32 text tokens, TAB weight 0.5. The similarity of a caption and a clip is then
CLIP2Video's ``get_inference_logits`` divided by its logit scale, clip by clip (see
:mod:`demo.models.clip2video` for its batch-dependent mask tiling, which is not reproduced).

The released checkpoints were run with ``--temporal_type TDB --temporal_proj sigmoid_selfA
--center_type TAB --center_proj TAB_TDB``; the weights of ``TAB_TDB`` and ``TAB`` (no difference block
inside TAB) are the same, so ``TAB_TDB`` is assumed. Refused with the reason: ``sigmoid_mlp``
differences (``frame2t_projection``), TAB without the difference block's global head, and the refusals
of :mod:`demo.models.convert.clip4clip`. CLIP2Video runs its towers in half precision; the folder
holds float32. The checkpoints themselves (MSR-VTT, MSVD, VATEX, linked from CLIP2Video's README) could
not be downloaded where this was written: the converter is tested on state dicts in their layout with
tiny random weights (tests/test_convert_clip2video.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from demo.errors import InputError
from demo.models.convert.clip4clip import check_head_width, detect_pooling, head_weights, positions
from demo.models.convert.openai import (
    block_weights,
    build_towers,
    check_target,
    layers,
    logit_scale,
    read_checkpoint,
    write_folder,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def detect_blocks(state: dict[str, torch.Tensor]) -> str:
    """The head a CLIP2Video checkpoint runs: "tdb+tab", "tdb", or CLIP4Clip's "seqTransf" / "meanP"."""
    if "frame2t_projection" in state:
        raise InputError("this checkpoint's differences go through an MLP (--temporal_proj sigmoid_mlp); "
                         "only the released sigmoid_selfA difference block converts")
    tdb = "type_position_embeddings.weight" in state
    tab = "weight_center" in state
    if tdb and not any(k.startswith("frame2t_attention.") for k in state):
        raise InputError("type_position_embeddings without frame2t_attention: a TDB without its difference "
                         "attention (--temporal_proj default) is not a released configuration")
    if tab and not (tdb and any(k.startswith("actionClip.") for k in state)):
        raise InputError("TAB weights without the difference block and its one-layer transformer: only "
                         "--center_proj TAB_TDB with --temporal_type TDB (the released checkpoints) converts")
    if tab:
        return "tdb+tab"
    return "tdb" if tdb else detect_pooling(state)


def tdb_weights(state: dict[str, torch.Tensor], max_frames: int, tab: bool) -> dict[str, torch.Tensor]:
    """The TDB (and TAB) weights in :class:`demo.models.clip2video.AlignmentHead`'s names."""
    out = {"frame_position.weight": positions(state, "frame_position_embeddings.weight", max_frames),
           # CLIP2Video's type 1 marks frames and type 0 differences; ours is the other way round
           "token_type.weight": state["type_position_embeddings.weight"][[1, 0]].contiguous(),
           "difference_norm.weight": state["trans_layernorm.weight"],
           "difference_norm.bias": state["trans_layernorm.bias"]}
    out |= block_weights(state, "transformerClip.resblocks.", "transformer.layers.",
                         layers(state, "transformerClip.resblocks."))
    out |= block_weights(state, "frame2t_attention.resblocks.", "difference.layers.", 1)
    if tab:
        out |= {"assign": state["weight_center"], "centres": state["emb_center"]}
        out |= block_weights(state, "actionClip.resblocks.", "local.layers.", 1)
    return out


def convert_clip2video(checkpoint: str | Path, out: str | Path, *, max_frames: int = 12, max_words: int = 32,
                       feature_framerate: int = 2, tab_weight: float = 0.5, overwrite: bool = False) -> Path:
    """Convert a CLIP2Video checkpoint into a checkpoint folder at ``out`` (written atomically).

    ``max_frames`` / ``max_words`` / ``feature_framerate`` / ``tab_weight`` are its test scripts'
    ``--max_frames 12 --max_words 32 --feature_framerate 2 --center_weight 0.5`` (weights do not record them).
    """
    from demo.models.clip4clip import Clip4Clip
    from demo.models.temporal import CLIP2VIDEO, REFERENCE, Clip4ClipSettings, build_head
    from demo.video.sampling import CLIP2VIDEO_EXTRACT_FPS

    if feature_framerate < 1:
        raise InputError(f"--feature-framerate must be >= 1, got {feature_framerate}")
    target = check_target(out, overwrite)
    state = read_checkpoint(checkpoint)
    pooling = detect_blocks(state)
    text, vision = build_towers(state, checkpoint)
    width = check_head_width(pooling, text, checkpoint)
    settings = Clip4ClipSettings(
        **{**REFERENCE, **CLIP2VIDEO}, pooling=pooling, max_frames=max_frames, max_words=max_words,
        sample_fps=CLIP2VIDEO_EXTRACT_FPS / feature_framerate, head_heads=width // 64,
        head_layers=max(1, layers(state, "transformerClip.resblocks.")), tab_weight=tab_weight,
        tab_centres=int(state["weight_center"].shape[0]) if "weight_center" in state else 5)
    head = build_head(settings, int(text.config.projection_dim))
    if head is not None:
        weights = (tdb_weights(state, max_frames, pooling == "tdb+tab") if pooling.startswith("tdb")
                   else head_weights(state, pooling, max_frames))
        head.load_state_dict(weights, strict=True)
    write_folder(Clip4Clip(text, vision, settings, head, logit_scale=logit_scale(state)), target)
    log.info("converted %s (CLIP2Video, %s) into %s", checkpoint, pooling, target)
    return target
