"""CLIP2Video's temporal blocks (tdb, tdb+tab) as heads of the CLIP4Clip folder format, on tiny random models."""

import numpy as np
import pytest
import torch

from demo.errors import ModelLoadError
from demo.models.clip2video import TDB, TDB_TAB, AlignmentHead, DifferenceHead
from demo.models.clip4clip import Clip4Clip
from demo.models.encoders import Clip4ClipEncoder
from demo.models.temporal import HEAD_FILE, HEAD_FILES, SeqTransfHead, masked_mean


def _shaken(head: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return head


def test_fresh_difference_head_starts_as_meanp_and_reads_order_once_trained():
    torch.manual_seed(1)
    frames, mask = torch.randn(3, 6, 16), torch.ones(3, 6, dtype=torch.bool)
    mask[0, 4:] = False
    head = DifferenceHead(dim=16, max_frames=6, layers=2, heads=2)
    cos = (head(frames, mask) * masked_mean(frames, mask)).sum(-1)
    assert bool((cos > 0.99).all())
    shaken = _shaken(head)
    out = shaken(frames, mask)
    assert out.shape == (3, 16) and torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(out, shaken(frames.flip(1), mask), atol=1e-3)


def test_difference_tokens_interleave_frames_and_steps_and_padding_does_not_matter():
    head = _shaken(DifferenceHead(dim=8, max_frames=5, layers=1, heads=2))
    frames, mask = torch.randn(1, 5, 8), torch.tensor([[True, True, True, False, False]])
    tokens, valid = head.tokens(frames, mask)
    assert tokens.shape == (1, 9, 8)  # f0 d01 f1 d12 f2 d23 f3 d34 f4
    assert valid.tolist() == [[True, True, True, True, True, False, False, False, False]]
    padded = frames.clone()
    padded[0, 3:] = 50.0
    assert torch.allclose(head(frames, mask), head(padded, mask), atol=1e-5)
    one = torch.tensor([[True, False, False, False, False]])  # one real frame: no step, no NaN
    assert torch.isfinite(head(frames, one)).all()


def test_alignment_head_embeds_both_sides_twice_as_wide_with_the_weighted_score():
    head = _shaken(AlignmentHead(dim=8, max_frames=6, layers=1, heads=2, centres=3, weight=0.25))
    frames, mask = torch.randn(2, 6, 8), torch.ones(2, 6, dtype=torch.bool)
    video = head(frames, mask)
    pooled = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    tokens, attention = torch.randn(2, 5, 8), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    text = head.text(pooled, tokens, attention)
    assert video.shape == text.shape == (2, 16)
    assert torch.allclose(video.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(text[:, :8], 0.5 * pooled)  # sqrt(0.25) of the global embedding
    score = text @ video.t()
    parts = 0.25 * pooled @ (video[:, :8] / 0.5).t() + 0.75 * (text[:, 8:] / 0.75 ** 0.5) @ (
        video[:, 8:] / 0.75 ** 0.5).t()
    assert torch.allclose(score, parts, atol=1e-5)
    # an image: the image tower's embedding as the global half, the one-frame clip aligned beside it
    features = torch.randn(3, 8)
    image = head.image(features)
    assert image.shape == (3, 16) and torch.allclose(image.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(image[:, :8], 0.5 * torch.nn.functional.normalize(features, dim=-1), atol=1e-6)
    assert torch.allclose(image[:, 8:], head(features[:, None], torch.ones(3, 1, dtype=torch.bool))[:, 8:], atol=1e-5)
    # padding tokens of the caption change nothing
    tokens2 = tokens.clone()
    tokens2[0, 3:] = 9.0
    assert torch.allclose(head.text(pooled, tokens2, attention), text, atol=1e-6)


def test_seqtransf_weights_seed_a_difference_head():
    seq = _shaken(SeqTransfHead(dim=8, max_frames=4, layers=1, heads=2))
    tdb = DifferenceHead(dim=8, max_frames=4, layers=1, heads=2)
    result = tdb.load_state_dict(seq.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert torch.equal(tdb.frame_position.weight, seq.frame_position.weight)


@pytest.mark.parametrize("pooling", [TDB, TDB_TAB])
def test_clip2video_checkpoint_round_trip_encoder_and_override(pooling, tmp_path, clip_folder, make_tiny_clip4clip):
    folder = make_tiny_clip4clip(tmp_path / pooling, pooling=pooling)
    assert (folder / HEAD_FILE).is_file()
    model = Clip4Clip.from_pretrained(folder)
    width = 32 if pooling == TDB_TAB else 16
    assert model.settings.pooling == pooling and model.embedding_dim() == width
    frames, mask = torch.randn(2, 6, 3, 32, 32), torch.ones(2, 6, dtype=torch.bool)
    mask[1, 2:] = False
    with torch.no_grad():
        before = model.encode_video(frames, mask)
        model.save_pretrained(tmp_path / "copy")
        after = Clip4Clip.from_pretrained(tmp_path / "copy").encode_video(frames, mask)
    assert before.shape == (2, width) and torch.allclose(before, after, atol=1e-5)
    enc = Clip4ClipEncoder.from_pretrained(folder, device="cpu")
    assert enc.dim == width and enc.fingerprint.dim == width
    texts = enc.encode_texts(["a red square moving up", "a red square moving down"])
    videos = enc.encode_videos(sorted(clip_folder.glob("*.mp4"))[:2])
    assert texts.shape == videos.shape == (2, width)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    # an image query meets the index in the head's width (tdb+tab: as a one-frame video)
    image = np.random.default_rng(0).integers(0, 255, (1, 40, 48, 3), dtype=np.uint8)
    embedded = enc.encode_images(image)
    assert embedded.shape == (1, width) and np.isclose(np.linalg.norm(embedded), 1, atol=1e-5)
    plain = Clip4ClipEncoder.from_pretrained(folder, pooling="meanP", device="cpu")
    assert plain.dim == 16 and plain.encode_texts(["a red square"]).shape == (1, 16)
    with pytest.raises(ModelLoadError, match="seqTransf"):
        Clip4Clip.from_pretrained(folder, pooling="seqTransf")


def test_a_checkpoint_keeps_every_head_trained_on_its_towers(tmp_path, make_tiny_clip4clip):
    folder = make_tiny_clip4clip(tmp_path / "c", pooling="seqTransf")
    model = Clip4Clip.from_pretrained(folder)
    for name in (TDB, TDB_TAB):
        model.heads[name] = _shaken(AlignmentHead(16, 6, 1, 2) if name == TDB_TAB else DifferenceHead(16, 6, 1, 2))
    model.save_pretrained(tmp_path / "all")
    assert all((tmp_path / "all" / HEAD_FILES[name]).is_file() for name in (TDB, TDB_TAB))
    again = Clip4Clip.from_pretrained(tmp_path / "all", pooling=TDB_TAB)
    assert sorted(again.heads) == sorted(["seqTransf", TDB, TDB_TAB]) and again.settings.pooling == TDB_TAB
    frames, mask = torch.randn(1, 6, 16), torch.ones(1, 6, dtype=torch.bool)
    with torch.no_grad():
        assert torch.allclose(again.heads[TDB](frames, mask), model.heads[TDB](frames, mask), atol=1e-5)


def test_turn_planes_read_the_signed_turn_and_start_as_clip2video():
    torch.manual_seed(2)
    frames, mask = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    plain = DifferenceHead(dim=8, max_frames=5, layers=1, heads=2)
    turned = DifferenceHead(dim=8, max_frames=5, layers=1, heads=2, turn_planes=3)
    assert set(turned.state_dict()) - set(plain.state_dict()) == {"turn_read.weight", "turn_write.weight"}
    turned.load_state_dict(plain.state_dict(), strict=False)  # a fresh turn head is CLIP2Video's head
    assert torch.allclose(turned(frames, mask), plain(frames, mask), atol=1e-6)
    # a point turning round a circle in the first read plane: one sign per direction, negated backwards
    read = torch.zeros(6, 8)
    read[0, 0] = read[1, 1] = 1.0
    turned.turn_read.weight.data = read
    angles = torch.linspace(0.0, 2.0, 5)
    circle = torch.stack([torch.cos(angles), torch.sin(angles)], -1)
    clip = torch.cat([circle, torch.full((5, 6), 0.5)], -1).unsqueeze(0)
    steps = turned.turns(clip)
    assert steps.shape == (1, 4, 3) and bool((steps[0, :, 0] > 0).all())
    assert torch.allclose(turned.turns(clip.flip(1)), -steps.flip(1), atol=1e-6)
    # once trained, what is written into the difference tokens reaches the clip's embedding
    _shaken(turned).turn_read.weight.data = read
    both, every = torch.cat([clip, clip.flip(1)]), torch.ones(2, 5, dtype=torch.bool)
    written = turned(both, every)
    torch.nn.init.zeros_(turned.turn_write.weight)
    assert not torch.allclose(written, turned(both, every), atol=1e-3)
    with pytest.raises(ValueError, match="turn_planes"):
        DifferenceHead(dim=8, max_frames=5, turn_planes=-1)


def test_turn_planes_round_trip_through_the_checkpoint_settings(tmp_path):
    from demo.models.temporal import Clip4ClipSettings, build_head

    settings = Clip4ClipSettings(pooling=TDB_TAB, max_frames=4, head_layers=1, head_heads=2, tdb_turn_planes=2)
    settings.save(tmp_path)
    loaded = Clip4ClipSettings.load(tmp_path)
    assert loaded.tdb_turn_planes == 2
    head = build_head(loaded, 8)
    assert isinstance(head, AlignmentHead) and head.turn_read.weight.shape == (4, 8)
    plain = build_head(loaded.with_changes(tdb_turn_planes=0), 8, TDB)
    assert isinstance(plain, DifferenceHead) and plain.turn_read is None and plain.turn_write is None
    with pytest.raises(ValueError, match="no turn planes"):
        plain.turns(torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match="tdb_turn_planes"):
        Clip4ClipSettings(tdb_turn_planes=-1)
