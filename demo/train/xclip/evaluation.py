"""How well a trained X-CLIP classifies the world's clips, and its section of BENCHMARKS.md."""

from __future__ import annotations

import datetime
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from demo.files import write_section
from demo.models.labels import apply_template
from demo.models.xclip import XClipClassifier
from demo.train.xclip.data import REWORDED, TEMPLATE, load_frames, read_labelled
from demo.train.xclip.trainer import predict
from demo.world import event_labels

BENCH_SECTION = "xclip:embedded"  # BENCHMARKS.md's marked section for the embedded X-CLIP


def evaluate_xclip(model_dir: str | Path, world_dir: str | Path, split: str = "test", reworded: bool = False,
                   template: str = TEMPLATE, latency_runs: int = 10, limit: int | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """Top-1 accuracy of the X-CLIP in ``model_dir`` on the unambiguous clips of a world split.

    The labels are :func:`demo.world.event_labels`, or with ``reworded`` their
    :data:`REWORDED` phrasings (predictions map back to the canonical class). Latency is
    the median of ``latency_runs`` :meth:`XClipClassifier.classify` calls on one clip
    (decoding included). Returns a JSON-ready dict.
    """
    classes = event_labels()
    labels = [REWORDED[c] for c in classes] if reworded else classes
    classifier = XClipClassifier.from_pretrained(model_dir)
    clips, excluded = read_labelled(Path(world_dir) / f"{split}.jsonl", limit)
    frames, kept = load_frames([c.path for c in clips], classifier.num_frames, classifier.image_size,
                               classifier.mean, classifier.std, progress=progress, desc=f"decoding {split}")
    truth = torch.tensor([classes.index(clips[i].label) for i in kept])
    text = classifier.tokenizer(apply_template(labels, template), padding=True, truncation=True,
                                max_length=classifier.max_text_tokens, return_tensors="pt")
    pred = predict(classifier.model, dict(text), frames)
    per_class = {c: round(100.0 * float((pred[truth == i] == i).float().mean()), 1)
                 for i, c in enumerate(classes) if (truth == i).any()}  # fmt: skip
    times = []
    for run in range(latency_runs + 1 if latency_runs > 0 else 0):  # the first call is a warm-up
        start = time.perf_counter()
        classifier.classify(clips[kept[0]].path, labels, template=template)
        if run:
            times.append(time.perf_counter() - start)
    return {"model": str(model_dir), "split": split, "labels": "reworded" if reworded else "canonical",
            "template": template, "clips": len(kept), "excluded_ambiguous": excluded,
            "top1": round(100.0 * float((pred == truth).float().mean()), 1), "per_class": per_class,
            "latency_ms": round(1000.0 * float(np.median(times)), 1) if times else None,
            "latency_runs": latency_runs, "threads": torch.get_num_threads()}  # fmt: skip


def results_table(results: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`evaluate_xclip` results."""
    rows = ["| labels | split | clips | top-1 (%) | latency per clip (ms, median) |", "|---|---|---|---|---|"]
    rows += [f"| {r['labels']} | {r['split']} | {r['clips']} | {r['top1']:.1f} | {r['latency_ms']} |"
             for r in results]  # fmt: skip
    return "\n".join(rows)


def write_benchmarks(results: list[dict[str, Any]], command: str, path: str | Path) -> Path:
    """Put the results in the ``xclip:embedded`` section of ``path`` (other text untouched)."""
    threads = results[0]["threads"] if results else "?"
    machine = f"{platform.machine()} CPU, {os.cpu_count()} cores, {threads} torch threads"
    body = "\n".join([
        f"Top-1 over the {len(REWORDED)} event/relation labels (`demo.world.event_labels()`) on the "
        "test clips whose label is not ambiguous (clips with several objects doing different things "
        "are left out); `reworded` asks with other phrasings of the same classes, never used as "
        "training prompts (`demo.train.xclip.REWORDED`). Latency: one `XClipClassifier.classify` "
        f"call (decode 8 frames + the full forward with {len(REWORDED)} labels), median.", "",
        results_table(results), "",
        f"Command: `{command}`; {machine}; {datetime.date.today().isoformat()}.",
    ])  # fmt: skip
    return write_section(path, BENCH_SECTION, body)
