"""OpenAI-layout CLIP weights (what CLIP4Clip, CLIP2Video and MMAction2 save under ``clip.``) as Hugging Face
CLIP towers, and the checkpoint folder every converter writes.

The towers are OpenAI's ViT CLIP: packed q/k/v in-projections, projections multiplied on the right,
QuickGELU and LayerNorm epsilon 1e-5, which ``CLIPTextModelWithProjection`` /
``CLIPVisionModelWithProjection`` compute exactly (checked against transcriptions in tests/test_parity.py).
``HEAD_BLOCK`` maps a residual block of the temporal transformers these code bases put after the towers
(CLIP4Clip's ``transformerClip``, CLIP2Video's, MMAction2's adapter) onto ``torch.nn.TransformerEncoderLayer``.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demo.errors import InputError, ModelLoadError

if TYPE_CHECKING:
    import torch

    from demo.models.clip4clip import Clip4Clip

_BLOCK = {  # OpenAI CLIP residual block -> Hugging Face CLIPEncoderLayer
    "attn.out_proj": "self_attn.out_proj",
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
HEAD_BLOCK = {  # CLIP4Clip's transformerClip block -> torch.nn.TransformerEncoderLayer
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
    """The state dict in a checkpoint file: a bare one (CLIP4Clip's, CLIP2Video's) or the ``state_dict`` of a
    training checkpoint (MMAction2's); a ``module.`` prefix from DDP is dropped. Only tensors and plain
    containers are unpickled (``weights_only``): a file that holds more is refused with the one-line way
    to re-save its weights."""
    import pickle

    import torch

    file = Path(path)
    if not file.is_file():
        raise InputError(f"checkpoint {file} does not exist")
    try:
        raw = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise InputError(f"{file} holds Python objects besides weights ({str(err).splitlines()[0]}); if you trust "
                         f"it, re-save its weights: python -c \"import torch; c = torch.load('{file}', "
                         "weights_only=False); torch.save(c.get('state_dict', c), 'weights.pth')\"") from err
    except Exception as err:  # pickle errors of every kind: not a torch state dict
        raise InputError(f"cannot read {file} as a PyTorch state dict: {err}") from err
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise InputError(f"{file} holds no state dict of tensors")
    return {k.removeprefix("module."): v.float() for k, v in raw.items()}


def layers(state: dict[str, torch.Tensor], prefix: str) -> int:
    """How many numbered blocks ``{prefix}{i}.`` the state dict holds."""
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
            "num_hidden_layers": layers(state, "clip.transformer.resblocks."),
            "max_position_embeddings": int(state["clip.positional_embedding"].shape[0]),
            "bos_token_id": 49406, "eos_token_id": 49407}
    vision = {**shared, "hidden_size": int(vision_width), "intermediate_size": 4 * int(vision_width),
              "num_attention_heads": int(vision_width) // 64, "patch_size": patch, "image_size": patch * grid,
              "num_hidden_layers": layers(state, "clip.visual.transformer.resblocks.")}
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


def _tower(state: dict[str, torch.Tensor], names: dict[str, str], blocks: str, dst: str) -> dict[str, torch.Tensor]:
    out = {new: state[f"clip.{old}"].t().contiguous() if new in _PROJECTIONS else state[f"clip.{old}"]
           for new, old in names.items()}
    for i in range(layers(state, f"clip.{blocks}")):
        out.update(_block(state, f"clip.{blocks}{i}.", f"{dst}{i}."))
    return out


def tower_weights(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The CLIP weights as the state dicts of ``CLIPTextModelWithProjection`` and
    ``CLIPVisionModelWithProjection``."""
    return (_tower(state, _TEXT, "transformer.resblocks.", "text_model.encoder.layers."),
            _tower(state, _VISION, "visual.transformer.resblocks.", "vision_model.encoder.layers."))




def block_weights(state: dict[str, torch.Tensor], src: str, dst: str, count: int) -> dict[str, torch.Tensor]:
    """``count`` residual blocks ``{src}{i}.`` as ``{dst}{i}.`` TransformerEncoderLayer weights (:data:`HEAD_BLOCK`)."""
    out = {}
    for i in range(count):
        for old, new in HEAD_BLOCK.items():
            out[f"{dst}{i}.{new}"] = state[f"{src}{i}.{old}"]
    return out


def build_towers(state: dict[str, torch.Tensor], source: str | Path) -> tuple[Any, Any]:
    """``CLIPTextModelWithProjection`` and ``CLIPVisionModelWithProjection`` holding the OpenAI CLIP weights under
    ``clip.`` in ``state``."""
    from transformers import (
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    from demo.models.clip4clip import quiet_transformers

    if "clip.visual.proj" not in state or "clip.ln_final.weight" not in state:
        raise InputError(f"{source}: no clip.visual.proj / clip.ln_final.weight: not a ViT CLIP checkpoint "
                         "in OpenAI naming")
    text_config, vision_config = tower_configs(state)
    text_weights, vision_weights = tower_weights(state)
    with quiet_transformers():
        text = CLIPTextModelWithProjection(CLIPTextConfig(**text_config))
        vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision_config))
    try:
        text.load_state_dict(text_weights, strict=True)
        vision.load_state_dict(vision_weights, strict=True)
    except RuntimeError as err:
        raise ModelLoadError(f"{source}: the CLIP weights do not fit a CLIP model: {err}") from err
    return text, vision


def logit_scale(state: dict[str, torch.Tensor]) -> float:
    """The checkpoint's learned temperature (log scale), or CLIP's initial one."""
    return float(state["clip.logit_scale"]) if "clip.logit_scale" in state else math.log(1 / 0.07)


def check_target(out: str | Path, overwrite: bool) -> Path:
    target = Path(out)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise InputError(f"{target} exists and is not empty; pass --overwrite to replace it")
    return target


def write_folder(model: Clip4Clip, target: Path) -> Path:
    """``model`` saved with the CLIP tokenizer files into ``target``, atomically (a temporary folder beside it,
    renamed into place)."""
    from demo.models.tokenizer import build_clip_tokenizer_files

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
    return target
