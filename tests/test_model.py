"""The CLIP4Clip model, its temporal heads and the numpy encoder API on tiny random checkpoints."""

import numpy as np
import pytest
import torch

from demo.errors import ModelLoadError
from demo.models.clip4clip import Clip4Clip
from demo.models.encoders import Clip4ClipEncoder
from demo.models.temporal import Clip4ClipSettings, SeqTransfHead, masked_mean


def test_masked_mean_ignores_padding_and_is_unit_length():
    frames = torch.randn(2, 4, 8)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    pooled = masked_mean(frames, mask)
    expected = torch.nn.functional.normalize(
        torch.nn.functional.normalize(frames[0, :2], dim=-1).mean(0), dim=0)
    assert torch.allclose(pooled[0], expected, atol=1e-6)
    assert torch.allclose(pooled.norm(dim=-1), torch.ones(2))
    frames2 = frames.clone()
    frames2[0, 2:] = 100.0  # padded frames must not matter
    assert torch.allclose(masked_mean(frames2, mask)[0], pooled[0])


def test_mean_pooling_is_blind_to_order_but_seqtransf_is_not():
    torch.manual_seed(0)
    head = SeqTransfHead(dim=16, max_frames=6, layers=1, heads=2)
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.3)
    frames, mask = torch.randn(1, 6, 16), torch.ones(1, 6, dtype=torch.bool)
    reverse = frames.flip(1)
    assert torch.allclose(masked_mean(frames, mask), masked_mean(reverse, mask), atol=1e-6)
    assert not torch.allclose(head(frames, mask), head(reverse, mask), atol=1e-3)


def test_fresh_seqtransf_head_starts_close_to_meanp():
    head = SeqTransfHead(dim=16, max_frames=6, layers=2, heads=2)
    frames, mask = torch.randn(3, 6, 16), torch.ones(3, 6, dtype=torch.bool)
    cos = (head(frames, mask) * masked_mean(frames, mask)).sum(-1)
    assert bool((cos > 0.99).all())


def test_settings_validate():
    with pytest.raises(ValueError, match="pooling"):
        Clip4ClipSettings(pooling="maxP")


def test_save_load_round_trip_keeps_outputs(tiny_clip4clip, tmp_path):
    model = Clip4Clip.from_pretrained(tiny_clip4clip)
    assert model.settings.pooling == "seqTransf" and model.head is not None
    frames, mask = torch.randn(2, 6, 3, 32, 32), torch.ones(2, 6, dtype=torch.bool)
    mask[0, 3:] = False
    with torch.no_grad():
        before = model.encode_video(frames, mask)
        model.save_pretrained(tmp_path / "copy")
        after = Clip4Clip.from_pretrained(tmp_path / "copy").encode_video(frames, mask)
    assert torch.allclose(before, after, atol=1e-5)
    # Both HF tower classes read the same folder.
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    assert CLIPTextModelWithProjection.from_pretrained(tmp_path / "copy").config.projection_dim == 16
    assert CLIPVisionModelWithProjection.from_pretrained(tmp_path / "copy").config.image_size == 32


def test_encoder_numpy_api(tiny_clip4clip, clip_folder):
    enc = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, device="cpu")
    texts = enc.encode_texts(["a red square moving left", "x " * 500, "naïve café ☕"])
    assert texts.shape == (3, 16) and texts.dtype == np.float32
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    assert enc.tokenize(["x " * 500])["input_ids"].shape[1] == enc.max_words  # truncated, not an error
    paths = sorted(clip_folder.glob("*.mp4"))
    videos = enc.encode_videos(paths, batch_size=4)
    assert videos.shape == (len(paths), 16)
    assert np.allclose(np.linalg.norm(videos, axis=1), 1, atol=1e-5)
    one = enc.encode_videos(paths[:1])
    assert np.allclose(one[0], videos[0], atol=1e-5)  # batching does not change results


def test_pooling_override_and_fingerprint(tiny_clip4clip):
    mean = Clip4ClipEncoder.from_pretrained(tiny_clip4clip, pooling="meanP")
    seq = Clip4ClipEncoder.from_pretrained(tiny_clip4clip)
    assert mean.fingerprint.pooling == "meanP" and seq.fingerprint.pooling == "seqTransf"
    assert mean.fingerprint.model == seq.fingerprint.model


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        Clip4ClipEncoder.from_pretrained(str(tmp_path / "nope"))


def test_seqtransf_on_checkpoint_without_head_is_refused(tiny_clip4clip_other):
    with pytest.raises(ModelLoadError, match="temporal_head"):
        Clip4Clip.from_pretrained(tiny_clip4clip_other, pooling="seqTransf")


def test_sincos_patch_positions_at_random_init() -> None:
    from demo.models.clip4clip import sincos_2d
    from tests.conftest import TINY_TEXT, TINY_VISION

    plain = Clip4Clip.from_config(TINY_TEXT, TINY_VISION, Clip4ClipSettings())
    placed = Clip4Clip.from_config(TINY_TEXT, TINY_VISION, Clip4ClipSettings(), position_scale=0.5)
    grid = TINY_VISION["image_size"] // TINY_VISION["patch_size"]
    weight = placed.vision.vision_model.embeddings.position_embedding.weight
    assert torch.equal(weight[1:], 0.5 * sincos_2d(grid, TINY_VISION["hidden_size"])) and not weight[0].any()
    assert plain.vision.vision_model.embeddings.position_embedding.weight.std() < 0.1
    codes = sincos_2d(grid, TINY_VISION["hidden_size"])
    assert len({tuple(row.tolist()) for row in codes}) == grid * grid  # every patch has its own code


def test_reverse_frames_reverses_only_valid_frames():
    from demo.models.temporal import reverse_frames

    frames = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    out = reverse_frames(frames, mask)
    assert torch.equal(out[0], frames[0].flip(0))
    assert torch.equal(out[1], frames[1, [1, 0, 2, 3]])  # padding stays where it was
    assert torch.equal(reverse_frames(out, mask), frames)  # an involution
    # meanP cannot tell a clip from its reversal; that is why only the head gets reversed negatives.
    assert torch.allclose(masked_mean(out, mask), masked_mean(frames, mask), atol=1e-6)
