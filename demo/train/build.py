"""The model and tokenizer a training stage starts from: random init or a checkpoint, maybe compiled."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from demo.models.clip4clip import Clip4Clip
from demo.models.temporal import Clip4ClipSettings, build_head
from demo.models.tokenizer import build_clip_tokenizer_files
from demo.train.config import TrainConfig

log = logging.getLogger(__name__)


def build_model(config: TrainConfig) -> Clip4Clip:
    """The model to train, with the heads and frame settings the config asks for (its own pooling: the
    first head listed, else meanP)."""
    heads = config.heads
    pooling = heads[0] if heads else "meanP"
    if config.model_config is not None:
        spec = json.loads(Path(config.model_config).read_text())
        settings = _settings(Clip4ClipSettings(**spec.get("clip4clip", {})), config, pooling)
        model = Clip4Clip.from_config(spec["text"], spec["vision"], settings,
                                      position_scale=float(spec.get("init", {}).get("position_scale", 0.0)))
        trained: Clip4Clip | None = None
    else:
        assert config.init is not None
        trained = Clip4Clip.from_pretrained(config.init)
        settings = _settings(trained.settings, config, pooling)
        model = Clip4Clip(trained.text, trained.vision, settings, None, float(trained.logit_scale.detach()))
    for name in heads:
        if name not in model.heads:
            head = build_head(settings, model.dim, name)
            assert head is not None
            model.heads[name] = head
        if trained is not None:
            _seed_head(model.heads[name], name, trained)
    return model


def _seed_head(head: torch.nn.Module, name: str, trained: Clip4Clip) -> None:
    """Continue from the checkpoint's own head of that name; a CLIP2Video head with none starts from
    a trained seqTransf head's frame positions and transformer when there is one (the same names)."""
    if name in trained.heads:
        head.load_state_dict(trained.heads[name].state_dict())
    elif "seqTransf" in trained.heads and name != "seqTransf":
        source = trained.heads["seqTransf"].state_dict()
        missing = head.load_state_dict(source, strict=False).unexpected_keys
        assert not missing, f"seqTransf weights with no place in {name}: {missing}"
        log.info("%s head: frame positions and transformer from the checkpoint's seqTransf head", name)


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
