"""Retrieval metrics against a brute-force argsort reference, incl. heavy ties."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import demo.evaluate.metrics as metrics
from demo.evaluate.metrics import (
    chunked_ranks,
    chunked_v2t_ranks,
    metrics_from_ranks,
    multi_caption_metrics,
    ranks_for,
    retrieval_metrics,
    v2t_ranks,
)


def brute_force_ranks(sim: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Sort each row by descending score, breaking ties so the ground truth comes LAST
    among equal scores (ties count against the query); rank = its 1-based position."""
    ranks = []
    for i, row in enumerate(sim):
        is_gt = np.arange(len(row)) == gt[i]
        # lexsort: last key is primary -> score descending, then gt after the others.
        order = np.lexsort((is_gt, -row))
        ranks.append(int(np.flatnonzero(order == gt[i])[0]) + 1)
    return np.array(ranks)


def brute_force_v2t(sim: np.ndarray, caption_video: np.ndarray) -> np.ndarray:
    ranks = []
    for v in range(sim.shape[1]):
        scores = sim[:, v]
        own = caption_video == v
        best = scores[own].max()
        ranks.append(1 + int(np.sum(scores[~own] >= best)))
    return np.array(ranks)


def test_doctest_example_runs() -> None:
    assert doctest.testmod(metrics).failed == 0


@pytest.mark.parametrize("integer_scores", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_match_brute_force(seed: int, integer_scores: bool) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    sim = rng.integers(0, 4, size=(n, n)).astype(np.float32) if integer_scores else rng.normal(size=(n, n))
    gt = np.arange(n)
    np.testing.assert_array_equal(ranks_for(sim, gt), brute_force_ranks(sim, gt))
    if integer_scores:  # the point of the test: ties really happen
        assert (sim == sim[gt, gt][:, None]).sum() > 2 * n


def test_retrieval_metrics_values_match_reference() -> None:
    rng = np.random.default_rng(3)
    sim = rng.integers(0, 5, size=(40, 40)).astype(np.float64)
    ranks = brute_force_ranks(sim, np.arange(40))
    m = retrieval_metrics(sim)
    assert m["R@1"] == pytest.approx(100 * np.mean(ranks <= 1))
    assert m["R@5"] == pytest.approx(100 * np.mean(ranks <= 5))
    assert m["R@10"] == pytest.approx(100 * np.mean(ranks <= 10))
    assert m["MdR"] == pytest.approx(float(np.median(ranks)))
    assert m["MnR"] == pytest.approx(float(np.mean(ranks)))
    assert all(isinstance(v, float) for v in m.values())


def test_identity_is_perfect() -> None:
    m = retrieval_metrics(np.eye(25))
    assert m == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "MdR": 1.0, "MnR": 1.0}


def test_all_equal_scores_give_worst_rank() -> None:
    n = 12
    m = retrieval_metrics(np.full((n, n), 0.3))
    assert m["R@1"] == 0.0 and m["R@5"] == 0.0 and m["R@10"] == 0.0
    assert m["MdR"] == float(n) and m["MnR"] == float(n)


def test_metrics_from_ranks_hand_example() -> None:
    m = metrics_from_ranks([1, 2, 6, 11])
    assert m == {"R@1": 25.0, "R@5": 50.0, "R@10": 75.0, "MdR": 4.0, "MnR": 5.0}
    with pytest.raises(ValueError, match=">= 1"):
        metrics_from_ranks([0, 1])
    with pytest.raises(ValueError, match="non-empty"):
        metrics_from_ranks([])


def test_nan_rejected_with_position() -> None:
    sim = np.eye(4)
    sim[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*\(2, 1\)"):
        retrieval_metrics(sim)
    with pytest.raises(ValueError, match="NaN"):
        chunked_ranks(np.full((2, 3), np.nan), np.ones((2, 3)), [0, 1])


def test_non_square_and_bad_gt_rejected() -> None:
    with pytest.raises(ValueError, match=r"square.*\(3, 4\)"):
        retrieval_metrics(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="2-D"):
        retrieval_metrics(np.zeros(3))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ranks_for(np.zeros((2, 3)), [0, 3])


def test_multi_caption_by_hand() -> None:
    # 4 captions over 2 videos: captions 0,1 -> video 0; captions 2,3 -> video 1.
    sim = np.array(
        [
            [0.9, 0.1],  # t2v rank 1
            [0.2, 0.5],  # t2v rank 2 (video 1 scores higher)
            [0.4, 0.4],  # t2v rank 2 (tie counts against the query)
            [0.0, 0.7],  # t2v rank 1
        ]
    )
    cv = np.array([0, 0, 1, 1])
    # v2t video 0: best own caption 0.9; other captions (0.4, 0.0) below -> rank 1.
    # v2t video 1: best own caption 0.7; caption 1 of video 0 scores 0.5 < 0.7 -> rank 1.
    np.testing.assert_array_equal(ranks_for(sim, cv), [1, 2, 2, 1])
    np.testing.assert_array_equal(v2t_ranks(sim, cv), [1, 1])
    sim[1, 1] = 0.7  # now a caption of video 0 ties video 1's best caption
    np.testing.assert_array_equal(v2t_ranks(sim, cv), [1, 2])
    out = multi_caption_metrics(sim, cv)
    assert out["t2v"]["R@1"] == 50.0 and out["t2v"]["MnR"] == 1.5
    assert out["v2t"] == {"R@1": 50.0, "R@5": 100.0, "R@10": 100.0, "MdR": 1.5, "MnR": 1.5}


def test_multi_caption_matches_brute_force_and_rejects_uncaptioned_video() -> None:
    rng = np.random.default_rng(5)
    cv = np.repeat(np.arange(30), rng.integers(1, 5, size=30))
    sim = rng.integers(0, 6, size=(len(cv), 30)).astype(np.float32)
    np.testing.assert_array_equal(v2t_ranks(sim, cv), brute_force_v2t(sim, cv))
    np.testing.assert_array_equal(ranks_for(sim, cv), brute_force_ranks(sim, cv))
    with pytest.raises(ValueError, match=r"no caption.*\[2\]"):
        multi_caption_metrics(np.zeros((2, 3)), [0, 1])


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_chunked_equals_unchunked(chunk: int) -> None:
    rng = np.random.default_rng(7)
    # Small integer vectors: exact float arithmetic and many tied scores.
    q = rng.integers(-2, 3, size=(53, 8)).astype(np.float32)
    c = rng.integers(-2, 3, size=(41, 8)).astype(np.float32)
    c[5] = c[3]  # an exact duplicate candidate must tie with the ground truth
    gt = rng.integers(0, 41, size=53)
    gt[:4] = 3
    np.testing.assert_array_equal(chunked_ranks(q, c, gt, chunk=chunk), ranks_for(q @ c.T, gt))
    np.testing.assert_array_equal(chunked_ranks(q, c, gt, chunk=chunk), brute_force_ranks(q @ c.T, gt))


def test_chunked_float_data_and_float16_inputs() -> None:
    rng = np.random.default_rng(8)
    q = rng.normal(size=(300, 32)).astype(np.float16)
    c = rng.normal(size=(250, 32)).astype(np.float16)
    gt = rng.integers(0, 250, size=300)
    full = q.astype(np.float32) @ c.astype(np.float32).T
    np.testing.assert_array_equal(chunked_ranks(q, c, gt, chunk=64), ranks_for(full, gt))


@pytest.mark.parametrize("chunk", [3, 1000])
def test_chunked_v2t_equals_unchunked(chunk: int) -> None:
    rng = np.random.default_rng(9)
    cv = np.repeat(np.arange(20), rng.integers(1, 4, size=20))
    videos = rng.integers(-1, 2, size=(20, 6)).astype(np.float32)
    caps = rng.integers(-1, 2, size=(len(cv), 6)).astype(np.float32)
    np.testing.assert_array_equal(
        chunked_v2t_ranks(videos, caps, cv, chunk=chunk), v2t_ranks(caps @ videos.T, cv)
    )


def test_chunked_shape_errors() -> None:
    with pytest.raises(ValueError, match="4-d but candidates are 5-d"):
        chunked_ranks(np.zeros((2, 4)), np.zeros((3, 5)), [0, 1])
    with pytest.raises(ValueError, match="chunk"):
        chunked_ranks(np.zeros((2, 4)), np.zeros((3, 4)), [0, 1], chunk=0)
