import math

import pytest
import torch

from demo.train.losses import multi_positive_infonce, symmetric_infonce


def test_perfect_alignment_gives_low_loss_and_random_gives_log_b():
    b = 8
    assert float(symmetric_infonce(torch.eye(b) * 50)) < 1e-6
    assert float(symmetric_infonce(torch.zeros(b, b))) == pytest.approx(math.log(b), rel=1e-6)


def test_symmetric_in_its_two_directions():
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    assert float(symmetric_infonce(logits)) == pytest.approx(float(symmetric_infonce(logits.t())))


def test_multi_positive_equals_infonce_for_distinct_groups_and_forgives_duplicates():
    logits = torch.randn(5, 5, generator=torch.Generator().manual_seed(1)) * 3
    assert float(multi_positive_infonce(logits, torch.arange(5))) == pytest.approx(
        float(symmetric_infonce(logits)), rel=1e-5)
    # Two clips with the same caption: scoring them equally is right, not a mistake.
    tied = torch.tensor([[9.0, 9.0, 0.0], [9.0, 9.0, 0.0], [0.0, 0.0, 9.0]])
    groups = torch.tensor([0, 0, 1])
    assert float(multi_positive_infonce(tied, groups)) < float(symmetric_infonce(tied))


def test_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        symmetric_infonce(torch.zeros(2, 3))


def test_own_negative_videos_join_only_their_captions_row():
    logits = torch.eye(3) * 5
    groups = torch.arange(3)
    base = float(multi_positive_infonce(logits, groups))
    none = torch.full((3,), float("-inf"))
    assert float(multi_positive_infonce(logits, groups, None, none)) == pytest.approx(base)
    # A reversed clip scoring as high as the clip itself costs log 2 in that caption's row only
    # (rows and columns are averaged, so the total rises by log(2) / (2 * 3) -ish).
    tied = torch.tensor([5.0, float("-inf"), float("-inf")])
    rows_only = float(multi_positive_infonce(logits, groups, None, tied))
    row0 = float(torch.logsumexp(torch.tensor([5.0, 0.0, 0.0, 5.0]), 0) - 5.0)
    row_other = float(torch.logsumexp(torch.tensor([5.0, 0.0, 0.0]), 0) - 5.0)
    cols = row_other  # columns are untouched: each is the same as a row without extras
    assert rows_only == pytest.approx(((row0 + 2 * row_other) / 3 + cols) / 2, rel=1e-5)
    # Gradients reach the reversed logit: lowering it lowers the loss.
    tied.requires_grad_(True)
    multi_positive_infonce(logits, groups, None, tied).backward()
    assert tied.grad is not None and float(tied.grad[0]) > 0
