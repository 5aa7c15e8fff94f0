"""The MSR-VTT 1k-A test table, as the CLIP4Clip, CLIP2Video and MMAction2 papers report it.

``python -m demo evaluate --suite msrvtt --videos DIR --captions CSV [--models FOLDER ...]``: ``DIR`` holds
MSR-VTT's test videos as ``video7xxx.mp4``; ``CSV`` is the 1k-A split (``MSRVTT_JSFUSION_test.csv``, which
CLIP4Clip's, CLIP2Video's and MMAction2's ``test_JSFUSION`` data all are): columns ``key, vid_key,
video_id, sentence``, one caption per video. MSR-VTT is not shipped (its license has users fetch it
themselves); nothing here downloads it.

Each paper's table is the square 1,000 x 1,000 matrix of caption-video similarities: text -> video
ranks each caption's video among the 1,000 videos, video -> text each video's caption among the 1,000
captions; R@1/5/10 in percent, median and mean rank. Ties count against the query
(:func:`demo.metrics.retrieval_metrics`); the papers' ``compute_metrics`` gives a tie the better rank,
which changes nothing on float scores that do not tie. Every model row computes with the frames,
preprocessing and head arithmetic its folder records (``convert clip2video`` / ``mmaction2`` /
``clip4clip`` write the original code's), on a GPU when one is present. A CSV with several captions
a video is scored on each video's first. A run over fewer than 1,000 videos says so: its numbers are
not comparable with the papers'.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import InputError
from demo.evaluate.corpus import webvid_corpus
from demo.evaluate.encode import ProgressFn, encode_corpus
from demo.evaluate.metrics import chunked_ranks
from demo.evaluate.results import EvalResult, EvalRow, device_name, run_info
from demo.presets import shown_path

TEST_VIDEOS = 1000  # the 1k-A split


def msrvtt_rows(name: str, texts: np.ndarray, videos: np.ndarray) -> list[EvalRow]:
    """The two rows of one model: (V, D) caption embeddings, row i the caption of video i (V, D)."""
    gt = np.arange(len(videos))
    return [EvalRow.from_ranks(name, "t2v", chunked_ranks(texts, videos, gt)),
            EvalRow.from_ranks(name, "v2t", chunked_ranks(videos, texts, gt))]


def evaluate_msrvtt(videos_dir: str | Path, captions_csv: str | Path, models: list[tuple[str, str, str]], *,
                    limit: int | None = None, device: str | None = None, cache: str | Path | None = None,
                    batch_size: int = 16, workers: int = 4, progress: ProgressFn | None = None,
                    command: str | None = None) -> EvalResult:
    """The table for ``models``, each (row name, model folder or hub id, pooling), on the videos of the CSV
    found in ``videos_dir`` (first ``limit``); videos any model cannot decode are dropped for all."""
    started = time.time()
    report = progress or (lambda fraction, message: None)
    if not models:
        raise InputError("no models to evaluate: give --models FOLDER (e.g. one written by python -m demo convert)")
    corpus = webvid_corpus(captions_csv, videos_dir, limit, id_column="video_id", caption_column="sentence")
    if len(corpus.ids) < 2:
        raise InputError(f"{captions_csv}: need at least 2 of its videos as <video_id>.mp4 under {videos_dir}, "
                         f"found {len(corpus.ids)} ({len(corpus.skipped)} missing)")
    texts = [caps[0] for caps in corpus.captions]
    encoded = []
    for m, (_name, model, pooling) in enumerate(models):
        def stage(fraction: float, message: str, m: int = m) -> None:
            report(0.95 * (m + fraction) / len(models), message)

        encoded.append(encode_corpus(model, [pooling], corpus.paths, texts, device=device, cache=cache,
                                     batch_size=batch_size, workers=workers, progress=stage))
    failed = {i: why for e in encoded for i, why in e.failed.items()}
    keep = np.array([i for i in range(len(corpus.ids)) if i not in failed], dtype=np.int64)
    if len(keep) < 2:
        raise InputError(f"only {len(keep)} of {len(corpus.ids)} videos could be read; first problems: "
                         f"{list(failed.items())[:3]}")
    rows: list[EvalRow] = []
    info: list[dict[str, Any]] = []
    for (name, model, pooling), enc in zip(models, encoded, strict=True):
        rows += msrvtt_rows(name, enc.texts_for(pooling)[keep], enc.videos[pooling][keep])
        fp = enc.fingerprint
        info.append({"row": name, "model": shown_path(model), "weights": fp.model, "pooling": pooling,
                     "frames": fp.frames, "sampling": fp.sampling, "resize": fp.resize,
                     "clips_encoded_now": enc.encoded})
    report(1.0, "done")
    kept = corpus.keep(keep, failed)
    size = f"MSR-VTT 1k-A from {shown_path(captions_csv)}: {len(keep)} videos"
    if len(keep) != TEST_VIDEOS:
        size += f" (not the {TEST_VIDEOS} of the papers' split: not comparable with their numbers)"
    result_info = run_info(size, kept.skipped, info, device_name(device), time.time() - started, command)
    return EvalResult("msrvtt", rows, result_info)
