"""The CLIP4Clip model: Hugging Face CLIP towers plus a temporal head.

The checkpoint format is an ordinary Hugging Face CLIP folder (``config.json``,
``model.safetensors``, tokenizer files), which is what the WebVid CLIP4Clip
checkpoints on the hub are, plus ``clip4clip.json`` and, for a temporal head,
``temporal_head.safetensors`` (the checkpoint's own pooling) and ``temporal_head-<pooling>.safetensors``
for any other head trained on the same towers (compared on one backbone by the evaluation).
So ``CLIPTextModelWithProjection.from_pretrained`` and ``CLIPVisionModelWithProjection.from_pretrained``
load every model this project uses or trains, from the hub or from disk. transformers is imported inside the
functions that need it: it adds seconds to start-up, and much of the CLI never needs it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from demo.errors import ModelLoadError
from demo.models.clip2video import text_side
from demo.models.temporal import (
    HEAD_FILE,
    HEAD_FILES,
    SETTINGS_FILE,
    Clip4ClipSettings,
    build_head,
    masked_mean,
    pool,
)

log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' per-key load report (a CLIP folder read as one tower
    lists the other tower's weights as 'unexpected', which is by design here)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """(grid * grid, dim) 2-D sine-cosine position codes, row-major (x varies fastest), as in MAE.

    >>> sincos_2d(4, 8).shape
    torch.Size([16, 8])
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos positions need a width divisible by 4, got {dim}")
    y, x = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                          indexing="ij")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    parts = []
    for coord in (x.flatten(), y.flatten()):
        angle = coord[:, None] * omega[None]
        parts += [torch.sin(angle), torch.cos(angle)]
    return torch.cat(parts, dim=1)


class Clip4Clip(nn.Module):
    """Text tower, vision tower, temporal heads and the learned temperature.

    ``heads`` holds every trained head by pooling name; :attr:`head` is the one of
    ``settings.pooling`` (``None`` for meanP), which :meth:`encode_video` and :meth:`encode_text`
    use unless asked for another pooling.
    """

    def __init__(self, text: Any, vision: Any, settings: Clip4ClipSettings, head: nn.Module | None = None,
                 logit_scale: float = math.log(1 / 0.07), heads: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.text = text  # CLIPTextModelWithProjection
        self.vision = vision  # CLIPVisionModelWithProjection
        self.settings = settings
        self.heads = nn.ModuleDict(heads or {})
        if head is not None:
            self.heads[settings.pooling] = head
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))

    @property
    def head(self) -> nn.Module | None:
        return self.head_for(None)

    def head_for(self, pooling: str | None) -> nn.Module | None:
        """The head of ``pooling`` (default: the checkpoint's own); ``None`` for meanP."""
        pooling = pooling or self.settings.pooling
        if pooling == "meanP":
            return None
        if pooling not in self.heads:
            raise ValueError(f"this model has no {pooling} head (it has {sorted(self.heads) or 'none'})")
        return self.heads[pooling]

    @property
    def dim(self) -> int:
        """The towers' projection size D: frame and caption embeddings before any head."""
        return int(self.text.config.projection_dim)

    def embedding_dim(self, pooling: str | None = None) -> int:
        """The width of the video and caption embeddings ``pooling`` compares (tdb+tab: 2D)."""
        head = self.head_for(pooling)
        return int(getattr(head, "out_dim", self.dim))

    @property
    def image_size(self) -> int:
        return int(self.vision.config.image_size)

    @classmethod
    def from_config(cls, text_config: dict[str, Any], vision_config: dict[str, Any],
                    settings: Clip4ClipSettings, position_scale: float = 0.0) -> Clip4Clip:
        """A randomly initialised model (the embedded model starts here).

        ``position_scale`` > 0 starts the vision tower's patch positions as a fixed 2-D sin-cos
        pattern times this scale (then learned as usual) instead of small random vectors. At
        HF's default init a patch's position is ~15x weaker than its pixels, and a small ViT
        trained briefly stays a bag of patches: it learns colour and size but not where
        things are, so no temporal head can tell left from right.
        """
        from transformers import (
            CLIPTextConfig,
            CLIPTextModelWithProjection,
            CLIPVisionConfig,
            CLIPVisionModelWithProjection,
        )

        text = CLIPTextModelWithProjection(CLIPTextConfig(**text_config))
        vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision_config))
        if text.config.projection_dim != vision.config.projection_dim:
            raise ValueError(f"text projection_dim {text.config.projection_dim} != vision "
                             f"projection_dim {vision.config.projection_dim}")
        embeddings = vision.vision_model.embeddings
        if position_scale > 0:
            grid = math.isqrt(int(embeddings.num_patches))
            codes = sincos_2d(grid, int(vision.config.hidden_size))
            with torch.no_grad():
                embeddings.position_embedding.weight[1:] = position_scale * codes
                embeddings.position_embedding.weight[0] = 0.0  # the class token has no place
        return cls(text, vision, settings, build_head(settings, int(text.config.projection_dim or 0)))

    @classmethod
    def from_pretrained(cls, id_or_dir: str | Path, pooling: str | None = None,
                        dtype: torch.dtype = torch.float32, **changes: Any) -> Clip4Clip:
        """Load a CLIP or CLIP4Clip checkpoint folder or hub id.

        ``pooling`` overrides the checkpoint's own head: asking a seqTransf
        checkpoint for ``meanP`` drops the head (the backbone is shared), asking a
        checkpoint without head weights for ``seqTransf`` fails. ``changes`` override
        other :class:`Clip4ClipSettings` fields (``frame_sampling="every-second"``, say).
        """
        from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

        source = str(id_or_dir)
        try:
            stored = checkpoint_settings(source)
            settings = stored.with_changes(pooling=pooling, **changes)
        except ValueError as err:
            raise ModelLoadError(f"cannot use {source!r} that way: {err}") from err
        try:
            with quiet_transformers():
                text = CLIPTextModelWithProjection.from_pretrained(source, dtype=dtype)
                vision = CLIPVisionModelWithProjection.from_pretrained(source, dtype=dtype)
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"cannot load CLIP model {source!r}: {first_line(err)}") from err
        weights = checkpoint_file(source, "model.safetensors")
        scale = read_logit_scale(weights.parent) if weights is not None else math.log(1 / 0.07)
        model = cls(text, vision, settings, None, logit_scale=scale)
        # The head file of the checkpoint's own pooling, then the other heads trained on the same
        # towers (a hub repo is only asked for the one it is used with).
        names = sorted(HEAD_FILES) if Path(source).is_dir() else [settings.pooling]
        for name in [stored.pooling, *names]:
            if name == "meanP" or name in model.heads:
                continue
            path = checkpoint_file(source, HEAD_FILE if name == stored.pooling else HEAD_FILES[name])
            if path is not None:
                head = build_head(settings, model.dim, name)
                assert head is not None
                head.load_state_dict(load_file(str(path)))
                model.heads[name] = head.to(dtype)
        if settings.pooling != "meanP" and settings.pooling not in model.heads:
            raise ModelLoadError(f"{source!r} has no {HEAD_FILES.get(settings.pooling, HEAD_FILE)}: it cannot "
                                 f"run {settings.pooling} pooling")
        return model.eval()

    def save_pretrained(self, out_dir: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write a CLIP-format folder (loadable by both tower classes) plus the head."""
        from transformers import CLIPConfig, CLIPModel

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        # Each tower's config remembers the folder it was loaded from; a saved folder should not.
        towers = [{k: v for k, v in c.to_dict().items() if k != "_name_or_path"}
                  for c in (self.text.config, self.vision.config)]
        config = CLIPConfig(text_config=towers[0], vision_config=towers[1], projection_dim=self.dim)
        with torch.device("meta"):
            clip = CLIPModel(config)
        clip.text_model, clip.text_projection = self.text.text_model, self.text.text_projection
        clip.vision_model, clip.visual_projection = self.vision.vision_model, self.vision.visual_projection
        clip.logit_scale = nn.Parameter(self.logit_scale.detach().clone())
        # Cast copies, not the live weights: training goes on after a checkpoint is saved.
        state = {k: v.detach().to(dtype or v.dtype) for k, v in clip.state_dict().items()}
        with quiet_transformers():
            clip.save_pretrained(out, state_dict=state)
        self.settings.save(out)
        for name, head in self.heads.items():
            state = {k: v.detach().to(dtype or v.dtype).contiguous() for k, v in head.state_dict().items()}
            save_file(state, str(out / (HEAD_FILE if name == self.settings.pooling else HEAD_FILES[name])))
        return out

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    pooling: str | None = None) -> torch.Tensor:
        """(B, L) token ids -> (B, E) unit-length text embeddings, as the head of ``pooling`` (default:
        the model's own) compares them: E = :meth:`embedding_dim`."""
        return self.text_embeddings(input_ids, attention_mask, [pooling or self.settings.pooling])[0]

    def text_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        poolings: list[str]) -> list[torch.Tensor]:
        """One text-tower pass, the captions' unit embeddings for each of ``poolings`` (see :meth:`encode_text`)."""
        out = self.text(input_ids=input_ids, attention_mask=attention_mask)
        pooled = nn.functional.normalize(out.text_embeds, dim=-1)
        return [text_side(self.head_for(p), pooled, out.last_hidden_state, self.text.text_projection,
                          attention_mask) for p in poolings]

    def frame_embeddings(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) frames -> (B, T, D) projected embeddings; padded frames stay zero.

        Only real frames go through the vision tower, so short clips cost less.
        """
        b, t = mask.shape
        real = self.vision(pixel_values=frames[mask]).image_embeds
        out = real.new_zeros(b, t, real.shape[-1])
        out[mask] = real
        return out

    def encode_video(self, frames: torch.Tensor, mask: torch.Tensor, pooling: str | None = None) -> torch.Tensor:
        """(B, T, 3, S, S) frames and (B, T) bool mask -> (B, E) unit-length video embeddings of ``pooling``
        (default: the model's own)."""
        return self.pool(self.frame_embeddings(frames, mask), mask, pooling)

    def pool(self, frames: torch.Tensor, mask: torch.Tensor, pooling: str | None = None) -> torch.Tensor:
        """(B, T, D) frame embeddings (padded slots: anything) and (B, T) mask -> (B, E) unit-length video
        embeddings of ``pooling``, as the checkpoint's settings say: meanP over raw frames where
        ``frame_mean`` is "raw"; for CLIP2Video's mask (``tdb_step_mask="earlier"``) the padded slots are
        first set to the embedding of an all-zero pixel input, the padding CLIP2Video's towers see."""
        head = self.head_for(pooling)
        if head is None:
            return masked_mean(frames, mask, unit=self.settings.frame_mean == "unit")
        if getattr(getattr(head, "arithmetic", None), "additive_mask", False) and not bool(mask.all()):
            size = self.image_size
            blank = torch.zeros(1, 3, size, size, dtype=frames.dtype, device=frames.device)
            blank_embedding = self.vision(pixel_values=blank).image_embeds[0].to(frames.dtype)
            frames = torch.where(mask.unsqueeze(-1), frames, blank_embedding)
        return pool(head, frames, mask)


def checkpoint_file(source: str, name: str) -> Path | None:
    """File ``name`` of a checkpoint folder, or of a hub repo (through the hub cache); None if absent."""
    folder = Path(source)
    if folder.is_dir():
        return folder / name if (folder / name).is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(source, name))
    except (EntryNotFoundError, OSError, ValueError):  # absent, offline and not cached, not a repo id
        return None


def checkpoint_settings(source: str) -> Clip4ClipSettings:
    """The checkpoint's ``clip4clip.json`` (folder or hub repo), else CLIP4Clip's reference settings."""
    path = checkpoint_file(source, SETTINGS_FILE)
    return Clip4ClipSettings.reference() if path is None else Clip4ClipSettings.from_json(path.read_text())


def read_logit_scale(folder: Path) -> float:
    """The learned temperature stored in a CLIP folder, or CLIP's initial value."""
    weights = folder / "model.safetensors"
    if weights.is_file():
        with safe_open(str(weights), framework="pt") as f:
            if "logit_scale" in f.keys():  # noqa: SIM118 (safe_open has no __contains__)
                return float(f.get_tensor("logit_scale").float())
    return math.log(1 / 0.07)


def first_line(err: BaseException) -> str:
    """The first line of an exception message (hub errors run to many lines)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
