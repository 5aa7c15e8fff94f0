"""The model card's WebVid-10k table rerun from the features Searchium published with the model.

``python -m demo evaluate --suite webvid-features`` lists the model repo
(``Searchium-ai/clip4clip-webvid150k``, which keeps them under ``Notebooks/features``), finds the
pairs of text and video vectors of the same shape by their names (``..._textual_...`` /
``..._visual_...``; the WebVid pairs when other test sets are there too), downloads them into the
hub cache and scores each pair: R@1/5/10, MdR, MnR, exact, and for the WebVid CLIP4Clip also
binarised + rerank100, next to the card's rows.

Which published row a pair reproduces is read from its name: ``zeroshot`` is the zero-shot CLIP,
``msrvtt`` the CLIP4Clip trained on MSR-VTT, ``webvid`` the CLIP4Clip trained on WebVid. A pair
named ``binary`` holds the card's binarised vectors; they are checked against the sign codes this
project computes from the float vectors (their agreement is recorded).

Tie rule: a ground truth tied with another video counts against the query (rank 1 + every other
video scoring >= it), as everywhere in this project. The published vectors are float32, so ties
happen only between identical vectors; each row's note says how many queries tie and what R@1
would be with ties in the query's favour, so the rule's effect is on the page.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from demo.errors import InputError
from demo.evaluate.encode import ProgressFn
from demo.evaluate.results import EvalResult, EvalRow, run_info
from demo.evaluate.suites import RERANK, feature_rows
from demo.index.binary import binarize, l2_normalize
from demo.index.discover import FeaturePair, choose_feature_pairs, inspect_repo
from demo.index.hub import HubRepo, download
from demo.presets import WEBVID

log = logging.getLogger(__name__)
FEATURES_REPO = WEBVID.model
ROW_WORDS = (("zeroshot", "zero-shot CLIP"), ("zero_shot", "zero-shot CLIP"), ("msrvtt", "CLIP4Clip (MSR-VTT)"),
             ("webvid", "CLIP4Clip (150k WebVid)"))


def published_row(pair_name: str) -> str | None:
    """The card's row a feature pair reproduces, from the model part of its name.

    >>> published_row("webvid_test10k_#_vectors_cl4cl_msrvtt_train")
    'CLIP4Clip (MSR-VTT)'
    """
    model_part = pair_name.split("vectors", 1)[-1]
    return next((row for word, row in ROW_WORDS if word in model_part), None)


def _sign_agreement(binary: np.ndarray, floats: np.ndarray) -> float:
    """Share of bits where published binary vectors (packed uint8, or floats/ints whose sign is the
    bit) agree with ``packbits(floats > 0)``."""
    codes = binarize(floats)
    theirs = binary if binary.dtype == np.uint8 and binary.shape == codes.shape else binarize(binary)
    return float(np.mean(np.unpackbits(theirs, axis=1) == np.unpackbits(codes, axis=1)))


def _load_pair(repo: HubRepo, pair: FeaturePair, revision: str | None) -> tuple[np.ndarray, np.ndarray]:
    text = np.load(download(repo, pair.text.path, revision))
    video = np.load(download(repo, pair.video.path, revision))
    return text, video


def evaluate_published_features(repo: str = FEATURES_REPO, *, revision: str | None = None,
                                rerank: tuple[int, ...] = RERANK[:1], progress: ProgressFn | None = None,
                                command: str | None = None) -> EvalResult:
    """One block of rows per published (text, video) pair in ``repo`` (see the module docstring)."""
    started = time.time()
    report = progress or (lambda fraction, message: None)
    hub = HubRepo.parse(repo)
    report(0.0, f"listing {hub}")
    pairs = choose_feature_pairs(inspect_repo(hub, revision))
    scored = [p for p in pairs if "binary" not in p.name]
    if not scored:
        raise InputError(f"{hub}: only binary feature pairs found ({[p.name for p in pairs]})")
    rows: list[EvalRow] = []
    models: list[dict[str, Any]] = []
    floats: dict[str, np.ndarray] = {}
    for i, pair in enumerate(scored):
        report(0.1 + 0.8 * i / len(scored), f"scoring {pair.name}")
        text, video = _load_pair(hub, pair, revision)
        published = published_row(pair.name)
        name = f"{published or pair.name} (published features)"
        floats[pair.name] = video
        rows += feature_rows(name, l2_normalize(text), l2_normalize(video), published,
                             rerank if published == "CLIP4Clip (150k WebVid)" else (), f"{hub}: {pair.video.path}")
        models.append({"row": name, "text": pair.text.path, "video": pair.video.path, "shape": list(text.shape)})
    for pair in (p for p in pairs if "binary" in p.name):
        base = next((n for n in floats if n == pair.name.replace("_binary", "")), None)
        if base is not None:
            _, video_bits = _load_pair(hub, pair, revision)
            agree = _sign_agreement(np.asarray(video_bits), floats[base])
            models.append({"row": f"{pair.name} (published binary vectors)", "video": pair.video.path,
                           "agreement_with_our_sign_codes": round(agree, 6)})
    report(1.0, "done")
    info = run_info(f"published features in {hub} ({scored[0].text.rows} text-video pairs per model)", [], models,
                    "cpu (numpy)", time.time() - started, command)
    return EvalResult("webvid-features", rows, info)

