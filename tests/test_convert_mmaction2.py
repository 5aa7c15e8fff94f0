"""MMAction2's CLIP4Clip checkpoints converted: the folder against transcriptions of MMAction2's test path.

``ref_*`` are written from MMAction2's ``CLIPSimilarity.extract_feat`` and ``SimpleMeanAdapter`` (the
mean of the raw frame features, then normalised), ``UniformSample`` in test mode and its
``Resize(scale=(-1, 256))`` + ``CenterCrop(224)`` + 0-255 mean/std. The checkpoint is a training
checkpoint in its layout (``state_dict`` with ``clip.*``) with tiny random weights; the released one
cannot be downloaded here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from demo.cli import main
from tests.test_parity import random_clip4clip_checkpoint, ref_encode_image, ref_encode_text

CAPTIONS = ["a man is cooking in a kitchen", "a cartoon cat runs", "news anchors talk about the weather"]


def mmaction2_checkpoint(tmp_path: Path) -> Path:
    sd = random_clip4clip_checkpoint("meanP", seed=3)
    path = tmp_path / "epoch_5.pth"
    torch.save({"meta": {"epoch": 5, "seed": 0}, "state_dict": sd, "optimizer": {"state": {}}}, path)
    return path


def ref_uniform_sample(total: int, clip_len: int) -> list[int]:
    """UniformSample(clip_len, num_clips=1, test_mode=True)._get_sample_clips."""
    seg_size = float(total - 1) / clip_len
    duration = seg_size / 2
    return [int(np.round(seg_size * i)) + int(duration) for i in range(clip_len)]


def ref_resize_crop(frame: np.ndarray, short: int, crop: int) -> np.ndarray:
    """Resize(scale=(-1, short)) (mmcv.rescale_size, bilinear with half-pixel centres, edges clamped) and
    CenterCrop(crop), in float then rounded to uint8 as the image is; normalised on the 0-255 scale."""
    h, w = frame.shape[:2]
    factor = short / min(h, w)
    new_w, new_h = int(w * factor + 0.5), int(h * factor + 0.5)

    def taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    y0, y1, wy = taps(new_h, h)
    x0, x1, wx = taps(new_w, w)
    f = frame.astype(np.float64)
    rows = f[y0] * (1 - wy)[:, None, None] + f[y1] * wy[:, None, None]
    out = np.rint(rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None])
    left, top = (new_w - crop) // 2, (new_h - crop) // 2
    out = out[top:top + crop, left:left + crop]
    mean, std = np.array([122.771, 116.746, 104.093]), np.array([68.500, 66.632, 70.323])
    return ((out - mean) / std).transpose(2, 0, 1).astype(np.float32)


def test_converted_mmaction2_checkpoint_computes_as_clip_similarity(tmp_path: Path) -> None:
    from demo.models.clip4clip import Clip4Clip
    from demo.models.encoders import Clip4ClipEncoder

    path = mmaction2_checkpoint(tmp_path)
    assert main(["convert", "mmaction2", str(path), "--out", str(tmp_path / "mm")]) == 0
    model = Clip4Clip.from_pretrained(tmp_path / "mm")
    s = model.settings
    assert (s.pooling, s.frame_mean, s.frame_sampling, s.frame_resize, s.max_frames, s.max_words) == \
        ("meanP", "raw", "mmaction2", "mmaction2", 12, 77)
    sd = torch.load(path, weights_only=True)["state_dict"]
    pixels = torch.randn(2, 12, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    tokens = Clip4ClipEncoder.from_pretrained(tmp_path / "mm", device="cpu").tokenize(CAPTIONS)
    with torch.no_grad():
        ours = model.encode_text(tokens["input_ids"], tokens["attention_mask"]) @ model.encode_video(
            pixels, torch.ones(2, 12, dtype=torch.bool)).t()
        video = torch.stack([torch.stack([ref_encode_image(f, sd, 2, 1) for f in clip]).mean(0) for clip in pixels])
        text = torch.stack([ref_encode_text(ids[m.bool()], sd, 2, 2)
                            for ids, m in zip(tokens["input_ids"], tokens["attention_mask"], strict=True)])
    video, text = video / video.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)
    assert (ours - text @ video.t()).abs().max().item() <= 1e-5
    # CLIP4Clip's meanP (unit frames first) on the same towers is another embedding
    unit = Clip4Clip.from_pretrained(tmp_path / "mm", frame_mean="unit")
    with torch.no_grad():
        other = unit.encode_video(pixels, torch.ones(2, 12, dtype=torch.bool))
    assert (other - video).abs().max().item() > 1e-4


def test_mmaction2_sampling_is_uniform_sample_in_test_mode() -> None:
    from demo.video.sampling import mmaction2_indices

    for total in (1, 2, 5, 11, 12, 13, 30, 47, 90, 301, 719, 1000):
        for clip_len in (8, 12):
            assert mmaction2_indices(total, clip_len).tolist() == ref_uniform_sample(total, clip_len), total


def test_mmaction2_frames_are_its_resize_crop_and_mean_std(tmp_path: Path) -> None:
    from demo.video.decode import probe, read_frames
    from demo.video.mp4 import write_mp4
    from demo.video.preprocess import load_clip4clip_clip

    rng = np.random.default_rng(1)
    video = np.clip(rng.normal(128, 60, size=(40, 48, 80, 3)), 0, 255).astype(np.uint8)
    write_mp4(tmp_path / "v.mp4", video, 10.0)
    frames, mask = load_clip4clip_clip(tmp_path / "v.mp4", 32, max_frames=12, sampling="mmaction2",
                                       resize="mmaction2")
    assert bool(mask.all()) and frames.shape == (12, 3, 32, 32)
    decoded = read_frames(tmp_path / "v.mp4", ref_uniform_sample(probe(tmp_path / "v.mp4").num_frames, 12))
    expected = np.stack([ref_resize_crop(f, 37, 32) for f in decoded])  # 37 = 32 * 256 / 224, rounded
    # float bilinear on both sides; OpenCV's fixed-point weights may move a pixel one grey level
    grey = np.abs(frames.numpy() - expected) * np.array([68.500, 66.632, 70.323])[None, :, None, None]
    assert grey.max() <= 1.0 + 1e-3 and grey.mean() < 0.05


def test_the_converter_refuses_what_it_cannot_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sd = random_clip4clip_checkpoint("meanP")
    sd["adapter.positional_embedding"] = torch.zeros(12, 128)
    torch.save({"state_dict": sd}, tmp_path / "transformer.pth")
    assert main(["convert", "mmaction2", str(tmp_path / "transformer.pth"), "--out", str(tmp_path / "x")]) == 2
    assert "TransformerAdapter" in capsys.readouterr().err
    torch.save({"state_dict": random_clip4clip_checkpoint("meanP"), "meta": {"x": np.float64(1.0)}},
               tmp_path / "objects.pth")
    assert main(["convert", "mmaction2", str(tmp_path / "objects.pth"), "--out", str(tmp_path / "x")]) == 2
    assert "re-save its weights" in capsys.readouterr().err and not (tmp_path / "x").exists()
