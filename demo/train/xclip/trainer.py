"""Train the embedded X-CLIP: zero-shot video classification on the rendered world.

Training is X-CLIP's objective: for each clip, logits over the class prompts (the world's event
and relation labels, :mod:`demo.train.xclip.data`), cross-entropy against the clip's class. The
model starts from the CLIP4Clip checkpoint (:mod:`demo.train.xclip.convert`). The text tower is
frozen by default, so the caption synonyms the CLIP4Clip text tower learned ("sliding to the
left" ~ "moving left") survive: :data:`~demo.train.xclip.data.REWORDED` measures that.

Each clip is decoded once to exactly ``num_frames`` uniformly spread frames with ImageNet
mean/std (X-CLIP's preprocessing, :func:`demo.video.decode.load_uniform_clip`) and kept in
memory as float16. Outputs: ``out/best`` (checkpoint + processor files that
:meth:`demo.models.xclip.XClipClassifier.from_pretrained` loads), ``out/log.jsonl``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from demo.errors import InputError
from demo.files import atomic_write_json
from demo.models.clip4clip import quiet_transformers
from demo.models.labels import apply_template
from demo.models.xclip import XCLIP_SETTINGS
from demo.train.loop import lr_factor
from demo.train.xclip.convert import InitReport, build_xclip
from demo.train.xclip.data import REVERSED_CLASS, REWORDED, TEMPLATE, load_frames, read_labelled, training_phrasings
from demo.video.preprocess import IMAGENET_MEAN, IMAGENET_STD
from demo.world import event_labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class XClipTrainConfig:
    """One X-CLIP training run on a rendered world."""

    world: str  # world folder with train.jsonl / val.jsonl (demo.world.synth output)
    init: str  # CLIP or CLIP4Clip checkpoint folder to initialise from
    out: str  # run folder: best/, log.jsonl
    num_frames: int = 8
    template: str = TEMPLATE
    # Train each class under the world's other phrasings of it too (a random one per step),
    # never the REWORDED ones, which stay held out for the reworded test.
    synonyms: bool = False
    # Play each training clip backwards with this probability, with the reversed class: free
    # extra data that can only be told apart by frame order (X-CLIP must learn direction).
    reverse: float = 0.5
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3  # new parts: MIT, prompt generator, cross-frame messages, temperature
    vision_lr: float = 1e-4  # copied vision tower (and a copied temporal head), low as in CLIP4Clip
    text_lr: float = 0.0  # 0 freezes the text tower so the learned synonyms survive
    logit_scale: float | None = None  # initial temperature exp(logit_scale); None: the checkpoint's
    weight_decay: float = 0.05
    warmup: float = 0.1  # fraction of the steps spent warming up
    grad_clip: float = 1.0
    prompt_layers: int = 2
    mit_layers: int | None = None  # None: as many as the CLIP4Clip head has (to copy it), else 1
    limit: int | None = None  # first N unambiguous training clips
    val_limit: int | None = None
    seed: int = 0
    workers: int = 2
    save_dtype: str = "float16"  # stored dtype; training and loading run in float32


def param_groups(model: Any, report: InitReport, config: XClipTrainConfig) -> list[dict[str, Any]]:
    """Text tower at ``text_lr`` (frozen at 0; token embeddings always), copied vision weights at
    ``vision_lr``, new parts at ``lr``; no weight decay on gains, biases, embeddings, temperature."""
    copied = set(report.copied)
    groups: dict[tuple[float, bool], list[Any]] = {}
    for name, param in model.named_parameters():
        if name == "text_model.embeddings.token_embedding.weight":
            # Always frozen: only the prompts' few tokens would move, away from their synonyms.
            lr = 0.0
        elif name.startswith(("text_model.", "text_projection.")):
            lr = config.text_lr
        elif name in copied and name != "logit_scale":
            lr = config.vision_lr
        else:
            lr = config.lr
        if lr <= 0.0:
            param.requires_grad_(False)
            continue
        no_decay = param.ndim < 2 or "embedding" in name or name in ("logit_scale", "prompts_generator.alpha")
        groups.setdefault((lr, no_decay), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": 0.0 if no_decay else config.weight_decay}
            for (lr, no_decay), params in groups.items()]  # fmt: skip


def predict(model: Any, text: dict[str, torch.Tensor], frames: torch.Tensor, batch_size: int = 32) -> Any:
    """Class index per clip: frames (N, T, 3, S, S) against the tokenised prompts -> (N,) int64.

    Videos are batched; X-CLIP still conditions every prompt on its own video.
    """
    preds = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            out = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                        pixel_values=frames[start:start + batch_size].float())
            preds.append(out.logits_per_video.argmax(dim=-1))
    return torch.cat(preds)


def save_xclip(model: Any, tokenizer: Any, folder: str | Path, dtype: str = "float16") -> Path:
    """Write the model (weights cast to ``dtype``; config says float32), tokenizer and an
    ``XCLIPProcessor`` with X-CLIP's preprocessing, atomically (temp folder, then rename)."""
    from transformers import VideoMAEImageProcessorPil, XCLIPProcessor  # transformers' classes take seconds to import

    final = Path(folder)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # Cast copies, not the live weights; the config keeps float32 so loading gives float32.
    state = {k: v.detach().to(getattr(torch, dtype)) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}  # fmt: skip
    model.config.dtype = "float32"
    size = int(model.config.vision_config.image_size)
    image_processor = VideoMAEImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size},
        image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))  # fmt: skip
    with quiet_transformers():
        model.save_pretrained(tmp, state_dict=state)
        XCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(tmp)
    # The trainer feeds frames scaled inside the decoder (load_uniform_clip): inference must too.
    atomic_write_json(tmp / XCLIP_SETTINGS, {
        "frame_resize": "decoder",
        "note": "trained on frames scaled inside the decoder (demo.video.preprocess.preprocess); the "
                "XCLIPProcessor files only carry its tokenizer, mean/std and sizes"})
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


class XClipTrainer:
    """One X-CLIP training run: the model, its prompts, the decoded clips and the optimiser."""

    def __init__(self, config: XClipTrainConfig, progress: bool = True) -> None:
        from transformers import AutoTokenizer  # transformers' classes take seconds to import

        self.config, self.progress, self.out = config, progress, Path(config.out)
        self.model, report = build_xclip(config.init, config.num_frames, config.prompt_layers, config.mit_layers,
                                         config.seed)
        if config.logit_scale is not None:
            with torch.no_grad():
                self.model.logit_scale.fill_(math.log(config.logit_scale))
        self.tokenizer = AutoTokenizer.from_pretrained(config.init)
        self.classes = event_labels()
        self.text, self.reworded_text = self.tokenize(self.classes), self.tokenize([REWORDED[c] for c in self.classes])
        self.phrasings = training_phrasings(self.classes) if config.synonyms else [[c] for c in self.classes]
        self.reversed_class = torch.tensor([self.classes.index(REVERSED_CLASS[c]) for c in self.classes])
        self.frames, self.labels = self._split("train", config.limit)
        self.val_frames, self.val_labels = self._split("val", config.val_limit)
        if len(self.labels) < 2:
            raise InputError(f"training needs at least two unambiguous clips, got {len(self.labels)}")
        self.steps = max(1, len(self.labels) // config.batch_size)  # per epoch; the last partial batch is dropped
        self.optimizer = torch.optim.AdamW(param_groups(self.model, report, config))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.steps * config.epochs, config.warmup))
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.rng = np.random.default_rng(config.seed)  # clip order, prompt phrasings, reversed clips

    def tokenize(self, labels: list[str]) -> dict[str, torch.Tensor]:
        """The class prompts of ``labels`` (under the config's template), tokenised."""
        max_tokens = self.model.config.text_config.max_position_embeddings
        return dict(self.tokenizer(apply_template(labels, self.config.template), padding=True, truncation=True,
                                   max_length=max_tokens, return_tensors="pt"))

    def _split(self, split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, T, 3, S, S) float16 frames and (N,) class indices of a world split's unambiguous clips."""
        clips, excluded = read_labelled(Path(self.config.world) / f"{split}.jsonl", limit)
        log.info("%s: %d clips (%d ambiguous ones excluded)", split, len(clips), excluded)
        size = int(self.model.config.vision_config.image_size)
        frames, kept = load_frames([c.path for c in clips], self.config.num_frames, size, IMAGENET_MEAN,
                                   IMAGENET_STD, self.config.workers, self.progress, f"decoding {split}")
        return frames, torch.tensor([self.classes.index(clips[i].label) for i in kept])

    def step(self, idx: torch.Tensor) -> float:
        """One optimiser step on the training clips ``idx``; its loss."""
        cfg = self.config
        prompts = self.tokenize([p[int(self.rng.integers(len(p)))] for p in self.phrasings]) if cfg.synonyms \
            else self.text
        pixels, target = self.frames[idx].float(), self.labels[idx]
        if cfg.reverse > 0:
            flip = torch.from_numpy(self.rng.random(len(idx)) < cfg.reverse)
            pixels[flip] = pixels[flip].flip(1)  # (B, T, ...): reverse the frame order
            target = torch.where(flip, self.reversed_class[target], target)
        logits = self.model(input_ids=prompts["input_ids"], attention_mask=prompts["attention_mask"],
                            pixel_values=pixels).logits_per_video  # (B, classes)
        loss = torch.nn.functional.cross_entropy(logits, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def epoch(self, epoch: int) -> list[float]:
        """The steps of one epoch over a fresh shuffle of the training clips; each step's loss."""
        self.model.train()
        order = torch.from_numpy(self.rng.permutation(len(self.labels)))
        losses: list[float] = []
        bar = tqdm(range(self.steps), desc=f"xclip epoch {epoch + 1}/{self.config.epochs}",
                   disable=not self.progress, unit="step")
        for step in bar:
            losses.append(self.step(order[step * self.config.batch_size:(step + 1) * self.config.batch_size]))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}",
                            temp=f"{float(self.model.logit_scale.detach().exp()):.1f}")
        return losses

    def val_top1(self, prompts: dict[str, torch.Tensor]) -> float:
        """Top-1 accuracy (%) on the validation clips against the tokenised class ``prompts``."""
        return 100.0 * float((predict(self.model, prompts, self.val_frames) == self.val_labels).float().mean())

    def fit(self) -> Path:
        """Train, validate top-1 on val each epoch, keep the best epoch; -> out/best."""
        (self.out / "log.jsonl").unlink(missing_ok=True)  # a run starts afresh (no resume: it is short)
        atomic_write_json(self.out / "train_config.json", asdict(self.config))
        best, started = -1.0, time.time()
        for epoch in range(self.config.epochs):
            losses = self.epoch(epoch)
            self.model.eval()
            accuracy, reworded = self.val_top1(self.text), self.val_top1(self.reworded_text)
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "first_loss": losses[0],
                      "val_top1": accuracy, "val_top1_reworded": reworded,  # for the record, not for selection
                      "seconds": round(time.time() - started, 1)}
            with (self.out / "log.jsonl").open("a") as f:  # a log grows a line an epoch
                f.write(json.dumps(record) + "\n")
            log.info("epoch %d: loss %.3f, val top-1 %.1f%% (reworded %.1f%%)", epoch + 1, record["loss"],
                     accuracy, reworded)
            if accuracy > best:
                best = accuracy
                save_xclip(self.model, self.tokenizer, self.out / "best", self.config.save_dtype)
        return self.out / "best"


def train_xclip(config: XClipTrainConfig, progress: bool = True) -> Path:
    """Train on the world's train split, validate top-1 each epoch, keep the best; -> out/best."""
    return XClipTrainer(config, progress).fit()
