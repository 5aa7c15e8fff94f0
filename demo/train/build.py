"""The model and tokenizer a training stage starts from: random init or a checkpoint, maybe compiled."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from demo.models.clip4clip import Clip4Clip
from demo.models.temporal import Clip4ClipSettings, build_head
from demo.models.tokenizer import build_clip_tokenizer_files
from demo.train.config import TrainConfig

log = logging.getLogger(__name__)


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


def build_tokenizer(config: TrainConfig) -> Any:
    """The checkpoint's tokenizer, or for random init the real CLIP vocabulary built from its merge
    list (written to ``out/tokenizer``)."""
    from transformers import AutoTokenizer  # transformers' classes take seconds to import

    if config.init is None:
        return AutoTokenizer.from_pretrained(str(build_clip_tokenizer_files(Path(config.out) / "tokenizer")))
    return AutoTokenizer.from_pretrained(config.init)


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
