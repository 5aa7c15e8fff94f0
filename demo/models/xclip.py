"""Zero-shot video classification with X-CLIP.

X-CLIP scores a clip against free-text labels. Two of its habits shape this module:

* its text embeddings depend on the video (a prompt generator cross-attends from each
  label embedding to the clip's visual tokens), so label embeddings cannot be computed
  once and cached: every call runs the full forward with the clip and all its labels;
* it wants exactly ``vision_config.num_frames`` frames (8 for the public checkpoints),
  spread over the whole clip, normalised with ImageNet mean/std (not CLIP's).

Frames are prepared by the checkpoint's own ``XCLIPProcessor`` (its resample, size and crop, on
frames decoded at full resolution), so the model sees what ``XCLIPProcessor(videos=...)`` gives
it. A checkpoint folder whose ``xclip.json`` says ``"frame_resize": "decoder"`` (this project's
embedded X-CLIP, trained that way) keeps the decoder-scaled frames of
:func:`demo.video.preprocess.preprocess` instead.

Heavy imports (torch, transformers) happen inside functions so the CLI stays quick.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demo.errors import InputError, ModelLoadError, VideoDecodeError
from demo.models.clip4clip import quiet_transformers
from demo.models.device import resolve_device
from demo.models.labels import apply_template, parse_labels
from demo.video.preprocess import IMAGENET_MEAN, IMAGENET_STD, load_uniform_clip

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Classification:
    """Result of one clip against a label list.

    ``labels``/``probs`` hold the top-k labels, most probable first (ties keep the order
    the labels were given in); ``probs`` come from a softmax over *all* scored labels,
    so they sum to 1 only when ``k`` covers every label.
    """

    labels: tuple[str, ...]
    probs: tuple[float, ...]
    num_labels: int  # how many labels were scored (k or more)
    notes: tuple[str, ...] = ()  # things a person should know about this result
    # cosine of the clip's and each shown label's embedding (X-CLIP's logit before its scale)
    similarities: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, float]:
        """``{label: probability}`` in rank order (the shape ``gr.Label`` takes)."""
        return dict(zip(self.labels, self.probs, strict=True))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for ``--json`` output and the Gradio API."""
        return {
            "labels": [
                {"label": lab, "probability": p, **({"similarity": self.similarities[i]} if self.similarities else {})}
                for i, (lab, p) in enumerate(zip(self.labels, self.probs, strict=True))
            ],
            "num_labels": self.num_labels,
            "notes": list(self.notes),
        }


def _resolve_source(id_or_dir: str | Path) -> str:
    """A local folder as a string, or a hub id; fail early on a path that does not exist."""
    text = str(id_or_dir)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"cannot load X-CLIP model {text!r}: it is a file, not a model folder")
        return str(path)
    # "org/name" may be a hub id; anything else that names a path is just missing.
    looks_like_path = (
        isinstance(id_or_dir, Path) or text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1
    )
    if looks_like_path:
        raise ModelLoadError(f"cannot load X-CLIP model {text!r}: the folder does not exist")
    return text


def _load_model(source: str) -> Any:
    """``XCLIPModel`` from ``source``, after checking its config is an X-CLIP one this code can run."""
    from transformers import AutoConfig, XCLIPModel

    # Any failure inside transformers (missing files, offline hub, bad json, corrupt
    # weights) is reported as one ModelLoadError with the cause chained.
    try:
        config = AutoConfig.from_pretrained(source)
    except Exception as exc:
        raise ModelLoadError(f"cannot load X-CLIP model {source!r}: {exc}") from exc
    if config.model_type != "xclip":
        raise ModelLoadError(f"cannot load X-CLIP model {source!r}: it is a {config.model_type!r} model")
    vision = config.vision_config
    if vision.mit_hidden_size != config.projection_dim:
        raise ModelLoadError(
            f"cannot load X-CLIP model {source!r}: vision_config.mit_hidden_size "
            f"({vision.mit_hidden_size}) must equal projection_dim ({config.projection_dim})"
        )
    try:
        with quiet_transformers():  # no "Loading weights" bar on every CLI call
            return XCLIPModel.from_pretrained(source, config=config)
    except Exception as exc:
        raise ModelLoadError(f"cannot load X-CLIP model {source!r}: {exc}") from exc


XCLIP_SETTINGS = "xclip.json"  # optional: {"frame_resize": "processor" (default) or "decoder"}


def frame_resize(source: str) -> str:
    """How ``source``'s frames reach the model: "processor" (its XCLIPProcessor, the default) or
    "decoder" (scaled while decoding; this project's embedded X-CLIP records it in ``xclip.json``)."""
    path = Path(source) / XCLIP_SETTINGS
    if not path.is_file():
        return "processor"
    value = str(json.loads(path.read_text()).get("frame_resize", "processor"))
    if value not in ("processor", "decoder"):
        raise ModelLoadError(f"{path}: frame_resize must be 'processor' or 'decoder', got {value!r}")
    return value


def _load_processor(source: str) -> tuple[Any, Sequence[float], Sequence[float], int | None, Any]:
    """The tokenizer, mean, std, crop size and image processor of ``source``'s processor; without
    processor files, its CLIP tokenizer, ImageNet mean/std, no crop size and no image processor."""
    from transformers import CLIPTokenizer, XCLIPProcessor

    try:
        # backend="pil": we only read the processor's settings (frames are preprocessed
        # by demo.video.preprocess), and this avoids the "requires torchvision" fallback warning.
        processor = XCLIPProcessor.from_pretrained(source, backend="pil")
    except OSError as exc:
        logger.info(
            "no X-CLIP processor in %s (%s); using its CLIP tokenizer and ImageNet mean/std",
            source,
            str(exc).splitlines()[0],
        )
        try:
            tokenizer = CLIPTokenizer.from_pretrained(source)
        except Exception as exc2:
            raise ModelLoadError(f"cannot load a tokenizer for X-CLIP model {source!r}: {exc2}") from exc2
        return tokenizer, IMAGENET_MEAN, IMAGENET_STD, None, None
    images = processor.image_processor
    crop = getattr(images, "crop_size", None)
    crop_size = getattr(crop, "height", None) if crop is not None else None
    return processor.tokenizer, images.image_mean, images.image_std, crop_size, images


class XClipClassifier:
    """An X-CLIP model with the tokenizer and frame settings it was trained with."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: str = "cpu",
        processor: Any | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.processor = processor  # the checkpoint's image processor (None: decoder-scaled frames)
        self.tokenizer = tokenizer
        # A fast tokenizer keeps its padding/truncation settings in its Rust backend and changes
        # them per call: two threads with the two settings below would use each other's (a
        # ValueError "Unable to create tensor"). One call at a time (tokenising takes microseconds).
        self._tokenizer_lock = threading.Lock()
        self.name = name
        self.image_size = image_size
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.device = device
        self.num_frames: int = int(model.config.vision_config.num_frames)
        self.max_text_tokens: int = int(model.config.text_config.max_position_embeddings)

    @classmethod
    def from_pretrained(cls, id_or_dir: str | Path, device: str | None = "cpu") -> XClipClassifier:
        """Load ``XCLIPModel`` + ``XCLIPProcessor`` from a folder or a hub id.

        A folder without processor files falls back to a CLIP tokenizer from the same
        folder and ImageNet mean/std. Raises :class:`ModelLoadError` naming the id and the
        reason (missing folder, not an X-CLIP model, hub unreachable, ...).
        """
        device = resolve_device(device)  # before seconds of loading
        source = _resolve_source(id_or_dir)
        model = _load_model(source)
        tokenizer, mean, std, crop_size, images = _load_processor(source)
        resize = frame_resize(source) if Path(source).is_dir() else "processor"
        vision = model.config.vision_config
        size = vision.image_size
        image_size = int(size if isinstance(size, int) else size[0])
        if crop_size is not None and crop_size != image_size:
            # The position embeddings fix the input size; the processor cannot change it.
            logger.warning(
                "%s: processor crops to %s but the model takes %s; using %s",
                source,
                crop_size,
                image_size,
                image_size,
            )
        logger.info("loaded X-CLIP %s: %d frames of %dx%d", source, vision.num_frames, image_size, image_size)
        return cls(model, tokenizer, name=source, image_size=image_size, mean=mean, std=std, device=device,
                   processor=images if resize == "processor" else None)

    def classify(
        self, video_path: str | Path, labels: Sequence[str], template: str = "{}", k: int = 5
    ) -> Classification:
        """Score the clip at ``video_path`` against ``labels`` and return the top ``k``.

        Samples exactly ``num_frames`` frames at segment centres over the whole clip
        (repeating frames of a short clip, with a note). ``template`` wraps each label
        into a prompt, e.g. ``"a video of a person {}"``. Raises :class:`VideoDecodeError`
        for a missing or undecodable file and :class:`InputError` for bad labels or ``k``.
        """
        label_list = parse_labels(list(labels))
        prompts = apply_template(label_list, template)  # validate input before decoding
        path = Path(video_path)
        if path.is_dir():
            raise VideoDecodeError(f"{path} is a folder, not a video file")
        if not path.is_file():
            raise VideoDecodeError(f"cannot decode {str(path)!r}: no such file")
        frames, distinct = load_uniform_clip(path, self.num_frames, self.image_size, self.mean, self.std,
                                             processor=self.processor)
        notes = []
        if distinct < self.num_frames:
            notes.append(f"clip has {distinct} frames; repeated to {self.num_frames}")
        return self._classify_prompts(frames, label_list, prompts, k, notes)

    def classify_frames(
        self, frames: torch.Tensor, labels: Sequence[str], template: str = "{}", k: int = 5
    ) -> Classification:
        """Like :meth:`classify` for frames already preprocessed: ``(num_frames, 3, S, S)`` float."""
        label_list = parse_labels(list(labels))
        return self._classify_prompts(frames, label_list, apply_template(label_list, template), k, [])

    def _classify_prompts(
        self, frames: torch.Tensor, labels: list[str], prompts: list[str], k: int, notes: list[str]
    ) -> Classification:
        import torch

        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        expected = (self.num_frames, 3, self.image_size, self.image_size)
        if tuple(frames.shape) != expected:
            raise ValueError(f"expected frames of shape {expected}, got {tuple(frames.shape)}")
        if len(labels) == 1:
            notes.append("only one label: its probability is 1 by construction; add labels to compare")
        with self._tokenizer_lock:
            lengths = [len(ids) for ids in self.tokenizer(prompts, truncation=False)["input_ids"]]
            text = self.tokenizer(
                prompts, padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
            )
        cut = sum(n > self.max_text_tokens for n in lengths)
        if cut:
            notes.append(f"{cut} label prompt(s) cut to {self.max_text_tokens} tokens")
        with torch.inference_mode():
            # The full forward, every call: X-CLIP adds a video-conditioned prompt to each
            # label embedding, so label embeddings cannot be cached across videos.
            out = self.model(
                input_ids=text["input_ids"].to(self.device),
                attention_mask=text["attention_mask"].to(self.device),
                pixel_values=frames.unsqueeze(0).to(self.device, torch.float32),  # (1, T, 3, S, S)
            )
            logits = out.logits_per_video[0].float().cpu()  # (L,) = logit_scale.exp() * cosine
            probs = logits.softmax(dim=-1)
            cosine = logits / self.model.logit_scale.detach().float().exp().cpu()
        order = torch.sort(probs, descending=True, stable=True).indices[: min(k, len(labels))]
        return Classification(
            labels=tuple(labels[i] for i in order.tolist()),
            probs=tuple(float(probs[i]) for i in order.tolist()),
            num_labels=len(labels),
            notes=tuple(notes),
            similarities=tuple(float(cosine[i]) for i in order.tolist()),
        )
