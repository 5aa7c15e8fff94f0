"""Checkpoints trained with the CLIP4Clip code (ArrowLuo/CLIP4Clip) to this project's folder format.

``python -m demo convert clip4clip CHECKPOINT --out DIR`` reads a ``pytorch_model.bin.N`` that
CLIP4Clip's trainer saved (a state dict: the OpenAI CLIP weights under ``clip.``, and for
seqTransf ``frame_position_embeddings`` + ``transformerClip.resblocks.*``, for seqLSTM
``lstm_visual.*``) and writes an ordinary Hugging Face CLIP folder plus ``clip4clip.json`` and
``temporal_head.safetensors``. The settings written are CLIP4Clip's own
(:data:`demo.models.temporal.REFERENCE`): its frame sampling and PIL bicubic resizing, and
seqTransf blocks computed as there (QuickGELU, LayerNorm epsilon 1e-12), so the converted model
embeds a clip as the CLIP4Clip code does. The MSR-VTT-trained checkpoints (the model card's
second row) convert the same way. The CLIP tokenizer is the real BPE vocabulary in ``assets/``.

What is refused, with the reason: a cross-encoder (``tightTransf``) checkpoint, a 3-D linear
patch (``--linear_patch 3d``), a ResNet CLIP, and widths that are not CLIP's 64-per-head layout.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from demo.errors import InputError
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


def detect_pooling(state: dict[str, torch.Tensor]) -> str:
    """meanP, seqLSTM or seqTransf, from the checkpoint's keys; refuses what cannot be converted."""
    if any(k.startswith("cross.") for k in state):
        raise InputError("this is a tightTransf (cross-encoder) checkpoint: it scores text and video "
                         "jointly and cannot be split into the two encoders this project indexes with")
    if "clip.visual.conv2.weight" in state:
        raise InputError("this checkpoint uses a 3-D linear patch (--linear_patch 3d); only 2d converts")
    if "clip.visual.proj" not in state:
        raise InputError("no clip.visual.proj in the checkpoint: not a ViT CLIP4Clip checkpoint")
    if any(k.startswith("transformerClip.") for k in state):
        return "seqTransf"
    if any(k.startswith("lstm_visual.") for k in state):
        return "seqLSTM"
    return "meanP"


def head_weights(state: dict[str, torch.Tensor], pooling: str, max_frames: int) -> dict[str, torch.Tensor]:
    """The temporal head's weights in :mod:`demo.models.temporal`'s names (positions cut to ``max_frames``)."""
    if pooling == "seqLSTM":
        return {k.replace("lstm_visual.", "lstm.", 1): v for k, v in state.items() if k.startswith("lstm_visual.")}
    if pooling != "seqTransf":
        return {}
    out = {"frame_position.weight": positions(state, "frame_position_embeddings.weight", max_frames)}
    count = layers(state, "transformerClip.resblocks.")
    return out | block_weights(state, "transformerClip.resblocks.", "transformer.layers.", count)


def positions(state: dict[str, torch.Tensor], key: str, max_frames: int) -> torch.Tensor:
    """The first ``max_frames`` rows of the frame-position table ``key``."""
    table = state[key]
    if table.shape[0] < max_frames:
        raise InputError(f"the checkpoint has {table.shape[0]} frame positions, fewer than --max-frames {max_frames}")
    return table[:max_frames].contiguous()


def check_head_width(pooling: str, text: object, source: str | Path) -> int:
    """The temporal blocks' width (the text tower's, as in CLIP4Clip); refuses one that differs from the
    embedding size the blocks run on."""
    width, dim = int(text.config.hidden_size), int(text.config.projection_dim)  # type: ignore[attr-defined]
    if pooling != "meanP" and width != dim:
        raise InputError(f"{source}: the temporal blocks run on {dim}-d frame embeddings but are {width} wide; "
                         "the original code cannot run this checkpoint either")
    return width


def convert_clip4clip(checkpoint: str | Path, out: str | Path, *, max_frames: int = 12, max_words: int = 32,
                      sample_fps: float = 1.0, overwrite: bool = False) -> Path:
    """Convert a CLIP4Clip checkpoint into a checkpoint folder at ``out`` (written atomically).

    ``max_frames``/``max_words``/``sample_fps`` are the settings it was trained with (CLIP4Clip's
    defaults for MSR-VTT: 12 frames, 32 words, 1 fps); they go into ``clip4clip.json``.
    """
    from demo.models.clip4clip import Clip4Clip
    from demo.models.temporal import Clip4ClipSettings, build_head

    target = check_target(out, overwrite)
    state = read_checkpoint(checkpoint)
    pooling = detect_pooling(state)
    text, vision = build_towers(state, checkpoint)
    width = check_head_width(pooling if pooling == "seqTransf" else "meanP", text, checkpoint)
    settings = Clip4ClipSettings.reference(
        pooling=pooling, max_frames=max_frames, max_words=max_words, sample_fps=sample_fps,
        head_layers=max(1, layers(state, "transformerClip.resblocks.")), head_heads=width // 64)
    head = build_head(settings, int(text.config.projection_dim))
    if head is not None:
        head.load_state_dict(head_weights(state, pooling, max_frames), strict=True)
    write_folder(Clip4Clip(text, vision, settings, head, logit_scale=logit_scale(state)), target)
    log.info("converted %s (%s) into %s", checkpoint, pooling, target)
    return target
