"""One evaluation run from start to finish, shared by ``python -m demo evaluate`` and the app's
rerun button: pick the suite, score the models, add the free-form query check, and publish.

:class:`EvaluateRequest` says what to run; :func:`run_evaluation` returns the
:class:`~demo.evaluate.results.EvalResult`; :func:`publish` writes it where the project keeps
results (BENCHMARKS.md's marked section, the model's ``eval.json``, each model card's
test-split section).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from demo.errors import InputError
from demo.evaluate import suites
from demo.evaluate.corpus import DEFAULT_WORLD
from demo.evaluate.encode import ProgressFn
from demo.evaluate.freeform import evaluate_freeform
from demo.evaluate.published import FEATURES_REPO, evaluate_published_features
from demo.evaluate.results import EvalResult, write_benchmarks
from demo.files import set_card_results
from demo.presets import PRECOMPUTED, ROOT

log = logging.getLogger(__name__)

DEFAULT_INDEX = PRECOMPUTED / "index-world"
SUITES = ("embedded", "webvid", "webvid-features")


@dataclass(frozen=True)
class EvaluateRequest:
    """What to evaluate and how; the defaults are the embedded suite with the shipped models."""

    # "embedded" (the world's test split), "webvid" (a CSV + videos) or "webvid-features" (the vectors
    # published with the WebVid model, found in its hub repo)
    suite: str = "embedded"
    features: tuple[str, str] | None = None  # (TEXT.npy, VIDEO.npy): the table from embeddings alone
    world: str | Path = DEFAULT_WORLD  # embedded: world folder; missing test clips are rendered
    zero_shot: str | Path | None = suites.ZERO_SHOT_WORLD  # embedded: None skips the zero-shot row
    clip4clip: str | Path = suites.CLIP4CLIP_WORLD  # embedded: model with a seqTransf head
    index: str | Path | None = DEFAULT_INDEX  # embedded: index for the free-form check (None: skip)
    data: str | None = None  # webvid: CSV with ids and captions
    videos: str | None = None  # webvid: folder of the CSV's videos
    models: tuple[str, ...] = ()  # webvid: extra models, ID or ID:pooling
    hub: bool = True  # webvid: also the default hub models
    id_column: str = "videoid"
    caption_column: str = "name"
    path_column: str | None = None
    limit: int | None = None  # only the first N test videos
    rerank: tuple[int, ...] = suites.RERANK  # binarised rows: rerank depths
    device: str | None = None
    batch_size: int = 16
    workers: int = 4  # decoding threads
    cache: str | Path | None = None  # frame-feature cache folder (None: no cache)
    command: str | None = None  # how the run was asked for, recorded with the result
    features_repo: str | None = None  # webvid-features: the hub repo to take them from (default: the model's)

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise InputError(f"unknown suite {self.suite!r}; choose one of {list(SUITES)}")
        if self.suite == "webvid" and not self.features and (not self.data or not self.videos):
            raise InputError("the webvid suite needs --data CSV and --videos DIR")


def run_evaluation(request: EvaluateRequest, progress: ProgressFn | None = None) -> EvalResult:
    """Score the request's models; the embedded suite adds the free-form query check when its
    index exists."""
    run: dict[str, Any] = dict(device=request.device, batch_size=request.batch_size, workers=request.workers,
                               cache=request.cache, progress=progress, command=request.command)
    if request.suite == "webvid-features" and not request.features:
        return evaluate_published_features(request.features_repo or FEATURES_REPO, rerank=request.rerank,
                                           progress=progress, command=request.command)
    if request.features:
        return suites.evaluate_features(*request.features, rerank=request.rerank, progress=progress,
                                        command=request.command)
    if request.suite == "webvid":
        assert request.data is not None and request.videos is not None  # checked in __post_init__
        models = suites.webvid_models(request.models, hub=request.hub, rerank=request.rerank)
        return suites.evaluate_webvid(request.data, request.videos, models, limit=request.limit,
                                      id_column=request.id_column, caption_column=request.caption_column,
                                      path_column=request.path_column, **run)
    result = suites.evaluate_embedded(request.world, request.zero_shot, request.clip4clip, limit=request.limit,
                                      rerank=request.rerank, **run)
    index = Path(request.index) if request.index is not None else None
    if index is not None and (index / "manifest.json").is_file():
        if progress is not None:
            progress(1.0, "free-form queries over the index")
        result = replace(result, freeform=evaluate_freeform(index, world_test_attributes(request.world),
                                                            device=request.device))
    return result


def world_test_attributes(world: str | Path) -> list[dict[str, Any]]:
    """The attributes of every clip in the world's test split (``test.jsonl``)."""
    lines = (Path(world) / "test.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["attributes"] for line in lines if line.strip()]


def check_publishable(request: EvaluateRequest) -> None:
    """Refuse, before any work, to publish a run that is not of the embedded suite."""
    if request.features or request.suite != "embedded":
        raise InputError("--write-benchmarks is for the embedded suite only")


def publish(result: EvalResult, request: EvaluateRequest, benchmarks: str | Path | None = None) -> list[Path]:
    """Write an embedded-suite result into BENCHMARKS.md (default: the project's), the results section
    of the README beside it (when it has one), the CLIP4Clip folder's ``eval.json`` and the test-split
    section of each model card; returns what changed."""
    check_publishable(request)
    target = Path(benchmarks) if benchmarks is not None else ROOT / "BENCHMARKS.md"
    written = write_benchmarks(result, target, Path(request.clip4clip) / "eval.json",
                               readme=target.parent / "README.md")
    for folder in (request.clip4clip, request.zero_shot):  # each model card carries the test-split tables
        if folder is not None and set_card_results(Path(folder) / "README.md", result.to_markdown()):
            written.append(Path(folder) / "README.md")
    return written
