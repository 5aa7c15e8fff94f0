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

The loop is here: AdamW with CLIP parameters at a lower learning rate than new ones,
linear warm-up then cosine decay, gradient clipping and accumulation, AMP on CUDA (fp32 on
CPU). Each epoch is validated with the retrieval metrics, the best checkpoint is kept, and
``resume=True`` continues from the last one. What a step sees is drawn in
:mod:`demo.train.batches`; what it is scored on are the objectives of
:mod:`demo.train.objectives`, whose named losses the loop adds up. Outputs: ``out/best`` (a
checkpoint folder the encoders load), ``out/last`` (+ trainer state), ``out/log.jsonl``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import operator
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from demo.errors import InputError
from demo.files import atomic_write_json
from demo.models.clip4clip import Clip4Clip
from demo.models.temporal import masked_mean, reverse_frames
from demo.models.tokenizer import build_clip_tokenizer_files
from demo.train import objectives
from demo.train.batches import Batch, draw_batch, reversible
from demo.train.build import build_model, build_tokenizer, compile_towers
from demo.train.config import TrainConfig
from demo.train.data import FrameCache, FrameCaches, epoch_order, read_samples
from demo.train.events import EventCentres, clip_targets
from demo.train.looks import LookCentres
from demo.train.probes import LayoutTargets, ShapeTargets
from demo.train.validation import pooled_metrics

log = logging.getLogger(__name__)
STATE_FILE = "trainer_state.pt"


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
    """Owns the model, the optimiser and the data for one training run.

    ``frames``: decoded-frame caches to reuse (a recipe passes one for all its stages); by
    default the run decodes its data itself.
    """

    def __init__(self, config: TrainConfig, progress: bool = True, frames: FrameCaches | None = None) -> None:
        self.config, self.progress = config, progress
        self.out = Path(config.out)
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(config.seed)
        self.model = build_model(config).to(self.device)
        if config.compile:
            compile_towers(self.model, self.device)
        self.tokenizer = build_tokenizer(config)
        self.train_data, self.val_data = self._load_data(frames or FrameCaches())
        if config.stage == "image" and not all(s.still_captions for s in self.train_data.samples):
            raise InputError("stage 'image' needs still-frame captions (a world .jsonl file)")
        self.steps_per_epoch = max(1, len(self.train_data) // (config.batch_size * config.accum_steps))
        self.total_steps = self.steps_per_epoch * (config.schedule_epochs or config.epochs)
        settings, dim = self.model.settings, self.model.dim
        train, val = self.train_data.samples, self.val_data.samples
        self.layout = (LayoutTargets(train, val, settings, dim, config.angle_weight)
                       if config.layout_loss > 0 else None)
        self.shapes = ShapeTargets(train, val, settings, dim) if config.shape_loss > 0 else None
        self.events = EventCentres(dim).to(self.device) if config.event_loss > 0 and config.stage == "video" else None
        self.event_targets = {split: clip_targets([s.attributes for s in samples])
                              for split, samples in (("train", train), ("val", val))}
        video = config.stage == "video"
        looks = config.look_names
        self.looks = LookCentres(dim, looks) if config.look_loss > 0 and video and looks else None
        self.look_targets = self.looks.targets([s.attributes for s in train]) if self.looks is not None else {}
        groups = param_groups(self.model, config)
        extras = [t.probe for t in (self.layout, self.shapes) if t is not None]
        for extra in [*extras, *(c for c in (self.events, self.looks) if c is not None)]:
            extra.to(self.device)  # the frame probes and event centres train with the new parts
            groups.append({"params": list(extra.parameters()), "lr": config.lr, "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-6)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.use_amp = config.amp and self.device.startswith("cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.autocast_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.epoch, self.step, self.best = 0, 0, float("-inf")
        self.rng = np.random.default_rng(config.seed)  # every random draw of a batch (demo.train.batches)
        self.train_reversible = reversible(train)
        self.val_reversible = reversible(val)

    def _load_data(self, frames: FrameCaches) -> tuple[FrameCache, FrameCache]:
        config, settings = self.config, self.model.settings
        train = read_samples(config.train, config.limit)
        if config.val:
            val = read_samples(config.val)
        else:  # hold out 5% (at least one clip) for model selection
            cut = max(1, len(train) // 20)
            train, val = train[cut:], train[:cut]
        options: dict[str, Any] = dict(image_size=self.model.image_size, sample_fps=settings.sample_fps,
                                       max_frames=settings.max_frames, workers=config.workers, progress=self.progress,
                                       sampling=settings.frame_sampling, resize=settings.frame_resize)
        return frames.get(train, **options), frames.get(val, **options)

    # -- one optimisation step -------------------------------------------------------------
    def batch(self, indices: np.ndarray) -> Batch:
        """The batch of training rows ``indices``, its random choices drawn from :attr:`rng`."""
        backwards = self.train_reversible if self.config.heads else None
        return draw_batch(self.train_data, indices, self.rng, self.config, self.model.settings, backwards,
                          self.device)

    def encode_captions(self, captions: list[str], poolings: list[str] | None = None) -> list[torch.Tensor]:
        """(N, E) unit text embeddings of ``captions`` for each of ``poolings`` (default: meanP's alone)."""
        tokens = self.tokenizer(captions, padding=True, truncation=True,
                                max_length=self.model.settings.max_words, return_tensors="pt")
        return self.model.text_embeddings(tokens["input_ids"].to(self.device),
                                          tokens["attention_mask"].to(self.device), poolings or ["meanP"])

    def embed(self, batch: Batch) -> objectives.Embeddings:
        """Everything the objectives read of ``batch``: caption, frame and pooled video embeddings."""
        aligned = [p for p in self.config.heads if self.model.embedding_dim(p) != self.model.dim]
        text, head_text = None, {}
        if batch.captions:
            text, *rest = self.encode_captions(batch.captions + [c for _, c in batch.negatives], ["meanP", *aligned])
            head_text = dict(zip(aligned, rest, strict=True))
        per_frame = self.model.frame_embeddings(batch.frames, batch.masks)
        scale = self.model.logit_scale.clamp(max=math.log(100)).exp()
        videos, backwards = {}, {}
        if text is not None and ("meanP" in self.config.poolings or self.config.stage == "image"):
            videos["meanP"] = masked_mean(per_frame, batch.masks)
        for name in self.config.heads:
            videos[name] = self.model.heads[name](per_frame, batch.masks)
            if batch.reversed is not None:
                backwards[name] = self.model.heads[name](reverse_frames(per_frame, batch.masks), batch.masks)
        frame_text = None
        if batch.frame_captions is not None:
            shown = batch.frame_captions
            frame_text = self.encode_captions(shown.captions + [c for _, c in shown.negatives])[0]
        return objectives.Embeddings(text, per_frame, scale, videos, backwards, frame_text, head_text)

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The named loss terms of ``batch`` (see :mod:`demo.train.objectives`); the loss is their sum."""
        cfg = self.config
        layout = (self.layout, cfg.layout_loss) if self.layout is not None else None
        shapes = (self.shapes, cfg.shape_loss) if self.shapes is not None else None
        with torch.autocast("cuda", dtype=self.autocast_dtype, enabled=self.use_amp):
            emb = self.embed(batch)
            named = objectives.contrastive(batch, emb) if emb.text is not None else {}
            if self.events is not None and emb.text is not None:
                named.update(objectives.events(batch, emb, self.events, self.event_targets["train"], cfg.event_loss))
            if self.looks is not None and emb.text is not None:
                named.update(objectives.looks(batch, emb, self.looks, self.look_targets, cfg.look_loss))
            named.update(objectives.frame_caption(batch, emb, cfg.frame_loss))
            named.update(objectives.frame_probes(batch, emb.per_frame, layout, shapes))
        if not named:  # frames without any visible object: nothing to learn, but keep the graph alive
            named["none"] = self.model.logit_scale * 0.0
        return named

    def loss(self, indices: np.ndarray) -> torch.Tensor:
        """The summed loss of the batch of training rows ``indices`` (draws from :attr:`rng`)."""
        return functools.reduce(operator.add, self.losses(self.batch(indices)).values())

    def optimizer_step(self, order: np.ndarray, step_in_epoch: int) -> float:
        """One optimiser step on the ``step_in_epoch``-th batch(es) of the epoch's ``order``; its loss."""
        cfg = self.config
        factor = lr_factor(self.step, self.total_steps, cfg.warmup)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        total = 0.0
        for micro in range(cfg.accum_steps):
            start = (step_in_epoch * cfg.accum_steps + micro) * cfg.batch_size
            loss = self.loss(order[start:start + cfg.batch_size]) / cfg.accum_steps
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
        aligned = [p for p in self.model.heads if self.model.embedding_dim(p) != self.model.dim]
        texts = dict(zip(["meanP", *aligned], self.encode_captions(captions, ["meanP", *aligned]), strict=True))
        events = None if self.events is None else (self.events, self.event_targets["val"][0])
        metrics = pooled_metrics(self.model, texts, per_frame, masks, self.val_reversible, events)
        metrics.update(self._probe_metrics(per_frame, masks))
        return metrics

    def _probe_metrics(self, per_frame: torch.Tensor, masks: torch.Tensor) -> dict[str, dict[str, float]]:
        metrics = {}
        if self.layout is not None:
            metrics["layout/R2"] = self.layout.validate(per_frame, masks)
        if self.shapes is not None:
            metrics["shape/probe"] = self.shapes.validate(per_frame, masks)
        return metrics

    def selection_key(self, metrics: dict[str, dict[str, float]]) -> float:
        """What the best checkpoint maximises: R@1 + R@5 both ways of the checkpoint's own head, or in the
        ``frames`` stage the shape probe's accuracy (%) plus the layout probe's R^2 (x100)."""
        if self.config.stage == "frames":
            shape = metrics.get("shape/probe", {}).get("accuracy", 0.0)
            layout = metrics.get("layout/R2", {}).get("all", 0.0)
            return float(np.nan_to_num(shape)) + 100.0 * float(np.nan_to_num(layout))
        head = self.model.settings.pooling  # the checkpoint's own head (meanP without one)
        t2v, v2t = metrics[f"{head}/t2v"], metrics[f"{head}/v2t"]
        return t2v["R@1"] + t2v["R@5"] + v2t["R@1"] + v2t["R@5"]

    def save(self, name: str) -> Path:
        """Write checkpoint folder ``out/<name>`` atomically (temp folder, then rename); ``last``
        also holds the trainer state that :meth:`try_resume` reads."""
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
                        "events": None if self.events is None else self.events.state_dict(),
                        "looks": None if self.looks is None else self.looks.state_dict(),
                        "config": asdict(self.config)}, tmp / STATE_FILE)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        return final

    def try_resume(self) -> None:
        """With ``resume``, continue from ``out/last``'s trainer state (model, optimiser, epoch, rng, probes,
        event centres)."""
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
        if self.events is not None and state.get("events") is not None:
            self.events.load_state_dict(state["events"])
        if self.looks is not None and state.get("looks") is not None:
            self.looks.load_state_dict(state["looks"])
        log.info("resumed from %s at epoch %d (step %d)", state_path.parent, self.epoch, self.step)

    def fit(self) -> Path:
        """Train until ``config.epochs``, validating and checkpointing each epoch; the best folder."""
        cfg = self.config
        atomic_write_json(self.out / "train_config.json", asdict(cfg))
        self.try_resume()
        if self.layout is not None and self.step == 0 and cfg.init is not None:
            # From a trained checkpoint the probe starts at its ridge solution; from random weights
            # (where every frame embeds alike) at zero, learning as the embeddings do.
            self.layout.fit_probe(self.model, self.train_data)
        self.model.train()
        while self.epoch < cfg.epochs:
            started = time.time()
            losses = self._epoch()
            self.epoch += 1
            metrics = self.validate()
            record = {"epoch": self.epoch, "step": self.step, "loss": float(np.mean(losses)),
                      "seconds": round(time.time() - started, 1), "val": metrics}
            with (self.out / "log.jsonl").open("a") as f:  # a log grows a line an epoch
                f.write(json.dumps(record) + "\n")
            log.info("epoch %d loss %.3f  %s", self.epoch, record["loss"],
                     "  ".join(_headline(k, v) for k, v in metrics.items()))
            key = self.selection_key(metrics)
            if key > self.best:
                self.best = key
                self.save("best")
            self.save("last")
        return self.out / "best"

    def _epoch(self) -> list[float]:
        """The optimiser steps of epoch ``self.epoch``; each step's loss."""
        cfg = self.config
        order = epoch_order(self.train_data.samples, cfg.seed, self.epoch, cfg.batch_size * cfg.accum_steps,
                            cfg.grouped_batches)
        losses: list[float] = []
        bar = tqdm(range(self.steps_per_epoch), desc=f"{cfg.stage} epoch {self.epoch + 1}/{cfg.epochs}",
                   disable=not self.progress, unit="step")
        for step_in_epoch in bar:
            losses.append(self.optimizer_step(order, step_in_epoch))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}",
                            temp=f"{float(self.model.logit_scale.detach().exp()):.1f}")
        return losses


def _headline(name: str, values: dict[str, float]) -> str:
    """One validation metric as the epoch's log line shows it."""
    if "R@1" in values:
        return f"{name} R@1 {values['R@1']:.1f}"
    if "ahead" in values:  # <head>/order
        return f"{name} {values['ahead']:.1f}%"
    if "text" in values:  # events/accuracy
        return f"{name} " + " / ".join(f"{k} {v:.1f}%" for k, v in values.items())
    if "accuracy" in values:  # shape/probe
        return f"{name} {values['accuracy']:.1f}%"
    return f"{name} x {values['x']:.2f}"  # layout/R2


def train(config: TrainConfig, progress: bool = True, frames: FrameCaches | None = None) -> Path:
    """Run one training stage; returns the best checkpoint folder. ``frames``: see :class:`Trainer`."""
    if len(read_samples(config.train, config.limit)) < 2:
        raise InputError("training needs at least two clips")
    return Trainer(config, progress=progress, frames=frames).fit()
