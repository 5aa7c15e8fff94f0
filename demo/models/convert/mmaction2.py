"""MMAction2's CLIP4Clip checkpoints (open-mmlab/mmaction2, ``configs/retrieval/clip4clip``) to this
project's folder format.

``python -m demo convert mmaction2 CHECKPOINT.pth --out DIR`` reads the ``.pth`` its ``tools/train.py``
saves (a training checkpoint whose ``state_dict`` holds the ``CLIPSimilarity`` model: the OpenAI CLIP
weights under ``clip.``; the ``SimpleMeanAdapter`` has none) and writes a Hugging Face CLIP folder whose
``clip4clip.json`` records MMAction2's arithmetic and inputs:

* the video embedding is the mean of the RAW frame embeddings, normalised once (``frame_mean="raw"``;
  CLIP4Clip's meanP normalises every frame first);
* its test pipeline: ``UniformSample(clip_len=12, num_clips=1, test_mode=True)`` (always 12 frames,
  repeated in a short clip: :func:`demo.video.sampling.mmaction2_indices`), ``Resize(scale=(-1, 256))``
  bilinear, ``CenterCrop(224)``, mean/std (122.771, 116.746, 104.093) / (68.5, 66.632, 70.323) on the
  0-255 scale (:func:`demo.video.preprocess.preprocess_mmaction2`);
* captions: ``clip.tokenize``, 77 tokens (longer captions are cut here, where ``clip.tokenize`` fails).

A caption's and a clip's similarity is then the cosine MMAction2's ``RetrievalMetric`` ranks by. Refused:
a ``TransformerAdapter`` checkpoint (``adapter.*`` weights; MMAction2 releases none). The released MSR-VTT
checkpoint could not be downloaded where this was written: the converter is tested on state dicts in its
layout with tiny random weights (tests/test_convert_mmaction2.py). A ``.pth`` whose metadata holds Python
objects is refused by the safe loader with the one line that re-saves its weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

from demo.errors import InputError
from demo.models.convert.openai import build_towers, check_target, logit_scale, read_checkpoint, write_folder

log = logging.getLogger(__name__)


def convert_mmaction2(checkpoint: str | Path, out: str | Path, *, max_frames: int = 12, max_words: int = 77,
                      overwrite: bool = False) -> Path:
    """Convert an MMAction2 CLIP4Clip ``.pth`` into a checkpoint folder at ``out`` (written atomically);
    ``max_frames`` is its config's ``clip_len`` (12)."""
    from demo.models.clip4clip import Clip4Clip
    from demo.models.temporal import Clip4ClipSettings

    target = check_target(out, overwrite)
    state = read_checkpoint(checkpoint)
    if any(k.startswith("adapter.") for k in state):
        raise InputError(f"{checkpoint}: a TransformerAdapter checkpoint (adapter.* weights); only the mean "
                         "adapter (SimpleMeanAdapter, the released configs) converts")
    clip = {k: v for k, v in state.items() if k.startswith("clip.")}
    text, vision = build_towers(clip, checkpoint)
    settings = Clip4ClipSettings(pooling="meanP", frame_mean="raw", frame_sampling="mmaction2",
                                 frame_resize="mmaction2", max_frames=max_frames, max_words=max_words)
    write_folder(Clip4Clip(text, vision, settings, None, logit_scale=logit_scale(state)), target)
    log.info("converted %s (MMAction2 CLIP4Clip) into %s", checkpoint, target)
    return target
