"""Rerunning the model card's retrieval table (R@1, R@5, R@10, MdR, MnR).

Three suites, one result type (:class:`demo.evaluate.results.EvalResult`):

* :func:`evaluate_embedded`: the embedded world's test split with the shipped models
  (zero-shot = the image-pretrained CLIP with meanP; CLIP4Clip with meanP and with its
  own seqTransf head, both from the same frame features; seqTransf binarised + rerank).
* :func:`evaluate_webvid`: WebVid-style CSV + video folder with hub and/or local models.
* :func:`evaluate_features`: precomputed text/video embedding files, row i matches row i.

Similarities are always scored in blocks (:func:`demo.evaluate.metrics.chunked_ranks`), so a
10k x 10k (or larger) test set never holds its full similarity matrix.

Binarised rows (:func:`binary_rerank_ranks`) mirror the app's search: sign codes, the
R nearest videos by Hamming distance, reranked by cosine. A ground truth inside the R
candidates gets its exact cosine rank among them; one outside gets
``R + 1 + #{non-candidates at Hamming distance <= its own}``, which is its Hamming rank
with ties counted against it. Hamming ties at the R-th place are broken against the
ground truth too, so the rule never flatters a model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from demo.errors import InputError
from demo.evaluate.corpus import DEFAULT_WORLD, Corpus, webvid_corpus, world_corpus
from demo.evaluate.encode import ProgressFn, encode_corpus
from demo.evaluate.metrics import chunked_ranks, chunked_v2t_group_ranks, chunked_v2t_ranks
from demo.evaluate.queries import event_captions, event_recognition, is_lone
from demo.evaluate.results import EvalResult, EvalRow, device_name, run_info
from demo.index.binary import binarize, l2_normalize
from demo.models.clip2video import TDB, TDB_TAB
from demo.models.temporal import HEAD_FILES, POOLINGS, Clip4ClipSettings
from demo.presets import PRECOMPUTED, WEBVID, shown_path
from demo.world import EVENTS

log = logging.getLogger(__name__)

ZERO_SHOT_WORLD = PRECOMPUTED / "clip-world-image"
CLIP4CLIP_WORLD = PRECOMPUTED / "clip4clip-world"
RERANK = (100, 500)
_BLOCK = 1 << 21  # (query, candidate) scores per block in binary_rerank_ranks (~25 bytes each)


@dataclass(frozen=True)
class ModelSpec:
    """One model row: ``model`` (folder or hub id) pooled with ``pooling``."""

    name: str
    model: str
    pooling: str = "meanP"
    published: str | None = None  # published row it reproduces (webvid suite only)
    binary: tuple[int, ...] = ()  # also report it binarised + rerank R for each R here
    # frames as the preset that serves the model samples them (None: the checkpoint's own rule);
    # the WebVid rows take the webvid preset's (every 1-fps frame, as its index was made)
    frame_sampling: str | None = None


WEBVID_MODELS = (
    ModelSpec("zero-shot CLIP (openai/clip-vit-base-patch32, meanP)", "openai/clip-vit-base-patch32",
              published="zero-shot CLIP", frame_sampling=WEBVID.frame_sampling),
    ModelSpec("CLIP4Clip WebVid-150k (Searchium-ai/clip4clip-webvid150k, meanP)",
              "Searchium-ai/clip4clip-webvid150k", published="CLIP4Clip (150k WebVid)", binary=RERANK,
              frame_sampling=WEBVID.frame_sampling),
)



def parse_model(text: str) -> ModelSpec:
    """A ``--models`` entry: ``ID`` (the checkpoint's own pooling; meanP for hub ids) or
    ``ID:meanP`` / ``ID:seqTransf``."""
    model, _, pooling = text.rpartition(":")
    if pooling not in POOLINGS:
        folder = Path(text).expanduser()
        model, pooling = text, Clip4ClipSettings.load(folder).pooling if folder.is_dir() else "meanP"
    return ModelSpec(f"{Path(model).name} ({pooling})", model, pooling)


def webvid_models(extra: Sequence[str] = (), hub: bool = True,
                  rerank: tuple[int, ...] = RERANK) -> list[ModelSpec]:
    """The webvid suite's rows: :data:`WEBVID_MODELS` (unless ``hub`` is False) then ``extra``.
    Binarised rows go to the WebVid CLIP4Clip model, or without it to the last model."""
    specs = [replace(s, binary=tuple(rerank) if s.binary else ()) for s in WEBVID_MODELS] if hub else []
    specs += [parse_model(m) for m in extra]
    if not specs:
        raise InputError("no models to evaluate: give --models or leave out --no-hub")
    if not hub:
        specs[-1] = replace(specs[-1], binary=tuple(rerank))
    return specs


def binary_rerank_ranks(queries: np.ndarray, candidates: np.ndarray, gt: np.ndarray,
                        rerank: int) -> np.ndarray:
    """Ranks (1 = best) under binarised search + cosine rerank of the top ``rerank``.

    queries: (Q, D); candidates: (N, D); gt: (Q,) candidate row per query. Both sides are
    sign-binarised; the ``rerank`` candidates nearest in Hamming distance (ties broken
    against the ground truth, then by row) are reranked by cosine. See the module
    docstring for the rank of a ground truth outside them. Returns (Q,) int64.
    """
    q, c = l2_normalize(queries), l2_normalize(candidates)
    gt = np.asarray(gt, dtype=np.int64)
    if q.shape[1] != c.shape[1] or gt.shape != (len(q),) or rerank < 1:
        raise ValueError(f"need (Q, D) queries, (N, D) candidates, (Q,) gt and rerank >= 1, got "
                         f"{q.shape}, {c.shape}, {gt.shape}, {rerank}")
    n, r = len(c), min(rerank, len(c))

    def words(x: np.ndarray) -> np.ndarray:  # packed sign bits as uint64 words (zero padded)
        codes = binarize(x)
        pad = (-codes.shape[1]) % 8
        return np.ascontiguousarray(np.pad(codes, ((0, 0), (0, pad)))).view(np.uint64)

    qw, cw = words(q), words(c)
    ranks = np.empty(len(q), dtype=np.int64)
    step = max(1, _BLOCK // n)
    cols = np.arange(n)
    for s in range(0, len(q), step):
        e = min(s + step, len(q))
        ham = np.zeros((e - s, n), dtype=np.int64)
        sub = max(1, _BLOCK // (8 * qw.shape[1] * (e - s)))  # bounds the XOR temporary
        for cs in range(0, n, sub):
            ham[:, cs:cs + sub] = np.bitwise_count(qw[s:e, None, :] ^ cw[None, cs:cs + sub, :]).sum(-1)
        g, rows = gt[s:e], np.arange(e - s)
        is_gt = cols[None, :] == g[:, None]
        ahead = (ham <= ham[rows, g][:, None]).sum(1) - 1  # others at Hamming distance <= the gt's
        # Unique keys: Hamming distance, the gt after its ties, then the row.
        key = (2 * ham + is_gt) * n + cols[None, :]
        top = np.argpartition(key, r - 1, axis=1)[:, :r] if r < n else np.broadcast_to(cols, (e - s, n))
        cos = q[s:e] @ c.T
        gt_cos = cos[rows, g]
        above = (np.take_along_axis(cos, top, 1) >= gt_cos[:, None]) & (top != g[:, None])
        ranks[s:e] = np.where(ahead < r, 1 + above.sum(1), ahead + 1)
    return ranks


def model_rows(spec: ModelSpec, texts: np.ndarray, videos: np.ndarray, corpus: Corpus,
               chunk: int = 4096) -> list[EvalRow]:
    """Every task's row(s) for one model: texts (C, D) of ``corpus.caption_table()``, videos (V, D)."""
    _, caption_video, canonical = corpus.caption_table()
    canon = texts[canonical]
    v = len(videos)
    rows = []
    t2v = chunked_ranks(canon, videos, np.arange(v), chunk=chunk)
    rows.append(EvalRow.from_ranks(spec.name, "t2v", t2v, published=spec.published))
    rows.append(EvalRow.from_ranks(spec.name, "v2t", chunked_ranks(videos, canon, np.arange(v), chunk=chunk)))
    several = len(texts) > v
    if several:
        rows.append(EvalRow.from_ranks(spec.name, "t2v-all",
                                       chunked_ranks(texts, videos, caption_video, chunk)))
        rows.append(EvalRow.from_ranks(spec.name, "v2t-all",
                                       chunked_v2t_ranks(videos, texts, caption_video, chunk)))
        rows.append(EvalRow.from_ranks(spec.name, "v2t-groups",
                                       chunked_v2t_group_ranks(videos, texts, caption_video)))
    rows += _subset_rows(spec.name, t2v, corpus, canon, videos)
    for r in spec.binary:
        name = f"{spec.name}, binarised + rerank{r}"
        published = "binarised + rerank100" if r == 100 and spec.published else None
        ranks = binary_rerank_ranks(canon, videos, np.arange(v), r)
        rows.append(EvalRow.from_ranks(name, "t2v", ranks, published=published))
        if several:
            ranks_all = binary_rerank_ranks(texts, videos, caption_video, r)
            rows.append(EvalRow.from_ranks(name, "t2v-all", ranks_all))
        rows += _subset_rows(name, ranks, corpus)
    return rows


def _subset_rows(name: str, t2v: np.ndarray, corpus: Corpus, canon: np.ndarray | None = None,
                 videos: np.ndarray | None = None) -> list[EvalRow]:
    rows = []
    for task, members in corpus.subsets.items():
        if not len(members):
            continue
        extra: dict[str, float] = {}
        notes = ""
        if task == "t2v-pairs" and corpus.twins is not None and canon is not None and videos is not None:
            twin = corpus.twins[members]
            has = twin >= 0
            own = np.einsum("ij,ij->i", canon[members], videos[members])
            other = np.einsum("ij,ij->i", canon[members][has], videos[twin[has]])
            extra["Twin"] = float(100.0 * np.mean(own[has] > other)) if has.any() else float("nan")
            notes = f"own clip strictly above its time-reversed twin for {extra['Twin']:.1f}% of queries"
        rows.append(EvalRow.from_ranks(name, task, t2v[members], notes=notes, extra=extra))
    return rows


def _run_models(corpus: Corpus, specs: list[ModelSpec], *, device: str | None, cache: str | Path | None,
                batch_size: int, workers: int, progress: ProgressFn | None) -> tuple[list[EvalRow], Corpus,
                                                                                     list[dict[str, Any]]]:
    """Encode the corpus with each distinct model once, drop videos any model failed on, score; in the
    world's test split each pooling's t2v row also says how well it recognises events (:func:`_events_note`)."""
    report = progress or (lambda fraction, message: None)
    texts, _, _ = corpus.caption_table()
    probes = list(dict.fromkeys(c for a in corpus.attributes or [] if is_lone(a) for c in event_captions(a)))
    groups: dict[tuple[str, str | None], list[ModelSpec]] = {}
    for spec in specs:
        groups.setdefault((spec.model, spec.frame_sampling), []).append(spec)
    encoded = {}
    for g, ((model, sampling), members) in enumerate(groups.items()):
        def stage(fraction: float, message: str, g: int = g) -> None:
            report(0.9 * (g + fraction) / len(groups), message)

        changes = {"frame_sampling": sampling} if sampling else {}
        encoded[model, sampling] = encode_corpus(model, sorted({s.pooling for s in members}), corpus.paths,
                                                 texts + probes, device=device, cache=cache, batch_size=batch_size,
                                                 workers=workers, progress=stage, **changes)
    failed = {i: r for e in encoded.values() for i, r in e.failed.items()}
    keep = np.array([i for i in range(len(corpus.ids)) if i not in failed], dtype=np.int64)
    if len(keep) < 2:
        raise InputError(f"only {len(keep)} of {len(corpus.ids)} videos could be read from {corpus.source}; "
                         f"first problems: {list(failed.items())[:3]}")
    kept = corpus.keep(keep, failed)
    _, caption_video, _ = corpus.caption_table()
    text_rows = np.isin(caption_video, keep)
    rows: list[EvalRow] = []
    info: list[dict[str, Any]] = []
    for spec in specs:
        report(0.9 + 0.1 * len(info) / len(specs), f"scoring {spec.name}")
        enc = encoded[spec.model, spec.frame_sampling]
        own = model_rows(spec, enc.texts_for(spec.pooling)[:len(texts)][text_rows], enc.videos[spec.pooling][keep],
                         kept)
        if probes:
            lookup = dict(zip(probes, enc.texts_for(spec.pooling)[len(texts):], strict=True))
            own[0] = replace(own[0], notes=_events_note(lookup, enc.videos[spec.pooling][keep], kept))
        rows += own
        fp = enc.fingerprint
        info.append({"row": spec.name, "model": shown_path(spec.model), "weights": fp.model, "pooling": spec.pooling,
                     "frames": fp.frames, "sample_fps": fp.sample_fps, "image_size": fp.image_size,
                     "dim": int(enc.videos[spec.pooling].shape[1]), "clips_encoded_now": enc.encoded})
    report(1.0, "done")
    return rows, kept, info


def _events_note(lookup: dict[str, np.ndarray], videos: np.ndarray, corpus: Corpus) -> str:
    """How often each lone-object clip scores "a {size} {colour} {shape} {event}" highest for its own event
    among the 12 (:func:`demo.evaluate.queries.event_recognition`, caption embeddings from ``lookup``)."""
    lone = [(v, a) for v, a in zip(videos, corpus.attributes or [], strict=True) if is_lone(a)]
    result = event_recognition(lambda captions: np.stack([lookup[c] for c in captions]), lone, EVENTS)
    worst = sorted(result["events"].items(), key=lambda item: item[1]["accuracy"])[:3]
    return (f"the right event first for {result['accuracy']:.1f}% of {result['clips']} lone-object clips (12 events; "
            "worst " + ", ".join(f"{e} {r['accuracy']:.0f}%" for e, r in worst) + ")")


def _info(corpus: Corpus, models: list[dict[str, Any]], device: str, started: float,
          command: str | None) -> dict[str, Any]:
    texts, _, _ = corpus.caption_table()
    return run_info(f"{corpus.source}: {len(corpus.ids)} videos, {len(texts)} captions", corpus.skipped,
                    models, device, time.time() - started, command)


def evaluate_embedded(world_dir: str | Path = DEFAULT_WORLD, zero_shot: str | Path | None = ZERO_SHOT_WORLD,
                      clip4clip: str | Path = CLIP4CLIP_WORLD, *, limit: int | None = None,
                      rerank: tuple[int, ...] = RERANK, device: str | None = None,
                      cache: str | Path | None = None, batch_size: int = 16, workers: int = 2,
                      progress: ProgressFn | None = None, command: str | None = None) -> EvalResult:
    """The embedded suite: the world's test split (first ``limit`` clips) with the shipped models.

    ``zero_shot`` (None: no row) is pooled with meanP; ``clip4clip`` is scored with meanP and
    with every temporal head it holds (:func:`head_specs`) from the same frame features, and
    binarised + rerank R for each R in ``rerank`` on its own head's embeddings.
    """
    started = time.time()
    for m in (zero_shot, clip4clip):
        if m is not None and not Path(m).is_dir():
            raise InputError(f"model folder {m} does not exist (train it with `python -m demo train "
                             "--preset embedded`, or pass another folder)")
    if progress is not None:
        progress(0.0, "reading the test split (rendering any missing clips)")
    corpus = world_corpus(world_dir, limit, workers)
    specs = [ModelSpec("zero-shot (image-pretrained CLIP, meanP)", str(zero_shot))] if zero_shot else []
    specs += [ModelSpec("CLIP4Clip meanP", str(clip4clip)), *head_specs(clip4clip, rerank)]
    rows, kept, models = _run_models(corpus, specs, device=device, cache=cache, batch_size=batch_size,
                                     workers=workers, progress=progress)
    return EvalResult("embedded", rows, _info(kept, models, device_name(device), started, command))


HEAD_ROWS = {"seqTransf": "CLIP4Clip seqTransf", TDB: "CLIP2Video TDB", TDB_TAB: "CLIP2Video TDB+TAB"}


def head_specs(clip4clip: str | Path, rerank: tuple[int, ...]) -> list[ModelSpec]:
    """A row per temporal head the checkpoint holds (:data:`HEAD_ROWS` order; its own head's rows also
    binarised + rerank R), all from the same frame features."""
    folder = Path(clip4clip)
    own = Clip4ClipSettings.load(folder).pooling
    held = [p for p in HEAD_ROWS if p == own or (folder / HEAD_FILES[p]).is_file()]
    return [ModelSpec(HEAD_ROWS[p], str(folder), p, binary=tuple(rerank) if p == own else ()) for p in held]


def evaluate_webvid(data_csv: str | Path, videos_dir: str | Path, models: list[ModelSpec] | None = None, *,
                    limit: int | None = None, id_column: str = "videoid", caption_column: str = "name",
                    path_column: str | None = None, device: str | None = None,
                    cache: str | Path | None = None, batch_size: int = 16, workers: int = 4,
                    progress: ProgressFn | None = None, command: str | None = None) -> EvalResult:
    """The model card's table on WebVid-style data; ``models`` default to :data:`WEBVID_MODELS`."""
    started = time.time()
    corpus = webvid_corpus(data_csv, videos_dir, limit, id_column, caption_column, path_column)
    if len(corpus.ids) < 2:
        raise InputError(f"{data_csv}: need at least 2 videos present under {videos_dir}, found "
                         f"{len(corpus.ids)} ({len(corpus.skipped)} skipped)")
    rows, kept, info = _run_models(corpus, list(models or WEBVID_MODELS), device=device, cache=cache,
                                   batch_size=batch_size, workers=workers, progress=progress)
    return EvalResult("webvid", rows, _info(kept, info, device_name(device), started, command))


def load_features(text_npy: str | Path, video_npy: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Matching (N, D) text and video embeddings from two ``.npy`` files, L2-normalised."""
    arrays = []
    for path in (text_npy, video_npy):
        if not Path(path).is_file():
            raise InputError(f"embedding file {path} does not exist")
        try:
            arrays.append(np.load(path, mmap_mode="r"))
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read {path} as a .npy array: {err}") from err
    text, video = arrays
    if text.ndim != 2 or text.shape != video.shape or len(text) < 2:
        raise InputError(f"text and video embeddings must be matching (N, D) arrays with N >= 2, got "
                         f"{text.shape} from {text_npy} and {video.shape} from {video_npy}")
    return l2_normalize(text), l2_normalize(video)


def feature_rows(name: str, text: np.ndarray, video: np.ndarray, published: str | None,
                 rerank: tuple[int, ...], source: str = "features") -> list[EvalRow]:
    """Every row for (N, D) unit text/video embeddings, row i of each a pair; the text -> video row
    notes how many queries tie at their ground truth (ties count against the query here)."""
    corpus = Corpus(source, [str(i) for i in range(len(text))], [], [[str(i)] for i in range(len(text))])
    rows = model_rows(ModelSpec(name, source, "precomputed", published, tuple(rerank)), text, video, corpus)
    favourable = chunked_ranks(text, video, np.arange(len(text)), ties_against=False)
    strict = chunked_ranks(text, video, np.arange(len(text)))
    tied = int(np.sum(strict != favourable))
    note = (f"{tied} of {len(text)} queries tie with another video at their ground truth (counted against the "
            f"query; in its favour R@1 would be {100 * np.mean(favourable <= 1):.2f})" if tied else
            "no query ties with another video at its ground truth, so the tie rule changes nothing")
    return [replace(r, notes=note) if (r.task, r.name) == ("t2v", name) else r for r in rows]


def evaluate_features(text_npy: str | Path, video_npy: str | Path, *, rerank: tuple[int, ...] = RERANK,
                      published: str | None = "CLIP4Clip (150k WebVid)", name: str = "features",
                      progress: ProgressFn | None = None, command: str | None = None) -> EvalResult:
    """The table from precomputed (N, D) text and video embeddings, row i of each a pair.

    ``published`` names the published row the exact rows are compared with (None: none);
    the rerank100 row is compared with the published binarised row when it is set.
    """
    started = time.time()
    report = progress or (lambda fraction, message: None)
    report(0.1, "reading and normalising")
    text, video = load_features(text_npy, video_npy)
    report(0.2, "ranking")
    rows = feature_rows(name, text, video, published, rerank, f"{text_npy} + {video_npy}")
    report(1.0, "done")
    corpus = Corpus(f"{text_npy} + {video_npy}", [str(i) for i in range(len(text))], [],
                    [[str(i)] for i in range(len(text))])
    info = _info(corpus, [{"row": name, "text": str(text_npy), "video": str(video_npy),
                           "dim": int(text.shape[1])}], "cpu (numpy)", started, command)
    return EvalResult("features", rows, info)
