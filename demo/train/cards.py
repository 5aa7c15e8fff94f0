"""Model cards (``README.md`` in a checkpoint folder) for the embedded CLIP4Clip models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from demo.models.temporal import Clip4ClipSettings
from demo.models.tokenizer import VOCAB_SIZE


def _read_log(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _param_count(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for name in ("model.safetensors", "temporal_head.safetensors"):
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


def _stage_lines(name: str, run_dir: Path) -> list[str]:
    log = _read_log(run_dir)
    config = json.loads((run_dir / "train_config.json").read_text()) if (run_dir / "train_config.json").is_file() \
        else {}
    if not log:
        return [f"- {name}: no training log found in {run_dir}"]
    minutes = sum(r.get("seconds", 0) for r in log) / 60
    if config.get("stage") == "frames":  # no text: the shape probe's validation accuracy
        best_shape = max(r["val"].get("shape/probe", {}).get("accuracy", float("nan")) for r in log)
        layout = log[-1]["val"].get("layout/R2", {}).get("all")
        weights = ", ".join(f"{label} {config[key]:g}" for key, label in
                            (("shape_loss", "shape classification"), ("layout_loss", "layout regression"))
                            if config.get(key))
        return [f"- {name} ({weights}): {len(log)} epochs, batch {config.get('batch_size')}, lr "
                f"{config.get('lr')}, one frame per clip, {minutes:.1f} min of training steps; best validation "
                f"shape accuracy on lone objects {best_shape:.1f}% (chance 12.5%)"
                + (f", layout R^2 {layout:.2f}." if layout is not None else ".")]
    last = log[-1]["val"]
    head = "seqTransf/t2v" if "seqTransf/t2v" in last else "meanP/t2v"
    pooled = "single frames" if config.get("stage") == "image" else f"pooling `{config.get('pooling')}`"
    best = max(r["val"][head]["R@1"] for r in log)
    options = {"frame_captions": "frame captions", "hard_negatives": "hard negative captions",
               "frame_loss": "frame-caption loss", "grouped_batches": "share of one-colour batches",
               "reversed_videos": "reversed-clip negatives", "layout_loss": "frame-layout regression",
               "shape_loss": "frame shape classification"}
    extra = ", ".join(f"{label} {config[key]:g}" for key, label in options.items() if config.get(key))
    if config.get("compile"):
        pooled += ", both towers through torch.compile"
    name = f"{name} (with {extra})" if extra else name
    epochs = f"{len(log)} epoch{'s' if len(log) != 1 else ''}"
    return [f"- {name}: {epochs}, batch {config.get('batch_size')}, lr {config.get('lr')} (new parts) / "
            f"{config.get('clip_lr')} (CLIP towers), {pooled}, {minutes:.1f} min of "
            f"training steps; best validation text->video R@1 {best:.1f} ({head.split('/')[0]})."]


RESULTS_HEADING = "## Test-split results (`python -m demo evaluate`)"


def set_card_results(card: str | Path, markdown: str) -> bool:
    """Replace the body of a model card's test-split section with ``markdown``.

    Returns False (and writes nothing) when the card is missing or has no such section.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "README.md"
    >>> _ = path.write_text(f"# m\\n\\n{RESULTS_HEADING}\\n\\nold\\n\\n## Limitations\\n\\nx\\n")
    >>> set_card_results(path, "| R@1 |")
    True
    >>> path.read_text().split("\\n")[2:8]
    ['## Test-split results (`python -m demo evaluate`)', '', '| R@1 |', '', '## Limitations', '']
    """
    path = Path(card)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    start = text.find(RESULTS_HEADING)
    if start < 0:
        return False
    body = start + len(RESULTS_HEADING)
    stop = text.find("\n## ", body)
    rest = text[stop + 1:] if stop >= 0 else ""
    path.write_text(f"{text[:body]}\n\n{markdown.strip()}\n\n{rest}", encoding="utf-8")
    return True


def write_clip4clip_card(folder: str | Path, title: str, work: str | Path, eval_markdown: str | None,
                         command: str = "python -m demo train --preset embedded",
                         stages: tuple[str, ...] = ("frames", "image", "video", "video2")) -> Path:
    """Write ``README.md`` into a shipped checkpoint folder from its training logs and results."""
    folder, work = Path(folder), Path(work)
    settings = Clip4ClipSettings.load(folder)
    config = json.loads((folder / "config.json").read_text())
    text, vision = config["text_config"], config["vision_config"]
    lines = [
        f"# {title}",
        "",
        "A small CLIP4Clip model trained from random initialisation by this project's training module on "
        "its procedurally rendered video world (shapes of 8 kinds and 8 colours that move, turn, grow, shrink, "
        "bounce, appear or disappear over 7 backgrounds; see the project README for the vocabulary). It is an "
        "ordinary Hugging Face CLIP folder: `CLIPTextModelWithProjection.from_pretrained(folder)` and "
        "`CLIPVisionModelWithProjection.from_pretrained(folder)` load the towers; `clip4clip.json` holds the "
        "frame sampling and pooling, `temporal_head.safetensors` the seqTransf head (if any).",
        "",
        "## Architecture",
        "",
        f"- text: {text.get('num_hidden_layers')} layers, width {text.get('hidden_size')}, "
        f"{text.get('max_position_embeddings')} positions, " + _vocabulary_line(text.get("vocab_size")),
        f"- vision: ViT, {vision.get('image_size')}x{vision.get('image_size')} pixels, patch "
        f"{vision.get('patch_size')}, {vision.get('num_hidden_layers')} layers, width {vision.get('hidden_size')}",
        f"- embedding size {config.get('projection_dim')}; pooling `{settings.pooling}`"
        + (f" ({settings.head_layers}-layer transformer, {settings.head_heads} heads)"
           if settings.pooling == "seqTransf" else ""),
        f"- frames: sampled at {settings.sample_fps:g} fps, at most {settings.max_frames}; "
        f"text: at most {settings.max_words} tokens",
        f"- weights stored as float16 ({_param_count(folder) / 1e6:.1f} M parameters); they load as float32",
        "",
        "## Training",
        "",
        f"Reproduce with `{command}` (renders the world, then trains; CPU, fp32).",
        "",
        "- data: the world with seed 0: 8,000 training clips (5 captions each, plus still-frame captions), "
        "500 validation clips for model selection; five colour-shape combinations never appear in training",
    ]
    names = {"frames": "stage 0, the vision tower alone told what single frames show (linear probes, "
                       "dropped afterwards)",
             "image": "stage 1, image-text pretraining on single frames with still-frame captions",
             "video": "stage 2, video-text fine-tuning (meanP and seqTransf heads on one backbone, "
                      "loss = mean of both)",
             "video2": "stage 3, video-text fine-tuning of the seqTransf model alone"}
    spec_path = work / "embedded_model.json"
    init = json.loads(spec_path.read_text()).get("init", {}) if spec_path.is_file() else {}
    if init.get("position_scale"):
        lines.append(f"- initialisation: random, except the vision tower's patch positions, which start as 2-D "
                     f"sin-cos codes times {init['position_scale']:g} (about a patch embedding's size); all are "
                     "then learned")
    for stage in stages:
        if stage == "image" or (work / stage).is_dir():  # stages 0 and 3 are optional
            lines += _stage_lines(names[stage], work / stage)
    lines += ["- loss: symmetric InfoNCE over in-batch similarities with a learned temperature; identical "
              "captions in a batch count as positives; a clip and its time reversal share a batch",
              "- schedule: AdamW, linear warm-up over 10% of the steps, cosine decay, gradient clipping at 1.0",
              ""]
    if eval_markdown:
        lines += [RESULTS_HEADING, "", eval_markdown.strip(), ""]
    lines += ["## Limitations", "",
              "It knows only the rendered world's words and pictures: it has never seen a real video. Use it "
              "to explore the product offline; use the `webvid` preset for real footage.", ""]
    out = folder / "README.md"
    out.write_text("\n".join(lines))
    return out
