"""Retrieval metrics over similarity matrices (pure numpy).

Convention everywhere: rows are queries, columns are candidates, higher is more
similar. A query's rank is ``1 + the number of OTHER candidates that score >= its
ground truth``, so ties count against the query: a model that gives every
candidate the same score gets the worst rank, not the best. (CLIP4Clip's own
``compute_metrics`` sorts and looks the ground truth up, which lets ties fall
either way; these functions do not copy it.)

Recalls are percentages, ``MdR``/``MnR`` are the median and mean rank (1 = best).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RECALL_AT = (1, 5, 10)


def _check_matrix(sim: np.ndarray, name: str = "sim") -> np.ndarray:
    sim = np.asarray(sim)
    if sim.ndim != 2:
        raise ValueError(f"{name} must be a 2-D similarity matrix, got shape {sim.shape}")
    if not np.issubdtype(sim.dtype, np.number) or np.issubdtype(sim.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {sim.dtype}")
    if sim.size and not np.isfinite(sim).all():
        bad = np.argwhere(~np.isfinite(sim))
        raise ValueError(
            f"{name} holds {len(bad)} NaN/inf value(s), first at (row, col) = {tuple(bad[0].tolist())}; "
            "metrics over non-finite scores are meaningless"
        )
    return sim


def _check_gt(gt: np.ndarray | Sequence[int], num_queries: int, num_candidates: int) -> np.ndarray:
    gt = np.asarray(gt)
    if gt.shape != (num_queries,):
        raise ValueError(f"gt must have shape ({num_queries},), got {gt.shape}")
    if gt.size and not np.issubdtype(gt.dtype, np.integer):
        raise ValueError(f"gt must hold integer column indices, got dtype {gt.dtype}")
    gt = gt.astype(np.int64)
    if gt.size and (gt.min() < 0 or gt.max() >= num_candidates):
        raise ValueError(f"gt indices must lie in [0, {num_candidates}), got min {gt.min()} max {gt.max()}")
    return gt


def ranks_for(sim: np.ndarray, gt: np.ndarray | Sequence[int]) -> np.ndarray:
    """Rank (1 = best) of each row's ground-truth column; ties count against the query.

    sim: (Q, N) scores; gt: (Q,) column index of each row's ground truth.
    Returns (Q,) int64: ``1 + #{j != gt[i] : sim[i, j] >= sim[i, gt[i]]}``.
    """
    sim = _check_matrix(sim)
    gt = _check_gt(gt, sim.shape[0], sim.shape[1])
    gt_score = sim[np.arange(sim.shape[0]), gt]
    # Counting ">=" over the whole row includes the ground truth itself exactly
    # once, which supplies the "1 +".
    return (sim >= gt_score[:, None]).sum(axis=1).astype(np.int64)


def metrics_from_ranks(ranks: np.ndarray | Sequence[int]) -> dict[str, float]:
    """``{"R@1", "R@5", "R@10"}`` in percent plus ``"MdR"``/``"MnR"`` from (Q,) ranks >= 1."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {ranks.shape}")
    if not np.isfinite(ranks).all() or ranks.min() < 1:
        raise ValueError(f"ranks must be finite and >= 1, got min {ranks.min()}")
    out = {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in RECALL_AT}
    out["MdR"] = float(np.median(ranks))
    out["MnR"] = float(np.mean(ranks))
    return out


def retrieval_metrics(sim: np.ndarray) -> dict[str, float]:
    """Recall@1/5/10 (percent), median and mean rank for a square matrix, gt on the diagonal.

    sim: (N, N), ``sim[i, j]`` = score of candidate j for query i.

    >>> sim = np.array([[0.9, 0.1, 0.0],
    ...                 [0.5, 0.5, 0.0],   # tie with a wrong candidate: rank 2
    ...                 [0.0, 0.8, 0.3]])  # one candidate above the truth: rank 2
    >>> m = retrieval_metrics(sim)
    >>> round(m["R@1"], 2), m["R@5"], m["MdR"], round(m["MnR"], 3)
    (33.33, 100.0, 2.0, 1.667)
    """
    sim = _check_matrix(sim)
    if sim.shape[0] != sim.shape[1]:
        raise ValueError(
            f"retrieval_metrics needs a square matrix (ground truth on the diagonal), got {sim.shape}; "
            "use multi_caption_metrics for several captions per video"
        )
    return metrics_from_ranks(ranks_for(sim, np.arange(sim.shape[0])))


def _check_caption_video(
    caption_video: np.ndarray | Sequence[int], num_captions: int, num_videos: int
) -> np.ndarray:
    cv = _check_gt(caption_video, num_captions, num_videos)
    missing = np.setdiff1d(np.arange(num_videos), cv)
    if missing.size:
        raise ValueError(
            f"{missing.size} video(s) have no caption, e.g. video {missing[:5].tolist()}; "
            "video->text needs at least one caption per video"
        )
    return cv


def v2t_ranks(sim: np.ndarray, caption_video: np.ndarray | Sequence[int]) -> np.ndarray:
    """Video->text ranks when videos have several captions.

    sim: (C, V) caption x video scores; caption_video: (C,) video index of each caption.
    Returns (V,) int64: ``1 + #{captions of other videos scoring >= the best caption of v}``.
    """
    sim = _check_matrix(sim)
    cv = _check_caption_video(caption_video, sim.shape[0], sim.shape[1])
    scores = sim.T  # (V, C)
    own = cv[None, :] == np.arange(sim.shape[1])[:, None]
    best = np.where(own, scores, -np.inf).max(axis=1)
    return 1 + ((scores >= best[:, None]) & ~own).sum(axis=1).astype(np.int64)


def v2t_group_ranks(sim: np.ndarray, caption_video: np.ndarray | Sequence[int]) -> np.ndarray:
    """Video->text ranks as CLIP4Clip scores several captions a video.

    sim: (C, V) caption x video scores; caption_video: (C,) video index of each caption.
    Each video's captions form one candidate, scored by its best caption against the query
    video; returns (V,) int64: ``1 + #{other videos u: max_c(u) sim >= max_c(v) sim}``, ties
    against the query. (:func:`v2t_ranks` is stricter: it counts every caption of the others.)
    """
    sim = _check_matrix(sim)
    cv = _check_caption_video(caption_video, sim.shape[0], sim.shape[1])
    v = sim.shape[1]
    best = np.full((v, v), -np.inf)  # best[query video, candidate group]
    np.maximum.at(best.T, cv, sim)
    own = best[np.arange(v), np.arange(v)]
    return (best >= own[:, None]).sum(axis=1).astype(np.int64)


def multi_caption_metrics(
    sim: np.ndarray, caption_video: np.ndarray | Sequence[int]
) -> dict[str, dict[str, float]]:
    """Metrics for C captions over V videos, several captions per video.

    sim: (C, V) caption x video scores; caption_video: (C,) video index of caption c.
    Every caption is a text->video query; for video->text ("v2t") a video's hit is its
    best-scoring caption, ranked against the captions of all other videos; "v2t-groups" is
    CLIP4Clip's figure (:func:`v2t_group_ranks`).
    Returns ``{"t2v": {...}, "v2t": {...}, "v2t-groups": {...}}`` with the keys of
    :func:`metrics_from_ranks`.
    """
    sim = _check_matrix(sim)
    cv = _check_caption_video(caption_video, sim.shape[0], sim.shape[1])
    return {
        "t2v": metrics_from_ranks(ranks_for(sim, cv)),
        "v2t": metrics_from_ranks(v2t_ranks(sim, cv)),
        "v2t-groups": metrics_from_ranks(v2t_group_ranks(sim, cv)),
    }


def _as_float_pair(queries: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = _check_matrix(queries, "queries")
    c = _check_matrix(candidates, "candidates")
    if q.shape[1] != c.shape[1]:
        raise ValueError(f"queries are {q.shape[1]}-d but candidates are {c.shape[1]}-d")
    dtype = np.promote_types(np.result_type(q, c), np.float32)  # float16 indexes score in float32
    return q.astype(dtype, copy=False), c.astype(dtype, copy=False)


def _paired_scores(a: np.ndarray, b: np.ndarray, chunk: int) -> np.ndarray:
    """Row-wise dot products ``a[i] . b[i]`` computed with the same matmul as the blocks.

    Taking them from a (chunk, chunk) matmul rather than an elementwise sum keeps the
    rounding consistent with the blocks they are compared against, so exact
    duplicates of the ground truth still tie.
    """
    out = np.empty(a.shape[0], dtype=a.dtype)
    for s in range(0, a.shape[0], chunk):
        e = min(s + chunk, a.shape[0])
        out[s:e] = np.diagonal(a[s:e] @ b[s:e].T)
    return out


def chunked_ranks(
    queries: np.ndarray, candidates: np.ndarray, gt: np.ndarray | Sequence[int], chunk: int = 4096,
    ties_against: bool = True,
) -> np.ndarray:
    """:func:`ranks_for` of ``queries @ candidates.T`` without building the (Q, N) matrix.

    queries: (Q, D); candidates: (N, D); gt: (Q,) candidate index per query.
    Memory is bounded by one (chunk, chunk) block. The ground truth column is
    excluded explicitly, so its own rounding never changes a rank. With
    ``ties_against=False`` only candidates scoring strictly higher count (the most
    favourable reading, to measure how much ties matter).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    q, c = _as_float_pair(queries, candidates)
    gt = _check_gt(gt, q.shape[0], c.shape[0])
    gt_score = _paired_scores(q, c[gt], chunk)
    ranks = np.ones(q.shape[0], dtype=np.int64)
    for qs in range(0, q.shape[0], chunk):
        qe = min(qs + chunk, q.shape[0])
        thr, g = gt_score[qs:qe, None], gt[qs:qe, None]
        for cs in range(0, c.shape[0], chunk):
            ce = min(cs + chunk, c.shape[0])
            block = q[qs:qe] @ c[cs:ce].T
            hit = ((block >= thr) if ties_against else (block > thr)) & (np.arange(cs, ce)[None, :] != g)
            ranks[qs:qe] += hit.sum(axis=1)
    return ranks


def chunked_v2t_ranks(
    videos: np.ndarray, captions: np.ndarray, caption_video: np.ndarray | Sequence[int], chunk: int = 4096
) -> np.ndarray:
    """:func:`v2t_ranks` of ``captions @ videos.T`` computed in (chunk, chunk) blocks.

    videos: (V, D); captions: (C, D); caption_video: (C,) video index of each caption.
    Returns (V,) int64 ranks.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    v, c = _as_float_pair(videos, captions)
    cv = _check_caption_video(caption_video, c.shape[0], v.shape[0])
    own_score = _paired_scores(c, v[cv], chunk)
    best = np.full(v.shape[0], -np.inf, dtype=own_score.dtype)
    np.maximum.at(best, cv, own_score)
    ranks = np.ones(v.shape[0], dtype=np.int64)
    for vs in range(0, v.shape[0], chunk):
        ve = min(vs + chunk, v.shape[0])
        thr, vid = best[vs:ve, None], np.arange(vs, ve)[:, None]
        for cs in range(0, c.shape[0], chunk):
            ce = min(cs + chunk, c.shape[0])
            block = v[vs:ve] @ c[cs:ce].T
            ranks[vs:ve] += ((block >= thr) & (cv[None, cs:ce] != vid)).sum(axis=1)
    return ranks


def chunked_v2t_group_ranks(
    videos: np.ndarray, captions: np.ndarray, caption_video: np.ndarray | Sequence[int], chunk: int = 1 << 22
) -> np.ndarray:
    """:func:`v2t_group_ranks` of ``captions @ videos.T`` without the (C, V) matrix.

    videos: (V, D); captions: (C, D); caption_video: (C,) video index of each caption. Blocks of
    query videos are scored against every caption (about ``chunk`` scores at a time) and reduced
    to each video's best caption per candidate. Returns (V,) int64 ranks.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    v, c = _as_float_pair(videos, captions)
    cv = _check_caption_video(caption_video, c.shape[0], v.shape[0])
    order = np.argsort(cv, kind="stable")
    c, cv = c[order], cv[order]
    starts = np.flatnonzero(np.r_[True, cv[1:] != cv[:-1]])  # every video has a caption (checked)
    ranks = np.empty(v.shape[0], dtype=np.int64)
    step = max(1, chunk // max(1, c.shape[0]))
    for vs in range(0, v.shape[0], step):
        ve = min(vs + step, v.shape[0])
        best = np.maximum.reduceat(v[vs:ve] @ c.T, starts, axis=1)  # (block, V)
        own = best[np.arange(ve - vs), np.arange(vs, ve)]
        ranks[vs:ve] = (best >= own[:, None]).sum(axis=1)
    return ranks


# --------------------------------------------------------------------------- moments in long videos

MOMENT_IOU = (0.5, 0.7)  # Charades-STA's and QVHighlights' thresholds


def temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two time spans (start, end); 0 when they do not overlap.

    >>> temporal_iou((0, 8), (4, 12)), temporal_iou((0, 4), (4, 8)), temporal_iou((2, 6), (2, 6))
    (0.3333333333333333, 0.0, 1.0)
    """
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def moment_metrics(found: Sequence[Sequence[tuple[str, float, float]]], truth: Sequence[tuple[str, float, float]],
                   ks: Sequence[int] = (1, 5), thresholds: Sequence[float] = MOMENT_IOU) -> dict[str, float]:
    """Moment-retrieval recall: ``R@k IoU>=t`` is the share (%) of queries with a hit among their
    first ``k`` moments in the right video whose temporal IoU with the true span is at least ``t``;
    ``mIoU`` is the mean IoU of the first moment (0 in a wrong video or when there is none).

    ``found``: per query, ranked (video id, start, end); ``truth``: per query (video id, start, end).

    >>> m = moment_metrics([[("a", 0, 8), ("b", 0, 4)], [("a", 8, 16)]], [("b", 0, 4), ("a", 10, 16)])
    >>> m["R@1 IoU>=0.5"], m["R@5 IoU>=0.5"], m["R@5 IoU>=0.7"], round(m["mIoU"], 2)
    (50.0, 100.0, 100.0, 37.5)
    """
    if len(found) != len(truth) or not truth:
        raise ValueError(f"need one ranked list per query and at least one query, got {len(found)} and {len(truth)}")
    ious = np.zeros((len(truth), max(ks)))
    for q, (hits, (video, start, end)) in enumerate(zip(found, truth, strict=True)):
        for j, (v, s, e) in enumerate(list(hits)[: max(ks)]):
            ious[q, j] = temporal_iou((s, e), (start, end)) if v == video else 0.0
    out = {f"R@{k} IoU>={t:g}": float(100.0 * np.mean((ious[:, :k] >= t).any(axis=1)))
           for t in thresholds for k in ks}
    out["mIoU"] = float(100.0 * ious[:, 0].mean())
    return out
