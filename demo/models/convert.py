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
import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demo.errors import InputError, ModelLoadError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_BLOCK = {  # OpenAI CLIP residual block -> Hugging Face CLIPEncoderLayer
    "attn.out_proj": "self_attn.out_proj",
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
_HEAD_BLOCK = {  # CLIP4Clip's transformerClip block -> torch.nn.TransformerEncoderLayer
    "attn.in_proj_weight": "self_attn.in_proj_weight",
    "attn.in_proj_bias": "self_attn.in_proj_bias",
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "norm1.weight",
    "ln_1.bias": "norm1.bias",
    "ln_2.weight": "norm2.weight",
    "ln_2.bias": "norm2.bias",
    "mlp.c_fc.weight": "linear1.weight",
    "mlp.c_fc.bias": "linear1.bias",
    "mlp.c_proj.weight": "linear2.weight",
    "mlp.c_proj.bias": "linear2.bias",
}


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a CLIP4Clip checkpoint file (a ``module.`` prefix from DDP is dropped)."""
    import torch

    file = Path(path)
    if not file.is_file():
        raise InputError(f"checkpoint {file} does not exist")
    try:
        raw = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors of every kind: not a torch state dict
        raise InputError(f"cannot read {file} as a PyTorch state dict: {err}") from err
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise InputError(f"{file} holds no state dict of tensors")
    return {k.removeprefix("module."): v.float() for k, v in raw.items()}


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


def _layers(state: dict[str, torch.Tensor], prefix: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(found) + 1 if found else 0


def tower_configs(state: dict[str, torch.Tensor]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hugging Face text and vision config dicts read off the CLIP weights' shapes."""
    width, vision_width = state["clip.ln_final.weight"].shape[0], state["clip.visual.conv1.weight"].shape[0]
    for name, w in (("text", width), ("vision", vision_width)):
        if w % 64:
            raise InputError(f"{name} width {w} is not a multiple of 64 (CLIP uses 64-wide heads)")
    patch = int(state["clip.visual.conv1.weight"].shape[-1])
    grid = round((state["clip.visual.positional_embedding"].shape[0] - 1) ** 0.5)
    shared = {"hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
              "projection_dim": int(state["clip.text_projection"].shape[1])}
    text = {**shared, "vocab_size": int(state["clip.token_embedding.weight"].shape[0]), "hidden_size": int(width),
            "intermediate_size": 4 * int(width), "num_attention_heads": int(width) // 64,
            "num_hidden_layers": _layers(state, "clip.transformer.resblocks."),
            "max_position_embeddings": int(state["clip.positional_embedding"].shape[0]),
            "bos_token_id": 49406, "eos_token_id": 49407}
    vision = {**shared, "hidden_size": int(vision_width), "intermediate_size": 4 * int(vision_width),
              "num_attention_heads": int(vision_width) // 64, "patch_size": patch, "image_size": patch * grid,
              "num_hidden_layers": _layers(state, "clip.visual.transformer.resblocks.")}
    return text, vision


def _block(state: dict[str, torch.Tensor], src: str, dst: str) -> dict[str, torch.Tensor]:
    """One OpenAI residual block ``src`` as Hugging Face keys under ``dst`` (packed q/k/v split)."""
    out = {}
    for part, tensor in zip("qkv", state[f"{src}attn.in_proj_weight"].chunk(3), strict=True):
        out[f"{dst}self_attn.{part}_proj.weight"] = tensor
    for part, tensor in zip("qkv", state[f"{src}attn.in_proj_bias"].chunk(3), strict=True):
        out[f"{dst}self_attn.{part}_proj.bias"] = tensor
    for old, new in _BLOCK.items():
        for kind in ("weight", "bias"):
            out[f"{dst}{new}.{kind}"] = state[f"{src}{old}.{kind}"]
    return out


# Hugging Face name -> OpenAI CLIP name (under ``clip.``) of each tower's weights outside its blocks.
_TEXT = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
         "text_model.embeddings.position_embedding.weight": "positional_embedding",
         "text_model.final_layer_norm.weight": "ln_final.weight", "text_model.final_layer_norm.bias": "ln_final.bias",
         "text_projection.weight": "text_projection"}
_VISION = {"vision_model.embeddings.class_embedding": "visual.class_embedding",
           "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
           "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
           "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
           "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
           "vision_model.post_layernorm.weight": "visual.ln_post.weight",
           "vision_model.post_layernorm.bias": "visual.ln_post.bias", "visual_projection.weight": "visual.proj"}
_PROJECTIONS = ("text_projection.weight", "visual_projection.weight")  # OpenAI multiplies on the right: transpose


def _tower(state: dict[str, torch.Tensor], names: dict[str, str], blocks: str, layers: str) -> dict[str, torch.Tensor]:
    out = {new: state[f"clip.{old}"].t().contiguous() if new in _PROJECTIONS else state[f"clip.{old}"]
           for new, old in names.items()}
    for i in range(_layers(state, f"clip.{blocks}")):
        out.update(_block(state, f"clip.{blocks}{i}.", f"{layers}{i}."))
    return out


def tower_weights(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The CLIP weights as the state dicts of ``CLIPTextModelWithProjection`` and
    ``CLIPVisionModelWithProjection``."""
    return (_tower(state, _TEXT, "transformer.resblocks.", "text_model.encoder.layers."),
            _tower(state, _VISION, "visual.transformer.resblocks.", "vision_model.encoder.layers."))


def head_weights(state: dict[str, torch.Tensor], pooling: str, max_frames: int) -> dict[str, torch.Tensor]:
    """The temporal head's weights in :mod:`demo.models.temporal`'s names (positions cut to ``max_frames``)."""
    if pooling == "seqLSTM":
        return {k.replace("lstm_visual.", "lstm.", 1): v for k, v in state.items() if k.startswith("lstm_visual.")}
    if pooling != "seqTransf":
        return {}
    positions = state["frame_position_embeddings.weight"]
    if positions.shape[0] < max_frames:
        raise InputError(f"the checkpoint has {positions.shape[0]} frame positions, fewer than "
                         f"--max-frames {max_frames}")
    out = {"frame_position.weight": positions[:max_frames].contiguous()}
    for i in range(_layers(state, "transformerClip.resblocks.")):
        for old, new in _HEAD_BLOCK.items():
            out[f"transformer.layers.{i}.{new}"] = state[f"transformerClip.resblocks.{i}.{old}"]
    return out


def convert_clip4clip(checkpoint: str | Path, out: str | Path, *, max_frames: int = 12, max_words: int = 32,
                      sample_fps: float = 1.0, overwrite: bool = False) -> Path:
    """Convert a CLIP4Clip checkpoint into a checkpoint folder at ``out`` (written atomically).

    ``max_frames``/``max_words``/``sample_fps`` are the settings it was trained with (CLIP4Clip's
    defaults for MSR-VTT: 12 frames, 32 words, 1 fps); they go into ``clip4clip.json``.
    """
    from transformers import (
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    from demo.models.clip4clip import Clip4Clip, quiet_transformers
    from demo.models.temporal import Clip4ClipSettings, build_head
    from demo.models.tokenizer import build_clip_tokenizer_files

    target = Path(out)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise InputError(f"{target} exists and is not empty; pass --overwrite to replace it")
    state = read_checkpoint(checkpoint)
    pooling = detect_pooling(state)
    text_config, vision_config = tower_configs(state)
    text_weights, vision_weights = tower_weights(state)
    with quiet_transformers():
        text = CLIPTextModelWithProjection(CLIPTextConfig(**text_config))
        vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision_config))
    try:
        text.load_state_dict(text_weights, strict=True)
        vision.load_state_dict(vision_weights, strict=True)
    except RuntimeError as err:
        raise ModelLoadError(f"{checkpoint}: the CLIP weights do not fit a CLIP model: {err}") from err
    width = int(text_config["hidden_size"])
    if pooling == "seqTransf" and width != text_config["projection_dim"]:
        raise InputError(f"seqTransf runs on {text_config['projection_dim']}-d frame embeddings but its "
                         f"blocks are {width} wide; CLIP4Clip itself cannot run this checkpoint")
    settings = Clip4ClipSettings.reference(
        pooling=pooling, max_frames=max_frames, max_words=max_words, sample_fps=sample_fps,
        head_layers=max(1, _layers(state, "transformerClip.resblocks.")), head_heads=width // 64)
    head = build_head(settings, int(text_config["projection_dim"]))
    if head is not None:
        head.load_state_dict(head_weights(state, pooling, max_frames), strict=True)
    scale = float(state["clip.logit_scale"]) if "clip.logit_scale" in state else math.log(1 / 0.07)
    model = Clip4Clip(text, vision, settings, head, logit_scale=scale)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        build_clip_tokenizer_files(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s (%s) into %s", checkpoint, pooling, target)
    return target
