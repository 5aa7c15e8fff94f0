"""CLIP -> X-CLIP: an ``XCLIPConfig`` sized like a CLIP checkpoint and its weights copied over.

The model is an ordinary Hugging Face ``XCLIPModel`` sized like the embedded CLIP and initialised
from the CLIP4Clip checkpoint wherever the two share parts (:func:`init_from_clip`): text tower,
vision patch/position embeddings and encoder layers, projections, temperature, and the seqTransf
temporal head as X-CLIP's multi-frame integration transformer (MIT), through explicit name maps
(:data:`CLIP_TO_XCLIP`, :data:`HEAD_TO_MIT`). The vision embeddings are folded from CLIP's input
normalisation to ImageNet's (:func:`fold_normalisation`), X-CLIP's preprocessing. The new parts
(cross-frame message tokens, the video-specific prompt generator) start random.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from demo.errors import ModelLoadError
from demo.models.clip2video import TDB, TDB_TAB
from demo.models.clip4clip import quiet_transformers
from demo.models.temporal import HEAD_FILE, HEAD_FILES, Clip4ClipSettings
from demo.video.preprocess import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

_TEXT_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "max_position_embeddings", "hidden_act", "layer_norm_eps", "attention_dropout",
              "initializer_range", "initializer_factor", "bos_token_id", "eos_token_id", "pad_token_id")
_VISION_KEYS = ("image_size", "patch_size", "num_channels", "hidden_size", "intermediate_size",
                "num_hidden_layers", "num_attention_heads", "hidden_act", "layer_norm_eps",
                "attention_dropout", "initializer_range", "initializer_factor")
# CLIP name -> X-CLIP name (regex, replacement). Everything else in X-CLIP starts random.
_LAYER = (r"encoder\.layers\.(\d+)\.((?:self_attn\.(?:[qkv]|out)_proj|layer_norm[12]|mlp\.fc[12])"
          r"\.(?:weight|bias))")
_EMB = "vision_model.embeddings"
CLIP_TO_XCLIP: tuple[tuple[str, str], ...] = (
    (r"text_model\.embeddings\.(token|position)_embedding\.weight",
     r"text_model.embeddings.\1_embedding.weight"),
    (rf"text_model\.{_LAYER}", r"text_model.encoder.layers.\1.\2"),
    (r"text_model\.final_layer_norm\.(weight|bias)", r"text_model.final_layer_norm.\1"),
    (r"text_projection\.weight", "text_projection.weight"),
    (r"vision_model\.embeddings\.class_embedding", f"{_EMB}.class_embedding"),
    (r"vision_model\.embeddings\.(patch|position)_embedding\.weight", rf"{_EMB}.\1_embedding.weight"),
    (r"vision_model\.pre_layrnorm\.(weight|bias)", r"vision_model.pre_layernorm.\1"),  # CLIP's spelling
    (rf"vision_model\.{_LAYER}", r"vision_model.encoder.layers.\1.\2"),
    (r"vision_model\.post_layernorm\.(weight|bias)", r"vision_model.post_layernorm.\1"),
    (r"visual_projection\.weight", "visual_projection.weight"),
    (r"logit_scale", "logit_scale"),
)  # fmt: skip
# CLIP4Clip's seqTransf head (torch TransformerEncoder, pre-norm) -> X-CLIP's MIT encoder. The
# packed in_proj (q, k, v) is split in init_from_clip; frame_position -> mit.position_embedding.
_MIT = r"mit.encoder.layers.\1"
HEAD_TO_MIT: tuple[tuple[str, str], ...] = (
    (r"transformer\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", rf"{_MIT}.self_attn.out_proj.\2"),
    (r"transformer\.layers\.(\d+)\.norm([12])\.(weight|bias)", rf"{_MIT}.layer_norm\2.\3"),
    (r"transformer\.layers\.(\d+)\.linear([12])\.(weight|bias)", rf"{_MIT}.mlp.fc\2.\3"),
)  # fmt: skip
# Embeddings re-expressed for ImageNet-normalised input (see fold_normalisation).
FOLDED = (f"{_EMB}.patch_embedding.weight", f"{_EMB}.position_embedding.weight")


def map_name(name: str, table: tuple[tuple[str, str], ...]) -> str | None:
    """The X-CLIP name of checkpoint tensor ``name`` under ``table``, or None when it has none."""
    for pattern, target in table:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, target, name)
    return None


@dataclass(frozen=True)
class InitReport:
    """Which X-CLIP tensors came from the checkpoint and which start random."""

    copied: tuple[str, ...]  # X-CLIP names set from the checkpoint (FOLDED ones transformed)
    random: tuple[str, ...]
    sources: dict[str, str] = field(default_factory=dict)  # X-CLIP name -> checkpoint name


def xclip_config(clip_dir: str | Path, num_frames: int = 8, prompt_layers: int = 2,
                 mit_layers: int | None = None) -> Any:
    """An ``XCLIPConfig`` sized like the CLIP checkpoint in ``clip_dir`` (read, not assumed).

    ``mit_hidden_size`` equals ``projection_dim`` (X-CLIP's MIT runs on projected frame
    embeddings), set in the text and vision sub-configs too. The MIT gets the CLIP4Clip
    head's depth and heads when the folder has a seqTransf head, so the head can be copied.
    """
    from transformers import CLIPConfig, XCLIPConfig  # transformers' classes take seconds to import

    try:
        clip: Any = CLIPConfig.from_pretrained(str(clip_dir))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot read a CLIP config in {clip_dir}: {err}") from err
    settings = Clip4ClipSettings.load(clip_dir)
    has_head = head_file(clip_dir) is not None
    proj = int(clip.projection_dim)
    text = {k: getattr(clip.text_config, k) for k in _TEXT_KEYS if hasattr(clip.text_config, k)}
    vision = {k: getattr(clip.vision_config, k) for k in _VISION_KEYS if hasattr(clip.vision_config, k)}
    heads = settings.head_heads if has_head else int(vision["num_attention_heads"])
    return XCLIPConfig(
        text_config={**text, "projection_dim": proj},
        vision_config={**vision, "projection_dim": proj, "num_frames": num_frames, "mit_hidden_size": proj,
                       "mit_intermediate_size": 4 * proj, "mit_num_attention_heads": heads,
                       "mit_num_hidden_layers": mit_layers or (settings.head_layers if has_head else 1)},
        projection_dim=proj, prompt_layers=prompt_layers, prompt_num_attention_heads=heads,
        prompt_alpha=1e-4,  # as the original X-CLIP: the prompts start as a tiny nudge to the text
        logit_scale_init_value=float(clip.logit_scale_init_value),
    )  # fmt: skip


def fold_normalisation(patch: torch.Tensor, position: torch.Tensor, src_mean: tuple[float, ...],
                       src_std: tuple[float, ...], mean: tuple[float, ...],
                       std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch (D, 3, P, P) and position (N + 1, D) embeddings for inputs normalised with
    ``mean``/``std`` that give exactly the embeddings the originals gave for ``src_*``.

    ``(p - m) / s = (s'/s) * (p - m') / s' + (m' - m) / s``: the scale goes into the
    (bias-free) patch convolution, the constant into the patch positions (not the class token).
    """
    scale = torch.tensor(std) / torch.tensor(src_std)
    shift = (torch.tensor(mean) - torch.tensor(src_mean)) / torch.tensor(src_std)
    new_patch = patch * scale.view(1, 3, 1, 1).to(patch.dtype)
    offset = (patch * shift.view(1, 3, 1, 1).to(patch.dtype)).sum(dim=(1, 2, 3))  # (D,)
    new_position = position.clone()
    new_position[1:] += offset
    return new_patch, new_position


def init_from_clip(model: Any, clip_dir: str | Path) -> InitReport:
    """Copy the CLIP (and seqTransf head) weights in ``clip_dir`` into X-CLIP ``model`` in place.

    Names map through :data:`CLIP_TO_XCLIP` and :data:`HEAD_TO_MIT`; the head's packed
    q/k/v projection is split. Vision embeddings are folded from CLIP's to ImageNet's
    mean/std (X-CLIP's preprocessing). Shapes must match; a mismatch is an error.
    """
    folder = Path(clip_dir)
    state = model.state_dict()
    updates: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    for name, tensor in load_file(str(folder / "model.safetensors")).items():
        target = map_name(name, CLIP_TO_XCLIP)
        if target is not None:
            updates[target], sources[target] = tensor, name
    head_path = head_file(folder)
    if head_path is not None and model.config.vision_config.mit_num_hidden_layers > 0:
        layers = model.config.vision_config.mit_num_hidden_layers
        for name, tensor in load_file(str(head_path)).items():
            layer = re.match(r"transformer\.layers\.(\d+)\.", name)
            if (layer and int(layer.group(1)) >= layers) or not (layer or name == "frame_position.weight"):
                continue  # deeper than the MIT, or a CLIP2Video head's own parts
            if name == "frame_position.weight":
                frames = model.config.vision_config.num_frames
                if tensor.shape[0] >= frames:  # positions of the first num_frames frames
                    updates["mit.position_embedding"] = tensor[:frames].unsqueeze(0)
                    sources["mit.position_embedding"] = name
            elif name.endswith(("in_proj_weight", "in_proj_bias")):
                kind = "weight" if name.endswith("weight") else "bias"
                for part, chunk in zip("qkv", tensor.chunk(3), strict=True):
                    target = f"mit.encoder.layers.{layer.group(1) if layer else 0}.self_attn.{part}_proj"
                    target = f"{target}.{kind}"
                    updates[target], sources[target] = chunk, name
            elif (target := map_name(name, HEAD_TO_MIT)) is not None:
                updates[target], sources[target] = tensor, name
    patch, position = FOLDED
    if patch in updates and position in updates:
        folded = fold_normalisation(updates[patch].float(), updates[position].float(),
                                    CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD)
        updates[patch], updates[position] = folded
    bad = {k: (tuple(v.shape), tuple(state[k].shape)) for k, v in updates.items()
           if k not in state or v.shape != state[k].shape}  # fmt: skip
    if bad:
        raise ModelLoadError(f"cannot initialise X-CLIP from {folder}: shape mismatches {bad}")
    with torch.no_grad():
        for name, tensor in updates.items():
            state[name].copy_(tensor.to(state[name].dtype))
    learnable = [k for k in state if k not in updates and not k.endswith("position_ids")]
    report = InitReport(tuple(sorted(updates)), tuple(learnable), sources)
    log.info("X-CLIP initialised from %s: %d tensors copied (%d of them folded to ImageNet mean/std), "
             "%d left random", folder, len(report.copied), len(FOLDED), len(report.random))
    return report


def head_file(folder: str | Path) -> Path | None:
    """The temporal head whose frame transformer seeds the MIT: the checkpoint's seqTransf head, else its
    own CLIP2Video head (its frame transformer has the same names), else None."""
    folder = Path(folder)
    own = Clip4ClipSettings.load(folder).pooling
    if own == "seqTransf":
        candidates = [folder / HEAD_FILE]
    else:
        candidates = [folder / HEAD_FILES["seqTransf"], *([folder / HEAD_FILE] if own in (TDB, TDB_TAB) else [])]
    return next((path for path in candidates if path.is_file()), None)


def build_xclip(init: str | Path, num_frames: int = 8, prompt_layers: int = 2,
                mit_layers: int | None = None, seed: int = 0) -> tuple[Any, InitReport]:
    """A new ``XCLIPModel`` (float32) initialised from the CLIP4Clip folder ``init``."""
    from transformers import XCLIPModel  # transformers' classes take seconds to import

    config = xclip_config(init, num_frames, prompt_layers, mit_layers)
    torch.manual_seed(seed)
    with quiet_transformers():
        model = XCLIPModel(config)
    # HF initialises the MIT frame positions with std 1, which swamps small frame
    # embeddings; X-CLIP uses 0.02. Overwritten below when a head is copied.
    torch.nn.init.normal_(model.mit.position_embedding, std=0.02)
    return model, init_from_clip(model, init)
