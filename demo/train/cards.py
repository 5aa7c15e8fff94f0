"""Model cards (``README.md`` in a checkpoint folder) for the embedded CLIP4Clip and X-CLIP models.

Cards are written from the training logs and configs through :func:`demo.files.atomic_write`, and
record paths relative to the project (:func:`demo.presets.shown_path`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import safe_open

from demo.files import RESULTS_HEADING, atomic_write
from demo.models.clip2video import TDB_TAB
from demo.models.temporal import HEAD_FILES, Clip4ClipSettings
from demo.models.tokenizer import VOCAB_SIZE
from demo.presets import shown_path
from demo.train.xclip.data import REWORDED
from demo.train.xclip.evaluation import results_table
from demo.train.xclip.trainer import XClipTrainConfig


def _read_log(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _param_count(folder: Path) -> int:
    total = 0
    for name in ("model.safetensors", "temporal_head.safetensors", *HEAD_FILES.values()):
        path = folder / name
        if path.is_file():
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    total += _numel(f.get_slice(key).get_shape())
    return total


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _vocabulary_line(size: int | None) -> str:
    if size is None or size >= VOCAB_SIZE:
        return f"CLIP's {VOCAB_SIZE:,}-token BPE vocabulary"
    return (f"CLIP's BPE vocabulary cut to the {size:,} tokens the world's captions need "
            "(`demo.models.tokenizer.shrink_vocabulary`: those captions tokenise and embed exactly as with the "
            "full table; other words split into byte pieces), which keeps this folder small")


def _loss_weights(config: dict[str, Any], labels: dict[str, str]) -> str:
    """"label weight, ..." for each of ``labels``' config keys that is set; the layout loss also names the
    angle code's weight when it is not 1."""
    angle = float(config.get("angle_weight", 1.0))
    suffix = {"layout_loss": f" (its angle code x{angle:g})" if angle != 1.0 else ""}
    return ", ".join(f"{label} {config[key]:g}{suffix.get(key, '')}" for key, label in labels.items()
                     if config.get(key))


def _turning_data(config: dict[str, Any]) -> str:
    """What a stage trained on, when it read the world's training clips and other worlds' turning clips
    (``EmbeddedRecipe.turning_worlds``); else nothing."""
    train = Path(str(config.get("train", "")))
    if train.name != "frames-train.jsonl" or not train.is_file():
        return ""
    rows = [json.loads(line) for line in train.read_text(encoding="utf-8").splitlines() if line.strip()]
    turning = sum(row["id"].startswith("turning-") for row in rows)
    return (f", on the world's {len(rows) - turning:,} training clips and {turning:,} single-object "
            "turning clips of other worlds' training splits")


def _stage_lines(name: str, run_dir: Path) -> list[str]:
    log = _read_log(run_dir)
    config = json.loads((run_dir / "train_config.json").read_text()) if (run_dir / "train_config.json").is_file() \
        else {}
    if not log:
        return [f"- {name}: no training log found in {shown_path(run_dir)}"]
    minutes = sum(r.get("seconds", 0) for r in log) / 60
    if config.get("stage") == "frames":  # no text: the shape probe's validation accuracy
        best_shape = max(r["val"].get("shape/probe", {}).get("accuracy", float("nan")) for r in log)
        layout = log[-1]["val"].get("layout/R2", {}).get("all")
        weights = _loss_weights(config, {"shape_loss": "shape classification", "layout_loss": "layout regression"})
        data = _turning_data(config)
        return [f"- {name} ({weights}): {len(log)} epochs, batch {config.get('batch_size')}, lr "
                f"{config.get('lr')}, one frame per clip{data}, {minutes:.1f} min of training steps; best validation "
                f"shape accuracy on lone objects {best_shape:.1f}% (chance 12.5%)"
                + (f", layout R^2 {layout:.2f}." if layout is not None else ".")]
    heads = [h for h in str(config.get("pooling", "")).replace("both", "meanP,seqTransf").split(",") if h != "meanP"]
    head = f"{heads[0]}/t2v" if heads and f"{heads[0]}/t2v" in log[-1]["val"] else "meanP/t2v"
    pooled = "single frames" if config.get("stage") == "image" else f"pooling `{config.get('pooling')}`"
    best = max(r["val"][head]["R@1"] for r in log)
    options = {"frame_captions": "frame captions", "hard_negatives": "hard negative captions",
               "look_negatives": "colour/size-changed negative captions",
               "frame_loss": "frame-caption loss", "grouped_batches": "share of one-colour batches",
               "reversed_videos": "reversed-clip negatives", "layout_loss": "frame-layout regression",
               "shape_loss": "frame shape classification", "event_loss": "event centres",
               "look_loss": "look centres"}
    extra = _loss_weights(config, options)
    if config.get("compile"):
        pooled += ", both towers through torch.compile"
    pooled += _turning_data(config)
    name = f"{name} (with {extra})" if extra else name
    epochs = f"{len(log)} epoch{'s' if len(log) != 1 else ''}"
    return [f"- {name}: {epochs}, batch {config.get('batch_size')}, lr {config.get('lr')} (new parts) / "
            f"{config.get('clip_lr')} (CLIP towers), {pooled}, {minutes:.1f} min of "
            f"training steps; best validation text->video R@1 {best:.1f} ({head.split('/')[0]})."]


# What each stage folder of the embedded recipe's work folder holds, as the card names it.
STAGE_NAMES = {
    "frames": "stage 0, the vision tower alone told what single frames show (linear probes, dropped afterwards)",
    "image": "stage 1, image-text pretraining on single frames with still-frame captions",
    "video": "stage 2, video-text fine-tuning (meanP and the temporal heads on one backbone, loss = mean of theirs)",
    "video2": "stage 3, video-text fine-tuning of the temporal heads alone",
}


def write_clip4clip_card(folder: str | Path, title: str, work: str | Path, eval_markdown: str | None,
                         command: str = "python -m demo train --preset embedded",
                         stages: tuple[str, ...] = ("frames", "image", "video", "video2")) -> Path:
    """Write ``README.md`` into a shipped checkpoint folder from its training logs and results."""
    folder, work = Path(folder), Path(work)
    lines = [
        f"# {title}",
        "",
        "A small CLIP4Clip model trained from random initialisation by this project's training module on "
        "its procedurally rendered video world (shapes of 8 kinds and 8 colours that move, turn, grow, shrink, "
        "bounce, appear or disappear over 7 backgrounds; see the project README for the vocabulary). It is an "
        "ordinary Hugging Face CLIP folder: `CLIPTextModelWithProjection.from_pretrained(folder)` and "
        "`CLIPVisionModelWithProjection.from_pretrained(folder)` load the towers; `clip4clip.json` holds the "
        "frame sampling and pooling, `temporal_head.safetensors` the head of that pooling (if any) and "
        "`temporal_head-<pooling>.safetensors` the other heads trained on the same towers.",
        "",
        *_architecture_lines(folder),
        *_training_lines(work, command, stages),
    ]
    if eval_markdown:
        lines += [RESULTS_HEADING, "", eval_markdown.strip(), ""]
    lines += ["## Limitations", "",
              "It knows only the rendered world's words and pictures: it has never seen a real video. Use it "
              "to explore the product offline; use the `webvid` preset for real footage.", ""]
    return atomic_write(folder / "README.md", "\n".join(lines))


def _architecture_lines(folder: Path) -> list[str]:
    settings = Clip4ClipSettings.load(folder)
    config = json.loads((folder / "config.json").read_text())
    text, vision = config["text_config"], config["vision_config"]
    return [
        "## Architecture",
        "",
        f"- text: {text.get('num_hidden_layers')} layers, width {text.get('hidden_size')}, "
        f"{text.get('max_position_embeddings')} positions, " + _vocabulary_line(text.get("vocab_size")),
        f"- vision: ViT, {vision.get('image_size')}x{vision.get('image_size')} pixels, patch "
        f"{vision.get('patch_size')}, {vision.get('num_hidden_layers')} layers, width {vision.get('hidden_size')}",
        f"- embedding size {config.get('projection_dim')}; pooling `{settings.pooling}`"
        + (f" ({settings.head_layers}-layer transformer, {settings.head_heads} heads"
           + (f"; {settings.tab_centres} shared centres, global weight {settings.tab_weight:g}, so videos and "
              f"captions embed {2 * config.get('projection_dim', 0)} wide" if settings.pooling == TDB_TAB else "")
           + ")" if settings.pooling != "meanP" else "") + _other_heads(folder, settings.pooling)
        + (f"; the TDB heads also read the signed turn between adjacent frames in {settings.tdb_turn_planes} "
           "planes (turn planes, ours)" if settings.tdb_turn_planes else ""),
        f"- frames: sampled at {settings.sample_fps:g} fps, at most {settings.max_frames}; "
        f"text: at most {settings.max_words} tokens",
        f"- weights stored as float16 ({_param_count(folder) / 1e6:.1f} M parameters); they load as float32",
        "",
    ]


def _other_heads(folder: Path, own: str) -> str:
    others = [p for p, name in HEAD_FILES.items() if p != own and (folder / name).is_file()]
    return f"; also {', '.join(f'`{p}`' for p in others)} heads on the same towers" if others else ""


def _training_lines(work: Path, command: str, stages: tuple[str, ...]) -> list[str]:
    lines = [
        "## Training",
        "",
        f"Reproduce with `{command}` (renders the world, then trains; CPU, fp32).",
        "",
        "- data: the world with seed 0: 8,000 training clips (5 captions each, plus still-frame captions), "
        "500 validation clips for model selection; five colour-shape combinations never appear in training",
    ]
    spec_path = work / "embedded_model.json"
    init = json.loads(spec_path.read_text()).get("init", {}) if spec_path.is_file() else {}
    if init.get("position_scale"):
        lines.append(f"- initialisation: random, except the vision tower's patch positions, which start as 2-D "
                     f"sin-cos codes times {init['position_scale']:g} (about a patch embedding's size); all are "
                     "then learned")
    for stage in stages:
        if stage == "image" or (work / stage).is_dir():  # stages 0 and 3 are optional
            lines += _stage_lines(STAGE_NAMES[stage], work / stage)
    return lines + [
        "- loss: symmetric InfoNCE over in-batch similarities with a learned temperature; identical "
        "captions in a batch count as positives; a clip and its time reversal share a batch",
        "- schedule: AdamW, linear warm-up over 10% of the steps, cosine decay, gradient clipping at 1.0",
        "",
    ]


XCLIP_CARD = """---
library_name: transformers
pipeline_tag: video-classification
tags: [x-clip, video-classification, synthetic]
---

# xclip-world: a small X-CLIP trained on the embedded procedural world

A Hugging Face `XCLIPModel` (`XCLIPModel.from_pretrained` / `XCLIPProcessor.from_pretrained`,
or `demo.models.xclip.XClipClassifier.from_pretrained`) trained by this project from its own
CLIP4Clip model, for zero-shot classification of clips of the rendered world (`demo/world.py`).
Weights are stored in float16; they load as float32.

## Model

- text tower: {t.num_hidden_layers} layers, hidden {t.hidden_size}, {t.max_position_embeddings} positions,
  CLIP's 49,408-token vocabulary; vision tower: {v.image_size}x{v.image_size} frames, patch {v.patch_size},
  {v.num_hidden_layers} layers, hidden {v.hidden_size}, with X-CLIP's cross-frame message tokens;
  projection {c.projection_dim}
- {v.num_frames} frames per clip, spread uniformly over the clip, ImageNet mean/std
- multi-frame integration transformer: {v.mit_num_hidden_layers} layer(s); video-specific prompt
  generator: {c.prompt_layers} layer(s)
- initialised from `{init}`: text tower, vision embeddings and layers, projections and
  temperature copied by an explicit name map (`demo.train.xclip.CLIP_TO_XCLIP`), the vision
  embeddings folded from CLIP's to ImageNet's mean/std, and the CLIP4Clip seqTransf temporal
  head copied into the MIT (`HEAD_TO_MIT`); message tokens and prompt generator start random

## Training

X-CLIP's objective: for each training clip, logits over the {classes} class prompts
(`demo.world.event_labels()`; per class {prompts}; template `{template}`), cross-entropy
against the clip's class (`demo.world.clip_event`). Clips with several objects doing different
things have no single class and are left out. {text_tower}
Data: the world's train split (seed {config.seed}{limit}), validated each epoch on val, best epoch kept. \
{config.epochs} epochs, batch {config.batch_size},
AdamW, lr {config.lr:g} (new parts) / {config.vision_lr:g} (copied vision weights), warm-up then cosine.

| epoch | train loss | val top-1 (%) | val top-1, reworded labels (%) | seconds since training began |
|---|---|---|---|---|
{history}

Reproduce: `{command}` (after `python -m demo train --preset embedded`).

## Test accuracy

{results}

Reworded labels: {reworded}.

## Limits

Knows only the rendered world: eight shapes in eight colours, their motions, and the world's
plain, gradient and textured backgrounds.
It is not a general video classifier; use `microsoft/xclip-base-patch32` for real video.
"""


def write_xclip_card(folder: str | Path, config: XClipTrainConfig, results: list[dict[str, Any]],
                     command: str) -> Path:
    """``README.md`` for the shipped X-CLIP checkpoint: what it is, how it was trained, its accuracy."""
    from transformers import XCLIPConfig  # transformers' classes take seconds to import

    folder = Path(folder)
    c: Any = XCLIPConfig.from_pretrained(str(folder))
    history = "\n".join(f"| {e['epoch']} | {e['loss']:.3f} | {e['val_top1']:.1f} | "
                        f"{e.get('val_top1_reworded', float('nan')):.1f} | {e['seconds']:.0f} |"
                        for e in _read_log(Path(config.out)))  # fmt: skip
    prompts = ("the canonical label or, at random each step, one of the world's other phrasings of the "
               "class (never the reworded test phrasing)" if config.synonyms else "the canonical label")
    text_tower = ("The text tower is frozen, so the caption synonyms the CLIP4Clip text tower learned survive."
                  if config.text_lr <= 0 else
                  f"The text tower trains at lr {config.text_lr:g} (left frozen, its label embeddings stay too "
                  "close to tell apart); its token embeddings stay frozen, so words keep what the CLIP4Clip text "
                  "tower learned.")
    card = XCLIP_CARD.format(
        c=c, t=c.text_config, v=c.vision_config, config=config, init=shown_path(config.init), prompts=prompts,
        classes=len(REWORDED), template=repr(config.template), text_tower=text_tower, history=history,
        limit=f", first {config.limit} usable clips" if config.limit else "", command=command,
        results=results_table(results), reworded=", ".join(f"{k} -> {v}" for k, v in REWORDED.items()))
    return atomic_write(folder / "README.md", card)
