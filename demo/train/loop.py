"""CLIP4Clip training on any (video, caption) data: the embedded world or a user's CSV.

Three stages share one loop:

* ``frames``: the vision tower alone, told what single frames of world clips show
  (which shapes, where, how big) through linear probes: supervised pretraining, the
  stand-in for starting from an ImageNet-trained ViT. Contrastive captions alone leave
  shape out of a small ViT trained from scratch; told directly, it learns it.
* ``image``: single frames with captions of what a still frame shows: the
  stand-in for CLIP's image-text pretraining when starting from random weights.
* ``video``: clips with captions, pooled by ``meanP``, ``seqTransf`` or ``both``
  (one backbone, both heads trained on the sum of their losses, so the two
  poolings are compared on exactly the same frame features).

Symmetric InfoNCE with a learned temperature; CLIP parameters at a lower
learning rate than new ones; linear warm-up then cosine decay; gradient clipping
and accumulation; AMP on CUDA, fp32 on CPU. Each epoch is validated with the
retrieval metrics, the best checkpoint is kept, and ``resume=True`` continues from
the last one. Outputs: ``out/best`` (a checkpoint folder the encoders load),
``out/last`` (+ trainer state), ``out/log.jsonl``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from demo.errors import InputError
from demo.models.clip4clip import Clip4Clip
from demo.models.temporal import Clip4ClipSettings, masked_mean, reverse_frames
from demo.models.tokenizer import build_clip_tokenizer_files
from demo.train.data import Sample, cached_frames, epoch_order, read_samples
from demo.train.losses import multi_positive_infonce
from demo.train.probes import LayoutTargets, ShapeTargets

log = logging.getLogger(__name__)
STATE_FILE = "trainer_state.pt"


@dataclass(frozen=True)
class TrainConfig:
    train: str  # CSV with path,caption or a world <split>.jsonl
    out: str
    val: str | None = None  # same formats; default: hold out 5% of train
    init: str | None = None  # HF CLIP/CLIP4Clip folder or id to start from
    model_config: str | None = None  # JSON {"text": {...}, "vision": {...}} for random init
    stage: str = "video"  # "frames" (vision tower, probes only), "image" (frames + still captions) or "video"
    pooling: str = "seqTransf"  # meanP | seqTransf | both
    epochs: int = 5
    schedule_epochs: int | None = None  # length of the LR schedule (default: epochs); run part of a longer one
    batch_size: int = 64
    accum_steps: int = 1  # micro-batches per optimiser step
    lr: float = 1e-3  # new parameters: temporal head, temperature
    clip_lr: float = 1e-4  # CLIP towers (lower, as CLIP4Clip does); = lr when training from scratch
    weight_decay: float = 0.05
    warmup: float = 0.1  # fraction of all steps spent warming up linearly
    grad_clip: float = 1.0
    # World clips (video stage): share of clips that also get a hard negative caption, their
    # caption with one event changed (see demo.world.counterfactual and multi_positive_infonce).
    hard_negatives: float = 0.0
    # World clips (image stage): share of frames captioned with where each object is in that very
    # frame (with the mirrored caption as a hard negative); the rest get still-frame captions.
    frame_captions: float = 0.0
    # World clips (video stage): weight of the image stage's frame-caption loss on one frame per
    # clip, which keeps object positions in the frame embeddings.
    frame_loss: float = 0.0
    # World clips: share of batches drawn from clips of one colour (see demo.train.data.epoch_order).
    grouped_batches: float = 0.0
    # World clips (video stage, seqTransf head): share of the captions whose meaning changes when
    # their clip plays backwards ("moving left", "growing") that also score the clip's own frames in
    # reverse order, as a negative video of their own. Only frame order tells the two apart, so this is the one
    # signal that makes the head (and the frame features under it) read time; in-batch negatives
    # almost never hold a clip's reversal. Time-reversed videos as negatives follow Bagad et al.,
    # "Test of Time" (CVPR 2023).
    reversed_videos: float = 0.0
    # World clips (both stages): weight of a regression from every frame embedding the loss sees
    # onto what the frame shows (demo.world.frame_layout: a coarse coverage map, and a lone
    # object's position, size, opacity and angle), through a linear probe that is trained with
    # the model and then dropped. Captions name positions only coarsely and batches rarely need
    # them, so without it the frame embeddings lose where things are, and with it the order of
    # frames is all a temporal head needs to read direction (docs/decisions/frame-probes.md).
    layout_loss: float = 0.0
    # World clips (all stages): weight of a cross-entropy from every frame embedding the loss sees
    # onto which shapes the frame shows (demo.world.frame_shapes), through a linear classifier trained
    # with the model and then dropped. Captions alone leave shape out of the frames: in a random batch
    # colour, size and event tell clips apart, and "a red circle" / "a red square" embed at cosine
    # 0.998, so shape-changed negatives have no gradient to start from (docs/decisions/frame-probes.md).
    shape_loss: float = 0.0
    sample_fps: float | None = None  # None: keep the initial checkpoint's setting
    max_frames: int | None = None
    max_words: int = 32  # CLIP4Clip trains with 32 tokens
    head_layers: int = 4
    seed: int = 0
    device: str | None = None
    amp: bool = True  # mixed precision, used only on CUDA
    workers: int = 2
    limit: int | None = None  # use only the first N training clips (smoke tests)
    resume: bool = False
    save_dtype: str = "float16"  # weights are stored in this dtype; training runs in fp32
    # torch.compile the text and vision towers (weights and checkpoints unchanged). On the 2-core CPU
    # a video-stage step ran about 25% faster and an image-stage step about 13% after a one-off
    # compile of under a minute (docs/decisions/compile-every-stage.md); the embedded recipe compiles every stage.
    compile: bool = False

    def __post_init__(self) -> None:
        if self.stage not in ("frames", "image", "video"):
            raise InputError(f"stage must be 'frames', 'image' or 'video', got {self.stage!r}")
        if self.stage == "frames" and self.shape_loss <= 0 and self.layout_loss <= 0:
            raise InputError("stage 'frames' trains on the frame probes alone: give shape_loss or layout_loss > 0")
        if self.pooling not in ("meanP", "seqTransf", "both"):
            raise InputError(f"pooling must be meanP, seqTransf or both, got {self.pooling!r}")
        if (self.init is None) == (self.model_config is None):
            raise InputError("give exactly one of init (a checkpoint) or model_config (random init)")


def compile_towers(model: Clip4Clip, device: str) -> bool:
    """``torch.compile`` the text and vision towers in place; False (and a warning) when it cannot.

    In place (``nn.Module.compile``) keeps parameter names, so optimizer state, checkpoints and
    ``save_pretrained`` are as without it. On CPU the compiled code is C++, so a compiler must exist.
    """
    if not device.startswith("cuda") and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        log.warning("compile asked for, but no C++ compiler is on PATH: training uncompiled")
        return False
    # Every step's shapes differ (caption count and length, real frame count), so compile for
    # dynamic shapes at once instead of a static graph that is recompiled on the second step.
    model.text.compile(dynamic=True)
    model.vision.compile(dynamic=True)
    return True


def build_model(config: TrainConfig) -> Clip4Clip:
    """The model to train, with the head and frame settings the config asks for."""
    head_pooling = "meanP" if config.stage != "video" or config.pooling == "meanP" else "seqTransf"
    if config.model_config is not None:
        spec = json.loads(Path(config.model_config).read_text())
        base = Clip4ClipSettings(**spec.get("clip4clip", {}))
        settings = _settings(base, config, head_pooling)
        return Clip4Clip.from_config(spec["text"], spec["vision"], settings,
                                     position_scale=float(spec.get("init", {}).get("position_scale", 0.0)))
    assert config.init is not None
    model = Clip4Clip.from_pretrained(config.init, pooling="meanP")
    settings = _settings(model.settings, config, head_pooling)
    fresh = Clip4Clip(model.text, model.vision, settings, None, float(model.logit_scale.detach()))
    if head_pooling == "seqTransf":
        from demo.models.temporal import build_head

        fresh.head = build_head(settings, model.dim)
        if Path(config.init).is_dir() and Clip4ClipSettings.load(config.init).pooling == "seqTransf":
            # Continue from the checkpoint's own head rather than a fresh one.
            trained = Clip4Clip.from_pretrained(config.init)
            if trained.head is not None and fresh.head is not None:
                fresh.head.load_state_dict(trained.head.state_dict())
    return fresh


def _settings(base: Clip4ClipSettings, config: TrainConfig, pooling: str) -> Clip4ClipSettings:
    values = {**asdict(base), "pooling": pooling, "max_words": config.max_words,
              "head_layers": config.head_layers}
    if config.sample_fps is not None:
        values["sample_fps"] = config.sample_fps
    if config.max_frames is not None:
        values["max_frames"] = config.max_frames
    return Clip4ClipSettings(**values)


def param_groups(model: Clip4Clip, config: TrainConfig) -> list[dict[str, Any]]:
    """CLIP weights at clip_lr, new weights at lr; no weight decay on gains, biases, embeddings."""
    scratch = config.model_config is not None
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        is_clip = name.startswith(("text.", "vision.")) and not scratch
        no_decay = param.ndim < 2 or "embedding" in name or name == "logit_scale"
        groups.setdefault((is_clip, no_decay), []).append(param)
    return [{"params": params, "lr": config.clip_lr if is_clip else config.lr,
             "weight_decay": 0.0 if no_decay else config.weight_decay}
            for (is_clip, no_decay), params in groups.items()]


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up for the first ``warmup`` fraction of steps, then cosine to zero."""
    warm = max(1, int(total * warmup))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Trainer:
    """Owns the model, the optimiser and the data for one training run."""

    def __init__(self, config: TrainConfig, progress: bool = True) -> None:
        from transformers import AutoTokenizer

        self.config, self.progress = config, progress
        self.out = Path(config.out)
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(config.seed)
        self.model = build_model(config).to(self.device)
        if config.compile:
            compile_towers(self.model, self.device)
        if config.init is None:  # random init: the real CLIP vocabulary, built from its merge list
            tokenizer_source = str(build_clip_tokenizer_files(self.out / "tokenizer"))
        else:
            tokenizer_source = config.init
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
        settings = self.model.settings
        train = read_samples(config.train, config.limit)
        if config.val:
            val = read_samples(config.val)
        else:  # hold out 5% (at least one clip) for model selection
            cut = max(1, len(train) // 20)
            train, val = train[cut:], train[:cut]
        cache: dict[str, Any] = dict(image_size=self.model.image_size, sample_fps=settings.sample_fps,
                     max_frames=settings.max_frames, workers=config.workers, progress=progress)
        self.train_data = cached_frames(train, **cache)
        self.val_data = cached_frames(val, **cache)
        if config.stage == "image" and not all(s.still_captions for s in self.train_data.samples):
            raise InputError("stage 'image' needs still-frame captions (a world .jsonl file)")
        self.steps_per_epoch = max(1, len(self.train_data) // (config.batch_size * config.accum_steps))
        self.total_steps = self.steps_per_epoch * (config.schedule_epochs or config.epochs)
        groups = param_groups(self.model, config)
        self.layout: LayoutTargets | None = None
        if config.layout_loss > 0:
            self.layout = LayoutTargets(self.train_data.samples, self.val_data.samples, settings, self.model.dim)
        self.shapes: ShapeTargets | None = None
        if config.shape_loss > 0:
            self.shapes = ShapeTargets(self.train_data.samples, self.val_data.samples, settings, self.model.dim)
        for targets in (self.layout, self.shapes):  # the frame probes train with the new parts
            if targets is not None:
                targets.probe.to(self.device)
                groups.append({"params": list(targets.probe.parameters()), "lr": config.lr, "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-6)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        use_amp = config.amp and self.device.startswith("cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        self.autocast_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.use_amp = use_amp
        self.epoch, self.step, self.best = 0, 0, float("-inf")
        self._picks: torch.Tensor | None = None
        self.rng = np.random.default_rng(config.seed)
        self.train_reversible = _reversible(self.train_data.samples)
        self.val_reversible = _reversible(self.val_data.samples)

    # -- one optimisation step -------------------------------------------------------------
    def _batch(self, indices: np.ndarray) -> tuple[list[str], torch.Tensor, torch.Tensor, list[tuple[int, str]]]:
        """Captions, (B, T, 3, S, S) frames, (B, T) masks and hard negatives of one batch.

        The image stage takes one frame from the middle half of each clip and one of its
        still captions; with ``frame_captions`` > 0 a world clip gets, that often, a caption
        of that very frame instead (where each object is, how big, how visible) and, as its
        own hard negative, that caption with the objects mirrored. The video stage's hard
        negatives are captions with an event changed (:meth:`_hard_negatives`).
        Negatives are (position in the batch, caption).
        """
        samples = self.train_data.samples
        idx = torch.from_numpy(indices)
        masks = self.train_data.masks[idx]
        if self.config.stage != "image":
            frames = self.train_data.frames[idx].float()
            captions = [str(self.rng.choice(samples[i].captions)) for i in indices]
            return captions, frames.to(self.device), masks.to(self.device), self._hard_negatives(indices)
        counts = masks.sum(1).numpy()
        if self.config.frame_captions <= 0:  # still captions only (drawn before the frames, as always)
            captions = [str(self.rng.choice(samples[i].still_captions)) for i in indices]
        picks = [int(c // 4 + self.rng.integers(0, max(1, c // 2))) for c in counts]
        frames, masks = self._shown_frames(idx, torch.tensor(picks))
        if self.config.frame_captions <= 0:
            return captions, frames.to(self.device), masks.to(self.device), []
        captions, negatives = [], []
        for position, (i, pick) in enumerate(zip(indices, picks, strict=True)):
            if self.rng.random() < self.config.frame_captions and (
                    pair := self._frame_caption(samples[i], pick)) is not None:
                captions.append(pair[0])
                if pair[1] is not None:
                    negatives.append((position, pair[1]))
            else:
                captions.append(str(self.rng.choice(samples[i].still_captions)))
        return captions, frames.to(self.device), masks.to(self.device), negatives

    def _frame_caption(self, sample: Sample, pick: int) -> tuple[str, str | None] | None:
        """Caption and mirrored negative of the ``pick``-th sampled frame of a world clip (else None)."""
        if sample.frames < 2 or sample.attributes is None or not sample.attributes.objects:
            return None
        from demo.video.decode import clip4clip_indices
        from demo.world import frame_caption_pair

        settings = self.model.settings
        shown = clip4clip_indices(sample.frames, sample.fps, settings.sample_fps, settings.max_frames)
        return frame_caption_pair(sample.attributes, int(shown[min(pick, len(shown) - 1)]), sample.frames - 1,
                                  self.rng)

    def _frame_loss(self, indices: np.ndarray, per_frame: torch.Tensor, masks: torch.Tensor,
                    scale: torch.Tensor) -> torch.Tensor | None:
        """Video stage, ``frame_loss`` > 0: the image stage's frame-caption loss on one random
        frame per world clip, so the frame embeddings keep where things are (the temporal
        head reads direction from how that changes)."""
        samples = self.train_data.samples
        counts = masks.sum(1).cpu().numpy()
        rows, picks, captions, own = [], [], [], []
        for position, i in enumerate(indices):
            pick = int(self.rng.integers(0, max(1, counts[position])))
            pair = self._frame_caption(samples[i], pick)
            if pair is not None:
                rows.append(position)
                picks.append(pick)
                captions.append(pair[0])
                own.append(pair[1])
        if len(rows) < 2:
            return None
        negatives = [(k, c) for k, c in enumerate(own) if c is not None]
        text = self._encode_captions(captions + [c for _, c in negatives])
        frames = torch.nn.functional.normalize(per_frame[torch.tensor(rows), torch.tensor(picks)].float(), dim=-1)
        return self._contrastive(text, frames, captions, negatives, scale)

    def _encode_captions(self, captions: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(captions, padding=True, truncation=True,
                                max_length=self.model.settings.max_words, return_tensors="pt")
        return self.model.encode_text(tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device))

    def _contrastive(self, text: torch.Tensor, videos: torch.Tensor, captions: list[str],
                     negatives: list[tuple[int, str]], scale: torch.Tensor,
                     own_videos: Sequence[tuple[torch.Tensor, np.ndarray]] = ()) -> torch.Tensor:
        """InfoNCE of ``videos`` (B, D, unit) against the first B rows of ``text``; the rest are
        the hard negatives (a clip may have several), each counted against its own clip only.
        ``own_videos``: pairs of (B, D) negative videos (each clip played backwards) and
        the (B,) rows whose caption they are a negative for."""
        # Identical caption strings in one batch are positives for each other's clips.
        _, groups = np.unique(np.array(captions), return_inverse=True)
        group_ids = torch.from_numpy(groups).to(self.device)
        positive, negative = text[:len(captions)].float(), text[len(captions):].float()
        own = None
        if negatives:
            # one row of logits per rank among a clip's own negatives (-inf where it has fewer)
            owners = np.array([i for i, _ in negatives])
            ranks = np.array([np.count_nonzero(owners[:j] == r) for j, r in enumerate(owners)])
            own = torch.full((int(ranks.max()) + 1, len(captions)), float("-inf"), device=self.device)
            at = torch.from_numpy(owners).to(self.device)
            own[torch.from_numpy(ranks).to(self.device), at] = scale * (negative * videos[at].float()).sum(-1)
        columns = []
        for other, applies in own_videos:
            if applies.any():
                column = torch.full((len(captions),), float("-inf"), device=self.device)
                rows = torch.from_numpy(np.flatnonzero(applies)).to(self.device)
                column[rows] = scale * (positive[rows] * other[rows].float()).sum(-1)
                columns.append(column)
        extra = torch.stack(columns, 1) if columns else None
        return multi_positive_infonce(scale * positive @ videos.float().t(), group_ids, own, extra)

    def _probe_losses(self, indices: np.ndarray, per_frame: torch.Tensor, masks: torch.Tensor,
                      shown: torch.Tensor | None) -> torch.Tensor | None:
        """The weighted frame-probe terms (layout, shape) of a batch, or None when neither applies."""
        terms = []
        for targets, weight in ((self.layout, self.config.layout_loss), (self.shapes, self.config.shape_loss)):
            if targets is not None:
                term = targets.loss(indices, per_frame, masks, shown)
                if term is not None:
                    terms.append(weight * term)
        return torch.stack(terms).sum() if terms else None

    def _shown_frames(self, idx: torch.Tensor, picks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, 3, S, S) float frames and (B, 1) masks of the ``picks``-th sampled frame of each
        clip; ``picks`` is kept as the frame each row shows (for the frame probes)."""
        self._picks = picks
        return self.train_data.frames[idx, picks].float().unsqueeze(1), torch.ones(len(idx), 1, dtype=torch.bool)

    def _frames_loss(self, indices: np.ndarray) -> torch.Tensor:
        """The ``frames`` stage: one frame from anywhere in each clip, the probe terms only."""
        idx = torch.from_numpy(indices)
        counts = self.train_data.masks[idx].sum(1).numpy()
        frames, masks = self._shown_frames(idx, torch.from_numpy(self.rng.integers(0, np.maximum(counts, 1))))
        frames, masks = frames.to(self.device), masks.to(self.device)
        with torch.autocast("cuda", dtype=self.autocast_dtype, enabled=self.use_amp):
            loss = self._probe_losses(indices, self.model.frame_embeddings(frames, masks), masks, self._picks)
        # A batch of frames without any visible object: nothing to learn, but keep the graph alive.
        return loss if loss is not None else self.model.logit_scale * 0.0

    def _loss(self, indices: np.ndarray) -> torch.Tensor:
        if self.config.stage == "frames":
            return self._frames_loss(indices)
        captions, frames, masks, negatives = self._batch(indices)
        with torch.autocast("cuda", dtype=self.autocast_dtype, enabled=self.use_amp):
            text = self._encode_captions(captions + [c for _, c in negatives])
            per_frame = self.model.frame_embeddings(frames, masks)
            scale = self.model.logit_scale.clamp(max=math.log(100)).exp()
            losses: list[torch.Tensor] = []
            if self.config.pooling in ("meanP", "both") or self.config.stage == "image":
                losses.append(self._contrastive(text, masked_mean(per_frame, masks), captions, negatives, scale))
            if self.model.head is not None and self.config.stage == "video":
                own_videos: list[tuple[torch.Tensor, np.ndarray]] = []
                forwards = self.model.head(per_frame, masks)
                if self.config.reversed_videos > 0:  # meanP cannot see order: only the head gets these
                    backwards = self.model.head(reverse_frames(per_frame, masks), masks)
                    drawn = self.rng.random(len(indices)) < self.config.reversed_videos
                    own_videos.append((backwards, self.train_reversible[indices] & drawn))
                losses.append(self._contrastive(text, forwards, captions, negatives, scale, own_videos))
            loss = torch.stack(losses).mean()
            if self.config.stage == "video" and self.config.frame_loss > 0:
                frame = self._frame_loss(indices, per_frame, masks, scale)
                if frame is not None:
                    loss = loss + self.config.frame_loss * frame
            shown = self._picks if self.config.stage == "image" else None  # the frame each row shows
            probes = self._probe_losses(indices, per_frame, masks, shown)
            if probes is not None:
                loss = loss + probes
        return loss

    def _hard_negatives(self, indices: np.ndarray) -> list[tuple[int, str]]:
        """For a ``hard_negatives`` share of the world clips in a video batch: (position, a
        caption of the clip with one event changed, phrased like any other caption)."""
        if self.config.stage != "video" or self.config.hard_negatives <= 0:
            return []
        from demo.world import counterfactual
        from demo.world.text import make_captions

        return self._changed_captions(indices, self.config.hard_negatives, counterfactual, make_captions)

    def _changed_captions(self, indices: np.ndarray, share: float, change: Any, describe: Any,
                          ) -> list[tuple[int, str]]:
        """(position, one of ``describe(change(attributes))``) for a ``share`` of the world clips."""
        out = []
        for position, i in enumerate(indices):
            attributes = self.train_data.samples[i].attributes
            if attributes is not None and attributes.objects and self.rng.random() < share:
                changed = describe(change(attributes, self.rng), self.rng)
                out.append((position, str(changed[int(self.rng.integers(len(changed)))])))
        return out

    def _optimizer_step(self, order: np.ndarray, step_in_epoch: int) -> float:
        cfg = self.config
        factor = lr_factor(self.step, self.total_steps, cfg.warmup)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        total = 0.0
        for micro in range(cfg.accum_steps):
            start = (step_in_epoch * cfg.accum_steps + micro) * cfg.batch_size
            loss = self._loss(order[start:start + cfg.batch_size]) / cfg.accum_steps
            self.scaler.scale(loss).backward()
            total += float(loss.detach())
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total

    # -- validation, checkpoints, loop ---------------------------------------------------------
    @torch.inference_mode()
    def validate(self) -> dict[str, dict[str, float]]:
        """Text->video and video->text metrics on the validation clips (canonical captions),
        and the frame probes'; the ``frames`` stage has no text and gets the probes' alone."""
        self.model.eval()
        try:
            return self._validation_metrics()
        finally:
            self.model.train()

    def _validation_metrics(self) -> dict[str, dict[str, float]]:
        from demo.metrics import retrieval_metrics

        samples = self.val_data.samples
        per_frame = torch.cat([
            self.model.frame_embeddings(self.val_data.frames[i:i + 64].float().to(self.device),
                                        self.val_data.masks[i:i + 64].to(self.device))
            for i in range(0, len(samples), 64)])
        masks = self.val_data.masks.to(self.device)
        if self.config.stage == "frames":
            return self._probe_metrics(per_frame, masks)
        use_still = self.config.stage == "image"
        captions = [s.still_captions[0] if use_still else s.captions[0] for s in samples]
        tokens = self.tokenizer(captions, padding=True, truncation=True,
                                max_length=self.model.settings.max_words, return_tensors="pt")
        text = self.model.encode_text(tokens["input_ids"].to(self.device),
                                      tokens["attention_mask"].to(self.device))
        heads = {"meanP": masked_mean(per_frame, masks)}
        if self.model.head is not None:
            heads["seqTransf"] = self.model.head(per_frame, masks)
        results = {}
        for name, video in heads.items():
            sim = (text @ video.t()).float().cpu().numpy()
            results[name] = {"t2v": retrieval_metrics(sim), "v2t": retrieval_metrics(sim.T)}
        metrics = {f"{name}/{d}": m for name, r in results.items() for d, m in r.items()}
        if self.model.head is not None and self.val_reversible.any():
            # Direction: how often a caption scores its clip above the same frames played backwards.
            rows = torch.from_numpy(np.flatnonzero(self.val_reversible)).to(self.device)
            backwards = self.model.head(reverse_frames(per_frame[rows], masks[rows]), masks[rows])
            forwards = (text[rows] * heads["seqTransf"][rows]).sum(-1)
            ahead = (forwards > (text[rows] * backwards).sum(-1)).float().mean()
            metrics["seqTransf/order"] = {"ahead": 100.0 * float(ahead), "clips": float(len(rows))}
        metrics.update(self._probe_metrics(per_frame, masks))
        return metrics

    def _probe_metrics(self, per_frame: torch.Tensor, masks: torch.Tensor) -> dict[str, dict[str, float]]:
        metrics = {}
        if self.layout is not None:
            metrics["layout/R2"] = self.layout.validate(per_frame, masks)
        if self.shapes is not None:
            metrics["shape/probe"] = self.shapes.validate(per_frame, masks)
        return metrics

    def _selection_key(self, metrics: dict[str, dict[str, float]]) -> float:
        if self.config.stage == "frames":  # shape accuracy (%) plus the layout probe's R^2 (x100)
            shape = metrics.get("shape/probe", {}).get("accuracy", 0.0)
            layout = metrics.get("layout/R2", {}).get("all", 0.0)
            return float(np.nan_to_num(shape)) + 100.0 * float(np.nan_to_num(layout))
        head = "seqTransf" if self.model.head is not None else "meanP"
        t2v, v2t = metrics[f"{head}/t2v"], metrics[f"{head}/v2t"]
        return t2v["R@1"] + t2v["R@5"] + v2t["R@1"] + v2t["R@5"]

    def save(self, name: str) -> Path:
        """Write a checkpoint folder atomically (temp folder, then rename)."""
        final = self.out / name
        tmp = self.out / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp, dtype=getattr(torch, self.config.save_dtype))
        # vocab.json + merges.txt (1.5 MB) instead of tokenizer.json (3.6 MB): same tokens, smaller folder.
        build_clip_tokenizer_files(tmp)
        if name == "last":
            torch.save({"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                        "epoch": self.epoch, "step": self.step, "best": self.best,
                        "rng": self.rng.bit_generator.state, "fp32": self.model.state_dict(),
                        "layout_probe": None if self.layout is None else self.layout.probe.state_dict(),
                        "shape_probe": None if self.shapes is None else self.shapes.probe.state_dict(),
                        "config": asdict(self.config)}, tmp / STATE_FILE)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        return final

    def try_resume(self) -> None:
        state_path = self.out / "last" / STATE_FILE
        if not (self.config.resume and state_path.is_file()):
            return
        state = torch.load(state_path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["fp32"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.best = state["epoch"], state["step"], state["best"]
        self.rng.bit_generator.state = state["rng"]
        if self.layout is not None and state.get("layout_probe") is not None:
            self.layout.probe.load_state_dict(state["layout_probe"])
        if self.shapes is not None and state.get("shape_probe") is not None:
            self.shapes.probe.load_state_dict(state["shape_probe"])
        log.info("resumed from %s at epoch %d (step %d)", state_path.parent, self.epoch, self.step)

    def fit(self) -> Path:
        from tqdm.auto import tqdm

        cfg = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        self.try_resume()
        if self.layout is not None and self.step == 0 and cfg.init is not None:
            # From a trained checkpoint the probe starts at its ridge solution; from random weights
            # (where every frame embeds alike) at zero, learning as the embeddings do.
            self.layout.fit_probe(self.model, self.train_data)
        self.model.train()
        log_path = self.out / "log.jsonl"
        while self.epoch < cfg.epochs:
            order = epoch_order(self.train_data.samples, cfg.seed, self.epoch,
                                cfg.batch_size * cfg.accum_steps, cfg.grouped_batches)
            started, losses = time.time(), []
            bar = tqdm(range(self.steps_per_epoch), desc=f"{cfg.stage} epoch {self.epoch + 1}/{cfg.epochs}",
                       disable=not self.progress, unit="step")
            for step_in_epoch in bar:
                losses.append(self._optimizer_step(order, step_in_epoch))
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}",
                                temp=f"{float(self.model.logit_scale.detach().exp()):.1f}")
            self.epoch += 1
            metrics = self.validate()
            key = self._selection_key(metrics)
            record = {"epoch": self.epoch, "step": self.step, "loss": float(np.mean(losses)),
                      "seconds": round(time.time() - started, 1), "val": metrics}
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            summary = "  ".join(_headline(k, v) for k, v in metrics.items())
            log.info("epoch %d loss %.3f  %s", self.epoch, record["loss"], summary)
            if key > self.best:
                self.best = key
                self.save("best")
            self.save("last")
        return self.out / "best"


def _headline(name: str, values: dict[str, float]) -> str:
    """One validation metric as the epoch's log line shows it."""
    if "R@1" in values:
        return f"{name} R@1 {values['R@1']:.1f}"
    if "ahead" in values:  # seqTransf/order
        return f"{name} {values['ahead']:.1f}%"
    if "accuracy" in values:  # shape/probe
        return f"{name} {values['accuracy']:.1f}%"
    return f"{name} x {values['x']:.2f}"  # layout/R2


def _reversible(samples: list[Sample]) -> np.ndarray:
    """(N,) bool: world clips whose canonical caption changes when the clip plays backwards."""
    from demo.world import time_reversed
    from demo.world.text import canonical_caption

    out = np.zeros(len(samples), dtype=bool)
    for i, sample in enumerate(samples):
        if sample.attributes is not None and sample.attributes.objects:
            out[i] = canonical_caption(sample.attributes) != canonical_caption(time_reversed(sample.attributes))
    return out


def train(config: TrainConfig, progress: bool = True) -> Path:
    """Run one training stage; returns the best checkpoint folder."""
    if len(read_samples(config.train, config.limit)) < 2:
        raise InputError("training needs at least two clips")
    return Trainer(config, progress=progress).fit()

